//! The running sources, and starting or removing one while the gateway runs.
//!
//! In: a source's config, bound by [`bind`] (so a taken path or port fails before anything
//! changes), and the lane its batches go to. Out: the source read by the io_uring workers (they
//! see the [`SourceTable`] change on their next wake-up), by tokio readiness tasks, or by its
//! file thread. Start-up and `reload` both start sources through here, and `reload` removes
//! them. What it does not do: decide what changes (see `diff`), or touch the sinks.

use std::fs::File;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::channel::{LaneGauge, Receiver, Sender};
use crate::config::{ChannelConfig, IoMode, SourceConfig};
use crate::event::{Shutdown, Tracker};
use crate::reply::ReplyHub;
use crate::source::balance::Balance;
use crate::source::{
    file, readiness, tcp, unix, uring, ws, Common, Listener, SourceRt, SourceTable,
};
use crate::telemetry::Counters;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Socket(#[from] unix::Error),
    #[error(transparent)]
    Tcp(#[from] tcp::Error),
    #[error(transparent)]
    File(#[from] file::Error),
    #[error(transparent)]
    Ws(#[from] ws::Error),
}

/// A source's socket bound, or its file opened: what [`Running::start`] takes.
pub enum Bound {
    Listener(Listener),
    /// A file source's file (None: followed and not there yet).
    File(Option<File>),
}

/// Bind a source's listener (or open its file) without starting it.
pub fn bind(cfg: &SourceConfig, workers: usize, index: usize) -> Result<Bound, Error> {
    Ok(match cfg {
        SourceConfig::UnixSocketServer(u) => Bound::Listener(Listener::Unix(unix::bind(u, index)?)),
        SourceConfig::TcpServer(t) => {
            let (ls, addr) = tcp::bind(t, workers)?;
            Bound::Listener(Listener::Tcp(ls, addr))
        }
        SourceConfig::WsServer(w) => Bound::Listener(Listener::Ws(ws::bind(w)?)),
        SourceConfig::File(f) => Bound::File(file::open(f)?),
    })
}

/// Which read loop runs the listening sources (`io_mode`, once probed).
pub enum ReadLoop {
    /// The io_uring workers; they share this balance (set once they are started).
    Uring(OnceLock<Arc<Balance>>),
    /// Tokio readiness tasks: one per listener of each source.
    Epoll,
}

impl ReadLoop {
    /// `io_mode`, resolved: `auto` probes io_uring and falls back to the readiness loop.
    pub fn choose(mode: IoMode) -> Result<ReadLoop, uring::Error> {
        match mode {
            IoMode::Epoll => Ok(ReadLoop::Epoll),
            IoMode::Uring => {
                uring::probe()?;
                Ok(ReadLoop::Uring(OnceLock::new()))
            }
            IoMode::Auto => match uring::probe() {
                Ok(()) => Ok(ReadLoop::Uring(OnceLock::new())),
                Err(e) => {
                    tracing::warn!("{e}; io_mode = \"auto\" runs on epoll instead (same pipeline)");
                    Ok(ReadLoop::Epoll)
                }
            },
        }
    }

    /// As `stats` and the start-up line name it.
    pub fn name(&self) -> &'static str {
        match self {
            ReadLoop::Uring(_) => "uring",
            ReadLoop::Epoll => "epoll",
        }
    }
}

/// Every running source, and what it takes to start one more.
pub struct Running {
    pub table: Arc<SourceTable>,
    pub read_loop: ReadLoop,
    /// What the tokio tasks share (epoll sources, and WebSocket sources in either mode).
    tasks: readiness::Shared,
    /// Each lane's depth, for `stats`; lanes added here are added to it.
    pub gauge: Arc<LaneGauge>,
    workers: usize,
    runtime: tokio::runtime::Handle,
    common: Common,
    /// Holds no lane: makes new ones.
    template: Sender,
    next_stream: AtomicUsize,
    counters: Arc<Counters>,
    channel: ChannelConfig,
    reply_hub: Option<Arc<ReplyHub>>,
    epoll_tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// The file sources' threads.
    files: Mutex<Vec<FileThread>>,
    fatal: tokio::sync::mpsc::UnboundedSender<String>,
    shutdown: Arc<Shutdown>,
    buf_size: usize,
    /// The io_uring workers, started with the first listening source.
    uring_threads: Mutex<Vec<JoinHandle<()>>>,
    stopping: std::sync::atomic::AtomicBool,
    /// Held while sources are added or removed, and when shutdown begins.
    changes: Mutex<()>,
    /// The guards of the workers' and file sources' threads.
    readers: Arc<Tracker>,
}

/// A file source's thread, and its own shutdown signal (requested when it is removed).
struct FileThread {
    name: String,
    shutdown: Arc<Shutdown>,
    thread: JoinHandle<()>,
}

/// What [`Running::new`] needs from the gateway.
pub struct Parts {
    pub read_loop: ReadLoop,
    pub tasks: readiness::Shared,
    pub workers: usize,
    pub runtime: tokio::runtime::Handle,
    pub common: Common,
    /// Any sender: its policy, counters and lane capacity are shared by new lanes.
    pub template: Sender,
    /// The first stream index not in use.
    pub next_stream: usize,
    pub counters: Arc<Counters>,
    pub channel: ChannelConfig,
    pub reply_hub: Option<Arc<ReplyHub>>,
    pub fatal: tokio::sync::mpsc::UnboundedSender<String>,
    /// The gateway's shutdown signal (the read loops watch it).
    pub shutdown: Arc<Shutdown>,
    /// The io_uring workers' receive buffer size.
    pub buf_size: usize,
    /// Every thread started here holds one of its guards.
    pub readers: Arc<Tracker>,
}

impl Running {
    pub fn new(p: Parts) -> Running {
        Running {
            table: Arc::default(),
            read_loop: p.read_loop,
            tasks: p.tasks,
            gauge: Arc::new(p.template.gauge()),
            workers: p.workers,
            runtime: p.runtime,
            common: p.common,
            template: p.template.only(&[]),
            next_stream: AtomicUsize::new(p.next_stream),
            counters: p.counters,
            channel: p.channel,
            reply_hub: p.reply_hub,
            epoll_tasks: Mutex::default(),
            files: Mutex::default(),
            fatal: p.fatal,
            shutdown: p.shutdown,
            buf_size: p.buf_size,
            uring_threads: Mutex::default(),
            stopping: Default::default(),
            changes: Mutex::default(),
            readers: p.readers,
        }
    }

    /// A new lane for a source about to be added: its stream index, a sender holding only it,
    /// and the receiving end for the sink thread.
    pub fn new_lane(&self) -> (usize, Sender, Receiver) {
        let k = self.next_stream.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = self.template.new_lane(k);
        self.gauge.add(&tx);
        (k, tx, rx)
    }

    /// Start reading a bound source whose batches go to stream `stream` through `sender`.
    /// `reply`: its connections get reply queues.
    pub fn start(
        &self,
        cfg: SourceConfig,
        bound: Bound,
        stream: usize,
        sender: Sender,
        reply: bool,
    ) -> Arc<SourceRt> {
        let reply = self.reply_hub.clone().filter(|_| reply && cfg.can_reply());
        let (listener, first) = match bound {
            Bound::Listener(l) => (Some(l), None),
            Bound::File(f) => (None, Some(f)),
        };
        let rt = self.table.add(SourceRt::make(
            cfg,
            listener,
            sender,
            stream,
            reply,
            &self.common,
        ));
        if let Some(first) = first {
            let shutdown = Arc::new(Shutdown::default());
            let args = file::Args {
                src: Arc::clone(&rt),
                counters: Arc::clone(&self.counters),
                channel: self.channel.clone(),
                shutdown: Arc::clone(&shutdown),
                done: self.readers.guard(),
            };
            let t = file::start(args, first);
            self.files.lock().unwrap().push(FileThread {
                name: rt.meta.name.clone(),
                shutdown,
                thread: t,
            });
            return rt;
        }
        if rt.listener().is_some_and(|l| !l.is_stream()) {
            let (src, shared, fatal) = (Arc::clone(&rt), self.tasks.clone(), self.fatal.clone());
            self.epoll_tasks
                .lock()
                .unwrap()
                .push(self.runtime.spawn(async move {
                    if let Err(e) = ws::run(src, shared).await {
                        let _ = fatal.send(format!("ws_server: {e}"));
                    }
                }));
            return rt;
        }
        match &self.read_loop {
            ReadLoop::Uring(balance) => match balance.get() {
                Some(b) => b.wake_all(),
                None => self.start_workers(balance),
            },
            ReadLoop::Epoll => self.spawn_epoll(&rt, &self.tasks),
        }
        rt
    }

    /// Start the io_uring workers (with the first listening source; they read the table).
    fn start_workers(&self, cell: &OnceLock<Arc<Balance>>) {
        let mut threads = self.uring_threads.lock().unwrap();
        if cell.get().is_some() {
            return;
        }
        let balance = match Balance::new(self.workers) {
            Ok(b) => Arc::new(b),
            Err(e) => {
                let _ = self.fatal.send(format!("eventfd: {e}"));
                return;
            }
        };
        let _ = cell.set(Arc::clone(&balance));
        self.common.registry.set_balance(Arc::clone(&balance));
        for index in 0..self.workers {
            let args = uring::WorkerArgs {
                index,
                sources: Arc::clone(&self.table),
                buf_size: self.buf_size,
                counters: Arc::clone(&self.counters),
                channel: self.channel.clone(),
                shutdown: Arc::clone(&self.shutdown),
                balance: Arc::clone(&balance),
            };
            let (fatal, done) = (self.fatal.clone(), self.readers.guard());
            let spawned = std::thread::Builder::new()
                .name(format!("ringway-uring-{index}"))
                .spawn(move || {
                    let _done = done;
                    if let Err(e) = uring::run_worker(args) {
                        tracing::error!("{e}");
                        let _ = fatal.send(e.to_string());
                    }
                });
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    let _ = self.fatal.send(format!("cannot start a worker: {e}"));
                    break;
                }
            }
        }
    }

    fn spawn_epoll(&self, rt: &Arc<SourceRt>, shared: &readiness::Shared) {
        let l = rt.listener().expect("a listening source has a listener");
        let dups = match l.try_clone_all() {
            Ok(d) => d,
            Err(e) => {
                let _ = self.fatal.send(format!("cannot share the listener: {e}"));
                return;
            }
        };
        let mut tasks = self.epoll_tasks.lock().unwrap();
        for dup in dups {
            let (shared, fatal, src) = (shared.clone(), self.fatal.clone(), Arc::clone(rt));
            tasks.push(self.runtime.spawn(async move {
                if let Err(e) = readiness::run_source(src, dup, shared).await {
                    let _ = fatal.send(format!("epoll source: {e}"));
                }
            }));
        }
    }

    /// Remove the source named `name`: no new connections (a UNIX path goes at once), its
    /// connections read to their end (a file to its end, for up to `grace`). Its lane ends
    /// when the last of them is done.
    pub fn remove(&self, name: &str, grace: Duration) -> Option<Arc<SourceRt>> {
        let rt = self.table.retire(name)?;
        for f in self.files.lock().unwrap().iter() {
            if f.name == name {
                f.shutdown.request(grace);
            }
        }
        if let ReadLoop::Uring(balance) = &self.read_loop {
            if let Some(b) = balance.get() {
                b.wake_all();
            }
        }
        Some(rt)
    }

    /// Shutdown begins: from now on no source is added or removed (a `reload` doing so waits
    /// for this lock, then finds the gateway stopping).
    pub fn freeze(&self) {
        let _changes = self.changes.lock().unwrap();
        self.stopping.store(true, Ordering::Release);
    }

    /// Run `f` (adding or removing sources) unless shutdown has begun; `None` if it has.
    pub fn change<R>(&self, f: impl FnOnce() -> R) -> Option<R> {
        let _changes = self.changes.lock().unwrap();
        (!self.is_stopping()).then(f)
    }

    /// Shutdown: the file sources stop too, and the io_uring
    /// workers are woken (they and the epoll tasks watch the gateway's own signal).
    pub fn request_shutdown(&self, grace: Duration) {
        self.freeze();
        for f in self.files.lock().unwrap().iter() {
            f.shutdown.request(grace);
        }
        if let ReadLoop::Uring(balance) = &self.read_loop {
            if let Some(b) = balance.get() {
                b.wake_all();
            }
        }
    }

    /// Shutting down: no source may be added or removed any more.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// The threads of the io_uring workers and of the file sources (to join at shutdown).
    pub fn take_threads(&self) -> Vec<JoinHandle<()>> {
        let mut t = std::mem::take(&mut *self.uring_threads.lock().unwrap());
        t.extend(self.files.lock().unwrap().drain(..).map(|f| f.thread));
        t
    }

    /// The epoll tasks (to await at shutdown).
    pub fn take_epoll_tasks(&self) -> Vec<tokio::task::JoinHandle<()>> {
        std::mem::take(&mut self.epoll_tasks.lock().unwrap())
    }
}
