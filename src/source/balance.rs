//! Spreading connections over the io_uring workers.
//!
//! Every worker arms a multishot accept on the same listener, but the kernel hands most new
//! connections to whichever accept was queued first, so left alone one worker gets them all and
//! one core does all the parsing. Whoever accepts a connection therefore gives it to the worker
//! with the fewest connections (itself on a tie): it puts the descriptor in that worker's inbox
//! and writes its eventfd; the worker picks it up on its next wake-up. The same eventfd carries
//! the shutdown signal. A worker's inbox is open only while it can read it: not before its ring
//! is up, not once it stops; a worker that fails hands what it holds to a live one.
//! What it does not do: move a connection once it is being read.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::SourceRt;

/// A connection handed to another worker, with its source.
pub type Handed = (Arc<SourceRt>, OwnedFd);

pub struct Balance {
    workers: Vec<Share>,
}

struct Share {
    /// Connections this worker owns or is about to receive.
    assigned: AtomicUsize,
    inbox: Mutex<Inbox>,
    /// Written to wake the worker (a handed-over connection, or shutdown).
    wake: OwnedFd,
}

#[derive(Default)]
struct Inbox {
    /// Connections and their sources (which the receiving worker may not have seen yet).
    conns: Vec<Handed>,
    /// Ids of this worker's connections the control socket asked to close.
    closes: Vec<u64>,
    /// The worker's ring is up and it reads its inbox; until then, and once it stops (shutdown,
    /// or a fatal ring error), nobody is handed a connection through it.
    open: bool,
}

impl Balance {
    pub fn new(workers: usize) -> std::io::Result<Balance> {
        let workers = (0..workers)
            .map(|_| {
                Ok(Share {
                    assigned: AtomicUsize::new(0),
                    inbox: Mutex::new(Inbox::default()),
                    wake: rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC)?,
                })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Balance { workers })
    }

    /// The eventfd worker `i` reads.
    pub fn wake_fd(&self, i: usize) -> &OwnedFd {
        &self.workers[i].wake
    }

    /// Wake worker `i` (it then looks at its inbox and at the shutdown flag).
    pub fn wake(&self, i: usize) {
        let _ = rustix::io::write(&self.workers[i].wake, &1u64.to_ne_bytes());
    }

    /// Worker `me` accepted `conn` on source `source`: give it to the least loaded worker.
    /// Returns it when `me` should keep it.
    pub fn place(&self, me: usize, source: &Arc<SourceRt>, conn: OwnedFd) -> Option<OwnedFd> {
        let load = |i: usize| self.workers[i].assigned.load(Ordering::Relaxed);
        let target = (0..self.workers.len())
            .min_by_key(|&i| (load(i), i != me))
            .unwrap_or(me);
        if target != me {
            let mut inbox = self.workers[target].inbox.lock().unwrap();
            if inbox.open {
                inbox.conns.push((Arc::clone(source), conn));
                self.workers[target]
                    .assigned
                    .fetch_add(1, Ordering::Relaxed);
                drop(inbox);
                self.wake(target);
                return None;
            }
        }
        self.workers[me].assigned.fetch_add(1, Ordering::Relaxed);
        Some(conn)
    }

    /// Worker `me` keeps a connection it accepted itself, without balancing (at shutdown).
    pub fn keep(&self, me: usize) {
        self.workers[me].assigned.fetch_add(1, Ordering::Relaxed);
    }

    /// Worker `me` closed one of its connections.
    pub fn closed(&self, me: usize) {
        self.workers[me].assigned.fetch_sub(1, Ordering::Relaxed);
    }

    /// The connections handed to worker `me` since it last looked.
    pub fn take_inbox(&self, me: usize) -> Vec<Handed> {
        std::mem::take(&mut self.workers[me].inbox.lock().unwrap().conns)
    }

    /// Ask worker `w` to close its connection `id` (it shuts the socket down on its next wake-up).
    pub fn request_close(&self, w: usize, id: u64) {
        self.workers[w].inbox.lock().unwrap().closes.push(id);
        self.wake(w);
    }

    /// Wake every worker (a source was resumed).
    pub fn wake_all(&self) {
        for i in 0..self.workers.len() {
            self.wake(i);
        }
    }

    /// The connections worker `me` was asked to close since it last looked.
    pub fn take_closes(&self, me: usize) -> Vec<u64> {
        std::mem::take(&mut self.workers[me].inbox.lock().unwrap().closes)
    }

    /// Worker `me` is ready: it may be handed connections from now on.
    pub fn open_inbox(&self, me: usize) {
        self.workers[me].inbox.lock().unwrap().open = true;
    }

    /// Worker `me` takes no more connections (it is stopping, or failed): returns what is still
    /// in its inbox, which it must read itself (or, if it cannot, give to [`Balance::rehome`]).
    /// Nothing can be added after this.
    pub fn close_inbox(&self, me: usize) -> Vec<Handed> {
        let mut inbox = self.workers[me].inbox.lock().unwrap();
        inbox.open = false;
        std::mem::take(&mut inbox.conns)
    }

    /// A worker that failed gives the connections it could not read to a live one. False if
    /// no worker takes connections any more (they are then closed unread; the gateway is
    /// shutting down on the failure anyway).
    pub fn rehome(&self, me: usize, conns: Vec<Handed>) -> bool {
        let mut conns = conns;
        for (i, w) in self.workers.iter().enumerate() {
            if i == me || conns.is_empty() {
                continue;
            }
            let mut inbox = w.inbox.lock().unwrap();
            if inbox.open {
                w.assigned.fetch_add(conns.len(), Ordering::Relaxed);
                inbox.conns.append(&mut conns);
                drop(inbox);
                self.wake(i);
            }
        }
        conns.is_empty()
    }
}
