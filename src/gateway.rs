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
use crate::config::{ClientTarget, Config, IoMode, SinkKind, SourceKind, StreamOrigin};
use crate::control::commands::{Control, SetLogLevel, SinkView};
use crate::control::server;
use crate::event::Shutdown;
use crate::event::SourceMeta;
use crate::reply::ReplyHub;
use crate::sink::{self, client};
use crate::source::running::{self, ReadLoop, Running};
use crate::source::Registry;
use crate::source::{readiness, unix, uring, Common, Listener};
use crate::telemetry::{report, Counters, SinkCounters, Snapshot};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Uring(#[from] uring::Error),
    #[error(transparent)]
    Socket(#[from] unix::Error),
    #[error(transparent)]
    Source(#[from] running::Error),
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
    // With io_uring the runtime carries the control socket, the reply writers and the
    // WebSocket sources (which parse on it, and may be added by `reload`): as many threads as
    // workers either way (idle ones cost nothing).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.workers.get())
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
    // Every source bound first: a taken path or port stops the gateway before anything runs.
    let mut bound = Vec::with_capacity(cfg.sources.len());
    for (i, src) in cfg.sources.iter().enumerate() {
        bound.push(running::bind(src, cfg.workers.get(), i)?);
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
        let SinkKind::Client(u) = &cfg.sinks[i].kind else {
            continue;
        };
        let replies = Arc::new(SourceMeta {
            name: stream.name.clone(),
            kind: match u.target {
                ClientTarget::Unix(_) => SourceKind::UnixSocketClient,
                ClientTarget::Ws(_) => SourceKind::WsClient,
            },
            path: u.target.describe(),
            codec: cfg.sinks[i].format.codec,
            latency_field: latency_field.clone(),
            stream: k,
            counters: Default::default(),
            pause: Default::default(),
        });
        let at = match &u.target {
            ClientTarget::Unix(p) => format!("unix:{}", p.display()),
            ClientTarget::Ws(w) => w.url.clone(),
        };
        stream_metas[k] = Some((Arc::clone(&replies), at));
        sink_threads.push(client::start(client::Args {
            name: cfg.sinks[i].name.clone(),
            cfg: (**u).clone(),
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
    let replied = crate::control::reload::replied_sources(&cfg);
    // The sources: read by the io_uring workers (started with the first listening source), by
    // epoll tasks, or by their file threads.
    let (fatal_tx, mut fatal_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let running = Arc::new(Running::new(running::Parts {
        read_loop: match mode {
            Loop::Uring => ReadLoop::Uring(Default::default()),
            Loop::Epoll => ReadLoop::Epoll,
        },
        tasks: readiness::Shared {
            counters: Arc::clone(&counters),
            channel: cfg.channel.clone(),
            shutdown: Arc::clone(&shutdown),
            stop: stop_rx,
        },
        workers: cfg.workers.get(),
        runtime: runtime.handle().clone(),
        common: Common {
            ids: Arc::clone(&ids),
            latency_field: latency_field.clone(),
            registry: Arc::clone(&registry),
        },
        template: tx.clone(),
        next_stream: cfg.streams.len(),
        counters: Arc::clone(&counters),
        channel: cfg.channel.clone(),
        reply_hub: reply_hub.clone(),
        fatal: fatal_tx,
        shutdown: Arc::clone(&shutdown),
        buf_size: cfg
            .sources
            .iter()
            .filter(|s| s.is_stream_server())
            .map(|s| s.buf_size().get())
            .max()
            .unwrap_or(65536),
    }));
    for ((i, src), b) in cfg.sources.iter().enumerate().zip(bound) {
        let rt = running.start(src.clone(), b, i, tx.only(&[i]), replied[i]);
        stream_metas[i] = Some((Arc::clone(&rt.meta), rt.describe()));
        let verb = if rt.listener().is_some() {
            "listening on"
        } else {
            "reading"
        };
        eprintln!(
            "ringway: {verb} {} (source {:?}, codec {}, io_mode {mode}, {} workers)",
            rt.describe(),
            src.name(),
            src.codec(),
            cfg.workers
        );
    }
    let policy = tx.policy();
    drop(tx);
    if let Some(u) = running
        .table
        .live()
        .iter()
        .find_map(|s| match s.listener() {
            Some(Listener::Unix(u)) => Some(u.path.clone()),
            _ => None,
        })
    {
        eprintln!(
            "ringway: try: echo '{{\"hello\":\"world\"}}' | socat - UNIX-CONNECT:{}",
            u.display()
        );
    }

    // The control socket's commands see all of the above.
    let stream_metas: Vec<_> = stream_metas.into_iter().flatten().collect();
    let lanes = Arc::clone(&running.gauge);
    let (drain_tx, mut drain_rx) = tokio::sync::mpsc::unbounded_channel();
    let control_stop = tokio::sync::watch::Sender::new(false);
    let control = Arc::new(Control {
        started,
        io_mode: mode.to_string(),
        workers: cfg.workers.get(),
        counters: Arc::clone(&counters),
        streams: std::sync::Mutex::new(stream_metas),
        sinks: cfg
            .sinks
            .iter()
            .enumerate()
            .map(|(i, s)| SinkView {
                cfg: s.clone(),
                inputs: std::sync::Mutex::new(
                    s.inputs
                        .iter()
                        .map(|&k| cfg.streams[k].name.clone())
                        .collect(),
                ),
                lanes: std::sync::Mutex::new(
                    s.inputs.iter().map(|&k| (k, cfg.stream_codec(k))).collect(),
                ),
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
        running: Arc::clone(&running),
        reload_lock: Default::default(),
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
    // No source is added or removed from here on. Paused sources are read again: shutting
    // down reads every connection to its end.
    running.freeze();
    for (m, _) in control.streams.lock().unwrap().iter() {
        m.pause.set(false);
    }
    registry.wake_all();
    tracing::info!(
        "shutting down: no new connections; reading open ones to EOF for up to {:?}",
        cfg.shutdown_timeout
    );
    for rt in running.table.live() {
        if let Some(l) = rt.listener() {
            l.remove_path();
        }
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
    running.request_shutdown(cfg.shutdown_timeout);
    let _ = stop_tx.send(true);

    // Reading ends by the deadline; a failing sink gives up one grace later. Past that (plus a
    // margin) something is blocked for good, e.g. a write to a pipe nobody reads: stop waiting.
    let give_up = shutdown
        .sink_give_up()
        .unwrap_or_else(std::time::Instant::now)
        + std::time::Duration::from_secs(2);
    let mut abandoned = !join_until(running.take_threads(), give_up);
    let epoll_tasks = running.take_epoll_tasks();
    abandoned |= !runtime.block_on(async {
        tokio::time::timeout_at(give_up.into(), async {
            for t in epoll_tasks {
                let _ = t.await;
            }
        })
        .await
        .is_ok()
    });
    // The table was the last holder of the sources the read loops are done with: their lanes
    // end. (Threads still blocked keep theirs, and with them their listeners, open.)
    running.table.clear();
    abandoned |= !join_until(sink_threads, give_up);
    // The replies still queued for connections are written (or dropped and counted) by then.
    if let Some(hub) = &reply_hub {
        hub.wait_idle(give_up);
    }
    if abandoned {
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
