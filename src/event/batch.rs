//! Batches of events and the dead letters that travel with them.
//!
//! A batch holds its events back to back in one `Vec<u8>`, each followed by `b'\n'`, so the common
//! sink (raw events, newline separated) writes a whole batch with one call. Copying the event bytes
//! out of the receive buffer into `Batch::data` is the one copy between the kernel and the sink.

use std::sync::Arc;

use super::meta::ConnMeta;

/// A stamp the event did not carry (the field is missing or not a non-negative integer).
pub const NO_STAMP: u64 = u64::MAX;

/// `CLOCK_MONOTONIC` now, in nanoseconds (every process on the host shares this clock, so a stamp
/// a client wrote compares with the gateway's).
#[inline]
#[must_use]
pub fn mono_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Why a line could not become an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterKind {
    /// Not one JSON document (json codec).
    InvalidJson,
    /// Not UTF-8 (json and string codecs).
    InvalidUtf8,
    /// Longer than `max_length`: only its head is kept.
    Oversized,
    /// The connection ended in the middle of the line.
    Incomplete,
}

impl DeadLetterKind {
    /// As written in dead-letter records (`"error"`).
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterKind::InvalidJson => "invalid_json",
            DeadLetterKind::InvalidUtf8 => "invalid_utf8",
            DeadLetterKind::Oversized => "oversized",
            DeadLetterKind::Incomplete => "incomplete",
        }
    }
}

impl std::fmt::Display for DeadLetterKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A line that could not become an event, with the bytes to show for it.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub kind: DeadLetterKind,
    pub detail: String,
    /// 1-based line number within the connection.
    pub line: u64,
    /// Length of the whole line in bytes.
    pub len: u64,
    /// At most [`DEAD_LETTER_RAW_MAX`] leading bytes of the line.
    pub raw: Vec<u8>,
}

/// How a batch left the gateway, as its connection's [`DeliveryTarget`] is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// Every sink that takes its stream is done with it: a file or stdout sink's write returned;
    /// a client sink's peer's kernel took it; a reply sink queued it for its connection (or
    /// counted it in `replies_dropped` when that connection was gone).
    Written,
    /// `when_full = "drop_newest"` dropped it at a full channel.
    Dropped,
    /// A sink gave up on it at shutdown, or the sink side was gone.
    Lost,
}

/// Told when each batch of a connection has left the gateway: the per-batch delivery report a
/// source needs to acknowledge what it read (NATS acks, `{"acked":N}`). Reports of one
/// connection may arrive out of order when several sinks take its stream: a target that acks
/// cumulatively keeps a watermark over `first_event`.
///
/// `delivered` is called on the sink thread, a client sink's thread, an io_uring worker or a
/// tokio task: it must not block (record the report and wake whoever acks). Batches still in a
/// lane when the process gives up at shutdown are not reported.
pub trait DeliveryTarget: Send + Sync + std::fmt::Debug {
    /// Events `first_event .. first_event + events` of the connection ended as `outcome`.
    fn delivered(&self, first_event: u64, events: u64, outcome: Delivered);
}

/// How many leading bytes of a bad line a dead-letter record keeps.
pub const DEAD_LETTER_RAW_MAX: usize = 4096;

/// Events of one connection, in order, plus the lines of it that were dead-lettered.
#[derive(Debug)]
pub struct Batch {
    pub conn: Arc<ConnMeta>,
    /// Event bytes, each followed by `b'\n'`.
    pub data: Vec<u8>,
    /// End offset in `data` of each event (its `b'\n'` excluded); the next one starts one byte later.
    pub ends: Vec<u32>,
    pub dead: Vec<DeadLetter>,
    /// `CLOCK_MONOTONIC` ns when the batch was opened: the receive completion of its first bytes.
    pub born: u64,
    /// The connection's count of events before this batch's first (0-based index of its first
    /// event on the connection): with [`Batch::events`], what a delivery report names.
    pub first_event: u64,
    /// With `latency_field` configured, each event's stamp (or [`NO_STAMP`]); else empty.
    pub stamps: Vec<u64>,
    /// Empty unless a WebSocket source received some of these events in binary messages: then
    /// one flag per event (tremor's `$ws_server.binary`), for a `ws_client` to send them alike.
    pub binary: Vec<bool>,
}

impl Batch {
    pub fn new(conn: Arc<ConnMeta>, bytes_hint: usize) -> Batch {
        let (mut data, ends) = pool::take();
        data.reserve(bytes_hint);
        Batch {
            conn,
            data,
            ends,
            dead: Vec::new(),
            born: mono_ns(),
            first_event: 0,
            stamps: Vec::new(),
            binary: Vec::new(),
        }
    }

    #[inline]
    pub fn push(&mut self, event: &[u8]) {
        self.data.extend_from_slice(event);
        self.ends.push(self.data.len() as u32);
        self.data.push(b'\n');
    }

    pub fn events(&self) -> usize {
        self.ends.len()
    }

    /// Tell the connection's delivery target (if it has one) how this batch ended. Called once
    /// per batch: when the last sink lets go of it, or when the channel drops or loses it.
    pub fn report(&self, outcome: Delivered) {
        if let Some(t) = &self.conn.on_delivery {
            t.delivered(self.first_event, self.events() as u64, outcome);
        }
    }

    /// The stream (the channel's lane) this batch belongs to.
    #[inline]
    pub fn stream(&self) -> usize {
        self.conn.source.stream
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty() && self.dead.is_empty()
    }

    /// The events, without their separators.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut start = 0usize;
        self.ends.iter().map(move |&end| {
            let e = &self.data[start..end as usize];
            start = end as usize + 1;
            e
        })
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        pool::give(
            std::mem::take(&mut self.data),
            std::mem::take(&mut self.ends),
        );
    }
}

/// Batch buffers come back here when a batch has been written, and new batches take them, so
/// that a steady stream reuses the same memory instead of faulting in fresh pages (buffers are
/// made by the source threads and freed by the sink side, which allocators handle poorly).
mod pool {
    use std::sync::Mutex;

    /// Buffers kept at most; beyond that they are freed.
    const KEEP: usize = 512;
    /// Larger buffers (a batch that held a huge line) are not kept.
    const MAX_CAPACITY: usize = 4 << 20;

    static POOL: Mutex<Vec<(Vec<u8>, Vec<u32>)>> = Mutex::new(Vec::new());

    pub(super) fn take() -> (Vec<u8>, Vec<u32>) {
        POOL.lock()
            .ok()
            .and_then(|mut p| p.pop())
            .unwrap_or_default()
    }

    pub(super) fn give(mut data: Vec<u8>, mut ends: Vec<u32>) {
        if data.capacity() == 0 || data.capacity() > MAX_CAPACITY {
            return;
        }
        data.clear();
        ends.clear();
        if let Ok(mut p) = POOL.lock() {
            if p.len() < KEEP {
                p.push((data, ends));
            }
        }
    }
}
