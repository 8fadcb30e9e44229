//! The `reply` sink's connection side: each connection of a source that can be replied to gets
//! a bounded reply queue and a writer task; the sink thread appends events to the queue of the
//! connection they came from.
//!
//! In: encoded events from the sink thread (never blocking it). Out: bytes written to the
//! connection they came from, by a tokio task holding its own duplicate of the socket, so the
//! replies go on after the peer shut down its writing side, and the queue drains before the
//! socket is closed. Bounds: when a queue holds more than `queue_bytes`, the source stops reading
//! that connection (its writer blocks, nobody else notices); a connection that takes no bytes for
//! `write_timeout` is closed and what was queued for it is counted in `replies_dropped`, as is
//! anything for a connection that is gone. What it does not do: decide which events are replies.

use std::collections::HashMap;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::config::ReplyConfig;
use crate::source::epoll::Stream;
use crate::telemetry::Counters;

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
    pub fn push(&self, bytes: &[u8], events: u64, counters: &Counters) {
        self.0.push(bytes, events, counters);
    }
}

struct Queue {
    id: u64,
    state: Mutex<State>,
    /// Bytes queued and not yet written.
    bytes: AtomicUsize,
    bound: usize,
    wake: Notify,
}

#[derive(Default)]
struct State {
    buf: Vec<u8>,
    /// Events in `buf`.
    events: u64,
    /// Events in the chunk being written.
    writing: u64,
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

impl ReplyHandle {
    /// More is queued than the bound: the source should stop reading this connection.
    #[inline]
    pub fn backlogged(&self) -> bool {
        self.0.bytes.load(Ordering::Relaxed) > self.0.bound
    }

    /// Queue `bytes` (holding `events` events) for the connection. Never blocks.
    pub fn push(&self, bytes: &[u8], events: u64, counters: &Counters) {
        self.0.push(bytes, events, counters);
    }
}

impl Queue {
    fn push(&self, bytes: &[u8], events: u64, counters: &Counters) {
        if bytes.is_empty() {
            return;
        }
        let mut st = self.state.lock().unwrap();
        if st.dead {
            Counters::add(&counters.replies_dropped, events);
            return;
        }
        st.buf.extend_from_slice(bytes);
        st.events += events;
        self.bytes.fetch_add(bytes.len(), Ordering::Relaxed);
        drop(st);
        self.wake.notify_one();
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
    pub fn attach(&self, fd: BorrowedFd<'_>, id: u64, tcp: bool) -> Option<ReplyHandle> {
        let dup = match rustix::io::fcntl_dupfd_cloexec(fd, 0) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(conn = id, error = %e, "cannot duplicate the socket for replies; its replies will be dropped");
                return None;
            }
        };
        let q = Arc::new(Queue {
            id,
            state: Mutex::new(State::default()),
            bytes: AtomicUsize::new(0),
            bound: self.cfg.queue_bytes.get(),
            wake: Notify::new(),
        });
        *self.live.0.lock().unwrap() += 1;
        self.conns.lock().unwrap().insert(id, Arc::downgrade(&q));
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

    /// Wait until every writer has finished, or `deadline`. True if all did.
    pub fn wait_idle(&self, deadline: Instant) -> bool {
        let (m, c) = &*self.live;
        let mut n = m.lock().unwrap();
        while *n > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!("{} connections still had replies to write at the deadline; they are counted as dropped", *n);
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
        let mut st = self.q.state.lock().unwrap();
        st.dead = true;
        let lost = std::mem::take(&mut st.events) + std::mem::take(&mut st.writing);
        Counters::add(&self.counters.replies_dropped, lost);
        st.buf = Vec::new();
        // Nothing is queued any more: the source reads on (to the EOF the shutdown caused).
        self.q.bytes.store(0, Ordering::Relaxed);
        drop(st);
        self.conns.lock().unwrap().remove(&self.q.id);
        let (m, c) = &*self.live;
        *m.lock().unwrap() -= 1;
        c.notify_all();
    }
}

async fn writer(exit: Exit, fd: OwnedFd, tcp: bool, write_timeout: Duration) {
    let q = &exit.q;
    let Ok(stream) = Stream::from_fd(fd, tcp) else {
        return;
    };
    let mut chunk: Vec<u8> = Vec::new();
    loop {
        let notified = q.wake.notified();
        {
            let mut st = q.state.lock().unwrap();
            if st.buf.is_empty() {
                if st.sealed {
                    return; // everything written: the duplicate closes here
                }
            } else {
                std::mem::swap(&mut chunk, &mut st.buf);
                st.writing = std::mem::take(&mut st.events);
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
                    q.bytes.fetch_sub(n, Ordering::Relaxed);
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
        // The events of this chunk are out.
        q.state.lock().unwrap().writing = 0;
        chunk.clear();
    }
}
