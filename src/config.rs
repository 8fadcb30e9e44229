//! Configuration: TOML text → [`RawConfig`] (serde, unknown fields are errors) → validated [`Config`].
//!
//! Stage: start-up only. In: the text of a TOML file (or the embedded default). Out: a [`Config`] whose
//! every value is typed and checked (durations, permissions, owners, separators, non-zero sizes), so
//! nothing downstream parses a string at run time. Errors name the field's path (`sources[0].pathh`).
//! What it does not do: touch sockets or files (the source checks the socket path when it binds).

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::codec::Codec;
use crate::framing::{FramingConfig, Oversized};

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
// Raw, as written by the user.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub io_mode: IoMode,
    pub workers: Option<usize>,
    pub shutdown_timeout: Option<String>,
    #[serde(default)]
    pub sources: Vec<RawSource>,
    #[serde(default)]
    pub sinks: Vec<RawSink>,
    #[serde(default)]
    pub channel: RawChannel,
    pub dead_letter: Option<RawSink>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IoMode {
    /// io_uring where the kernel allows it, else tokio's epoll with one warning.
    #[default]
    Auto,
    Uring,
    Epoll,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawSource {
    UnixSocketServer(RawUnixServer),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUnixServer {
    pub name: Option<String>,
    pub path: PathBuf,
    pub permissions: Option<String>,
    pub owner: Option<NameOrId>,
    pub group: Option<NameOrId>,
    pub buf_size: Option<usize>,
    pub backlog: Option<u32>,
    #[serde(default)]
    pub codec: RawCodec,
    pub preprocessors: Option<Vec<RawProcessor>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum NameOrId {
    Id(u32),
    Name(String),
}

/// `"separate"` or `{ name = "separate", config = { … } }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawProcessor {
    Name(String),
    Full(RawProcessorFull),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProcessorFull {
    pub name: String,
    #[serde(default)]
    pub config: RawSeparate,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSeparate {
    pub separator: Option<String>,
    pub max_length: Option<usize>,
    pub oversized: Option<RawOversized>,
    pub buffered: Option<bool>,
    pub emit_incomplete: Option<bool>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawOversized {
    Drop,
    Truncate,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawSink {
    File {
        path: PathBuf,
        #[serde(default)]
        mode: FileMode,
        #[serde(default)]
        codec: RawCodec,
        postprocessors: Option<Vec<String>>,
        #[serde(default)]
        metadata: MetadataMode,
    },
    Stdout {
        #[serde(default)]
        codec: RawCodec,
        postprocessors: Option<Vec<String>>,
        #[serde(default)]
        metadata: MetadataMode,
    },
    Null {},
    /// Only for `[dead_letter]`: a rate-limited `warn!` line per record.
    Log {},
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawCodec {
    #[default]
    Json,
    String,
    Binary,
}

impl From<RawCodec> for Codec {
    fn from(c: RawCodec) -> Codec {
        match c {
            RawCodec::Json => Codec::Json,
            RawCodec::String => Codec::String,
            RawCodec::Binary => Codec::Binary,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileMode {
    #[default]
    Append,
    Truncate,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetadataMode {
    #[default]
    None,
    Envelope,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChannel {
    pub capacity: Option<usize>,
    #[serde(default)]
    pub when_full: WhenFull,
    pub batch_max_events: Option<usize>,
    pub batch_max_bytes: Option<usize>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    #[default]
    Block,
    DropNewest,
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
            let path = e.path().to_string();
            let inner = e.into_inner();
            Error::Parse {
                path: if path == "." { "config".into() } else { path },
                message: inner.message().to_string(),
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
            Some(s) => parse_duration(s).map_err(|m| invalid("shutdown_timeout", m))?,
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
            Some(s) => s.validate("dead_letter")?,
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
        Ok(Config {
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
        // sun_path holds 108 bytes including the terminating NUL.
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
            Some(n) if (64..=16 * 1024 * 1024).contains(&n) => n,
            Some(n) => {
                return Err(invalid(
                    format!("{field}.buf_size"),
                    format!("{n} is out of range: use 64 bytes to 16 MiB"),
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
            if m == 0 {
                return Err(invalid(format!("{f}.max_length"), "must be at least 1"));
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
                Ok(Format {
                    codec: codec.into(),
                    separator,
                    metadata,
                })
            };
        Ok(match self {
            RawSink::File {
                path,
                mode,
                codec,
                postprocessors,
                metadata,
            } => {
                if path.as_os_str().is_empty() {
                    return Err(invalid(format!("{field}.path"), "must not be empty"));
                }
                SinkConfig {
                    kind: SinkKind::File { path, mode },
                    format: format(codec, postprocessors, metadata)?,
                }
            }
            RawSink::Stdout {
                codec,
                postprocessors,
                metadata,
            } => SinkConfig {
                kind: SinkKind::Stdout,
                format: format(codec, postprocessors, metadata)?,
            },
            RawSink::Null {} => SinkConfig {
                kind: SinkKind::Null,
                format: Format::default(),
            },
            RawSink::Log {} => SinkConfig {
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
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as \"250ms\", \"5s\" or \"1m\""))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        u => return Err(format!("unknown unit {u:?} in {s:?}: use ms, s, m or h")),
    };
    if !secs.is_finite() || !(0.0..=86_400.0 * 365.0).contains(&secs) {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `"=600"`, `"0600"`, `"600"`, or symbolic `"u=rw,g=r"` (clauses of `[ugoa]*[=+-][rwx]*`).
pub fn parse_permissions(s: &str) -> Result<u32, String> {
    let bad = || format!("{s:?} is not a mode such as \"=600\", \"0640\" or \"u=rw,g=rw\"");
    let t = s.trim();
    let octal = t.strip_prefix('=').unwrap_or(t);
    if !octal.is_empty() && octal.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        let m = u32::from_str_radix(octal, 8).map_err(|_| bad())?;
        if m > 0o777 {
            return Err(format!(
                "{s:?}: only permission bits (at most 0777) apply to a socket"
            ));
        }
        return Ok(m);
    }
    let mut mode = 0u32;
    for clause in t.split(',') {
        let op_at = clause.find(['=', '+', '-']).ok_or_else(bad)?;
        let (who, rest) = clause.split_at(op_at);
        let (op, perms) = rest.split_at(1);
        let mut who_mask = 0u32;
        for c in who.chars() {
            who_mask |= match c {
                'u' => 0o700,
                'g' => 0o070,
                'o' => 0o007,
                'a' => 0o777,
                _ => return Err(bad()),
            };
        }
        if who.is_empty() {
            who_mask = 0o777;
        }
        let mut bits = 0u32;
        for c in perms.chars() {
            bits |= match c {
                'r' => 0o444,
                'w' => 0o222,
                'x' => 0o111,
                _ => return Err(bad()),
            };
        }
        let bits = bits & who_mask;
        match op {
            "=" => mode = (mode & !who_mask) | bits,
            "+" => mode |= bits,
            _ => mode &= !bits,
        }
    }
    Ok(mode)
}

enum IdKind {
    User,
    Group,
}

fn resolve_id(v: &NameOrId, kind: IdKind) -> Result<u32, String> {
    let name = match v {
        NameOrId::Id(id) => return Ok(*id),
        NameOrId::Name(n) => n,
    };
    if let Ok(id) = name.parse::<u32>() {
        return Ok(id);
    }
    let (file, what) = match kind {
        IdKind::User => ("/etc/passwd", "user"),
        IdKind::Group => ("/etc/group", "group"),
    };
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?;
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            Some((f.next()?, f.nth(1)?))
        })
        .find(|(n, _)| n == name)
        .and_then(|(_, id)| id.parse().ok())
        .ok_or_else(|| format!("no {what} named {name:?} in {file}; give a name or a numeric id"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_forms() {
        assert_eq!(parse_permissions("=600").unwrap(), 0o600);
        assert_eq!(parse_permissions("0640").unwrap(), 0o640);
        assert_eq!(parse_permissions("600").unwrap(), 0o600);
        assert_eq!(parse_permissions("u=rw,g=rw").unwrap(), 0o660);
        assert_eq!(parse_permissions("u=rw,g=r").unwrap(), 0o640);
        assert_eq!(parse_permissions("a=rw,o-w").unwrap(), 0o664);
        assert!(parse_permissions("=800").is_err());
        assert!(parse_permissions("u=rq").is_err());
        assert!(parse_permissions("").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::embedded_default().unwrap();
        assert_eq!(c.sources.len(), 1);
        assert!(matches!(c.sinks[0].kind, SinkKind::Stdout));
    }

    fn err(text: &str) -> String {
        Config::from_toml(text).unwrap_err().to_string()
    }

    const OK: &str = "[[sources]]\ntype = \"unix_socket_server\"\npath = \"/tmp/x.sock\"\n[[sinks]]\ntype = \"null\"\n";

    #[test]
    fn errors_name_the_field() {
        assert!(Config::from_toml(OK).is_ok());
        let e = err(&OK.replace("path =", "pathh ="));
        assert!(e.contains("sources[0]") && e.contains("pathh"), "{e}");
        let e = err(&format!("workers = \"two\"\n{OK}"));
        assert!(e.contains("workers"), "{e}");
        let e = err(&OK.replace(
            "path = \"/tmp/x.sock\"",
            "path = \"/tmp/x.sock\"\ncodec = \"jsn\"",
        ));
        assert!(e.contains("sources[0].codec") && e.contains("jsn"), "{e}");
        let e = err(&format!("{OK}[channel]\nwhen_full = \"dropp\"\n"));
        assert!(e.contains("channel.when_full"), "{e}");
        let e = err(&OK.replace("type = \"null\"", "type = \"log\""));
        assert!(e.contains("sinks[0].type"), "{e}");
        let e = err(&OK.replace(
            "path = \"/tmp/x.sock\"",
            "path = \"/tmp/x.sock\"\npreprocessors = [{ name = \"separate\", config = { max_lenght = 3 } }]",
        ));
        assert!(e.contains("max_lenght"), "{e}");
    }

    #[test]
    fn preprocessor_forms() {
        let c = Config::from_toml(&OK.replace(
            "path = \"/tmp/x.sock\"",
            "path = \"/tmp/x.sock\"\npreprocessors = [{ name = \"separate\", config = { separator = \"|\", max_length = 10, buffered = false } }]",
        ))
        .unwrap();
        let SourceConfig::UnixSocketServer(u) = &c.sources[0];
        assert_eq!(u.framing.separator, b'|');
        assert_eq!(u.framing.max_length, 10);
        assert!(!u.framing.buffered);
    }
}
