//! Every live connection of the listening sources, by id: what `connections` lists and what
//! `close` reaches. A connection is added when it is accepted and removed when its last batch is
//! taken; the registry holds only weak references, so it never keeps a connection alive.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use super::balance::Balance;
use crate::event::ConnMeta;

/// Every live connection of the listening sources, by id (for `connections` and `close`).
#[derive(Default)]
pub struct Registry {
    conns: Mutex<BTreeMap<u64, Weak<ConnMeta>>>,
    /// The io_uring workers' wake-up, once they run (epoll connections need none).
    balance: OnceLock<Arc<Balance>>,
}

impl Registry {
    pub fn add(&self, meta: &Arc<ConnMeta>) {
        self.conns
            .lock()
            .unwrap()
            .insert(meta.id, Arc::downgrade(meta));
    }

    pub fn remove(&self, id: u64) {
        self.conns.lock().unwrap().remove(&id);
    }

    /// The live connections, in id order.
    pub fn live(&self) -> Vec<Arc<ConnMeta>> {
        self.conns
            .lock()
            .unwrap()
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }

    pub fn set_balance(&self, balance: Arc<Balance>) {
        let _ = self.balance.set(balance);
    }

    /// Ask the loop reading connection `id` to shut it down. False if there is no such
    /// connection.
    pub fn close(&self, id: u64) -> bool {
        let Some(meta) = self.conns.lock().unwrap().get(&id).and_then(Weak::upgrade) else {
            return false;
        };
        match (meta.worker, self.balance.get()) {
            (Some(w), Some(b)) => b.request_close(w, id),
            _ => meta.close.notify_one(),
        }
        true
    }

    /// Wake every read loop that may be waiting (a source was resumed).
    pub fn wake_all(&self) {
        if let Some(b) = self.balance.get() {
            b.wake_all();
        }
    }
}
