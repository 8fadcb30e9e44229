//! Channel: batches of events from every source to the one sink thread.
//!
//! Stage: between the sources and the sinks. In: [`Batch`]es built by a connection (events of one
//! connection only, in order, bounded by `batch_max_events`/`batch_max_bytes` plus at most one
//! receive buffer). Out: the same batches, in the order each producer sent them, to a single
//! receiver. The channel is bounded in batches (`capacity`); what happens when it is full is
//! [`WhenFull`]: `block` hands the batch back so the producer stops reading (backpressure), and
//! `drop_newest` drops the batch and counts its events.
//!
//! A batch holds its events back to back in one `Vec<u8>`, each followed by `b'\n'`, so the common
//! sink (raw events, newline separated) writes a whole batch with one call. Copying the event bytes
//! out of the receive buffer into `Batch::data` is the one copy between the kernel and the sink.
//! What it does not do: look inside events.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::codec::Codec;
use crate::config::WhenFull;
use crate::telemetry::Counters;

/// Who sent a batch: fixed for the life of a connection, shared by all its batches.
#[derive(Debug)]
pub struct ConnMeta {
    pub source: Arc<SourceMeta>,
    /// Unique for the life of the process.
    pub id: u64,
    /// SO_PEERCRED of a UNIX peer (else 0, u32::MAX, u32::MAX).
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
    /// The address of a TCP peer.
    pub peer_addr: Option<std::net::SocketAddr>,
    /// `{"meta":{…},"event":` rendered once per connection for `metadata = "envelope"`.
    pub envelope_prefix: Box<[u8]>,
    /// Where a `reply` sink writes this connection's events back (when there is one).
    pub reply: Option<crate::sink::reply::ReplyHandle>,
    pub opened: std::time::Instant,
    pub counters: crate::telemetry::ConnCounters,
    /// The io_uring worker reading it (None: an epoll task, or a file).
    pub worker: Option<usize>,
    /// Notified when the control socket asks for this connection to be closed (epoll).
    pub close: tokio::sync::Notify,
}

impl ConnMeta {
    /// A reply sink holds more for this connection than its queue bound: stop reading from it.
    #[inline]
    pub fn reply_backlogged(&self) -> bool {
        self.reply.as_ref().is_some_and(|r| r.backlogged())
    }
}

/// What every connection of a source shares.
#[derive(Debug)]
pub struct SourceMeta {
    pub name: String,
    pub kind: crate::config::SourceKind,
    /// The socket path, listening address or file, as configured.
    pub path: String,
    pub codec: Codec,
    /// `[telemetry] latency_field`: events' stamps are read into [`Batch::stamps`].
    pub latency_field: Option<String>,
    /// The event stream (the channel's lane) this source's batches go to.
    pub stream: usize,
    pub counters: crate::telemetry::SourceCounters,
    /// `pause` / `resume` from the control socket.
    pub pause: crate::control::Pause,
}

/// A line that could not become an event, with the bytes to show for it.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// `invalid_json`, `invalid_utf8`, `oversized`, `incomplete`.
    pub kind: &'static str,
    pub detail: String,
    /// 1-based line number within the connection.
    pub line: u64,
    /// Length of the whole line in bytes.
    pub len: u64,
    /// At most [`DEAD_LETTER_RAW_MAX`] leading bytes of the line.
    pub raw: Vec<u8>,
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
    /// With `latency_field` configured, each event's stamp (or `NO_STAMP`); else empty.
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
            born: crate::telemetry::mono_ns(),
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

/// The producing half; clone one per worker. A batch goes to the lane of its stream
/// (`SourceMeta::stream`); a lane closes when the last sender is dropped.
#[derive(Clone)]
pub struct Sender {
    /// `None` for the lanes this sender may not use (see [`Sender::only`]).
    lanes: Arc<[Option<mpsc::Sender<Batch>>]>,
    when_full: Arc<Policy>,
    counters: Arc<Counters>,
    /// Each lane's capacity in batches (for lanes added while running).
    capacity: usize,
}

pub type Receiver = mpsc::Receiver<Batch>;

/// `when_full`, shared by every sender and changeable while running (`reload`).
#[derive(Debug)]
pub struct Policy(std::sync::atomic::AtomicBool);

impl Policy {
    pub fn get(&self) -> WhenFull {
        if self.0.load(std::sync::atomic::Ordering::Relaxed) {
            WhenFull::DropNewest
        } else {
            WhenFull::Block
        }
    }

    pub fn set(&self, w: WhenFull) {
        self.0.store(
            w == WhenFull::DropNewest,
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}

/// Each lane's depth and capacity in batches, for `stats` (see [`Sender::gauge`]).
pub struct LaneGauge(std::sync::RwLock<Vec<Option<mpsc::WeakSender<Batch>>>>);

impl LaneGauge {
    /// (batches queued, capacity) of stream `k`'s lane; None once it has closed.
    pub fn depth(&self, k: usize) -> Option<(usize, usize)> {
        let s = self.0.read().unwrap().get(k)?.as_ref()?.upgrade()?;
        Some((s.max_capacity() - s.capacity(), s.max_capacity()))
    }

    /// Watch the lanes `sender` holds too (lanes added while running).
    pub fn add(&self, sender: &Sender) {
        let mut all = self.0.write().unwrap();
        for (k, l) in sender.lanes.iter().enumerate() {
            if let Some(l) = l {
                if all.len() <= k {
                    all.resize(k + 1, None);
                }
                all[k] = Some(l.downgrade());
            }
        }
    }
}

/// What became of a batch offered without waiting.
pub enum Offer {
    Sent,
    /// `when_full = "drop_newest"` and the channel was full: the events were counted as dropped.
    Dropped,
    /// `when_full = "block"` and the channel is full: here is the batch back; stop reading.
    Full(Batch),
    /// The sink thread is gone; nothing more can be delivered.
    Closed(Batch),
}

/// One lane of `capacity` batches per event stream. Each stream's batches stay in order; a full
/// lane holds back only its own producers.
pub fn bounded(
    streams: usize,
    capacity: usize,
    when_full: WhenFull,
    counters: Arc<Counters>,
) -> (Sender, Vec<Receiver>) {
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..streams.max(1)).map(|_| mpsc::channel(capacity)).unzip();
    (
        Sender {
            lanes: txs.into_iter().map(Some).collect(),
            when_full: Arc::new(Policy(std::sync::atomic::AtomicBool::new(
                when_full == WhenFull::DropNewest,
            ))),
            counters,
            capacity,
        },
        rxs,
    )
}

impl Sender {
    /// A sender for these streams only. A lane closes (and its sinks learn that the stream has
    /// ended) when the last sender that holds it is dropped, so every producer should hold just
    /// the lanes it writes.
    pub fn only(&self, streams: &[usize]) -> Sender {
        Sender {
            lanes: self
                .lanes
                .iter()
                .enumerate()
                .map(|(k, l)| l.clone().filter(|_| streams.contains(&k)))
                .collect(),
            when_full: Arc::clone(&self.when_full),
            counters: Arc::clone(&self.counters),
            capacity: self.capacity,
        }
    }

    /// A new lane for stream `k` (a source added while running): a sender that holds only it,
    /// and its receiving end for the sink thread. Same capacity and policy as the others.
    pub fn new_lane(&self, k: usize) -> (Sender, Receiver) {
        let (tx, rx) = mpsc::channel(self.capacity);
        let mut lanes: Vec<Option<mpsc::Sender<Batch>>> = vec![None; k + 1];
        lanes[k] = Some(tx);
        let sender = Sender {
            lanes: lanes.into(),
            when_full: Arc::clone(&self.when_full),
            counters: Arc::clone(&self.counters),
            capacity: self.capacity,
        };
        (sender, rx)
    }

    /// The `when_full` policy every sender shares.
    pub fn policy(&self) -> Arc<Policy> {
        Arc::clone(&self.when_full)
    }

    /// A view of the lanes' depths that does not keep them open.
    pub fn gauge(&self) -> LaneGauge {
        LaneGauge(std::sync::RwLock::new(
            self.lanes
                .iter()
                .map(|l| l.as_ref().map(mpsc::Sender::downgrade))
                .collect(),
        ))
    }

    #[inline]
    fn lane(&self, b: &Batch) -> &mpsc::Sender<Batch> {
        self.lanes[b.conn.source.stream]
            .as_ref()
            .expect("a batch sent on a lane its sender does not hold")
    }

    /// Offer a batch without waiting (the io_uring workers).
    pub fn offer(&self, batch: Batch) -> Offer {
        match self.lane(&batch).try_send(batch) {
            Ok(()) => Offer::Sent,
            Err(mpsc::error::TrySendError::Full(b)) => match self.when_full.get() {
                WhenFull::Block => Offer::Full(b),
                WhenFull::DropNewest => {
                    self.drop_batch(&b);
                    Offer::Dropped
                }
            },
            Err(mpsc::error::TrySendError::Closed(b)) => {
                self.lost(&b);
                Offer::Closed(b)
            }
        }
    }

    /// Send a batch, waiting for room under `block` (the epoll path). `Err` when the sink is gone.
    // The batch comes back whole on failure (its events are counted by the caller).
    #[allow(clippy::result_large_err)]
    pub async fn send(&self, batch: Batch) -> Result<(), Batch> {
        match self.offer(batch) {
            Offer::Sent | Offer::Dropped => Ok(()),
            Offer::Closed(b) => Err(b),
            Offer::Full(b) => self.lane(&b).send(b).await.map_err(|e| {
                self.lost(&e.0);
                e.0
            }),
        }
    }

    /// Send a batch, blocking this thread for room (a worker's last batches at shutdown).
    // The batch comes back whole on failure (its events are counted by the caller).
    #[allow(clippy::result_large_err)]
    pub fn send_blocking(&self, batch: Batch) -> Result<(), Batch> {
        match self.offer(batch) {
            Offer::Sent | Offer::Dropped => Ok(()),
            Offer::Closed(b) => Err(b),
            Offer::Full(b) => self.lane(&b).blocking_send(b).map_err(|e| {
                self.lost(&e.0);
                e.0
            }),
        }
    }

    fn drop_batch(&self, b: &Batch) {
        Counters::add(&self.counters.dropped, b.events() as u64);
        // Their records are gone too; they were counted in dead_lettered when made.
        Counters::add(&self.counters.dead_letters_dropped, b.dead.len() as u64);
    }

    /// The sink thread is gone (it panicked): nothing more can be written.
    fn lost(&self, b: &Batch) {
        Counters::add(&self.counters.lost_at_shutdown, b.events() as u64);
    }
}
