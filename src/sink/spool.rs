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
            item.d.fail();
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
        for item in st.items.drain(..) {
            item.d.fail();
        }
        st.bytes = 0;
        drop(st);
        // The sink thread may be holding a batch for this spool: it is taken (and lost) now.
        self.room.notify_one();
    }
}
