//! The gateway's latency and batch-size histograms, recorded by the sink thread once per flush.
//!
//! - `ingest_to_sink`: from the receive completion that opened a batch to the moment the sinks
//!   wrote it, weighted by the batch's events (nanoseconds).
//! - `batch_events`: events per batch.
//! - `event_latency`: when `[telemetry] latency_field` is set, `now − stamp` for every event that
//!   carries the field (a `CLOCK_MONOTONIC` nanosecond time, as `loadgen --stamp` writes it).
//!
//! Clocks are `CLOCK_MONOTONIC` in nanoseconds ([`mono_ns`]), which every process on the host
//! shares, so a stamp written by a client compares with the gateway's clock.

use hdrhistogram::Histogram;

/// Latencies are clamped to one hour.
const MAX_NS: u64 = 3_600_000_000_000;
pub use crate::event::{mono_ns, NO_STAMP};

/// A latency histogram: 1 ns to one hour, three significant digits (loadgen uses the same).
#[must_use]
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_NS, 3).expect("valid bounds")
}

#[derive(Debug, Clone)]
pub struct Histograms {
    pub ingest_to_sink: Histogram<u64>,
    pub batch_events: Histogram<u64>,
    pub event_latency: Histogram<u64>,
    /// Events without a usable `latency_field` stamp (while one is configured).
    pub unstamped: u64,
}

impl Default for Histograms {
    fn default() -> Self {
        Histograms {
            ingest_to_sink: latency_histogram(),
            batch_events: Histogram::new_with_bounds(1, 1 << 24, 3).expect("valid bounds"),
            event_latency: latency_histogram(),
            unstamped: 0,
        }
    }
}

impl Histograms {
    /// One batch of `events` events (opened at `born`) written at `now`, with the events'
    /// stamps if the latency field is configured.
    pub fn record_batch(&mut self, now: u64, born: u64, events: u64, stamps: &[u64]) {
        if events == 0 {
            return;
        }
        self.ingest_to_sink
            .saturating_record_n(now.saturating_sub(born).clamp(1, MAX_NS), events);
        self.batch_events.saturating_record(events);
        for &s in stamps {
            if s == NO_STAMP {
                self.unstamped += 1;
            } else {
                self.event_latency
                    .saturating_record(now.saturating_sub(s).clamp(1, MAX_NS));
            }
        }
    }

    /// `(name, histogram, unit divisor, unit name)` of every histogram a report carries.
    #[must_use]
    pub fn named(&self) -> [(&'static str, &Histogram<u64>, f64, &'static str); 3] {
        [
            ("ingest_to_sink", &self.ingest_to_sink, 1e6, "ms"),
            ("batch_events", &self.batch_events, 1.0, "events"),
            ("event_latency", &self.event_latency, 1e6, "ms"),
        ]
    }

    /// `p50=… p99=… max=…` of `ingest_to_sink` (and `event_latency` if recorded), for the log.
    #[must_use]
    pub fn brief(&self) -> String {
        let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1e6;
        let mut s = String::new();
        for (name, h) in [
            ("ingest_to_sink", &self.ingest_to_sink),
            ("event_latency", &self.event_latency),
        ] {
            if !h.is_empty() {
                s.push_str(&format!(
                    "{name}_ms p50={:.3} p99={:.3} p99.9={:.3} max={:.3} ",
                    ms(h, 0.5),
                    ms(h, 0.99),
                    ms(h, 0.999),
                    h.max() as f64 / 1e6
                ));
            }
        }
        s.trim_end().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_weighted_by_events_and_stamps_recorded() {
        let mut h = Histograms::default();
        h.record_batch(10_000, 9_000, 3, &[8_000, NO_STAMP, 9_500]);
        assert_eq!(h.ingest_to_sink.len(), 3);
        assert!(h.ingest_to_sink.equivalent(h.ingest_to_sink.max(), 1_000));
        assert_eq!(h.batch_events.len(), 1);
        assert_eq!(h.event_latency.len(), 2);
        assert_eq!(h.unstamped, 1);
        assert!(h.event_latency.equivalent(h.event_latency.max(), 2_000));
        // A stamp from the future (another clock) counts as the minimum, not a panic.
        h.record_batch(10, 20, 1, &[1_000]);
        assert_eq!(h.event_latency.min(), 1);
    }
}
