//! The control socket: an operator (or `ringway ctl`) asks the running gateway for its state and
//! tells it what to do, one JSON request per line, one JSON response per line.
//!
//! Stage: beside the data flow. In: requests on a UNIX socket (mode 0600 by default), from the
//! gateway's own uid, root, or `allow_uids` (SO_PEERCRED; anyone else gets a refusal and is
//! disconnected). Out: responses, and the few levers the data path exposes: [`Pause`] (a source
//! stops reading, so its writers feel backpressure), [`Registry::close`] (a connection is shut
//! down and ends through the normal path), the log filter, a drain request. The request size is
//! bounded before anything is allocated for it, each request has a deadline, and a bad request
//! gets an error response on a connection that stays usable. Control connections are tokio tasks
//! on the gateway's runtime; nothing here touches the read loops' hot path except the
//! per-batch counters and one atomic load where a connection decides whether to read on.
//! What it does not do: change the config of a running gateway in place (see `reload`).

pub mod commands;
pub mod ctl;
pub mod metrics;
pub mod reload;
pub mod server;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use tokio::sync::Notify;

use crate::channel::ConnMeta;
use crate::source::balance::Balance;

/// A source's `pause` / `resume` switch, read by its connections before they read.
#[derive(Debug, Default)]
pub struct Pause {
    paused: AtomicBool,
    resumed: Notify,
}

impl Pause {
    #[inline]
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// Set the switch; true if that changed it.
    pub fn set(&self, paused: bool) -> bool {
        let was = self.paused.swap(paused, Ordering::AcqRel);
        if was && !paused {
            self.resumed.notify_waiters();
        }
        was != paused
    }

    /// Resolves once the source is not paused.
    pub async fn resumed(&self) {
        loop {
            let notified = self.resumed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.is_paused() {
                return;
            }
            notified.await;
        }
    }
}

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
