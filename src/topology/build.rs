//! Start-up: the diff from nothing, applied. Every source is bound first ([`stage`]); then the
//! channel, the sink thread, the client sinks and the sources start ([`Topology::start`]).

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use super::sources::{self, Bound, Parts, ReadLoop, Running};
use super::{diff, Error, SinkView, Topology};
use crate::channel::{self, Sender};
use crate::config::{ClientTarget, Config, SinkKind, SourceConfig, SourceKind, StreamOrigin};
use crate::event::{Shutdown, SourceMeta, Tracker};
use crate::reply::ReplyHub;
use crate::sink::{self, client, Reconfig};
use crate::source::{readiness, Common, Listener, Registry, SourceRt};
use crate::telemetry::{Counters, SinkCounters};

/// A config whose sources are bound and nothing started: a taken path or port has already
/// failed. Start it with [`Topology::start`].
pub struct Staged {
    cfg: Config,
    bound: Vec<(SourceConfig, Bound)>,
}

/// What the topology runs on, lent by the gateway.
pub struct Env {
    pub read_loop: ReadLoop,
    /// A multi-thread runtime with IO and time enabled: its workers drive the WebSocket sources,
    /// the reply writers and (through `Handle::block_on` from their own threads) the ws_client
    /// links. [`Topology::start`] refuses a current-thread one.
    pub runtime: tokio::runtime::Handle,
    /// A worker that cannot go on reports here (the gateway then shuts down).
    pub fatal: tokio::sync::mpsc::UnboundedSender<String>,
}

/// Bind every source of `cfg` (the plan from nothing adds them all), starting nothing.
pub fn stage(cfg: Config) -> Result<Staged, Error> {
    let plan = diff(None, &cfg).expect("the diff from nothing needs no restart");
    let bound = bind_added(&cfg, &plan.added, 0)?;
    Ok(Staged { cfg, bound })
}

/// Bind the sources `added` (indices in `cfg`), their table places counted from `first`.
pub(super) fn bind_added(
    cfg: &Config,
    added: &[usize],
    first: usize,
) -> Result<Vec<(SourceConfig, Bound)>, sources::Error> {
    let mut bound = Vec::with_capacity(added.len());
    for (n, &i) in added.iter().enumerate() {
        let src = &cfg.sources[i];
        bound.push((
            src.clone(),
            sources::bind(src, cfg.workers.get(), first + n)?,
        ));
    }
    Ok(bound)
}

/// The sink side, built: what the sources and the views need of it.
struct Sinks {
    threads: Vec<std::thread::JoinHandle<()>>,
    views: Vec<SinkView>,
    /// The client sinks' reply streams.
    replies: Vec<(Arc<SourceMeta>, String)>,
    reconfig: Arc<Reconfig>,
    reply_hub: Option<Arc<ReplyHub>>,
}

impl Topology {
    /// Start what `staged` describes: the channel's lanes, the sink thread, each client sink,
    /// then every source.
    pub fn start(staged: Staged, env: Env) -> Result<Topology, Error> {
        let Staged { cfg, bound } = staged;
        if env.runtime.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return Err(Error::Runtime(
                "the topology needs a multi-thread tokio runtime (its ws_client links block_on it from their own threads)".into(),
            ));
        }
        let counters = Arc::new(Counters::default());
        let shutdown = Arc::new(Shutdown::default());
        let (tx, lanes) = channel::bounded(
            cfg.streams.len(),
            cfg.channel.capacity.get(),
            cfg.channel.when_full,
            Arc::clone(&counters),
        );
        let ids = Arc::new(AtomicU64::new(1));
        let writers = Arc::new(Tracker::default());
        let sinks = start_sinks(&cfg, &env, lanes, &tx, &counters, &shutdown, &ids, &writers)?;
        let registry = Arc::new(Registry::default());
        let readers = Arc::new(Tracker::default());
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let running = Arc::new(Running::new(Parts {
            read_loop: env.read_loop,
            tasks: readiness::Shared {
                counters: Arc::clone(&counters),
                channel: cfg.channel.clone(),
                shutdown: Arc::clone(&shutdown),
                stop: stop_rx,
            },
            workers: cfg.workers.get(),
            runtime: env.runtime,
            common: Common {
                ids,
                latency_field: cfg.telemetry.latency_field.clone(),
                registry: Arc::clone(&registry),
            },
            template: tx.clone(),
            next_stream: cfg.streams.len(),
            counters: Arc::clone(&counters),
            channel: cfg.channel.clone(),
            reply_hub: sinks.reply_hub.clone(),
            fatal: env.fatal,
            shutdown: Arc::clone(&shutdown),
            buf_size: cfg
                .sources
                .iter()
                .filter(|s| s.is_stream_server())
                .map(|s| s.buf_size().get())
                .max()
                .unwrap_or(65536),
            readers: Arc::clone(&readers),
        }));
        let topology = Topology {
            workers: cfg.workers.get(),
            counters,
            streams: Mutex::new(sinks.replies),
            sinks: sinks.views,
            lanes: Arc::clone(&running.gauge),
            registry,
            sources: running,
            policy: tx.policy(),
            reconfig: sinks.reconfig,
            shutdown,
            reply_hub: sinks.reply_hub,
            stop,
            sink_threads: Mutex::new(sinks.threads),
            writers,
            readers,
            config: Mutex::new(cfg.clone()),
        };
        let starts = bound
            .into_iter()
            .enumerate()
            .map(|(i, (src, b))| (src, b, i, tx.only(&[i])))
            .collect();
        drop(tx);
        for rt in topology.start_sources(&cfg, starts) {
            let verb = if rt.listener().is_some() {
                "listening on"
            } else {
                "reading"
            };
            eprintln!(
                "ringway: {verb} {} (source {:?}, codec {}, io_mode {}, {} workers)",
                rt.describe(),
                rt.meta.name,
                rt.cfg.codec(),
                topology.io_mode(),
                topology.workers
            );
        }
        topology.print_try_hint();
        Ok(topology)
    }

    /// Start bound sources, each with its stream index and a sender holding its lane; `cfg` is
    /// the config they come from.
    pub(super) fn start_sources(
        &self,
        cfg: &Config,
        starts: Vec<(SourceConfig, Bound, usize, Sender)>,
    ) -> Vec<Arc<SourceRt>> {
        let replied = super::replied_sources(cfg);
        let mut started = Vec::with_capacity(starts.len());
        for (src, b, k, tx) in starts {
            let i = cfg.sources.iter().position(|s| s.name() == src.name());
            let reply = i.is_some_and(|i| replied[i]);
            let rt = self.sources.start(src, b, k, tx, reply);
            self.show_stream(Arc::clone(&rt.meta), rt.describe());
            started.push(rt);
        }
        started
    }

    /// How to say hello to the first UNIX source.
    fn print_try_hint(&self) {
        let first_unix = self
            .sources
            .table
            .live()
            .iter()
            .find_map(|s| match s.listener() {
                Some(Listener::Unix(u)) => Some(u.path.clone()),
                _ => None,
            });
        if let Some(path) = first_unix {
            eprintln!(
                "ringway: try: echo '{{\"hello\":\"world\"}}' | socat - UNIX-CONNECT:{}",
                path.display()
            );
        }
    }
}

/// The sink thread (every file/stdout/null/reply sink and the dead letter) and one thread per
/// client sink, whose peer's replies are event streams of their own.
#[allow(clippy::too_many_arguments)]
fn start_sinks(
    cfg: &Config,
    env: &Env,
    lanes: Vec<channel::Receiver>,
    tx: &Sender,
    counters: &Arc<Counters>,
    shutdown: &Arc<Shutdown>,
    ids: &Arc<AtomicU64>,
    writers: &Arc<Tracker>,
) -> Result<Sinks, Error> {
    let reply_hub = cfg.sinks.iter().find_map(|s| match &s.kind {
        SinkKind::Reply(r) => Some(Arc::new(ReplyHub::new(
            env.runtime.clone(),
            r.clone(),
            Arc::clone(counters),
        ))),
        _ => None,
    });
    let room = Arc::new(tokio::sync::Notify::new());
    let reconfig = Arc::new(Reconfig::default());
    let sink_counters: Vec<Arc<SinkCounters>> = cfg.sinks.iter().map(|_| Arc::default()).collect();
    let spools: Vec<_> = cfg
        .sinks
        .iter()
        .map(|s| client::spool_for(s, &room))
        .collect();
    let mut threads = vec![sink::start(
        cfg,
        sink::Wiring {
            lanes,
            counters: Arc::clone(counters),
            shutdown: Arc::clone(shutdown),
            spools: spools.clone(),
            room,
            reply_hub: reply_hub.clone(),
            sink_counters: sink_counters.clone(),
            reconfig: Arc::clone(&reconfig),
            done: writers.guard(),
        },
    )?];
    let mut replies = Vec::new();
    for (k, stream) in cfg.streams.iter().enumerate() {
        let StreamOrigin::Replies(i) = stream.origin else {
            continue;
        };
        let SinkKind::Client(u) = &cfg.sinks[i].kind else {
            continue;
        };
        let meta = Arc::new(SourceMeta {
            name: stream.name.clone(),
            kind: match u.target {
                ClientTarget::Unix(_) => SourceKind::UnixSocketClient,
                ClientTarget::Ws(_) => SourceKind::WsClient,
            },
            path: u.target.describe(),
            codec: cfg.sinks[i].format.codec,
            latency_field: cfg.telemetry.latency_field.clone(),
            stream: k,
            counters: Default::default(),
            pause: Default::default(),
        });
        let at = match &u.target {
            ClientTarget::Unix(p) => format!("unix:{}", p.display()),
            ClientTarget::Ws(w) => w.url.clone(),
        };
        replies.push((Arc::clone(&meta), at));
        threads.push(client::start(client::Args {
            name: cfg.sinks[i].name.clone(),
            cfg: (**u).clone(),
            spool: Arc::clone(spools[i].as_ref().expect("a client sink has a spool")),
            counters: Arc::clone(counters),
            shutdown: Arc::clone(shutdown),
            sender: tx.only(&[k]),
            replies: meta,
            ids: Arc::clone(ids),
            channel: cfg.channel.clone(),
            done: writers.guard(),
            runtime: env.runtime.clone(),
        }));
    }
    let views = cfg
        .sinks
        .iter()
        .enumerate()
        .map(|(i, s)| SinkView {
            cfg: s.clone(),
            inputs: Mutex::new(
                s.inputs
                    .iter()
                    .map(|&k| cfg.streams[k].name.clone())
                    .collect(),
            ),
            lanes: Mutex::new(s.inputs.iter().map(|&k| (k, cfg.stream_codec(k))).collect()),
            counters: Arc::clone(&sink_counters[i]),
            spool: spools[i].clone(),
        })
        .collect();
    Ok(Sinks {
        threads,
        views,
        replies,
        reconfig,
        reply_hub,
    })
}
