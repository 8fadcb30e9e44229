//! The gateway: the binary's edge around the [`Topology`]. It chooses the read loop, starts the
//! runtime and the signal handlers, binds the sources (through the topology), the control socket
//! and the metrics endpoint, waits for SIGTERM/SIGINT or `drain` (SIGHUP reloads), then has the
//! topology shut down in order and writes the report.
//!
//! In: a validated [`Config`]. Out: the final counters, and whether something was abandoned.
//! What it does not do: wire sources and sinks (see `topology`), parse config or print the
//! summary (main does).

use std::sync::Arc;

use crate::config::{Config, ControlConfig, TelemetryConfig};
use crate::control::commands::{Control, SetLogLevel};
use crate::control::server;
use crate::source::unix;
use crate::telemetry::{report, Counters, Snapshot};
use crate::topology::{self, ReadLoop, Topology};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Topology(#[from] topology::Error),
    #[error(transparent)]
    Socket(#[from] unix::Error),
    #[error("{0}")]
    Runtime(String),
}

impl From<crate::source::uring::Error> for Error {
    fn from(e: crate::source::uring::Error) -> Error {
        Error::Topology(e.into())
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
    let read_loop = ReadLoop::choose(cfg.io_mode)?;
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
    let mut signals = runtime
        .block_on(async { Signals::install() })
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
    // Then the control socket (same path rules) and the metrics listener.
    let staged = topology::stage(cfg.clone())?;
    let control_socket = bind_control(&cfg)?;
    let metrics_listener = match cfg.metrics.listen {
        Some(addr) => Some(std::net::TcpListener::bind(addr).map_err(|e| {
            Error::Runtime(format!("metrics.listen {addr}: cannot listen there: {e}"))
        })?),
        None => None,
    };
    let (fatal_tx, mut fatal_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let topology = Arc::new(Topology::start(
        staged,
        topology::Env {
            read_loop,
            runtime: runtime.handle().clone(),
            fatal: fatal_tx,
        },
    )?);
    let (drain_tx, mut drain_rx) = tokio::sync::mpsc::unbounded_channel();
    let control = Arc::new(Control {
        started,
        topology: Arc::clone(&topology),
        log_level: std::sync::Mutex::new(hooks.log_level),
        set_log_level: hooks.set_log_level,
        drain: drain_tx,
        reload_lock: Default::default(),
    });
    let control_stop = tokio::sync::watch::Sender::new(false);
    // (The control socket's path is removed when `control_socket` is dropped, at the end.)
    serve_control(
        &runtime,
        &control,
        &control_socket,
        metrics_listener,
        cfg.control.clone(),
        &control_stop,
    );

    // Wait for a signal, the control socket's `drain` (or a fatal worker error). SIGHUP
    // reloads the config, as the control socket's `reload` does.
    let fatal = runtime.block_on(async {
        loop {
            tokio::select! {
                _ = signals.term.recv() => return None,
                _ = signals.int.recv() => return None,
                Some(()) = drain_rx.recv() => {
                    tracing::info!("drain requested on the control socket");
                    return None;
                }
                Some(e) = fatal_rx.recv() => return Some(e),
                _ = signals.hup.recv() => {
                    if let Err(e) = control.reload().await {
                        tracing::error!("SIGHUP: reload refused: {e}");
                    }
                }
            }
        }
    });
    topology.begin_shutdown();
    // A (further) signal means: stop now, without draining.
    runtime.spawn(async move {
        tokio::select! {
            _ = signals.term.recv() => {}
            _ = signals.int.recv() => {}
        }
        eprintln!("ringway: second signal: exiting at once; events not yet written are lost");
        std::process::exit(130);
    });
    let abandoned = topology.finish_shutdown(&runtime);
    drop(control_stop);
    runtime.shutdown_background();
    drop(control_socket);
    write_report(&topology.counters, &cfg.telemetry);
    match fatal {
        Some(e) => Err(Error::Runtime(e)),
        None => Ok(Outcome {
            counters: topology.counters.snapshot(),
            abandoned,
        }),
    }
}

/// The signals the gateway obeys: TERM and INT shut down (twice: at once), HUP reloads.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }
}

/// The control socket, bound like a source's (same path rules), before anything is read.
fn bind_control(cfg: &Config) -> Result<Option<unix::BoundSocket>, Error> {
    if !cfg.control.enabled {
        return Ok(None);
    }
    Ok(Some(unix::bind_socket(
        &unix::Spec {
            name: "[control]",
            path: &cfg.control.path,
            permissions: cfg.control.permissions,
            owner: None,
            group: None,
            backlog: 128,
        },
        cfg.sources.len(),
    )?))
}

/// Serve `/metrics` and the control socket on the runtime (until it stops; the control socket
/// until `stop` is dropped, so a drain can be watched with `stats`).
fn serve_control(
    runtime: &tokio::runtime::Runtime,
    control: &Arc<Control>,
    socket: &Option<unix::BoundSocket>,
    metrics: Option<std::net::TcpListener>,
    cfg: ControlConfig,
    stop: &tokio::sync::watch::Sender<bool>,
) {
    if let Some(l) = metrics {
        if let Ok(addr) = l.local_addr() {
            eprintln!("ringway: metrics at http://{addr}/metrics");
        }
        runtime.spawn(crate::control::metrics::serve(l, Arc::clone(control)));
    }
    let Some(sock) = socket.as_ref() else {
        return;
    };
    match sock.listener.try_clone() {
        Ok(l) => {
            runtime.spawn(server::serve(l, cfg, Arc::clone(control), stop.subscribe()));
            eprintln!(
                "ringway: control socket at {} (try: ringway ctl --socket {} stats)",
                sock.path.display(),
                sock.path.display()
            );
        }
        Err(e) => tracing::error!("control socket: {e}; it is not served"),
    }
}

/// The latency line, and the report files when `telemetry.report_dir` is set.
fn write_report(counters: &Counters, telemetry: &TelemetryConfig) {
    let hist = counters.histograms();
    if !hist.ingest_to_sink.is_empty() {
        tracing::info!("latency: {}", hist.brief());
    }
    let Some(dir) = &telemetry.report_dir else {
        return;
    };
    let snapshot = counters.snapshot();
    match report::write(dir, &snapshot, &hist, telemetry.latency_field.as_deref()) {
        Ok(files) => tracing::info!("report written: {} files in {}", files.len(), dir.display()),
        Err((path, e)) => tracing::error!("cannot write the report {}: {e}", path.display()),
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
