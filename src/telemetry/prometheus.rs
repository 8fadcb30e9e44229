//! The metrics endpoint's exposition: the same counters and histograms as the control socket's
//! `stats` and `latency`, named in Prometheus style and encoded by `prometheus-client` (the
//! OpenMetrics text format; counters get their `_total` suffix from the encoder).
//!
//! In: a [`View`] of the running gateway, taken at scrape time. Out: the exposition text.
//! What it does not do: serve HTTP (see `control::metrics`).

use std::sync::atomic::Ordering::Relaxed;

use hdrhistogram::Histogram;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{Counters, Histograms, SinkCounters, SourceCounters};

/// What a scrape shows: borrowed from the running gateway.
pub struct View<'a> {
    pub uptime_s: f64,
    pub counters: &'a Counters,
    pub histograms: Histograms,
    pub sources: Vec<SourceView<'a>>,
    pub sinks: Vec<SinkView<'a>>,
}

pub struct SourceView<'a> {
    pub name: &'a str,
    pub kind: &'static str,
    pub counters: &'a SourceCounters,
    pub paused: bool,
    /// (batches queued, capacity) of its channel lane, while open.
    pub lane: Option<(usize, usize)>,
}

pub struct SinkView<'a> {
    pub name: &'a str,
    pub kind: &'static str,
    pub counters: &'a SinkCounters,
    /// (bytes, bound) of a client sink's spool.
    pub spool: Option<(usize, usize)>,
}

/// The exposition text of `view`.
pub fn render(view: View<'_>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Owned(Snapshot::of(&view))));
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// One series of a labelled metric: its labels and value.
type Labelled = (Vec<(String, String)>, i64);

/// A scrape's values, owned (a collector must be `'static`).
#[derive(Debug)]
struct Snapshot {
    uptime_s: f64,
    totals: Vec<(&'static str, &'static str, u64, bool)>,
    /// (metric, help, [(labels, value)], counter?)
    labelled: Vec<(&'static str, &'static str, Vec<Labelled>, bool)>,
    /// (metric, help, unit divisor, histogram)
    histograms: Vec<(&'static str, &'static str, f64, Histogram<u64>)>,
}

#[derive(Debug)]
struct Owned(Snapshot);

impl Snapshot {
    fn of(v: &View<'_>) -> Snapshot {
        let totals = v
            .counters
            .snapshot()
            .rows()
            .filter_map(|(c, value)| match c.prom {
                super::Prom::Counter(name) => Some((name, c.help, value, true)),
                super::Prom::Gauge(name) => Some((name, c.help, value, false)),
                super::Prom::PerSource => None,
            })
            .collect();
        Snapshot {
            uptime_s: v.uptime_s,
            totals,
            labelled: source_families(v)
                .into_iter()
                .chain(sink_families(v))
                .collect(),
            histograms: histogram_families(&v.histograms),
        }
    }
}

/// A labelled family: (metric, help, [(labels, value)], counter?).
type Family = (&'static str, &'static str, Vec<Labelled>, bool);

fn count(a: &std::sync::atomic::AtomicU64) -> Option<i64> {
    Some(a.load(Relaxed) as i64)
}

/// The per-source families.
fn source_families(v: &View<'_>) -> Vec<Family> {
    let per_source = |f: &dyn Fn(&SourceView<'_>) -> Option<i64>| {
        v.sources
            .iter()
            .filter_map(|s| {
                let labels = vec![
                    ("source".to_string(), s.name.to_string()),
                    ("type".to_string(), s.kind.to_string()),
                ];
                Some((labels, f(s)?))
            })
            .collect::<Vec<_>>()
    };
    let n = count;
    vec![
        (
            "ringway_events_received",
            "Valid events read, per source.",
            per_source(&|s| n(&s.counters.events_in)),
            true,
        ),
        (
            "ringway_bytes_received",
            "Bytes read, per source.",
            per_source(&|s| n(&s.counters.bytes_in)),
            true,
        ),
        (
            "ringway_events_dead_lettered",
            "Bad lines sent to the dead-letter sink, per source.",
            per_source(&|s| n(&s.counters.dead_lettered)),
            true,
        ),
        (
            "ringway_connections_accepted",
            "Connections accepted, per source.",
            per_source(&|s| n(&s.counters.connections_accepted)),
            true,
        ),
        (
            "ringway_connections_open",
            "Connections open now, per source.",
            per_source(&|s| n(&s.counters.connections_active)),
            false,
        ),
        (
            "ringway_source_paused",
            "1 while the source is paused (control socket).",
            per_source(&|s| Some(i64::from(s.paused))),
            false,
        ),
        (
            "ringway_channel_depth_batches",
            "Batches waiting in the source's channel lane.",
            per_source(&|s| s.lane.map(|l| l.0 as i64)),
            false,
        ),
        (
            "ringway_channel_capacity_batches",
            "Capacity of the source's channel lane.",
            per_source(&|s| s.lane.map(|l| l.1 as i64)),
            false,
        ),
    ]
}

/// The per-sink families.
fn sink_families(v: &View<'_>) -> Vec<Family> {
    let per_sink = |f: &dyn Fn(&SinkView<'_>) -> Option<i64>| {
        v.sinks
            .iter()
            .filter_map(|s| {
                let labels = vec![
                    ("sink".to_string(), s.name.to_string()),
                    ("type".to_string(), s.kind.to_string()),
                ];
                Some((labels, f(s)?))
            })
            .collect::<Vec<_>>()
    };
    let n = count;
    vec![
        (
            "ringway_sink_events",
            "Events handed to the sink (written, or queued in its spool or reply queues).",
            per_sink(&|s| n(&s.counters.events_out)),
            true,
        ),
        (
            "ringway_sink_bytes",
            "Bytes handed to the sink.",
            per_sink(&|s| n(&s.counters.bytes_out)),
            true,
        ),
        (
            "ringway_spool_bytes",
            "Bytes waiting in a client sink's spool.",
            per_sink(&|s| s.spool.map(|p| p.0 as i64)),
            false,
        ),
        (
            "ringway_spool_capacity_bytes",
            "Bound of a client sink's spool.",
            per_sink(&|s| s.spool.map(|p| p.1 as i64)),
            false,
        ),
    ]
}

/// (metric, help, unit divisor, histogram).
fn histogram_families(h: &Histograms) -> Vec<(&'static str, &'static str, f64, Histogram<u64>)> {
    vec![
        (
            "ringway_ingest_to_sink_seconds",
            "From the receive that opened a batch to every sink's write, per event.",
            1e9,
            h.ingest_to_sink.clone(),
        ),
        (
            "ringway_event_latency_seconds",
            "From the event's latency_field stamp to the sink write.",
            1e9,
            h.event_latency.clone(),
        ),
        (
            "ringway_batch_events",
            "Events per batch.",
            1.0,
            h.batch_events.clone(),
        ),
    ]
}

/// Bucket bounds (in the histogram's unit after dividing): powers of 2 around what we see.
/// Each bucket's own count (the encoder sums them up); the last one is `+Inf`.
fn buckets(h: &Histogram<u64>, unit: f64) -> Vec<(f64, u64)> {
    let bounds: Vec<f64> = if unit == 1.0 {
        (0..=16).map(|i| f64::from(1u32 << i)).collect()
    } else {
        // 1 µs … ~67 s
        (0..=26).map(|i| f64::from(1u32 << i) * 1e-6).collect()
    };
    let mut below = 0u64;
    let mut out: Vec<(f64, u64)> = bounds
        .into_iter()
        .map(|b| {
            let raw = (b * unit) as u64;
            let upto: u64 = h
                .iter_recorded()
                .filter(|v| v.value_iterated_to() <= raw)
                .map(|v| v.count_at_value())
                .sum();
            let own = upto.saturating_sub(below);
            below = below.max(upto);
            (b, own)
        })
        .collect();
    out.push((f64::MAX, h.len().saturating_sub(below)));
    out
}

impl Collector for Owned {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let up = ConstGauge::new(s.uptime_s);
        up.encode(e.encode_descriptor(
            "ringway_uptime_seconds",
            "Seconds since the gateway started.",
            None,
            up.metric_type(),
        )?)?;
        for &(name, help, value, counter) in &s.totals {
            if counter {
                let m = ConstCounter::new(value);
                m.encode(e.encode_descriptor(name, help, None, m.metric_type())?)?;
            } else {
                let m = ConstGauge::new(value as i64);
                m.encode(e.encode_descriptor(name, help, None, m.metric_type())?)?;
            }
        }
        for (name, help, series, counter) in &s.labelled {
            if series.is_empty() {
                continue;
            }
            let ty = if *counter {
                MetricType::Counter
            } else {
                MetricType::Gauge
            };
            let mut family = e.encode_descriptor(name, help, None, ty)?;
            for (labels, value) in series {
                let m = family.encode_family(labels)?;
                if *counter {
                    ConstCounter::new(*value as u64).encode(m)?;
                } else {
                    ConstGauge::new(*value).encode(m)?;
                }
            }
        }
        for (name, help, unit, h) in &s.histograms {
            let sum = if h.is_empty() {
                0.0
            } else {
                h.mean() * h.len() as f64 / unit
            };
            let mut m = e.encode_descriptor(name, help, None, MetricType::Histogram)?;
            m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                sum,
                h.len(),
                &buckets(h, *unit),
                None,
            )?;
        }
        Ok(())
    }
}
