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

#[derive(Debug, Default)]
pub struct Counters {
    /// Valid events accepted from sources (before the channel).
    pub events_in: AtomicU64,
    /// Bytes received from sources.
    pub bytes_in: AtomicU64,
    /// Events written to the sinks (once per event, whatever the number of sinks).
    pub events_out: AtomicU64,
    /// Lines sent to the dead-letter sink (invalid JSON or UTF-8, oversized, incomplete).
    pub dead_lettered: AtomicU64,
    /// Events dropped by `when_full = "drop_newest"`.
    pub dropped: AtomicU64,
    /// Dead-letter records dropped with their batch by `when_full = "drop_newest"`.
    pub dead_letters_dropped: AtomicU64,
    /// Events a sink could not write before the shutdown deadline.
    pub lost_at_shutdown: AtomicU64,
    pub connections_accepted: AtomicU64,
    pub connections_active: AtomicU64,
    pub accept_errors: AtomicU64,
    pub sink_write_errors: AtomicU64,
    /// io_uring: multishot recvs that ended because the provided-buffer ring was empty.
    pub recv_out_of_buffers: AtomicU64,
    /// io_uring: times a connection was parked because the channel was full.
    pub parked: AtomicU64,
    /// io_uring: armed recvs that missed a wake-up (EOF or data) and were re-armed.
    pub recv_stalls_recovered: AtomicU64,
    /// Reply sink: events that could not be written back (connection gone or closed for not
    /// reading within `write_timeout`).
    pub replies_dropped: AtomicU64,
    /// Reply sink: connections closed because they took no replies for `write_timeout`.
    pub reply_timeouts: AtomicU64,
    /// Client sinks: connections made again after one was lost.
    pub reconnects: AtomicU64,
    /// Client sinks: connection attempts that failed.
    pub connect_failures: AtomicU64,
    /// Client sinks: events written again after a connection broke in the middle of their batch
    /// (the peer may have read some of them twice).
    pub resent: AtomicU64,
    /// Client sinks whose circuit is open now (`max_retries` failed attempts in a row).
    pub circuits_open: AtomicU64,
    /// ws_server: connections whose TLS handshake or WebSocket upgrade failed or timed out.
    pub ws_handshake_failures: AtomicU64,
    /// ws_server: connections closed (1009) for a message over `max_message_size`.
    pub ws_messages_too_big: AtomicU64,
    /// Latency and batch-size histograms (recorded by the sink thread).
    pub histograms: Mutex<Histograms>,
}

/// One sink's counters: added to once per batch written.
#[derive(Debug, Default)]
pub struct SinkCounters {
    pub events_out: AtomicU64,
    pub bytes_out: AtomicU64,
}

/// A point-in-time copy of [`Counters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    pub events_in: u64,
    pub bytes_in: u64,
    pub events_out: u64,
    pub dead_lettered: u64,
    pub dropped: u64,
    pub dead_letters_dropped: u64,
    pub lost_at_shutdown: u64,
    pub connections_accepted: u64,
    pub accept_errors: u64,
    pub sink_write_errors: u64,
    pub recv_out_of_buffers: u64,
    pub parked: u64,
    pub recv_stalls_recovered: u64,
    pub replies_dropped: u64,
    pub reply_timeouts: u64,
    pub reconnects: u64,
    pub connect_failures: u64,
    pub resent: u64,
    pub circuits_open: u64,
    pub ws_handshake_failures: u64,
    pub ws_messages_too_big: u64,
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

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            events_in: self.events_in.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            events_out: self.events_out.load(Relaxed),
            dead_lettered: self.dead_lettered.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            dead_letters_dropped: self.dead_letters_dropped.load(Relaxed),
            lost_at_shutdown: self.lost_at_shutdown.load(Relaxed),
            connections_accepted: self.connections_accepted.load(Relaxed),
            accept_errors: self.accept_errors.load(Relaxed),
            sink_write_errors: self.sink_write_errors.load(Relaxed),
            recv_out_of_buffers: self.recv_out_of_buffers.load(Relaxed),
            parked: self.parked.load(Relaxed),
            recv_stalls_recovered: self.recv_stalls_recovered.load(Relaxed),
            replies_dropped: self.replies_dropped.load(Relaxed),
            reply_timeouts: self.reply_timeouts.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
            connect_failures: self.connect_failures.load(Relaxed),
            resent: self.resent.load(Relaxed),
            circuits_open: self.circuits_open.load(Relaxed),
            ws_handshake_failures: self.ws_handshake_failures.load(Relaxed),
            ws_messages_too_big: self.ws_messages_too_big.load(Relaxed),
        }
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

    /// The rest of the counters, logged just before the summary line.
    pub fn details(&self) -> String {
        let mut s = format!(
            "bytes_in={} connections={} accept_errors={} sink_write_errors={} parked={} recv_out_of_buffers={} recv_stalls_recovered={}",
            self.bytes_in,
            self.connections_accepted,
            self.accept_errors,
            self.sink_write_errors,
            self.parked,
            self.recv_out_of_buffers,
            self.recv_stalls_recovered
        );
        if self.dead_letters_dropped > 0 {
            s.push_str(&format!(
                " dead_letters_dropped={}",
                self.dead_letters_dropped
            ));
        }
        if self.lost_at_shutdown > 0 {
            s.push_str(&format!(" lost_at_shutdown={}", self.lost_at_shutdown));
        }
        for (k, v) in [
            ("replies_dropped", self.replies_dropped),
            ("reply_timeouts", self.reply_timeouts),
            ("reconnects", self.reconnects),
            ("connect_failures", self.connect_failures),
            ("resent", self.resent),
            ("circuits_open", self.circuits_open),
            ("ws_handshake_failures", self.ws_handshake_failures),
            ("ws_messages_too_big", self.ws_messages_too_big),
        ] {
            if v > 0 {
                s.push_str(&format!(" {k}={v}"));
            }
        }
        s
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
