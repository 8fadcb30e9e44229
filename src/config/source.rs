//! Sources in the config: validation of each `[[sources]]` table into its typed form.

use std::net::{SocketAddr, ToSocketAddrs};
use std::num::NonZeroUsize;
use std::path::PathBuf;

use super::values::{parse_permissions, resolve_id, IdKind};
use super::{
    invalid, Error, RawFileSource, RawOversized, RawProcessor, RawTcpServer, RawUnixServer, MAX_LEN,
};
use crate::codec::Codec;
use crate::framing::{FramingConfig, Oversized};

#[derive(Debug, Clone)]
pub enum SourceConfig {
    UnixSocketServer(UnixServerConfig),
    TcpServer(TcpServerConfig),
    File(FileSourceConfig),
}

impl SourceConfig {
    pub fn name(&self) -> &str {
        match self {
            SourceConfig::UnixSocketServer(u) => &u.name,
            SourceConfig::TcpServer(t) => &t.name,
            SourceConfig::File(f) => &f.name,
        }
    }

    pub fn codec(&self) -> Codec {
        match self {
            SourceConfig::UnixSocketServer(u) => u.codec,
            SourceConfig::TcpServer(t) => t.codec,
            SourceConfig::File(f) => f.codec,
        }
    }

    pub fn framing(&self) -> &FramingConfig {
        match self {
            SourceConfig::UnixSocketServer(u) => &u.framing,
            SourceConfig::TcpServer(t) => &t.framing,
            SourceConfig::File(f) => &f.framing,
        }
    }

    /// Receive buffer size (bytes per read).
    pub fn buf_size(&self) -> NonZeroUsize {
        match self {
            SourceConfig::UnixSocketServer(u) => u.buf_size,
            SourceConfig::TcpServer(t) => t.buf_size,
            SourceConfig::File(f) => f.buf_size,
        }
    }

    /// The source's type.
    pub fn kind(&self) -> SourceKind {
        match self {
            SourceConfig::UnixSocketServer(_) => SourceKind::UnixSocketServer,
            SourceConfig::TcpServer(_) => SourceKind::TcpServer,
            SourceConfig::File(_) => SourceKind::File,
        }
    }

    /// Where it listens or reads, for logs and envelopes.
    pub fn address(&self) -> String {
        match self {
            SourceConfig::UnixSocketServer(u) => u.path.to_string_lossy().into_owned(),
            SourceConfig::TcpServer(t) => t.addr.to_string(),
            SourceConfig::File(f) => f.path.to_string_lossy().into_owned(),
        }
    }

    /// Can a `reply` sink write back to its connections?
    pub fn can_reply(&self) -> bool {
        matches!(
            self,
            SourceConfig::UnixSocketServer(_) | SourceConfig::TcpServer(_)
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

impl RawTcpServer {
    pub(super) fn validate(self, field: &str, index: usize) -> Result<TcpServerConfig, Error> {
        let text = match (&self.url, &self.host, self.port) {
            (Some(u), None, None) => u
                .strip_prefix("tcp://")
                .unwrap_or(u)
                .trim_end_matches('/')
                .to_string(),
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
        let addr = text
            .to_socket_addrs()
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
            })?;
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
        if parent_len + crate::source::unix::PRIVATE_PATH_EXTRA > 107 {
            return Err(invalid(
                format!("{field}.path"),
                format!(
                    "the directory of {} is {parent_len} bytes long; a UNIX socket path holds at \
                     most 107 bytes and ringway needs {} more to bind safely: use a shorter directory",
                    self.path.display(),
                    crate::source::unix::PRIVATE_PATH_EXTRA
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

/// Where a stream of events comes from: a source's type, or a client sink's replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    UnixSocketServer,
    TcpServer,
    File,
    UnixSocketClient,
}

impl SourceKind {
    /// As written in the config, and as the key of the envelope's metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::UnixSocketServer => "unix_socket_server",
            SourceKind::TcpServer => "tcp_server",
            SourceKind::File => "file",
            SourceKind::UnixSocketClient => "unix_socket_client",
        }
    }
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
