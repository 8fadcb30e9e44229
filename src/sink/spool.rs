//! A client sink's spool: the bounded queue (in bytes) between the sink thread and the client's
//! own thread. The sink thread pushes deliveries (waiting for room when it is full, which holds
//! the lanes that feed it, so their sources feel backpressure); the client takes them in order,
//! in slices of at most `TAKE_BYTES` / `TAKE_ITEMS`, for one write. Sealed when every stream the
//! sink takes has ended. What it does not do: write, retry or acknowledge (see `client`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::link::Item;
use super::Delivery;

/// At most this much is taken from the spool for one `writev`.
const TAKE_BYTES: usize = 1 << 20;
const TAKE_ITEMS: usize = 512;

/// The bounded queue between the sink thread and a client's thread.
pub struct Spool {
    state: Mutex<SpoolState>,
    more: Condvar,
    /// The sink thread's wake-up when room appears.
    room: Arc<Notify>,
    bound: usize,
    /// The client's state, for `stats`.
    pub status: ClientStatus,
}

/// What `stats` shows of a client sink besides its spool.
#[derive(Debug, Default)]
pub struct ClientStatus {
    pub connected: AtomicBool,
    pub circuit_open: AtomicBool,
    pub reconnects: AtomicU64,
}

#[derive(Default)]
struct SpoolState {
    items: VecDeque<Item>,
    bytes: usize,
    sealed: bool,
    /// The client gave up (shutdown grace over): whatever comes now is lost, and counted.
    dead: bool,
}

impl Spool {
    pub fn new(bound: usize, room: Arc<Notify>) -> Spool {
        Spool {
            state: Mutex::new(SpoolState::default()),
            more: Condvar::new(),
            room,
            bound,
            status: ClientStatus::default(),
        }
    }

    /// (bytes held, bound), for `stats`.
    pub fn depth(&self) -> (usize, usize) {
        (self.state.lock().unwrap().bytes, self.bound)
    }

    /// May the sink thread add a batch? (It may then go over the bound by that batch.)
    pub fn has_room(&self) -> bool {
        self.state.lock().unwrap().bytes < self.bound
    }

    pub fn push(&self, d: Arc<Delivery>, encoded: Option<Vec<u8>>) {
        let item = Item { d, encoded };
        let mut st = self.state.lock().unwrap();
        if st.dead {
            drop(st);
            item.d.fail(); // (dropped, and so reported, outside the lock)
            return;
        }
        st.bytes += item.bytes().len();
        st.items.push_back(item);
        drop(st);
        self.more.notify_one();
    }

    /// Nothing more will be pushed.
    pub fn seal(&self) {
        self.state.lock().unwrap().sealed = true;
        self.more.notify_one();
    }

    /// Take up to a writev's worth, waiting up to `wait` for something. `None`: sealed and empty.
    pub(super) fn take(&self, out: &mut VecDeque<Item>, wait: Duration) -> Option<()> {
        let mut st = self.state.lock().unwrap();
        if st.items.is_empty() && !st.sealed {
            st = self.more.wait_timeout(st, wait).unwrap().0;
        }
        if st.items.is_empty() {
            return if st.sealed { None } else { Some(()) };
        }
        let mut bytes = 0;
        while bytes < TAKE_BYTES && out.len() < TAKE_ITEMS {
            let Some(item) = st.items.pop_front() else {
                break;
            };
            bytes += item.bytes().len();
            out.push_back(item);
        }
        st.bytes -= bytes;
        drop(st);
        self.room.notify_one();
        Some(())
    }

    pub(super) fn is_sealed_and_empty(&self) -> bool {
        let st = self.state.lock().unwrap();
        st.sealed && st.items.is_empty()
    }

    /// At give-up: everything still here is lost.
    pub(super) fn fail_all(&self) {
        let mut st = self.state.lock().unwrap();
        st.dead = true;
        let lost = std::mem::take(&mut st.items);
        st.bytes = 0;
        drop(st);
        // Dropped (and so reported to their connections) outside the lock.
        for item in lost {
            item.d.fail();
        }
        // The sink thread may be holding a batch for this spool: it is taken (and lost) now.
        self.room.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;

    use futures_util::FutureExt;

    use super::*;
    use crate::event::{Batch, ConnMeta, SourceMeta};
    use crate::telemetry::Counters;

    /// A delivery of one batch holding `lines` (each an event).
    fn delivery(lines: &[&str], counters: &Arc<Counters>) -> Arc<Delivery> {
        let source = Arc::new(SourceMeta::plain("t", 0));
        let mut b = Batch::new(Arc::new(ConnMeta::new(source, 1)), 64);
        for line in lines {
            b.push(line.as_bytes());
        }
        Delivery::new(b, counters)
    }

    fn spool(bound: usize) -> (Spool, Arc<Notify>) {
        let room = Arc::new(Notify::new());
        (Spool::new(bound, Arc::clone(&room)), room)
    }

    /// The bytes of everything `take` hands out at once.
    fn take_bytes(s: &Spool) -> Option<Vec<Vec<u8>>> {
        let mut out = VecDeque::new();
        s.take(&mut out, Duration::ZERO)?;
        Some(out.iter().map(|i| i.bytes().to_vec()).collect())
    }

    #[test]
    fn items_come_out_in_the_order_they_went_in() {
        let c = Arc::new(Counters::default());
        let (s, _) = spool(1 << 20);
        s.push(delivery(&["{\"a\":1}"], &c), None);
        s.push(delivery(&["{\"b\":2}"], &c), Some(b"encoded b\n".to_vec()));
        s.push(delivery(&["{\"c\":3}", "{\"d\":4}"], &c), None);
        let got = take_bytes(&s).unwrap();
        assert_eq!(got.len(), 3);
        assert!(got[0].starts_with(b"{\"a\":1}"));
        assert_eq!(
            got[1], b"encoded b\n",
            "an encoded item is taken as encoded"
        );
        assert!(got[2].starts_with(b"{\"c\":3}"));
        assert_eq!(s.depth().0, 0);
        // Taken items that are dropped (written) count as delivered.
        assert_eq!(c.events_out.load(Relaxed), 4);
        assert_eq!(c.lost_at_shutdown.load(Relaxed), 0);
    }

    #[test]
    fn the_bound_is_in_bytes_and_a_batch_may_go_over_it() {
        let c = Arc::new(Counters::default());
        let (s, room) = spool(40);
        assert!(s.has_room());
        let d = delivery(&["{\"pad\":\"0123456789\"}"], &c);
        let size = Item {
            d: Arc::clone(&d),
            encoded: None,
        }
        .bytes()
        .len();
        assert!(size < 40 && 2 * size >= 40, "test bug: {size}-byte events");
        s.push(d, None);
        assert_eq!(s.depth(), (size, 40));
        assert!(s.has_room(), "under the bound");
        s.push(delivery(&["{\"pad\":\"0123456789\"}"], &c), None);
        assert_eq!(
            s.depth(),
            (2 * size, 40),
            "at or over the bound: the push is kept whole"
        );
        assert!(!s.has_room());
        assert!(
            room.notified().now_or_never().is_none(),
            "no room signalled before a take"
        );
        assert_eq!(take_bytes(&s).unwrap().len(), 2);
        assert!(s.has_room());
        assert_eq!(s.depth(), (0, 40));
        assert!(
            room.notified().now_or_never().is_some(),
            "a take tells the sink thread there is room"
        );
    }

    #[test]
    fn one_take_is_at_most_a_writev_worth() {
        let c = Arc::new(Counters::default());
        let (s, _) = spool(usize::MAX);
        for _ in 0..TAKE_ITEMS + 10 {
            s.push(delivery(&["{}"], &c), None);
        }
        assert_eq!(take_bytes(&s).unwrap().len(), TAKE_ITEMS);
        assert_eq!(take_bytes(&s).unwrap().len(), 10);
        // Bytes: items are taken while less than TAKE_BYTES is taken (the last may cross it).
        let big = vec![b'x'; TAKE_BYTES / 2 + 1];
        for _ in 0..3 {
            s.push(delivery(&["{}"], &c), Some(big.clone()));
        }
        assert_eq!(take_bytes(&s).unwrap().len(), 2);
        assert_eq!(take_bytes(&s).unwrap().len(), 1);
    }

    #[test]
    fn sealed_it_drains_then_says_none() {
        let c = Arc::new(Counters::default());
        let (s, _) = spool(1 << 20);
        // Empty and not sealed: a take waits, then comes back with nothing, not None.
        let mut out = VecDeque::new();
        assert_eq!(s.take(&mut out, Duration::from_millis(10)), Some(()));
        assert!(out.is_empty());
        s.push(delivery(&["{\"last\":1}"], &c), None);
        s.seal();
        assert!(
            !s.is_sealed_and_empty(),
            "what was pushed before the seal is still there"
        );
        assert_eq!(take_bytes(&s).unwrap().len(), 1);
        assert!(s.is_sealed_and_empty());
        assert_eq!(take_bytes(&s), None, "sealed and empty");
        assert_eq!(c.events_out.load(Relaxed), 1);
    }

    #[test]
    fn fail_all_counts_everything_held_and_everything_after_as_lost() {
        let c = Arc::new(Counters::default());
        let (s, room) = spool(1 << 20);
        s.push(delivery(&["{\"a\":1}", "{\"a\":2}", "{\"a\":3}"], &c), None);
        s.push(delivery(&["{\"b\":1}", "{\"b\":2}"], &c), None);
        s.fail_all();
        assert_eq!(c.lost_at_shutdown.load(Relaxed), 5);
        assert_eq!(s.depth().0, 0);
        assert!(
            room.notified().now_or_never().is_some(),
            "a sink thread waiting for room is let go"
        );
        // Given up: what comes now is lost at once, not spooled.
        s.push(delivery(&["{\"late\":1}"], &c), None);
        assert_eq!(c.lost_at_shutdown.load(Relaxed), 6);
        assert_eq!(s.depth().0, 0);
        assert_eq!(c.events_out.load(Relaxed), 0, "nothing counted as written");
    }
}
