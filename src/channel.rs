//! Channel: batches of events from every source to the one sink thread.
//!
//! Stage: between the sources and the sinks. In: [`Batch`]es built by a connection (events of one
//! connection only, in order, bounded by `batch_max_events`/`batch_max_bytes` plus at most one
//! receive buffer). Out: the same batches, in the order each producer sent them, to a single
//! receiver. The channel is bounded in batches (`capacity`); what happens when it is full is
//! [`WhenFull`]: `block` hands the batch back so the producer stops reading (backpressure), and
//! `drop_newest` drops the batch and counts its events.
//!
//! What it does not do: look inside events (a [`Batch`] is `event`'s).

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::config::WhenFull;
use crate::event::{Batch, Delivered};
use crate::telemetry::Counters;

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
        self.lanes[b.stream()]
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
        b.report(Delivered::Dropped);
        Counters::add(&self.counters.dropped, b.events() as u64);
        // Their records are gone too; they were counted in dead_lettered when made.
        Counters::add(&self.counters.dead_letters_dropped, b.dead.len() as u64);
    }

    /// The sink thread is gone (it panicked): nothing more can be written.
    fn lost(&self, b: &Batch) {
        b.report(Delivered::Lost);
        Counters::add(&self.counters.lost_at_shutdown, b.events() as u64);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;

    use super::*;
    use crate::event::{ConnMeta, SourceMeta};

    fn batch(events: usize) -> Batch {
        let source = Arc::new(SourceMeta::plain("t", 0));
        let mut b = Batch::new(Arc::new(ConnMeta::new(source, 1)), 64);
        for _ in 0..events {
            b.push(b"{}");
        }
        b
    }

    #[test]
    fn offer_follows_when_full() {
        let counters = Arc::new(Counters::default());
        let (tx, mut rx) = bounded(1, 1, WhenFull::Block, Arc::clone(&counters));
        assert!(matches!(tx.offer(batch(3)), Offer::Sent));
        // Full under `block`: the batch comes back whole, nothing is counted.
        match tx.offer(batch(5)) {
            Offer::Full(b) => assert_eq!(b.events(), 5),
            _ => panic!("a full lane under block hands the batch back"),
        }
        assert_eq!(counters.dropped.load(Relaxed), 0);
        // `drop_newest`, switched while running: counted as dropped.
        tx.policy().set(WhenFull::DropNewest);
        assert!(matches!(tx.offer(batch(5)), Offer::Dropped));
        assert_eq!(counters.dropped.load(Relaxed), 5);
        // The first batch is still there, in order.
        assert_eq!(rx[0].try_recv().unwrap().events(), 3);
        // The sink side gone: the batch comes back and its events are counted as lost.
        drop(rx);
        match tx.offer(batch(2)) {
            Offer::Closed(b) => assert_eq!(b.events(), 2),
            _ => panic!("a closed lane reports Closed"),
        }
        assert_eq!(counters.lost_at_shutdown.load(Relaxed), 2);
    }

    #[test]
    fn a_lane_closes_when_its_last_sender_goes() {
        let counters = Arc::new(Counters::default());
        let (tx, mut rx) = bounded(2, 4, WhenFull::Block, counters);
        let only_first = tx.only(&[0]);
        drop(tx);
        // Lane 1 is held by nobody now; lane 0 by `only_first`.
        assert!(matches!(
            rx[1].try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
        assert!(matches!(
            rx[0].try_recv(),
            Err(mpsc::error::TryRecvError::Empty)
        ));
        drop(only_first);
        assert!(matches!(
            rx[0].try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
    }
}
