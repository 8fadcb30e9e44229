//! The topology: the sources, lanes and sinks a [`Config`] describes, running; and the one way
//! they change.
//!
//! Stage: above sources and sinks, below the gateway and the control socket. In: a validated
//! [`Config`], at start-up and on every `reload`. Out: running sources (io_uring workers,
//! readiness tasks, file threads), the channel's lanes, the sink thread and the client sinks'
//! threads, and what `stats` and `/metrics` read of them.
//!
//! One path for both: [`diff`] compares the running config with the new one (at start-up, with
//! nothing) and gives a [`Plan`]; the added sources are bound before anything changes (a taken
//! path or port fails the start or refuses the reload); then the plan is applied. Shutdown runs in
//! order: sources stop accepting and read their connections to EOF (or the deadline), the read
//! loops end and drop their lanes, the sinks drain them, flush and end (see `shutdown`).
//!
//! What it does not do: read config files, handle signals or serve the control socket (the
//! gateway and `control` do, on top of this).

mod build;
mod diff;
mod reload;
mod shutdown;
pub mod sources;

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub use build::{stage, Env, Staged};
pub use diff::{diff, replied_sources, Plan};
pub use reload::ReloadError;
pub use sources::{Bound, ReadLoop, Running};

use crate::channel::{LaneGauge, Policy};
use crate::codec::Codec;
use crate::config::{Config, SinkConfig};
use crate::event::{Shutdown, SourceMeta, Tracker};
use crate::reply::ReplyHub;
use crate::sink::client::Spool;
use crate::sink::{self, Reconfig};
use crate::source::{uring, Registry};
use crate::telemetry::{Counters, SinkCounters};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Uring(#[from] uring::Error),
    #[error(transparent)]
    Source(#[from] sources::Error),
    #[error(transparent)]
    Sink(#[from] sink::Error),
    #[error("{0}")]
    Runtime(String),
}

/// A sink as `stats` and `/metrics` show it.
pub struct SinkView {
    pub cfg: SinkConfig,
    /// The streams it takes, by name (`reload` may change them).
    pub inputs: Mutex<Vec<String>>,
    /// The lanes it takes (with their codec), including those of removed sources still
    /// draining.
    pub lanes: Mutex<Vec<(usize, Codec)>>,
    pub counters: Arc<SinkCounters>,
    pub spool: Option<Arc<Spool>>,
}

/// The running gateway's sources, lanes and sinks.
pub struct Topology {
    pub workers: usize,
    pub counters: Arc<Counters>,
    /// Every event stream's source (sources, then client sinks' replies, then sources added by
    /// `reload`; removed ones leave), with where it listens or reads.
    pub streams: Mutex<Vec<(Arc<SourceMeta>, String)>>,
    pub sinks: Vec<SinkView>,
    /// Each lane's depth.
    pub lanes: Arc<LaneGauge>,
    pub registry: Arc<Registry>,
    /// The running sources.
    pub sources: Arc<Running>,
    /// The running config (replaced by a successful `reload`).
    pub config: Mutex<Config>,
    /// The channel's `when_full`, changeable live.
    pub policy: Arc<Policy>,
    reconfig: Arc<Reconfig>,
    shutdown: Arc<Shutdown>,
    reply_hub: Option<Arc<ReplyHub>>,
    /// Tells the readiness tasks to stop accepting.
    stop: tokio::sync::watch::Sender<bool>,
    /// The sink thread and the client sinks' threads.
    sink_threads: Mutex<Vec<JoinHandle<()>>>,
    /// Their guards: shutdown waits on it.
    writers: Arc<Tracker>,
    /// The read loops' threads' guards (io_uring workers, file sources).
    readers: Arc<Tracker>,
}

impl Topology {
    /// `uring` or `epoll`: which loop reads the listening sources.
    pub fn io_mode(&self) -> &'static str {
        self.sources.read_loop.name()
    }

    /// Add a started source to the streams `stats` shows (kept in stream order).
    fn show_stream(&self, meta: Arc<SourceMeta>, at: String) {
        let mut streams = self.streams.lock().unwrap();
        streams.push((meta, at));
        streams.sort_by_key(|(m, _)| m.stream);
    }
}
