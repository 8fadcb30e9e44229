//! The gateway: wires a validated [`Config`] into running sources, channel and sinks, waits for
//! SIGTERM/SIGINT, and shuts down without losing what was read.
//!
//! In: a [`Config`]. Out: the final counters. Order of shutdown: sources stop accepting; each
//! connection is read to EOF or until `shutdown_timeout`; workers send their last batches and
//! drop their senders; the sink thread drains the channel, flushes and fsyncs, and ends when the
//! last sender is gone; the socket files are removed. What it does not do: parse config or
//! print the summary (main does).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use crate::channel;
use crate::config::{Config, IoMode, SourceConfig};
use crate::sink;
use crate::source::balance::Balance;
use crate::source::{epoll, unix, uring, Shutdown, SourceRt};
use crate::telemetry::{Counters, Snapshot};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Uring(#[from] uring::Error),
    #[error(transparent)]
    Socket(#[from] unix::Error),
    #[error(transparent)]
    Sink(#[from] sink::Error),
    #[error("{0}")]
    Runtime(String),
}

/// Which read loop runs, after probing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loop {
    Uring,
    Epoll,
}

impl std::fmt::Display for Loop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Loop::Uring => "uring",
            Loop::Epoll => "epoll",
        })
    }
}

fn choose_loop(cfg: &Config) -> Result<Loop, Error> {
    let buf = cfg
        .sources
        .iter()
        .map(|SourceConfig::UnixSocketServer(u)| u.buf_size.get())
        .max()
        .unwrap_or(65536);
    match cfg.io_mode {
        IoMode::Epoll => Ok(Loop::Epoll),
        IoMode::Uring => {
            uring::probe(buf)?;
            Ok(Loop::Uring)
        }
        IoMode::Auto => match uring::probe(buf) {
            Ok(()) => Ok(Loop::Uring),
            Err(e) => {
                tracing::warn!("{e}; io_mode = \"auto\" runs on epoll instead (same pipeline)");
                Ok(Loop::Epoll)
            }
        },
    }
}

/// Run until SIGTERM/SIGINT, then shut down cleanly. Returns the final counters.
pub fn run(cfg: Config) -> Result<Snapshot, Error> {
    let mode = choose_loop(&cfg)?;
    let sockets = cfg
        .sources
        .iter()
        .map(|SourceConfig::UnixSocketServer(u)| unix::bind(u))
        .collect::<Result<Vec<_>, _>>()?;
    let counters = Arc::new(Counters::default());
    let shutdown = Arc::new(Shutdown::default());
    let (tx, rx) = channel::bounded(
        cfg.channel.capacity.get(),
        cfg.channel.when_full,
        Arc::clone(&counters),
    );
    let sink_thread = sink::start(&cfg, rx, Arc::clone(&counters), Arc::clone(&shutdown))?;
    let ids = Arc::new(AtomicU64::new(1));
    let sources: Arc<Vec<SourceRt>> = Arc::new(
        cfg.sources
            .iter()
            .zip(&sockets)
            .map(|(SourceConfig::UnixSocketServer(u), s)| {
                SourceRt::new(u.clone(), s, Arc::clone(&ids))
            })
            .collect(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(if mode == Loop::Epoll {
            cfg.workers.get()
        } else {
            1
        })
        .thread_name("ringway-rt")
        .enable_all()
        .build()
        .map_err(|e| Error::Runtime(format!("cannot start the tokio runtime: {e}")))?;
    let (fatal_tx, mut fatal_rx) = tokio::sync::mpsc::unbounded_channel::<String>();

    // Start the read loops.
    let mut balance: Option<Arc<Balance>> = None;
    let mut threads = Vec::new();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut epoll_tasks = Vec::new();
    match mode {
        Loop::Uring => {
            let bal = Arc::new(
                Balance::new(cfg.workers.get())
                    .map_err(|e| Error::Runtime(format!("eventfd: {e}")))?,
            );
            balance = Some(Arc::clone(&bal));
            for index in 0..cfg.workers.get() {
                let args = uring::WorkerArgs {
                    index,
                    sources: Arc::clone(&sources),
                    sender: tx.clone(),
                    counters: Arc::clone(&counters),
                    channel: cfg.channel.clone(),
                    shutdown: Arc::clone(&shutdown),
                    balance: Arc::clone(&bal),
                };
                let fatal = fatal_tx.clone();
                threads.push(
                    std::thread::Builder::new()
                        .name(format!("ringway-uring-{index}"))
                        .spawn(move || {
                            if let Err(e) = uring::run_worker(args) {
                                tracing::error!("{e}");
                                let _ = fatal.send(e.to_string());
                            }
                        })
                        .map_err(|e| Error::Runtime(format!("cannot start a worker: {e}")))?,
                );
            }
        }
        Loop::Epoll => {
            let shared = epoll::Shared {
                sender: tx.clone(),
                counters: Arc::clone(&counters),
                channel: cfg.channel.clone(),
                shutdown: Arc::clone(&shutdown),
                stop: stop_rx,
            };
            for (i, sock) in sockets.iter().enumerate() {
                let listener = sock
                    .listener
                    .try_clone()
                    .map_err(|e| Error::Runtime(format!("cannot share the listener: {e}")))?;
                let src = Arc::new(SourceRt::new(
                    sources[i].cfg.clone(),
                    sock,
                    Arc::clone(&ids),
                ));
                let shared = shared.clone();
                let fatal = fatal_tx.clone();
                epoll_tasks.push(runtime.spawn(async move {
                    if let Err(e) = epoll::run_source(src, listener, shared).await {
                        let _ = fatal.send(format!("epoll source: {e}"));
                    }
                }));
            }
        }
    }
    drop(tx);
    drop(fatal_tx);

    for s in sources.iter() {
        eprintln!(
            "ringway: listening on unix:{} (source {:?}, codec {:?}, io_mode {mode}, {} workers)",
            s.cfg.path.display(),
            s.cfg.name,
            s.cfg.codec,
            cfg.workers
        );
    }
    if let Some(s) = sources.first() {
        eprintln!(
            "ringway: try: echo '{{\"hello\":\"world\"}}' | socat - UNIX-CONNECT:{}",
            s.cfg.path.display()
        );
    }

    // Wait for a signal (or a fatal worker error).
    let fatal = runtime.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        tokio::select! {
            _ = term.recv() => None,
            _ = int.recv() => None,
            Some(e) = fatal_rx.recv() => Some(e),
        }
    });
    tracing::info!(
        "shutting down: no new connections; reading open ones to EOF for up to {:?}",
        cfg.shutdown_timeout
    );
    for s in &sockets {
        s.remove_path();
    }
    shutdown.request(cfg.shutdown_timeout);
    if let Some(b) = &balance {
        for i in 0..cfg.workers.get() {
            b.wake(i);
        }
    }
    let _ = stop_tx.send(true);
    for t in threads {
        let _ = t.join();
    }
    runtime.block_on(async {
        for t in epoll_tasks {
            let _ = t.await;
        }
    });
    drop(sources);
    let _ = sink_thread.join();
    drop(sockets);
    runtime.shutdown_background();
    match fatal {
        Some(e) => Err(Error::Runtime(e)),
        None => Ok(counters.snapshot()),
    }
}
