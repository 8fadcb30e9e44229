//! Sources in the config: validation of each `[[sources]]` table into its typed form.

use std::net::{SocketAddr, ToSocketAddrs};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use super::values::{parse_permissions, resolve_id, IdKind};
use super::{
    invalid, Error, RawFileSource, RawOversized, RawProcessor, RawTcpServer, RawUnixServer,
    RawWsServer, MAX_LEN,
};
use crate::codec::Codec;
use crate::framing::{FramingConfig, Oversized};

#[derive(Debug, Clone)]
pub enum SourceConfig {
    UnixSocketServer(UnixServerConfig),
    TcpServer(TcpServerConfig),
    WsServer(WsServerConfig),
    File(FileSourceConfig),
}

impl SourceConfig {
    pub fn name(&self) -> &str {
        match self {
            SourceConfig::UnixSocketServer(u) => &u.name,
            SourceConfig::TcpServer(t) => &t.name,
            SourceConfig::WsServer(w) => &w.name,
            SourceConfig::File(f) => &f.name,
        }
    }

    pub fn codec(&self) -> Codec {
        match self {
            SourceConfig::UnixSocketServer(u) => u.codec,
            SourceConfig::TcpServer(t) => t.codec,
            SourceConfig::WsServer(w) => w.codec,
            SourceConfig::File(f) => f.codec,
        }
    }

    pub fn framing(&self) -> &FramingConfig {
        match self {
            SourceConfig::UnixSocketServer(u) => &u.framing,
            SourceConfig::TcpServer(t) => &t.framing,
            SourceConfig::WsServer(w) => &w.framing,
            SourceConfig::File(f) => &f.framing,
        }
    }

    /// Receive buffer size (bytes per read).
    pub fn buf_size(&self) -> NonZeroUsize {
        match self {
            SourceConfig::UnixSocketServer(u) => u.buf_size,
            SourceConfig::TcpServer(t) => t.buf_size,
            // (Messages arrive whole; this only sizes nothing.)
            SourceConfig::WsServer(_) => NonZeroUsize::new(64 * 1024).unwrap(),
            SourceConfig::File(f) => f.buf_size,
        }
    }

    /// The source's type.
    pub fn kind(&self) -> SourceKind {
        match self {
            SourceConfig::UnixSocketServer(_) => SourceKind::UnixSocketServer,
            SourceConfig::TcpServer(_) => SourceKind::TcpServer,
            SourceConfig::WsServer(_) => SourceKind::WsServer,
            SourceConfig::File(_) => SourceKind::File,
        }
    }

    /// Where it listens or reads, for logs and envelopes.
    pub fn address(&self) -> String {
        match self {
            SourceConfig::UnixSocketServer(u) => u.path.to_string_lossy().into_owned(),
            SourceConfig::TcpServer(t) => t.addr.to_string(),
            SourceConfig::WsServer(w) => w.addr.to_string(),
            SourceConfig::File(f) => f.path.to_string_lossy().into_owned(),
        }
    }

    /// A UNIX or TCP server (read by the io_uring workers or the epoll tasks)?
    pub fn is_stream_server(&self) -> bool {
        matches!(
            self,
            SourceConfig::UnixSocketServer(_) | SourceConfig::TcpServer(_)
        )
    }

    /// The TCP address a `tcp_server` or `ws_server` listens on.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        match self {
            SourceConfig::TcpServer(t) => Some(t.addr),
            SourceConfig::WsServer(w) => Some(w.addr),
            _ => None,
        }
    }

    /// Can a `reply` sink write back to its connections?
    pub fn can_reply(&self) -> bool {
        matches!(
            self,
            SourceConfig::UnixSocketServer(_)
                | SourceConfig::TcpServer(_)
                | SourceConfig::WsServer(_)
        )
    }
}

#[derive(Debug, Clone)]
pub struct UnixServerConfig {
    pub name: String,
    pub path: PathBuf,
    /// File mode bits of the socket (e.g. 0o600).
    pub permissions: u32,
    pub owner: Option<u32>,
    pub group: Option<u32>,
    pub buf_size: NonZeroUsize,
    pub backlog: u32,
    pub codec: Codec,
    pub framing: FramingConfig,
}

#[derive(Debug, Clone)]
pub struct TcpServerConfig {
    pub name: String,
    /// Port 0 picks a free port at start (printed in the "listening on" line).
    pub addr: SocketAddr,
    pub buf_size: NonZeroUsize,
    pub backlog: u32,
    pub no_delay: bool,
    pub codec: Codec,
    pub framing: FramingConfig,
}

#[derive(Debug, Clone)]
pub struct WsServerConfig {
    pub name: String,
    /// Port 0 picks a free port at start.
    pub addr: SocketAddr,
    /// `wss://`: the server's certificate chain and key (PEM files), loaded at start.
    pub tls: Option<ServerTls>,
    pub backlog: u32,
    pub no_delay: bool,
    pub codec: Codec,
    pub framing: FramingConfig,
    /// A `separate` preprocessor splits each message into lines; without one, each message is
    /// one event.
    pub split: bool,
    /// TCP accept to WebSocket upgrade (TLS included) must finish within this.
    pub handshake_timeout: Duration,
    /// A longer message is refused with close code 1009 (the connection ends).
    pub max_message_size: usize,
    /// A ping every `ping_interval`; no pong (or any frame) within `ping_timeout` ends the
    /// connection. None: no pings.
    pub ping_interval: Option<Duration>,
    pub ping_timeout: Duration,
    /// More connections than this at once are refused (HTTP 503) at the upgrade.
    pub max_connections: usize,
}

#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct FileSourceConfig {
    pub name: String,
    pub path: PathBuf,
    /// Keep reading as the file grows, and reopen it when it is replaced (like `tail -F`).
    pub follow: bool,
    pub buf_size: NonZeroUsize,
    pub codec: Codec,
    pub framing: FramingConfig,
}

fn buf_size(v: Option<usize>, field: &str) -> Result<NonZeroUsize, Error> {
    match v {
        None => Ok(NonZeroUsize::new(64 * 1024).unwrap()),
        Some(n) if (64..=1024 * 1024).contains(&n) => Ok(NonZeroUsize::new(n).unwrap()),
        Some(n) => Err(invalid(
            format!("{field}.buf_size"),
            format!("{n} is out of range: use 64 bytes to 1 MiB"),
        )),
    }
}

pub(super) fn framing(list: Option<&[RawProcessor]>, field: &str) -> Result<FramingConfig, Error> {
    match list {
        None => Ok(FramingConfig::default()),
        Some(list) => framing_from(list, &format!("{field}.preprocessors")),
    }
}

/// A listening address: `url` ("127.0.0.1:4242", optionally with one of `schemes`), or `host`
/// (default 127.0.0.1) and `port`.
fn listen_addr(
    url: &Option<String>,
    host: &Option<String>,
    port: Option<u16>,
    schemes: &[&str],
    field: &str,
) -> Result<SocketAddr, Error> {
    let text = match (url, host, port) {
        (Some(u), None, None) => {
            let bare = schemes.iter().find_map(|s| u.strip_prefix(s)).unwrap_or(u);
            bare.trim_end_matches('/').to_string()
        }
        (None, host, Some(port)) => {
            let h = host.as_deref().unwrap_or("127.0.0.1");
            if h.contains(':') && !h.starts_with('[') {
                format!("[{h}]:{port}")
            } else {
                format!("{h}:{port}")
            }
        }
        (None, _, None) => {
            return Err(invalid(
                format!("{field}.url"),
                "missing: give url = \"127.0.0.1:4242\" (or host and port)",
            ))
        }
        (Some(_), _, _) => {
            return Err(invalid(
                format!("{field}.url"),
                "give either url or host and port, not both",
            ))
        }
    };
    text.to_socket_addrs()
        .map_err(|e| {
            invalid(
                format!("{field}.url"),
                format!("{text:?} is not a host:port address ({e})"),
            )
        })?
        .next()
        .ok_or_else(|| {
            invalid(
                format!("{field}.url"),
                format!("{text:?} resolves to no address"),
            )
        })
}

impl RawTcpServer {
    pub(super) fn validate(self, field: &str, index: usize) -> Result<TcpServerConfig, Error> {
        let addr = listen_addr(&self.url, &self.host, self.port, &["tcp://"], field)?;
        Ok(TcpServerConfig {
            name: self.name.unwrap_or_else(|| format!("tcp_server_{index}")),
            addr,
            buf_size: buf_size(self.buf_size, field)?,
            backlog: self.backlog.unwrap_or(1024),
            no_delay: self.socket_options.no_delay,
            codec: self.codec.into(),
            framing: framing(self.preprocessors.as_deref(), field)?,
        })
    }
}

impl RawWsServer {
    pub(super) fn validate(self, field: &str, index: usize) -> Result<WsServerConfig, Error> {
        let addr = listen_addr(
            &self.url,
            &self.host,
            self.port,
            &["ws://", "wss://"],
            field,
        )?;
        let dur = |v: &Option<super::RawDuration>, default, key: &str| {
            super::sink::duration(v, default, &format!("{field}.{key}"))
        };
        let handshake_timeout = dur(
            &self.handshake_timeout,
            Duration::from_secs(10),
            "handshake_timeout",
        )?;
        let ping_interval = dur(&self.ping_interval, Duration::ZERO, "ping_interval")?;
        let ping_timeout = dur(&self.ping_timeout, Duration::from_secs(30), "ping_timeout")?;
        if handshake_timeout.is_zero() || ping_timeout.is_zero() {
            return Err(invalid(
                format!("{field}.handshake_timeout"),
                "handshake_timeout and ping_timeout must be above 0",
            ));
        }
        let max_message_size = self.max_message_size.unwrap_or(16 << 20);
        if !(64..=(1 << 30)).contains(&max_message_size) {
            return Err(invalid(
                format!("{field}.max_message_size"),
                format!("{max_message_size} is out of range: use 64 bytes to 1 GiB"),
            ));
        }
        let max_connections = self.max_connections.unwrap_or(10_000);
        if max_connections == 0 {
            return Err(invalid(
                format!("{field}.max_connections"),
                "must be at least 1",
            ));
        }
        if let Some(t) = &self.tls {
            for (key, path) in [("cert", &t.cert), ("key", &t.key)] {
                if path.as_os_str().is_empty() {
                    return Err(invalid(format!("{field}.tls.{key}"), "must not be empty"));
                }
            }
        }
        Ok(WsServerConfig {
            name: self.name.unwrap_or_else(|| format!("ws_server_{index}")),
            addr,
            tls: self.tls.map(|t| ServerTls {
                cert: t.cert,
                key: t.key,
            }),
            backlog: self.backlog.unwrap_or(128),
            no_delay: self.socket_options.no_delay,
            codec: self.codec.into(),
            framing: framing(self.preprocessors.as_deref(), field)?,
            split: self.preprocessors.is_some(),
            handshake_timeout,
            max_message_size,
            ping_interval: (!ping_interval.is_zero()).then_some(ping_interval),
            ping_timeout,
            max_connections,
        })
    }
}

impl RawFileSource {
    pub(super) fn validate(self, field: &str, index: usize) -> Result<FileSourceConfig, Error> {
        if self.path.as_os_str().is_empty() {
            return Err(invalid(format!("{field}.path"), "must not be empty"));
        }
        Ok(FileSourceConfig {
            name: self.name.unwrap_or_else(|| format!("file_{index}")),
            path: self.path,
            follow: self.follow,
            buf_size: buf_size(self.buf_size, field)?,
            codec: self.codec.into(),
            framing: framing(self.preprocessors.as_deref(), field)?,
        })
    }
}

impl RawUnixServer {
    pub(super) fn validate(self, field: &str, index: usize) -> Result<UnixServerConfig, Error> {
        if self.path.as_os_str().is_empty() {
            return Err(invalid(format!("{field}.path"), "must not be empty"));
        }
        // sun_path holds 108 bytes including the terminating NUL; the socket is first bound in
        // a private directory beside the target, whose path is a little longer.
        let parent_len = self.path.parent().map_or(1, |p| p.as_os_str().len().max(1));
        if parent_len + super::values::PRIVATE_PATH_EXTRA > 107 {
            return Err(invalid(
                format!("{field}.path"),
                format!(
                    "the directory of {} is {parent_len} bytes long; a UNIX socket path holds at \
                     most 107 bytes and ringway needs {} more to bind safely: use a shorter directory",
                    self.path.display(),
                    super::values::PRIVATE_PATH_EXTRA
                ),
            ));
        }
        if self.path.as_os_str().len() > 107 {
            return Err(invalid(
                format!("{field}.path"),
                format!(
                    "{} is {} bytes; a UNIX socket path holds at most 107",
                    self.path.display(),
                    self.path.as_os_str().len()
                ),
            ));
        }
        let permissions = match &self.permissions {
            None => 0o600,
            Some(p) => {
                parse_permissions(p).map_err(|m| invalid(format!("{field}.permissions"), m))?
            }
        };
        let owner = self
            .owner
            .as_ref()
            .map(|o| resolve_id(o, IdKind::User))
            .transpose()
            .map_err(|m| invalid(format!("{field}.owner"), m))?;
        let group = self
            .group
            .as_ref()
            .map(|g| resolve_id(g, IdKind::Group))
            .transpose()
            .map_err(|m| invalid(format!("{field}.group"), m))?;
        let buf_size = buf_size(self.buf_size, field)?;
        let framing = framing(self.preprocessors.as_deref(), field)?;
        Ok(UnixServerConfig {
            name: self
                .name
                .unwrap_or_else(|| format!("unix_socket_server_{index}")),
            path: self.path,
            permissions,
            owner,
            group,
            buf_size,
            backlog: self.backlog.unwrap_or(1024),
            codec: self.codec.into(),
            framing,
        })
    }
}

pub(super) fn framing_from(list: &[RawProcessor], field: &str) -> Result<FramingConfig, Error> {
    let [one] = list else {
        return Err(invalid(
            field,
            "exactly one preprocessor is supported: [\"separate\"]",
        ));
    };
    let (name, cfg) = match one {
        RawProcessor::Name(n) => (n.as_str(), None),
        RawProcessor::Full(f) => (f.name.as_str(), Some(&f.config)),
    };
    if name != "separate" {
        return Err(invalid(
            format!("{field}[0]"),
            format!("unknown preprocessor {name:?}: the only one is \"separate\""),
        ));
    }
    let mut fc = FramingConfig::default();
    if let Some(c) = cfg {
        let f = format!("{field}[0].config");
        if let Some(s) = &c.separator {
            fc.separator = single_byte(s).map_err(|m| invalid(format!("{f}.separator"), m))?;
        }
        if let Some(m) = c.max_length {
            if m == 0 || m > MAX_LEN {
                return Err(invalid(
                    format!("{f}.max_length"),
                    "must be between 1 and 1 GiB",
                ));
            }
            fc.max_length = m;
        }
        if let Some(o) = c.oversized {
            fc.oversized = match o {
                RawOversized::Drop => Oversized::Drop,
                RawOversized::Truncate => Oversized::Truncate,
            };
        }
        if let Some(b) = c.buffered {
            fc.buffered = b;
        }
        if let Some(e) = c.emit_incomplete {
            fc.emit_incomplete = e;
        }
    }
    Ok(fc)
}

fn single_byte(s: &str) -> Result<u8, String> {
    match s.as_bytes() {
        [b] => Ok(*b),
        _ => Err(format!(
            "{s:?} is not a single byte separator such as \"\\n\""
        )),
    }
}

pub use crate::event::SourceKind;
