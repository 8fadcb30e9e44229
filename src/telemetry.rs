//! Telemetry: the gateway's counters and histograms. Metric names live here and nowhere else.
//!
//! Stage: beside every other stage. In: increments from sources (once per batch, never per event),
//! the channel and the sink thread; histogram records from the sink thread (once per flush).
//! Out: a [`Snapshot`] for the final summary line, and the shutdown report ([`report`]) in
//! HdrHistogram's formats ([`hgrm`]). What it does not do: log per event. Counters are relaxed
//! atomics; the histograms sit behind one mutex only the sink thread takes on the hot path.

pub mod hgrm;
pub mod hist;
pub mod prometheus;
pub mod report;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

pub use crate::event::{mono_ns, ConnCounters, SourceCounters};
pub use hist::Histograms;

/// Where a counter shows on the exit line (`stopped: …` before the summary line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// In the summary line itself (`summary events_in=… events_out=… dead_lettered=… dropped=…`).
    Summary,
    /// Always, under this key.
    Always(&'static str),
    /// Only when it is not 0.
    NonZero,
    /// Not on the exit line (a gauge that is 0 once the gateway has stopped).
    No,
}

/// How `/metrics` exposes a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prom {
    /// A gateway-wide counter of this name (`_total` added by the encoder).
    Counter(&'static str),
    /// A gateway-wide gauge of this name.
    Gauge(&'static str),
    /// Per source, labelled (see `prometheus`), not as a total.
    PerSource,
}

/// One row of the counters' table.
#[derive(Debug, Clone, Copy)]
pub struct CounterInfo {
    /// The field's name: the key in `stats` totals and `report.json`.
    pub name: &'static str,
    pub help: &'static str,
    pub exit: Exit,
    pub prom: Prom,
}

/// The gateway-wide counters, declared once: each becomes a field of [`Counters`] and of
/// [`Snapshot`] (so of `stats` totals and `report.json`), a row of [`COUNTERS`] that the exit
/// line and the Prometheus families are made from. A counter cannot be missing from one of them.
macro_rules! counters {
    ($( $name:ident: $help:literal, exit = $exit:expr, prom = $prom:expr; )*) => {
        #[derive(Debug, Default)]
        pub struct Counters {
            $( #[doc = $help] pub $name: AtomicU64, )*
            /// Latency and batch-size histograms (recorded by the sink thread).
            pub histograms: Mutex<Histograms>,
        }

        /// A point-in-time copy of [`Counters`].
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[serde(default)]
        pub struct Snapshot {
            $( #[doc = $help] pub $name: u64, )*
        }

        /// Every counter, in the order the exit line and `/metrics` show them.
        pub const COUNTERS: &[CounterInfo] = &[
            $( CounterInfo { name: stringify!($name), help: $help, exit: $exit, prom: $prom }, )*
        ];

        impl Counters {
            pub fn snapshot(&self) -> Snapshot {
                Snapshot { $( $name: self.$name.load(Relaxed), )* }
            }
        }

        impl Snapshot {
            /// Each counter's row and value, in table order.
            pub fn rows(&self) -> impl Iterator<Item = (&'static CounterInfo, u64)> {
                COUNTERS.iter().zip([$( self.$name, )*])
            }
        }
    };
}

counters! {
    events_in: "Valid events accepted from sources (before the channel).",
        exit = Exit::Summary, prom = Prom::PerSource;
    bytes_in: "Bytes received from sources.",
        exit = Exit::Always("bytes_in"), prom = Prom::PerSource;
    events_out: "Events written to the sinks (once per event, whatever the number of sinks).",
        exit = Exit::Summary, prom = Prom::Counter("ringway_events_delivered");
    dead_lettered: "Lines sent to the dead-letter sink (invalid JSON or UTF-8, oversized, incomplete).",
        exit = Exit::Summary, prom = Prom::PerSource;
    dropped: "Events dropped by when_full = \"drop_newest\".",
        exit = Exit::Summary, prom = Prom::Counter("ringway_events_dropped");
    dead_letters_dropped: "Dead-letter records dropped with their batch by when_full = \"drop_newest\".",
        exit = Exit::NonZero, prom = Prom::Counter("ringway_dead_letters_dropped");
    lost_at_shutdown: "Events a sink could not write before the shutdown grace ran out.",
        exit = Exit::NonZero, prom = Prom::Counter("ringway_events_lost_at_shutdown");
    connections_accepted: "Connections accepted.",
        exit = Exit::Always("connections"), prom = Prom::PerSource;
    connections_active: "Connections open now.",
        exit = Exit::No, prom = Prom::PerSource;
    accept_errors: "Failed accepts.",
        exit = Exit::Always("accept_errors"), prom = Prom::Counter("ringway_accept_errors");
    sink_write_errors: "Failed sink writes (retried).",
        exit = Exit::Always("sink_write_errors"), prom = Prom::Counter("ringway_sink_write_errors");
    parked: "Times a connection stopped being read for backpressure (io_uring).",
        exit = Exit::Always("parked"), prom = Prom::Counter("ringway_parked");
    recv_out_of_buffers: "io_uring recvs that ended because the provided-buffer ring was empty.",
        exit = Exit::Always("recv_out_of_buffers"), prom = Prom::Counter("ringway_recv_out_of_buffers");
    recv_stalls_recovered: "io_uring recvs that missed a wake-up (EOF or data) and were re-armed.",
        exit = Exit::Always("recv_stalls_recovered"), prom = Prom::Counter("ringway_recv_stalls_recovered");
    replies_dropped: "Replies that could not be written back (connection gone, or closed for not reading).",
        exit = Exit::NonZero, prom = Prom::Counter("ringway_replies_dropped");
    reply_timeouts: "Connections closed because they took no replies for write_timeout.",
        exit = Exit::NonZero, prom = Prom::Counter("ringway_reply_timeouts");
    reconnects: "Client sink connections made again after one was lost.",
        exit = Exit::NonZero, prom = Prom::Counter("ringway_reconnects");
    connect_failures: "Client sink connection attempts that failed.",
        exit = Exit::NonZero, prom = Prom::Counter("ringway_connect_failures");
    resent: "Events written again after a client sink's connection broke in the middle of their batch.",
        exit = Exit::NonZero, prom = Prom::Counter("ringway_events_resent");
    circuits_open: "Client sinks whose circuit is open now (max_retries failed attempts in a row).",
        exit = Exit::NonZero, prom = Prom::Gauge("ringway_circuits_open");
    ws_handshake_failures: "ws_server connections whose TLS handshake or upgrade failed or timed out.",
        exit = Exit::NonZero, prom = Prom::Counter("ringway_ws_handshake_failures");
    ws_messages_too_big: "ws_server connections closed (1009) for a message over max_message_size.",
        exit = Exit::NonZero, prom = Prom::Counter("ringway_ws_messages_too_big");
}

/// One sink's counters: added to once per batch written.
#[derive(Debug, Default)]
pub struct SinkCounters {
    pub events_out: AtomicU64,
    pub bytes_out: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        if n != 0 {
            counter.fetch_add(n, Relaxed);
        }
    }

    /// A source accepted a connection.
    pub fn connection_opened(&self) {
        self.connections_accepted.fetch_add(1, Relaxed);
        self.connections_active.fetch_add(1, Relaxed);
    }

    /// A connection a source had accepted is closed.
    pub fn connection_closed(&self) {
        self.connections_active.fetch_sub(1, Relaxed);
    }

    pub fn circuit_opened(&self) {
        self.circuits_open.fetch_add(1, Relaxed);
    }

    pub fn circuit_closed(&self) {
        self.circuits_open.fetch_sub(1, Relaxed);
    }

    /// A copy of the histograms.
    pub fn histograms(&self) -> Histograms {
        self.histograms
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Snapshot {
    /// The one line printed on exit: exactly these four counts, a stable, parsed format.
    pub fn summary_line(&self) -> String {
        format!(
            "summary events_in={} events_out={} dead_lettered={} dropped={}",
            self.events_in, self.events_out, self.dead_lettered, self.dropped
        )
    }

    /// The rest of the counters, logged just before the summary line: those shown always, then
    /// those that are not 0.
    pub fn details(&self) -> String {
        let always = self.rows().filter_map(|(c, v)| match c.exit {
            Exit::Always(key) => Some(format!("{key}={v}")),
            _ => None,
        });
        let nonzero = self
            .rows()
            .filter(|(c, v)| c.exit == Exit::NonZero && *v > 0)
            .map(|(c, v)| format!("{}={v}", c.name));
        always.chain(nonzero).collect::<Vec<_>>().join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_line_shows_every_counter_it_should() {
        let c = Counters::default();
        Counters::add(&c.resent, 7);
        Counters::add(&c.bytes_in, 3);
        let d = c.snapshot().details();
        assert!(
            d.starts_with("bytes_in=3 connections=0 accept_errors=0"),
            "{d}"
        );
        assert!(d.ends_with(" resent=7"), "{d}");
        assert!(!d.contains("replies_dropped"), "{d}");
        for info in COUNTERS {
            assert!(
                !matches!(info.exit, Exit::No) || info.name == "connections_active",
                "{} is on no output of the exit line",
                info.name
            );
        }
    }
}

/// Lets a warning through at most `per_second` times a second and counts what it held back.
#[derive(Debug)]
pub struct RateLimit {
    per_second: u32,
    window_start: std::time::Instant,
    in_window: u32,
    suppressed: u64,
}

impl RateLimit {
    pub fn new(per_second: u32) -> Self {
        RateLimit {
            per_second,
            window_start: std::time::Instant::now(),
            in_window: 0,
            suppressed: 0,
        }
    }

    /// `Some(n)` when the caller may log now; `n` is how many were suppressed since the last one.
    pub fn allow(&mut self) -> Option<u64> {
        let now = std::time::Instant::now();
        if now.duration_since(self.window_start).as_secs() >= 1 {
            self.window_start = now;
            self.in_window = 0;
        }
        if self.in_window < self.per_second {
            self.in_window += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}
