//! Who sent a batch: the source ([`SourceMeta`]) and the connection ([`ConnMeta`]), with the
//! counters each keeps and the way back to the connection ([`ReplyTarget`]).

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};

use tokio::sync::Notify;

use super::batch::DeliveryTarget;
use super::signal::Pause;

/// How the lines of a source are validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// One JSON document per line.
    Json,
    /// UTF-8 text.
    String,
    /// Anything.
    Binary,
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Codec::Json => "json",
            Codec::String => "string",
            Codec::Binary => "binary",
        })
    }
}

/// Where a stream of events comes from: a source's type, or a client sink's replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    UnixSocketServer,
    TcpServer,
    WsServer,
    File,
    UnixSocketClient,
    WsClient,
}

impl SourceKind {
    /// As written in the config, and as the key of the envelope's metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::UnixSocketServer => "unix_socket_server",
            SourceKind::TcpServer => "tcp_server",
            SourceKind::WsServer => "ws_server",
            SourceKind::File => "file",
            SourceKind::UnixSocketClient => "unix_socket_client",
            SourceKind::WsClient => "ws_client",
        }
    }
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One source's share of the counters (for `stats` and `/metrics`): added to once per batch.
#[derive(Debug, Default)]
pub struct SourceCounters {
    pub events_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub connections_accepted: AtomicU64,
    pub connections_active: AtomicU64,
}

/// One connection's counters (for `connections`): added to once per batch.
#[derive(Debug, Default)]
pub struct ConnCounters {
    pub events_in: AtomicU64,
    pub bytes_in: AtomicU64,
}

/// The way back to a connection: its reply queue, filled by a `reply` sink and drained by a
/// writer of the connection's own. The read loops ask it whether they may read on.
pub trait ReplyTarget: Send + Sync + std::fmt::Debug {
    /// More is queued than the bound: the source should stop reading this connection.
    fn backlogged(&self) -> bool;
    /// Notified when the queue falls back under its bound (a permit is kept if nobody waits).
    fn room(&self) -> &Notify;
    /// Queue `bytes`, whose events end at `ends` (after their separators), without blocking.
    /// Returns how many events were dropped instead (the connection is gone).
    fn push(&self, bytes: &[u8], ends: &mut dyn Iterator<Item = usize>) -> u64;
}

/// What every connection of a source shares.
#[derive(Debug)]
pub struct SourceMeta {
    pub name: String,
    pub kind: SourceKind,
    /// The socket path, listening address or file, as configured.
    pub path: String,
    pub codec: Codec,
    /// `[telemetry] latency_field`: events' stamps are read into `Batch::stamps`.
    pub latency_field: Option<String>,
    /// The event stream (the channel's lane) this source's batches go to.
    pub stream: usize,
    pub counters: SourceCounters,
    /// `pause` / `resume` from the control socket.
    pub pause: Pause,
}

impl SourceMeta {
    /// A json `unix_socket_server` source's metadata, everything else at its default (for
    /// tests and tools).
    pub fn plain(name: &str, stream: usize) -> SourceMeta {
        SourceMeta {
            name: name.into(),
            kind: SourceKind::UnixSocketServer,
            path: String::new(),
            codec: Codec::Json,
            latency_field: None,
            stream,
            counters: Default::default(),
            pause: Default::default(),
        }
    }
}

/// Who sent a batch: fixed for the life of a connection, shared by all its batches.
#[derive(Debug)]
pub struct ConnMeta {
    pub source: Arc<SourceMeta>,
    /// Unique for the life of the process.
    pub id: u64,
    /// SO_PEERCRED of a UNIX peer (else 0, u32::MAX, u32::MAX).
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
    /// The address of a TCP or WebSocket peer.
    pub peer_addr: Option<std::net::SocketAddr>,
    /// The connection's envelope prefix, rendered by the first sink that needs it.
    pub envelope: OnceLock<Box<[u8]>>,
    /// Where a `reply` sink writes this connection's events back (when there is one).
    pub reply: Option<Box<dyn ReplyTarget>>,
    /// Told how each batch of the connection ended (see [`DeliveryTarget`]); None: nobody asks.
    pub on_delivery: Option<Arc<dyn DeliveryTarget>>,
    pub opened: std::time::Instant,
    pub counters: ConnCounters,
    /// The io_uring worker reading it (None: a readiness task, or a thread of its own).
    pub worker: Option<usize>,
    /// Notified when the control socket asks for this connection to be closed (tokio tasks).
    pub close: Notify,
}

impl ConnMeta {
    /// A connection of `source`, with no credentials, peer address or reply queue yet.
    pub fn new(source: Arc<SourceMeta>, id: u64) -> ConnMeta {
        ConnMeta {
            source,
            id,
            pid: 0,
            uid: u32::MAX,
            gid: u32::MAX,
            peer_addr: None,
            envelope: OnceLock::new(),
            reply: None,
            on_delivery: None,
            opened: std::time::Instant::now(),
            counters: ConnCounters::default(),
            worker: None,
            close: Notify::new(),
        }
    }

    /// A reply sink holds more for this connection than its queue bound: stop reading from it.
    #[inline]
    pub fn reply_backlogged(&self) -> bool {
        self.reply.as_ref().is_some_and(|r| r.backlogged())
    }

    /// May this connection be read now? Not while its replies are backlogged, nor while its
    /// source is paused. Every read loop asks this, and only this.
    #[inline]
    pub fn should_read(&self) -> bool {
        self.should_read_closing(false)
    }

    /// [`ConnMeta::should_read`] for a connection that may be `closing` (a WebSocket whose
    /// close frame went out): a closing connection is read to its end even while its source is
    /// paused, but never past its reply bound.
    #[inline]
    pub fn should_read_closing(&self, closing: bool) -> bool {
        !self.reply_backlogged() && (closing || !self.source.pause.is_paused())
    }
}
