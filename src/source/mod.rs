//! Sources: where events come from.
//!
//! In: connections on the configured sockets. Out: [`Batch`](crate::event::Batch)es on the
//! channel. The read loop exists twice, behind one interface: [`uring`] (io_uring, the default)
//! and [`readiness`] (the tokio readiness loop, `io_mode = "epoll"`, for kernels or sandboxes
//! that refuse io_uring, and our baseline). Both feed the same per-connection state
//! ([`crate::ingest::Conn`]), so framing, decoding, batching and dead letters behave the same
//! whatever the loop. What this module does not do: write to sinks.

pub mod balance;
pub mod file;
pub mod readiness;
pub mod registry;
pub mod tcp;
pub mod unix;
// The io_uring shell is the only module with `unsafe` code (every block says `// SAFETY:`); its
// decisions live in `uring::machine`, which forbids it.
#[allow(unsafe_code)]
pub mod uring;
pub mod ws;

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::channel::Sender;
use crate::config::SourceConfig;
use crate::event::{ConnMeta, ReplyTarget, SourceKind, SourceMeta};
use crate::reply::{Outbox, ReplyHub, RoomHook};
pub use registry::Registry;

/// A source's listening sockets, kept open by the gateway until every worker has stopped.
pub enum Listener {
    Unix(unix::BoundSocket),
    /// One per worker (SO_REUSEPORT), and the address they are bound to.
    Tcp(Vec<std::net::TcpListener>, std::net::SocketAddr),
    /// A `ws_server`'s listener (read by tokio tasks, not by the io_uring workers).
    Ws(ws::Bound),
}

impl Listener {
    pub fn fds(&self) -> Vec<RawFd> {
        match self {
            Listener::Unix(u) => vec![u.listener.as_raw_fd()],
            Listener::Tcp(ls, _) => ls.iter().map(|l| l.as_raw_fd()).collect(),
            Listener::Ws(b) => vec![b.listener.as_raw_fd()],
        }
    }

    /// Read by the io_uring workers or the epoll tasks (a UNIX or TCP source)?
    pub fn is_stream(&self) -> bool {
        !matches!(self, Listener::Ws(_))
    }

    /// Duplicates of every listener (the epoll loop accepts on its own).
    pub fn try_clone_all(&self) -> std::io::Result<Vec<std::os::fd::OwnedFd>> {
        match self {
            Listener::Unix(u) => Ok(vec![u.listener.try_clone()?.into()]),
            Listener::Tcp(ls, _) => ls.iter().map(|l| Ok(l.try_clone()?.into())).collect(),
            Listener::Ws(b) => Ok(vec![b.listener.try_clone()?.into()]),
        }
    }

    /// Stop new clients where that is possible before the listeners close (UNIX: the path goes).
    pub fn remove_path(&self) {
        if let Listener::Unix(u) = self {
            u.remove_path();
        }
    }

    /// `unix:/path` or `tcp:127.0.0.1:4242` (the bound port, when 0 was asked for).
    pub fn describe(&self) -> String {
        match self {
            Listener::Unix(u) => format!("unix:{}", u.path.display()),
            Listener::Tcp(_, a) => format!("tcp:{a}"),
            Listener::Ws(b) if b.tls.is_some() => format!("wss://{}", b.addr),
            Listener::Ws(b) => format!("ws://{}", b.addr),
        }
    }
}

/// What every source's connections share: the id counter, the latency stamp field, the
/// registry of live connections.
#[derive(Clone)]
pub struct Common {
    pub ids: Arc<AtomicU64>,
    pub latency_field: Option<String>,
    pub registry: Arc<Registry>,
}

/// A running source: shared by every worker that reads it (and by its connections' workers
/// through the hand-over inbox). It owns its listener and its lane's sender: when the last
/// holder lets go (at shutdown, or once a source removed by `reload` has no connection left),
/// the listener closes and the lane ends.
pub struct SourceRt {
    pub cfg: SourceConfig,
    pub meta: Arc<SourceMeta>,
    /// Its place in the [`SourceTable`].
    pub index: usize,
    /// Holds this source's lane only.
    pub sender: Sender,
    listener: Option<Listener>,
    /// One shared listener (UNIX) or one per worker (TCP); worker `i` uses `fds[i % len]`.
    listener_fds: Vec<RawFd>,
    /// Set when `reload` removes the source: accept no more, read its connections to EOF.
    retired: tokio::sync::watch::Sender<bool>,
    next_conn_id: Arc<AtomicU64>,
    reply: Option<Arc<ReplyHub>>,
    registry: Arc<Registry>,
}

impl SourceRt {
    /// A source with its listener (None for a file) and a sender holding its lane (`stream`),
    /// made once the [`SourceTable`] gives it an index.
    pub fn make(
        cfg: SourceConfig,
        listener: Option<Listener>,
        sender: Sender,
        stream: usize,
        reply: Option<Arc<ReplyHub>>,
        common: &Common,
    ) -> impl FnOnce(usize) -> SourceRt {
        let common = common.clone();
        move |index| {
            let meta = Arc::new(SourceMeta {
                name: cfg.name().to_string(),
                kind: cfg.kind(),
                path: match &listener {
                    Some(Listener::Tcp(_, a)) => a.to_string(),
                    Some(l @ Listener::Ws(_)) => l.describe(),
                    _ => cfg.address(),
                },
                codec: cfg.codec(),
                latency_field: common.latency_field,
                stream,
                counters: Default::default(),
                pause: Default::default(),
            });
            SourceRt {
                listener_fds: listener.as_ref().map(Listener::fds).unwrap_or_default(),
                listener,
                cfg,
                meta,
                index,
                sender,
                retired: tokio::sync::watch::Sender::new(false),
                next_conn_id: common.ids,
                reply,
                registry: common.registry,
            }
        }
    }

    pub fn listener(&self) -> Option<&Listener> {
        self.listener.as_ref()
    }

    /// `unix:/path`, `tcp:127.0.0.1:4242` or `file:/path`.
    pub fn describe(&self) -> String {
        match &self.listener {
            Some(l) => l.describe(),
            None => format!("file:{}", self.cfg.address()),
        }
    }

    /// Removed by `reload`: its read loops stop accepting and read its connections to EOF.
    pub fn retire(&self) {
        if let Some(l) = &self.listener {
            l.remove_path();
        }
        // A paused source is read again: its connections are read to their end.
        self.meta.pause.set(false);
        self.retired.send_replace(true);
    }

    pub fn is_retired(&self) -> bool {
        *self.retired.borrow()
    }

    /// Resolves once the source is retired.
    pub async fn retired(&self) {
        let mut rx = self.retired.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    /// The listener worker `worker` accepts on.
    pub fn listener_fd(&self, worker: usize) -> RawFd {
        self.listener_fds[worker % self.listener_fds.len()]
    }

    /// Every listener of this source (the epoll loop accepts on all of them).
    pub fn listener_fds(&self) -> &[RawFd] {
        &self.listener_fds
    }

    /// Set up a connection just accepted: its socket options, its metadata (SO_PEERCRED for a
    /// UNIX peer, the address of a TCP one) and, with a `reply` sink, its reply queue. An io_uring
    /// worker passes its index and the hook that wakes it when the queue has room again.
    pub fn accepted(
        &self,
        fd: BorrowedFd<'_>,
        worker: Option<(usize, &RoomHook)>,
    ) -> Arc<ConnMeta> {
        let (cred, peer_addr) = match &self.cfg {
            SourceConfig::TcpServer(t) => {
                if t.no_delay {
                    let _ = rustix::net::sockopt::set_tcp_nodelay(fd, true);
                }
                let addr = rustix::net::getpeername(fd)
                    .ok()
                    .flatten()
                    .and_then(|a| std::net::SocketAddr::try_from(a).ok());
                (None, addr)
            }
            _ => (
                rustix::net::sockopt::socket_peercred(fd)
                    .ok()
                    .map(|c| (c.pid.as_raw_nonzero().get(), c.uid.as_raw(), c.gid.as_raw())),
                None,
            ),
        };
        let meta = self.conn_meta(cred, peer_addr, Some((fd, worker)));
        self.registry.add(&meta);
        meta
    }

    /// An upgraded WebSocket connection: its metadata, registered for `connections` and
    /// `close`, and, when a reply sink takes this source, the outbox its task writes replies
    /// from (one message per event).
    pub fn opened_ws(
        &self,
        peer_addr: Option<std::net::SocketAddr>,
    ) -> (Arc<ConnMeta>, Option<Outbox>) {
        let mut outbox = None;
        let meta = self.build_meta(None, peer_addr, None, |id| {
            let (handle, out) = self.reply.as_ref()?.outbox(id);
            outbox = Some(out);
            Some(Box::new(handle) as Box<dyn ReplyTarget>)
        });
        self.registry.add(&meta);
        (meta, outbox)
    }

    /// A connection of this source is closed (its last batch is taken).
    pub fn closed(&self, id: u64) {
        self.registry.remove(id);
        self.meta
            .counters
            .connections_active
            .fetch_sub(1, Ordering::Relaxed);
    }

    /// The metadata of a new connection, with its SO_PEERCRED (pid, uid, gid) when the kernel
    /// gave them (else 0, u32::MAX, u32::MAX).
    pub fn conn_meta(
        &self,
        cred: Option<(i32, u32, u32)>,
        peer_addr: Option<std::net::SocketAddr>,
        fd: Option<(BorrowedFd<'_>, Option<(usize, &RoomHook)>)>,
    ) -> Arc<ConnMeta> {
        let worker = fd.and_then(|(_, w)| w);
        self.build_meta(cred, peer_addr, worker.map(|(w, _)| w), |id| {
            match (&self.reply, fd) {
                (Some(hub), Some((fd, _))) => hub
                    .attach(
                        fd,
                        id,
                        self.meta.kind == SourceKind::TcpServer,
                        worker.map(|(_, hook)| Arc::clone(hook)),
                    )
                    .map(|h| Box::new(h) as Box<dyn ReplyTarget>),
                _ => None,
            }
        })
    }

    fn build_meta(
        &self,
        cred: Option<(i32, u32, u32)>,
        peer_addr: Option<std::net::SocketAddr>,
        worker: Option<usize>,
        reply: impl FnOnce(u64) -> Option<Box<dyn ReplyTarget>>,
    ) -> Arc<ConnMeta> {
        let id = self.next_conn_id.fetch_add(1, Ordering::Relaxed);
        let mut meta = ConnMeta::new(Arc::clone(&self.meta), id);
        if let Some((pid, uid, gid)) = cred {
            (meta.pid, meta.uid, meta.gid) = (pid, uid, gid);
        }
        meta.peer_addr = peer_addr;
        meta.reply = reply(id);
        meta.worker = worker;
        let c = &self.meta.counters;
        c.connections_accepted.fetch_add(1, Ordering::Relaxed);
        c.connections_active.fetch_add(1, Ordering::Relaxed);
        Arc::new(meta)
    }
}

/// The running sources, by index. Sources added by `reload` get the next index; a removed one
/// leaves its place empty (indices are never reused). The read loops look at it again whenever
/// its version changes.
#[derive(Default)]
pub struct SourceTable {
    entries: std::sync::Mutex<Vec<Option<Arc<SourceRt>>>>,
    version: AtomicU64,
}

impl SourceTable {
    /// Add a source made by `make(index)`.
    pub fn add(&self, make: impl FnOnce(usize) -> SourceRt) -> Arc<SourceRt> {
        let mut e = self.entries.lock().unwrap();
        let rt = Arc::new(make(e.len()));
        e.push(Some(Arc::clone(&rt)));
        self.version.fetch_add(1, Ordering::Release);
        rt
    }

    /// Take the source named `name` out, retired (see [`SourceRt::retire`]).
    pub fn retire(&self, name: &str) -> Option<Arc<SourceRt>> {
        let mut e = self.entries.lock().unwrap();
        let slot = e
            .iter_mut()
            .find(|x| x.as_ref().is_some_and(|r| r.meta.name == name))?;
        let rt = slot.take()?;
        rt.retire();
        self.version.fetch_add(1, Ordering::Release);
        Some(rt)
    }

    /// Every source now running (not removed).
    pub fn live(&self) -> Vec<Arc<SourceRt>> {
        self.entries
            .lock()
            .unwrap()
            .iter()
            .flatten()
            .cloned()
            .collect()
    }

    /// The table as it is now, by index.
    pub fn snapshot(&self) -> Vec<Option<Arc<SourceRt>>> {
        self.entries.lock().unwrap().clone()
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Let go of every source (at the end of shutdown, so their lanes can close).
    pub fn clear(&self) {
        let gone = std::mem::take(&mut *self.entries.lock().unwrap());
        self.version.fetch_add(1, Ordering::Release);
        drop(gone);
    }
}
