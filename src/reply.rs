//! The way back: each connection of a source that can be replied to gets a bounded reply queue
//! and a writer; the `reply` sink appends events to the queue of the connection they came from.
//! The channel carries batches from the sources to the sinks; this carries replies the other
//! way, so both the sources (which attach a queue to each connection they accept) and the sinks
//! (which fill them) use it, and it uses neither.
//!
//! In: encoded events from the sink thread (never blocking it). Out: bytes written to the
//! connection they came from, by a tokio task holding its own duplicate of the socket, so the
//! replies go on after the peer shut down its writing side, and the queue drains before the
//! socket is closed. Bounds: when a queue holds more than `queue_bytes`, the source stops reading
//! that connection (its writer blocks, nobody else notices); a connection that takes no bytes for
//! `write_timeout` is closed and what was queued for it is counted in `replies_dropped`, as is
//! anything for a connection that is gone. What it does not do: decide which events are replies.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::config::ReplyConfig;
use crate::event::ReplyTarget;
use crate::socket::Stream;
use crate::telemetry::Counters;

/// Called (on the writer's thread) when a connection's queue falls back under its bound, for a
/// read loop that cannot await [`ReplyHandle::room`] (io_uring: it writes the worker's eventfd).
pub type RoomHook = Arc<dyn Fn() + Send + Sync>;

/// Starts a writer task per connection and knows how many are still running.
pub struct ReplyHub {
    rt: tokio::runtime::Handle,
    cfg: ReplyConfig,
    counters: Arc<Counters>,
    live: Arc<(Mutex<usize>, Condvar)>,
    /// Every connection with a writer, by id (for `route_field`).
    conns: Arc<Mutex<HashMap<u64, Weak<Queue>>>>,
}

/// A connection's reply queue found by its id ([`ReplyHub::find`]).
pub struct Route(Arc<Queue>);

impl Route {
    /// Queue one event (`bytes`) for the connection, unless its queue is over its bound: the
    /// connection it came from cannot be held back for it, so it is dropped and counted instead.
    pub fn push(&self, bytes: &[u8], counters: &Counters) {
        if self.0.bytes.load(Ordering::Relaxed) > self.0.bound {
            Counters::add(&counters.replies_dropped, 1);
            return;
        }
        Counters::add(
            &counters.replies_dropped,
            self.0.push(bytes, &mut std::iter::once(bytes.len())),
        );
    }
}

struct Queue {
    id: u64,
    state: Mutex<State>,
    /// Bytes queued and not yet written.
    bytes: AtomicUsize,
    bound: usize,
    /// The writer's: more was queued, or the connection is done.
    wake: Notify,
    /// The reader's: the queue fell back under its bound.
    room: Notify,
    room_hook: Option<RoomHook>,
}

#[derive(Default)]
struct State {
    buf: Vec<u8>,
    /// Where each event not yet fully written ends, as an offset in everything ever queued
    /// (so a write cut partway drops only the events it did not finish).
    ends: VecDeque<u64>,
    /// Bytes ever queued.
    queued: u64,
    /// No more replies will come (every batch of the connection has been through the sinks).
    sealed: bool,
    /// The connection is gone or was closed for not reading: replies are counted, not queued.
    dead: bool,
}

/// A connection's end of its reply queue, held in its metadata. Dropping it (when the
/// connection is closed and its last batch written) lets the writer finish and close.
pub struct ReplyHandle(Arc<Queue>);

impl std::fmt::Debug for ReplyHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReplyHandle(conn {})", self.0.id)
    }
}

impl ReplyTarget for ReplyHandle {
    #[inline]
    fn backlogged(&self) -> bool {
        self.0.bytes.load(Ordering::Relaxed) > self.0.bound
    }

    fn room(&self) -> &Notify {
        &self.0.room
    }

    fn push(&self, bytes: &[u8], ends: &mut dyn Iterator<Item = usize>) -> u64 {
        self.0.push(bytes, ends)
    }
}

impl Queue {
    /// Queue `bytes`, whose events end at `ends`; never blocks. Returns the events dropped
    /// instead (the connection is gone).
    fn push(&self, bytes: &[u8], ends: &mut dyn Iterator<Item = usize>) -> u64 {
        if bytes.is_empty() {
            return 0;
        }
        let mut st = self.state.lock().unwrap();
        if st.dead {
            return ends.count() as u64;
        }
        let base = st.queued;
        st.ends.extend(ends.map(|e| base + e as u64));
        st.queued += bytes.len() as u64;
        st.buf.extend_from_slice(bytes);
        self.bytes.fetch_add(bytes.len(), Ordering::Relaxed);
        drop(st);
        self.wake.notify_one();
        0
    }

    /// `n` more bytes were written (`written` in all): the events they finish are out.
    fn wrote(&self, n: usize, written: u64) {
        let mut st = self.state.lock().unwrap();
        if st.dead {
            return; // counted already (see `kill`)
        }
        let before = self.bytes.fetch_sub(n, Ordering::Relaxed);
        while st.ends.front().is_some_and(|&e| e <= written) {
            st.ends.pop_front();
        }
        drop(st);
        if before > self.bound && before - n <= self.bound {
            self.has_room();
        }
    }

    /// No more replies are queued: count what was not written as dropped, and let the source
    /// read on (to the EOF the shutdown or the failure causes).
    fn kill(&self, counters: &Counters) {
        let mut st = self.state.lock().unwrap();
        st.dead = true;
        Counters::add(&counters.replies_dropped, st.ends.len() as u64);
        st.ends = VecDeque::new();
        st.buf = Vec::new();
        self.bytes.store(0, Ordering::Relaxed);
        drop(st);
        self.wake.notify_one();
        self.has_room();
    }

    fn has_room(&self) {
        self.room.notify_one();
        if let Some(hook) = &self.room_hook {
            hook();
        }
    }
}

impl Drop for ReplyHandle {
    fn drop(&mut self) {
        self.0.state.lock().unwrap().sealed = true;
        self.0.wake.notify_one();
    }
}

impl ReplyHub {
    pub fn new(rt: tokio::runtime::Handle, cfg: ReplyConfig, counters: Arc<Counters>) -> ReplyHub {
        ReplyHub {
            rt,
            cfg,
            counters,
            live: Arc::new((Mutex::new(0), Condvar::new())),
            conns: Arc::default(),
        }
    }

    /// The reply queue of live connection `id`, if it has one.
    pub fn find(&self, id: u64) -> Option<Route> {
        self.conns
            .lock()
            .unwrap()
            .get(&id)
            .and_then(Weak::upgrade)
            .map(Route)
    }

    pub fn route_field(&self) -> Option<&str> {
        self.cfg.route_field.as_deref()
    }

    /// Give connection `id` (socket `fd`) a reply queue and its writer. None if the socket
    /// cannot be duplicated (out of descriptors): its replies are then counted as dropped.
    pub fn attach(
        &self,
        fd: BorrowedFd<'_>,
        id: u64,
        tcp: bool,
        room_hook: Option<RoomHook>,
    ) -> Option<ReplyHandle> {
        let dup = match rustix::io::fcntl_dupfd_cloexec(fd, 0) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(conn = id, error = %e, "cannot duplicate the socket for replies; its replies will be dropped");
                return None;
            }
        };
        let q = self.queue(id, room_hook);
        let exit = Exit {
            q: Arc::clone(&q),
            counters: Arc::clone(&self.counters),
            live: Arc::clone(&self.live),
            conns: Arc::clone(&self.conns),
        };
        self.rt
            .spawn(writer(exit, dup, tcp, self.cfg.write_timeout));
        Some(ReplyHandle(q))
    }

    /// Give connection `id` a reply queue that its own task writes (a WebSocket connection:
    /// one message per event), through the returned [`Outbox`].
    pub fn outbox(&self, id: u64) -> (ReplyHandle, Outbox) {
        let q = self.queue(id, None);
        let exit = Exit {
            q: Arc::clone(&q),
            counters: Arc::clone(&self.counters),
            live: Arc::clone(&self.live),
            conns: Arc::clone(&self.conns),
        };
        (
            ReplyHandle(q),
            Outbox {
                exit,
                written: 0,
                write_timeout: self.cfg.write_timeout,
            },
        )
    }

    fn queue(&self, id: u64, room_hook: Option<RoomHook>) -> Arc<Queue> {
        let q = Arc::new(Queue {
            id,
            state: Mutex::new(State::default()),
            bytes: AtomicUsize::new(0),
            bound: self.cfg.queue_bytes.get(),
            wake: Notify::new(),
            room: Notify::new(),
            room_hook,
        });
        *self.live.0.lock().unwrap() += 1;
        self.conns.lock().unwrap().insert(id, Arc::downgrade(&q));
        q
    }

    /// Wait until every writer has finished, or `deadline`. True if all did; otherwise what
    /// is still queued is counted as dropped now, before anyone reads the counters.
    pub fn wait_idle(&self, deadline: Instant) -> bool {
        let (m, c) = &*self.live;
        let mut n = m.lock().unwrap();
        while *n > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!("{} connections still had replies to write at the deadline; they are counted as dropped", *n);
                drop(n);
                let queues: Vec<_> = self
                    .conns
                    .lock()
                    .unwrap()
                    .values()
                    .filter_map(Weak::upgrade)
                    .collect();
                for q in queues {
                    q.kill(&self.counters);
                }
                return false;
            }
            n = c
                .wait_timeout(n, left.min(Duration::from_millis(100)))
                .unwrap()
                .0;
        }
        true
    }
}

/// Ends a writer, however it ends (finished, failed, or dropped with the runtime): what is
/// still queued is counted as dropped, and later replies will be.
struct Exit {
    q: Arc<Queue>,
    counters: Arc<Counters>,
    live: Arc<(Mutex<usize>, Condvar)>,
    conns: Arc<Mutex<HashMap<u64, Weak<Queue>>>>,
}

impl Drop for Exit {
    fn drop(&mut self) {
        self.q.kill(&self.counters);
        self.conns.lock().unwrap().remove(&self.q.id);
        let (m, c) = &*self.live;
        *m.lock().unwrap() -= 1;
        c.notify_all();
    }
}

/// A reply queue written by its connection's own task, one event at a time (WebSocket).
/// Dropping it ends the queue: what is left is counted as dropped.
pub struct Outbox {
    exit: Exit,
    /// Bytes of the queue written (or given up) so far.
    written: u64,
    /// A reply the peer does not take within this closes the connection.
    pub write_timeout: Duration,
}

impl Outbox {
    /// Wait for queued replies and take them into `buf` (replacing what it held), with where
    /// each event ends in it (after its separator) in `ends`. False when there will be no more
    /// (sealed and empty, or dead).
    pub async fn next(&mut self, buf: &mut Vec<u8>, ends: &mut Vec<usize>) -> bool {
        let q = &self.exit.q;
        loop {
            let notified = q.wake.notified();
            {
                let mut st = q.state.lock().unwrap();
                if st.dead || (st.buf.is_empty() && st.sealed) {
                    return false;
                }
                if !st.buf.is_empty() {
                    buf.clear();
                    std::mem::swap(buf, &mut st.buf);
                    ends.clear();
                    let base = self.written;
                    ends.extend(st.ends.iter().map(|&e| (e - base) as usize));
                    return true;
                }
            }
            notified.await;
        }
    }

    /// `n` more bytes of the last chunk are out (or dropped with the connection).
    pub fn wrote(&mut self, n: usize) {
        self.written += n as u64;
        self.exit.q.wrote(n, self.written);
    }

    /// The peer took nothing for `write_timeout`: counted, and the queue is dead.
    pub fn timed_out(&self) {
        Counters::add(&self.exit.counters.reply_timeouts, 1);
        tracing::warn!(
            conn = self.exit.q.id,
            "the peer took no replies within write_timeout; closing its connection"
        );
    }
}

async fn writer(exit: Exit, fd: OwnedFd, tcp: bool, write_timeout: Duration) {
    let q = &exit.q;
    let Ok(stream) = Stream::from_fd(fd, tcp) else {
        return;
    };
    let mut chunk: Vec<u8> = Vec::new();
    let mut written = 0u64;
    loop {
        let notified = q.wake.notified();
        {
            let mut st = q.state.lock().unwrap();
            if st.dead {
                return;
            }
            if st.buf.is_empty() {
                if st.sealed {
                    return; // everything written: the duplicate closes here
                }
            } else {
                std::mem::swap(&mut chunk, &mut st.buf);
            }
        }
        if chunk.is_empty() {
            notified.await;
            continue;
        }
        let mut off = 0;
        while off < chunk.len() {
            let w = async {
                loop {
                    stream.writable().await?;
                    match stream.try_write(&chunk[off..]) {
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                        r => return r,
                    }
                }
            };
            match tokio::time::timeout(write_timeout, w).await {
                Ok(Ok(n)) => {
                    off += n;
                    written += n as u64;
                    q.wrote(n, written);
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => {
                    tracing::debug!(conn = q.id, error = %e, "reply connection is gone");
                    return;
                }
                Err(_) => {
                    Counters::add(&exit.counters.reply_timeouts, 1);
                    tracing::warn!(
                        conn = q.id,
                        "the peer took no replies for {write_timeout:?}; closing its connection"
                    );
                    let _ = rustix::net::shutdown(stream.as_fd(), rustix::net::Shutdown::Both);
                    return;
                }
            }
        }
        chunk.clear();
    }
}
