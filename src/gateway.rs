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

use crate::channel::{self, SourceMeta};
use crate::config::{Config, IoMode, SinkKind, SourceConfig, SourceKind, StreamOrigin};
use crate::control::commands::{Control, SetLogLevel, SinkView};
use crate::control::{server, Registry};
use crate::sink::{self, client, reply::ReplyHub};
use crate::source::balance::Balance;
use crate::source::{epoll, file, tcp, unix, uring, Listener, Shutdown, SourceRef, SourceRt};
use crate::telemetry::{report, Counters, SinkCounters, Snapshot};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Uring(#[from] uring::Error),
    #[error(transparent)]
    Socket(#[from] unix::Error),
    #[error(transparent)]
    Tcp(#[from] tcp::Error),
    #[error(transparent)]
    File(#[from] file::Error),
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
    match cfg.io_mode {
        IoMode::Epoll => Ok(Loop::Epoll),
        IoMode::Uring => {
            uring::probe()?;
            Ok(Loop::Uring)
        }
        IoMode::Auto => match uring::probe() {
            Ok(()) => Ok(Loop::Uring),
            Err(e) => {
                tracing::warn!("{e}; io_mode = \"auto\" runs on epoll instead (same pipeline)");
                Ok(Loop::Epoll)
            }
        },
    }
}

/// How the gateway ended.
pub struct Outcome {
    pub counters: Snapshot,
    /// A sink (or a worker waiting on it) was still blocked when the shutdown grace ran out
    /// twice over: the process must exit without waiting for it.
    pub abandoned: bool,
}

/// What the binary lends the gateway: the log filter, for the control socket's `log_level`.
pub struct Hooks {
    pub log_level: String,
    pub set_log_level: SetLogLevel,
}

/// Run until SIGTERM/SIGINT (or the control socket's `drain`), then shut down cleanly. Returns
/// the final counters.
pub fn run(cfg: Config, hooks: Hooks) -> Result<Outcome, Error> {
    let started = std::time::Instant::now();
    raise_fd_limit();
    let mode = choose_loop(&cfg)?;
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
    // Signal handlers before the socket exists: a SIGTERM that arrives as soon as clients can
    // connect must already mean "shut down cleanly".
    let (mut term, mut int, mut hup) = runtime
        .block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            Ok::<_, std::io::Error>((
                signal(SignalKind::terminate())?,
                signal(SignalKind::interrupt())?,
                signal(SignalKind::hangup())?,
            ))
        })
        .map_err(|e| Error::Runtime(format!("cannot install signal handlers: {e}")))?;
    if let Some(dir) = &cfg.telemetry.report_dir {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::Runtime(format!(
                "telemetry.report_dir {}: cannot create it: {e}",
                dir.display()
            ))
        })?;
    }
    let mut listeners: Vec<Option<Listener>> = Vec::with_capacity(cfg.sources.len());
    for (i, src) in cfg.sources.iter().enumerate() {
        listeners.push(match src {
            SourceConfig::UnixSocketServer(u) => Some(Listener::Unix(unix::bind(u, i)?)),
            SourceConfig::TcpServer(t) => {
                let (ls, addr) = tcp::bind(t, cfg.workers.get())?;
                Some(Listener::Tcp(ls, addr))
            }
            SourceConfig::File(_) => None,
        });
    }
    // The control socket, bound like a source's (same path rules), before anything is read.
    let control_socket = if cfg.control.enabled {
        Some(unix::bind_socket(
            &unix::Spec {
                name: "[control]",
                path: &cfg.control.path,
                permissions: cfg.control.permissions,
                owner: None,
                group: None,
                backlog: 128,
            },
            cfg.sources.len(),
        )?)
    } else {
        None
    };
    let metrics_listener = match cfg.metrics.listen {
        Some(addr) => Some(std::net::TcpListener::bind(addr).map_err(|e| {
            Error::Runtime(format!("metrics.listen {addr}: cannot listen there: {e}"))
        })?),
        None => None,
    };
    let mut files = Vec::new();
    for src in &cfg.sources {
        if let SourceConfig::File(f) = src {
            files.push(file::open(f)?);
        }
    }
    let mut files = files.into_iter();
    let counters = Arc::new(Counters::default());
    let shutdown = Arc::new(Shutdown::default());
    let (tx, lanes) = channel::bounded(
        cfg.streams.len(),
        cfg.channel.capacity.get(),
        cfg.channel.when_full,
        Arc::clone(&counters),
    );
    let reply_hub = cfg.sinks.iter().find_map(|s| match &s.kind {
        SinkKind::Reply(r) => Some(Arc::new(ReplyHub::new(
            runtime.handle().clone(),
            r.clone(),
            Arc::clone(&counters),
        ))),
        _ => None,
    });
    let room = Arc::new(tokio::sync::Notify::new());
    let reconfig = Arc::new(sink::Reconfig::default());
    let sink_counters: Vec<Arc<SinkCounters>> = cfg.sinks.iter().map(|_| Arc::default()).collect();
    let spools: Vec<_> = cfg
        .sinks
        .iter()
        .map(|s| client::spool_for(s, &room))
        .collect();
    let sink_thread = sink::start(
        &cfg,
        sink::Wiring {
            lanes,
            counters: Arc::clone(&counters),
            shutdown: Arc::clone(&shutdown),
            spools: spools.clone(),
            room,
            reply_hub: reply_hub.clone(),
            sink_counters: sink_counters.clone(),
            reconfig: Arc::clone(&reconfig),
        },
    )?;
    let ids = Arc::new(AtomicU64::new(1));
    let registry = Arc::new(Registry::default());
    let latency_field = cfg.telemetry.latency_field.clone();
    // Every event stream's source, for the control socket.
    let mut stream_metas: Vec<Option<(Arc<SourceMeta>, String)>> = vec![None; cfg.streams.len()];
    // Client sinks: their threads, and the event streams of their replies.
    let mut sink_threads = vec![sink_thread];
    for (k, stream) in cfg.streams.iter().enumerate() {
        let StreamOrigin::Replies(i) = stream.origin else {
            continue;
        };
        let SinkKind::UnixSocketClient(u) = &cfg.sinks[i].kind else {
            continue;
        };
        let replies = Arc::new(SourceMeta {
            name: stream.name.clone(),
            kind: SourceKind::UnixSocketClient,
            path: u.path.to_string_lossy().into_owned(),
            codec: cfg.sinks[i].format.codec,
            latency_field: latency_field.clone(),
            stream: k,
            counters: Default::default(),
            pause: Default::default(),
        });
        stream_metas[k] = Some((Arc::clone(&replies), format!("unix:{}", u.path.display())));
        sink_threads.push(client::start(client::Args {
            name: cfg.sinks[i].name.clone(),
            cfg: u.clone(),
            spool: Arc::clone(spools[i].as_ref().expect("a client sink has a spool")),
            counters: Arc::clone(&counters),
            shutdown: Arc::clone(&shutdown),
            sender: tx.only(&[k]),
            replies,
            ids: Arc::clone(&ids),
            channel: cfg.channel.clone(),
        }));
    }
    // A reply queue (a duplicate descriptor and a writer task) for each connection of a source
    // the reply sink takes, or of any source that can be replied to when events name their
    // connection (`route_field`).
    let replied: Vec<bool> = (0..cfg.sources.len())
        .map(|i| {
            cfg.sinks.iter().any(|s| match &s.kind {
                SinkKind::Reply(r) => r.route_field.is_some() || s.inputs.contains(&i),
                _ => false,
            })
        })
        .collect();
    let reply_for =
        |i: usize, src: &SourceConfig| reply_hub.clone().filter(|_| src.can_reply() && replied[i]);
    // Listening sources (read by the io_uring workers or the epoll tasks), and file sources.
    let mut source_threads = Vec::new();
    let mut listening = Vec::new();
    let (fatal_tx, mut fatal_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    for (i, (src, l)) in cfg.sources.iter().zip(&listeners).enumerate() {
        let rt = SourceRt::new(
            src.clone(),
            l.as_ref(),
            Arc::clone(&ids),
            latency_field.clone(),
            i,
            reply_for(i, src),
            Arc::clone(&registry),
        );
        let at = match l {
            Some(l) => l.describe(),
            None => format!("file:{}", src.address()),
        };
        stream_metas[i] = Some((Arc::clone(&rt.meta), at));
        if l.is_some() {
            listening.push(rt);
            continue;
        }
        let args = file::Args {
            src: rt,
            sender: tx.only(&[i]),
            counters: Arc::clone(&counters),
            channel: cfg.channel.clone(),
            shutdown: Arc::clone(&shutdown),
        };
        source_threads.push(file::start(args, files.next().flatten()));
    }
    let sources: Arc<Vec<SourceRt>> = Arc::new(listening);
    // The read loops hold the lanes of the listening sources only.
    let all = tx;
    let tx = all.only(&sources.iter().map(|s| s.meta.stream).collect::<Vec<_>>());
    let lanes = all.gauge();
    let policy = all.policy();
    drop(all);

    // Start the read loops. A failure to start one is fatal, but goes through the normal
    // shutdown so the ones already running stop before their sockets are closed.
    let mut balance: Option<Arc<Balance>> = None;
    let mut threads = Vec::new();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut epoll_tasks = Vec::new();
    match mode {
        _ if sources.is_empty() => {}
        Loop::Uring => match Balance::new(cfg.workers.get()) {
            Err(e) => {
                let _ = fatal_tx.send(format!("eventfd: {e}"));
            }
            Ok(bal) => {
                let bal = Arc::new(bal);
                balance = Some(Arc::clone(&bal));
                registry.set_balance(Arc::clone(&bal));
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
                    let spawned = std::thread::Builder::new()
                        .name(format!("ringway-uring-{index}"))
                        .spawn(move || {
                            if let Err(e) = uring::run_worker(args) {
                                tracing::error!("{e}");
                                let _ = fatal.send(e.to_string());
                            }
                        });
                    match spawned {
                        Ok(t) => threads.push(t),
                        Err(e) => {
                            let _ = fatal_tx.send(format!("cannot start a worker: {e}"));
                            break;
                        }
                    }
                }
            }
        },
        Loop::Epoll => {
            let shared = epoll::Shared {
                sender: tx.clone(),
                counters: Arc::clone(&counters),
                channel: cfg.channel.clone(),
                shutdown: Arc::clone(&shutdown),
                stop: stop_rx,
            };
            for (i, src) in sources.iter().enumerate() {
                let l = listeners[src.meta.stream]
                    .as_ref()
                    .expect("a listening source has a listener");
                let src = SourceRef(Arc::clone(&sources), i);
                let dups = match l.try_clone_all() {
                    Ok(d) => d,
                    Err(e) => {
                        let _ = fatal_tx.send(format!("cannot share the listener: {e}"));
                        continue;
                    }
                };
                for dup in dups {
                    let (shared, fatal, src) = (shared.clone(), fatal_tx.clone(), src.clone());
                    epoll_tasks.push(runtime.spawn(async move {
                        if let Err(e) = epoll::run_source(src, dup, shared).await {
                            let _ = fatal.send(format!("epoll source: {e}"));
                        }
                    }));
                }
            }
        }
    }
    drop(tx);
    drop(fatal_tx);

    for (src, l) in cfg.sources.iter().zip(&listeners) {
        let at = match l {
            Some(l) => l.describe(),
            None => format!("file:{}", src.address()),
        };
        let verb = if l.is_some() {
            "listening on"
        } else {
            "reading"
        };
        eprintln!(
            "ringway: {verb} {at} (source {:?}, codec {}, io_mode {mode}, {} workers)",
            src.name(),
            src.codec(),
            cfg.workers
        );
    }
    if let Some(Listener::Unix(u)) = listeners.iter().flatten().next() {
        eprintln!(
            "ringway: try: echo '{{\"hello\":\"world\"}}' | socat - UNIX-CONNECT:{}",
            u.path.display()
        );
    }

    // The control socket's commands see all of the above.
    let stream_metas: Vec<_> = stream_metas.into_iter().flatten().collect();
    let (drain_tx, mut drain_rx) = tokio::sync::mpsc::unbounded_channel();
    let control_stop = tokio::sync::watch::Sender::new(false);
    let control = Arc::new(Control {
        started,
        io_mode: mode.to_string(),
        workers: cfg.workers.get(),
        counters: Arc::clone(&counters),
        streams: stream_metas.clone(),
        sinks: cfg
            .sinks
            .iter()
            .enumerate()
            .map(|(i, s)| SinkView {
                cfg: s.clone(),
                inputs: s
                    .inputs
                    .iter()
                    .map(|&k| cfg.streams[k].name.clone())
                    .collect(),
                counters: Arc::clone(&sink_counters[i]),
                spool: spools[i].clone(),
            })
            .collect(),
        lanes,
        registry: Arc::clone(&registry),
        config: std::sync::Mutex::new(cfg.clone()),
        reconfig: Arc::clone(&reconfig),
        policy,
        log_level: std::sync::Mutex::new(hooks.log_level),
        set_log_level: hooks.set_log_level,
        drain: drain_tx,
    });
    if let Some(l) = metrics_listener {
        if let Ok(addr) = l.local_addr() {
            eprintln!("ringway: metrics at http://{addr}/metrics");
        }
        runtime.spawn(crate::control::metrics::serve(l, Arc::clone(&control)));
    }
    if let Some(sock) = &control_socket {
        match sock.listener.try_clone() {
            Ok(l) => {
                // Served until the very end (a drain can be watched with `stats`).
                runtime.spawn(server::serve(
                    l,
                    cfg.control.clone(),
                    Arc::clone(&control),
                    control_stop.subscribe(),
                ));
                eprintln!(
                    "ringway: control socket at {} (try: ringway ctl --socket {} stats)",
                    sock.path.display(),
                    sock.path.display()
                );
            }
            Err(e) => tracing::error!("control socket: {e}; it is not served"),
        }
    }

    // Wait for a signal, the control socket's `drain` (or a fatal worker error). SIGHUP
    // reloads the config, as the control socket's `reload` does.
    let fatal = runtime.block_on(async {
        loop {
            tokio::select! {
                _ = term.recv() => return None,
                _ = int.recv() => return None,
                Some(()) = drain_rx.recv() => {
                    tracing::info!("drain requested on the control socket");
                    return None;
                }
                Some(e) = fatal_rx.recv() => return Some(e),
                _ = hup.recv() => {
                    if let Err(e) = control.reload().await {
                        tracing::error!("SIGHUP: reload refused: {e}");
                    }
                }
            }
        }
    });
    // Paused sources are read again: shutting down reads every connection to its end.
    for (m, _) in &stream_metas {
        m.pause.set(false);
    }
    registry.wake_all();
    tracing::info!(
        "shutting down: no new connections; reading open ones to EOF for up to {:?}",
        cfg.shutdown_timeout
    );
    for l in listeners.iter().flatten() {
        l.remove_path();
    }
    let shutdown_began = std::time::Instant::now();
    // A (further) signal means: stop now, without draining.
    runtime.spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        eprintln!("ringway: second signal: exiting at once; events not yet written are lost");
        std::process::exit(130);
    });
    shutdown.request(cfg.shutdown_timeout);
    if let Some(b) = &balance {
        for i in 0..cfg.workers.get() {
            b.wake(i);
        }
    }
    let _ = stop_tx.send(true);

    // Reading ends by the deadline; a failing sink gives up one grace later. Past that (plus a
    // margin) something is blocked for good, e.g. a write to a pipe nobody reads: stop waiting.
    let give_up = shutdown
        .sink_give_up()
        .unwrap_or_else(std::time::Instant::now)
        + std::time::Duration::from_secs(2);
    threads.extend(source_threads);
    let mut abandoned = !join_until(threads, give_up);
    abandoned |= !runtime.block_on(async {
        tokio::time::timeout_at(give_up.into(), async {
            for t in epoll_tasks {
                let _ = t.await;
            }
        })
        .await
        .is_ok()
    });
    drop(sources);
    abandoned |= !join_until(sink_threads, give_up);
    // The replies still queued for connections are written (or dropped and counted) by then.
    if let Some(hub) = &reply_hub {
        hub.wait_idle(give_up);
    }
    if abandoned {
        // Threads may still use the listeners: leave them open (the paths are gone already).
        std::mem::forget(listeners);
        // Events neither written, dropped, nor already counted lost by a sink that gave up.
        let c = counters.snapshot();
        let unwritten = c
            .events_in
            .saturating_sub(c.events_out + c.dropped + c.lost_at_shutdown);
        Counters::add(&counters.lost_at_shutdown, unwritten);
        tracing::error!(
            "a sink is still blocked {:?} after the shutdown began; exiting with {} events unwritten",
            shutdown_began.elapsed(),
            unwritten + c.lost_at_shutdown
        );
    } else {
        drop(listeners);
    }
    drop(control_stop);
    runtime.shutdown_background();
    let hist = counters.histograms();
    if !hist.ingest_to_sink.is_empty() {
        tracing::info!("latency: {}", hist.brief());
    }
    if let Some(dir) = &cfg.telemetry.report_dir {
        let snapshot = counters.snapshot();
        match report::write(
            dir,
            &snapshot,
            &hist,
            cfg.telemetry.latency_field.as_deref(),
        ) {
            Ok(files) => {
                tracing::info!("report written: {} files in {}", files.len(), dir.display())
            }
            Err((path, e)) => tracing::error!("cannot write the report {}: {e}", path.display()),
        }
    }
    match fatal {
        Some(e) => Err(Error::Runtime(e)),
        None => Ok(Outcome {
            counters: counters.snapshot(),
            abandoned,
        }),
    }
}

/// A sidecar holds a descriptor per client: lift the soft RLIMIT_NOFILE (often 1024) to the
/// hard limit, as Go's runtime does. EMFILE beyond that is handled by the accept back-off.
/// (loadgen, which opens as many connections, does the same.)
pub fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        let from = lim.current;
        lim.current = lim.maximum;
        match setrlimit(Resource::Nofile, lim) {
            Ok(()) => tracing::debug!("RLIMIT_NOFILE raised from {from:?} to {:?}", lim.maximum),
            Err(e) => tracing::debug!("RLIMIT_NOFILE stays {from:?}: {e}"),
        }
    }
}

/// Join every thread, or give up at `deadline`. True if all ended.
fn join_until(threads: Vec<std::thread::JoinHandle<()>>, deadline: std::time::Instant) -> bool {
    let mut all = true;
    for t in threads {
        while !t.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        if t.is_finished() {
            let _ = t.join();
        } else {
            all = false;
        }
    }
    all
}
