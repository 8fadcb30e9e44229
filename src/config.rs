//! Configuration: TOML text → [`RawConfig`] (serde, unknown fields are errors) → validated [`Config`].
//!
//! Stage: start-up only. In: the text of a TOML file (or the embedded default). Out: a [`Config`] whose
//! every value is typed and checked (durations, permissions, owners, separators, non-zero sizes), so
//! nothing downstream parses a string at run time. Errors name the field's path (`sources[0].pathh`).
//! What it does not do: touch sockets or files (the source checks the socket path when it binds).

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use crate::codec::Codec;
use crate::framing::{FramingConfig, Oversized};

mod raw;
pub mod values;

pub use raw::*;
pub use values::{parse_duration, parse_permissions};
use values::{resolve_id, IdKind};

/// The largest line or batch, in bytes.
const MAX_LEN: usize = 1 << 30;

/// The config `ringway` runs when no file is given: one UNIX socket, json codec, stdout sink.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

/// Everything that can be wrong with a config, each naming the field.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Error {
    Error::Invalid {
        field: field.into(),
        message: message.into(),
    }
}
// ---------------------------------------------------------------------------------------------
// Validated.

#[derive(Debug, Clone)]
pub struct Config {
    pub io_mode: IoMode,
    pub workers: NonZeroUsize,
    pub shutdown_timeout: Duration,
    pub sources: Vec<SourceConfig>,
    pub sinks: Vec<SinkConfig>,
    pub channel: ChannelConfig,
    pub dead_letter: SinkConfig,
    pub telemetry: TelemetryConfig,
}

/// `[telemetry]`: the shutdown report and the event-latency stamp.
#[derive(Debug, Clone, Default)]
pub struct TelemetryConfig {
    /// Where the shutdown report (`*.hgrm`, `report.json`) goes; none if unset.
    pub report_dir: Option<PathBuf>,
    /// A top-level integer field holding the event's `CLOCK_MONOTONIC` send time in ns.
    pub latency_field: Option<String>,
}

#[derive(Debug, Clone)]
pub enum SourceConfig {
    UnixSocketServer(UnixServerConfig),
}

impl SourceConfig {
    pub fn name(&self) -> &str {
        match self {
            SourceConfig::UnixSocketServer(u) => &u.name,
        }
    }

    pub fn codec(&self) -> Codec {
        match self {
            SourceConfig::UnixSocketServer(u) => u.codec,
        }
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
pub struct SinkConfig {
    pub kind: SinkKind,
    pub format: Format,
}

#[derive(Debug, Clone)]
pub enum SinkKind {
    File { path: PathBuf, mode: FileMode },
    Stdout,
    Null,
    Log,
}

/// How a sink turns an event into bytes.
#[derive(Debug, Clone)]
pub struct Format {
    pub codec: Codec,
    /// `None` when `postprocessors = []`: events are written back to back.
    pub separator: Option<u8>,
    pub metadata: MetadataMode,
}

#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// Batches the channel holds before `when_full` applies.
    pub capacity: NonZeroUsize,
    pub when_full: WhenFull,
    pub batch_max_events: NonZeroUsize,
    pub batch_max_bytes: NonZeroUsize,
}

impl Config {
    /// Parse and validate TOML text. `origin` names the file in messages.
    pub fn from_toml(text: &str) -> Result<Config, Error> {
        let de = toml::Deserializer::parse(text).map_err(|e| Error::Parse {
            path: "config".into(),
            message: e.to_string(),
        })?;
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let mut path = e.path().to_string();
            let mut message = e.into_inner().message().to_string();
            // An error inside a tagged table carries its own inner path (see `raw`).
            if let Some((inner, rest)) = message.split_once(raw::PATH_SEP) {
                if inner != "." {
                    path = format!("{path}.{inner}");
                }
                message = rest.to_string();
            }
            Error::Parse {
                path: if path == "." { "config".into() } else { path },
                message,
            }
        })?;
        raw.validate()
    }

    pub fn from_file(path: &std::path::Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// The embedded default, with `@SOCKET@` replaced by a per-user runtime path.
    pub fn embedded_default() -> Result<Config, Error> {
        let path = default_socket_path();
        Self::from_toml(&DEFAULT_CONFIG.replace("@SOCKET@", &path.to_string_lossy()))
    }
}

/// `$XDG_RUNTIME_DIR/ringway.sock`, else `/tmp/ringway-<uid>.sock`.
pub fn default_socket_path() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("ringway.sock"),
        _ => {
            let uid = current_uid();
            PathBuf::from(format!("/tmp/ringway-{uid}.sock"))
        }
    }
}

/// The effective uid, read without `unsafe` (the owner of `/proc/self`).
pub fn current_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap_or(0)
}

impl RawConfig {
    pub fn validate(self) -> Result<Config, Error> {
        let workers = match self.workers {
            None | Some(0) => {
                std::thread::available_parallelism().unwrap_or(NonZeroUsize::new(1).unwrap())
            }
            Some(n) if n > 256 => return Err(invalid("workers", "at most 256 workers")),
            Some(n) => NonZeroUsize::new(n).unwrap(),
        };
        let shutdown_timeout = match &self.shutdown_timeout {
            None => Duration::from_secs(5),
            Some(RawDuration::Secs(n)) => Duration::from_secs(*n),
            Some(RawDuration::Text(s)) => {
                parse_duration(s).map_err(|m| invalid("shutdown_timeout", m))?
            }
        };
        if self.sources.is_empty() {
            return Err(invalid(
                "sources",
                "at least one [[sources]] entry is required",
            ));
        }
        if self.sinks.is_empty() {
            return Err(invalid("sinks", "at least one [[sinks]] entry is required"));
        }
        let mut sources = Vec::with_capacity(self.sources.len());
        for (i, s) in self.sources.into_iter().enumerate() {
            let field = format!("sources[{i}]");
            sources.push(match s {
                RawSource::UnixSocketServer(u) => {
                    SourceConfig::UnixSocketServer(u.validate(&field, i)?)
                }
            });
        }
        for (i, a) in sources.iter().enumerate() {
            for b in &sources[..i] {
                if a.name() == b.name() {
                    return Err(invalid(
                        format!("sources[{i}].name"),
                        format!("the name {:?} is used by two sources", a.name()),
                    ));
                }
                let (SourceConfig::UnixSocketServer(x), SourceConfig::UnixSocketServer(y)) = (a, b);
                if x.path == y.path {
                    return Err(invalid(
                        format!("sources[{i}].path"),
                        format!("{} is used by two sources", x.path.display()),
                    ));
                }
            }
        }
        let mut sinks = Vec::with_capacity(self.sinks.len());
        for (i, s) in self.sinks.into_iter().enumerate() {
            let sink = s.validate(&format!("sinks[{i}]"))?;
            if matches!(sink.kind, SinkKind::Log) {
                return Err(invalid(
                    format!("sinks[{i}].type"),
                    "\"log\" is only for [dead_letter]; use file, stdout or null",
                ));
            }
            sinks.push(sink);
        }
        let dead_letter = match self.dead_letter {
            None => SinkConfig {
                kind: SinkKind::Log,
                format: Format::default(),
            },
            Some(s) => {
                let d = s.validate("dead_letter")?;
                let f = &d.format;
                let plain = Format::default();
                for (key, differs) in [
                    ("codec", f.codec != plain.codec),
                    ("postprocessors", f.separator != plain.separator),
                    ("metadata", f.metadata != plain.metadata),
                ] {
                    if differs {
                        return Err(invalid(
                            format!("dead_letter.{key}"),
                            "dead-letter records are always JSON lines with their metadata; \
                             codec, postprocessors and metadata do not apply",
                        ));
                    }
                }
                d
            }
        };
        let c = self.channel;
        let nz = |v: Option<usize>, d: usize, f: &str| -> Result<NonZeroUsize, Error> {
            NonZeroUsize::new(v.unwrap_or(d))
                .ok_or_else(|| invalid(format!("channel.{f}"), "must be at least 1"))
        };
        let channel = ChannelConfig {
            capacity: nz(c.capacity, 256, "capacity")?,
            when_full: c.when_full,
            batch_max_events: nz(c.batch_max_events, 1024, "batch_max_events")?,
            batch_max_bytes: nz(c.batch_max_bytes, 256 * 1024, "batch_max_bytes")?,
        };
        if channel.capacity.get() > 1 << 20 {
            return Err(invalid("channel.capacity", "at most 1048576 batches"));
        }
        // Two writers must never share one file.
        let mut files: Vec<(&std::path::Path, String)> = Vec::new();
        let all = sinks
            .iter()
            .enumerate()
            .map(|(i, s)| (s, format!("sinks[{i}].path")))
            .chain(std::iter::once((
                &dead_letter,
                "dead_letter.path".to_string(),
            )));
        for (sink, field) in all {
            if let SinkKind::File { path, .. } = &sink.kind {
                if let Some((_, other)) = files.iter().find(|(p, _)| *p == path.as_path()) {
                    return Err(invalid(
                        field,
                        format!("{} is already written by {other}", path.display()),
                    ));
                }
                files.push((path, field));
            }
        }
        // Offsets inside a batch are u32: keep a batch (plus one line) well below 4 GiB.
        if channel.batch_max_bytes.get() > MAX_LEN {
            return Err(invalid("channel.batch_max_bytes", "at most 1 GiB"));
        }
        let t = self.telemetry;
        if t.report_dir
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            return Err(invalid("telemetry.report_dir", "must not be empty"));
        }
        if t.latency_field.as_ref().is_some_and(String::is_empty) {
            return Err(invalid("telemetry.latency_field", "must not be empty"));
        }
        Ok(Config {
            telemetry: TelemetryConfig {
                report_dir: t.report_dir,
                latency_field: t.latency_field,
            },
            io_mode: self.io_mode,
            workers,
            shutdown_timeout,
            sources,
            sinks,
            channel,
            dead_letter,
        })
    }
}

impl RawUnixServer {
    fn validate(self, field: &str, index: usize) -> Result<UnixServerConfig, Error> {
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
        let buf_size = match self.buf_size {
            None => 64 * 1024,
            Some(n) if (64..=1024 * 1024).contains(&n) => n,
            Some(n) => {
                return Err(invalid(
                    format!("{field}.buf_size"),
                    format!("{n} is out of range: use 64 bytes to 1 MiB"),
                ))
            }
        };
        let framing = match self.preprocessors {
            None => FramingConfig::default(),
            Some(list) => framing_from(&list, &format!("{field}.preprocessors"))?,
        };
        Ok(UnixServerConfig {
            name: self
                .name
                .unwrap_or_else(|| format!("unix_socket_server_{index}")),
            path: self.path,
            permissions,
            owner,
            group,
            buf_size: NonZeroUsize::new(buf_size).unwrap(),
            backlog: self.backlog.unwrap_or(1024),
            codec: self.codec.into(),
            framing,
        })
    }
}

fn framing_from(list: &[RawProcessor], field: &str) -> Result<FramingConfig, Error> {
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

impl RawSink {
    fn validate(self, field: &str) -> Result<SinkConfig, Error> {
        let format =
            |codec: RawCodec, post: Option<Vec<String>>, metadata| -> Result<Format, Error> {
                let separator = match post.as_deref() {
                    None => Some(b'\n'),
                    Some([]) => None,
                    Some([p]) if p == "separate" => Some(b'\n'),
                    Some(_) => {
                        return Err(invalid(
                            format!("{field}.postprocessors"),
                            "supported: [\"separate\"] (default) or []",
                        ))
                    }
                };
                if metadata == MetadataMode::Envelope && codec != RawCodec::Json {
                    return Err(invalid(
                        format!("{field}.metadata"),
                        "an envelope is a JSON object: it needs codec = \"json\"",
                    ));
                }
                Ok(Format {
                    codec: codec.into(),
                    separator,
                    metadata,
                })
            };
        Ok(match self {
            RawSink::File(f) => {
                if f.path.as_os_str().is_empty() {
                    return Err(invalid(format!("{field}.path"), "must not be empty"));
                }
                SinkConfig {
                    format: format(f.codec, f.postprocessors, f.metadata)?,
                    kind: SinkKind::File {
                        path: f.path,
                        mode: f.mode,
                    },
                }
            }
            RawSink::Stdout(s) => SinkConfig {
                kind: SinkKind::Stdout,
                format: format(s.codec, s.postprocessors, s.metadata)?,
            },
            RawSink::Null(_) => SinkConfig {
                kind: SinkKind::Null,
                format: Format::default(),
            },
            RawSink::Log(_) => SinkConfig {
                kind: SinkKind::Log,
                format: Format::default(),
            },
        })
    }
}

impl Default for Format {
    fn default() -> Self {
        Format {
            codec: Codec::Json,
            separator: Some(b'\n'),
            metadata: MetadataMode::None,
        }
    }
}

/// `"250ms"`, `"5s"`, `"2m"`, `"1h"`, or a bare number of seconds.
#[cfg(test)]
#[path = "config/tests.rs"]
mod tests;
