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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use super::*;
    use crate::channel::bounded;
    use crate::config::WhenFull;
    use crate::source::registry::Registry;
    use crate::source::Common;
    use crate::telemetry::Counters;

    /// A file source: nothing is read from it, it only rides along with the connections.
    fn source() -> Arc<SourceRt> {
        let cfg = crate::config::Config::from_toml(
            "[[sources]]\ntype = \"file\"\nname = \"f\"\npath = \"/dev/null\"\n\
             [[sinks]]\ntype = \"null\"\n",
        )
        .unwrap();
        let (tx, _rx) = bounded(1, 1, WhenFull::Block, Arc::new(Counters::default()));
        let common = Common {
            ids: Arc::new(AtomicU64::new(0)),
            latency_field: None,
            registry: Arc::new(Registry::default()),
        };
        let make = SourceRt::make(cfg.sources[0].clone(), None, tx, 0, None, &common);
        Arc::new(make(0))
    }

    /// A descriptor to stand for an accepted connection.
    fn conn() -> OwnedFd {
        std::fs::File::open("/dev/null").unwrap().into()
    }

    /// The count written to worker `i`'s eventfd since it was last read (which resets it).
    fn wakes(b: &Balance, i: usize) -> u64 {
        let mut buf = [0u8; 8];
        // Non-blocking, so that "not woken" reads as 0 instead of waiting forever.
        rustix::fs::fcntl_setfl(b.wake_fd(i), rustix::fs::OFlags::NONBLOCK).unwrap();
        match rustix::io::read(b.wake_fd(i), &mut buf[..]) {
            Ok(8) => u64::from_ne_bytes(buf),
            Ok(n) => panic!("an eventfd read of {n} bytes"),
            Err(rustix::io::Errno::AGAIN) => 0,
            Err(e) => panic!("eventfd read: {e}"),
        }
    }

    fn balance(workers: usize) -> Balance {
        let b = Balance::new(workers).unwrap();
        for i in 0..workers {
            b.open_inbox(i);
        }
        b
    }

    #[test]
    fn the_acceptor_keeps_a_connection_on_a_tie() {
        let (b, src) = (balance(3), source());
        assert!(
            b.place(1, &src, conn()).is_some(),
            "all idle: worker 1 keeps it"
        );
        assert!(b.take_inbox(0).is_empty() && b.take_inbox(2).is_empty());
        assert_eq!((wakes(&b, 0), wakes(&b, 2)), (0, 0), "nobody else is woken");
    }

    #[test]
    fn a_connection_goes_to_the_least_loaded_worker_and_wakes_it() {
        let (b, src) = (balance(3), source());
        b.keep(0);
        b.keep(1);
        // Loads 1, 1, 0: worker 0 accepts, worker 2 gets it.
        assert!(b.place(0, &src, conn()).is_none(), "handed over");
        let handed = b.take_inbox(2);
        assert_eq!(handed.len(), 1);
        assert!(Arc::ptr_eq(&handed[0].0, &src), "with its source");
        assert_eq!(wakes(&b, 2), 1);
        assert!(b.take_inbox(2).is_empty(), "taken once");
        // Loads 1, 1, 1 now (the handed one counts for worker 2): a tie, the acceptor keeps it.
        assert!(b.place(1, &src, conn()).is_some());
        // Loads 1, 2, 1; worker 1 closes two: loads 1, 0, 1, and worker 2's next goes to 1.
        b.closed(1);
        b.closed(1);
        assert!(b.place(2, &src, conn()).is_none());
        assert_eq!(b.take_inbox(1).len(), 1);
    }

    #[test]
    fn a_worker_whose_inbox_is_not_open_is_handed_nothing() {
        let src = source();
        let b = Balance::new(2).unwrap();
        b.open_inbox(0);
        b.keep(0);
        // Worker 1 is idle but its ring is not up yet: worker 0 keeps the connection.
        assert!(b.place(0, &src, conn()).is_some());
        assert!(b.take_inbox(1).is_empty());
        assert_eq!(wakes(&b, 1), 0);
        // Once open, it gets the next one (loads 2, 0).
        b.open_inbox(1);
        assert!(b.place(0, &src, conn()).is_none());
        assert_eq!(b.take_inbox(1).len(), 1);
    }

    #[test]
    fn closing_an_inbox_returns_what_it_held_and_takes_no_more() {
        let (b, src) = (balance(2), source());
        b.keep(0);
        assert!(b.place(0, &src, conn()).is_none(), "to worker 1");
        let left = b.close_inbox(1);
        assert_eq!(left.len(), 1, "what worker 1 had not picked up");
        b.keep(0);
        b.keep(0);
        assert!(
            b.place(0, &src, conn()).is_some(),
            "a stopped worker is handed nothing, however idle"
        );
        assert!(b.take_inbox(1).is_empty());
    }

    #[test]
    fn a_failed_worker_rehomes_its_connections_to_a_live_one() {
        let (b, src) = (balance(3), source());
        let held: Vec<Handed> = (0..2).map(|_| (Arc::clone(&src), conn())).collect();
        b.close_inbox(0);
        b.close_inbox(2);
        assert!(b.rehome(0, held), "worker 1 is open");
        assert_eq!(b.take_inbox(1).len(), 2);
        assert_eq!(wakes(&b, 1), 1);
        assert!(b.take_inbox(2).is_empty(), "a closed inbox takes none");
        // They count as worker 1's: with loads 0, 2, 0 and worker 0 open again, it gets the next.
        b.open_inbox(0);
        assert!(b.place(1, &src, conn()).is_none());
        assert_eq!(b.take_inbox(0).len(), 1);
        // Nobody open: rehoming fails, and says so.
        b.close_inbox(0);
        b.close_inbox(1);
        assert!(!b.rehome(2, vec![(Arc::clone(&src), conn())]));
    }

    #[test]
    fn close_requests_reach_their_worker_in_order() {
        let b = balance(2);
        b.request_close(1, 42);
        b.request_close(1, 7);
        assert_eq!(wakes(&b, 1), 2, "woken for each");
        assert_eq!(b.take_closes(1), [42, 7]);
        assert!(b.take_closes(1).is_empty());
        assert!(b.take_closes(0).is_empty(), "only worker 1 was asked");
        b.wake_all();
        assert_eq!((wakes(&b, 0), wakes(&b, 1)), (1, 1));
    }
}
