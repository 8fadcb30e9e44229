//! Configuration: TOML text → [`RawConfig`] (serde, unknown fields are errors) → validated [`Config`].
//!
//! Stage: start-up, and each `reload` (which validates the file again before the topology diffs
//! it against the running config). In: the text of a TOML file (or the embedded default). Out: a
//! [`Config`] whose every value is typed and checked (durations, permissions, owners,
//! separators, non-zero sizes), so nothing downstream parses a string at run time. Errors name
//! the field's path (`sources[0].pathh`). What it does not do: touch sockets or files (the
//! source checks the socket path when it binds) or decide what a reload may change (`topology`).

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

mod control;
mod raw;
mod sink;
mod source;
pub mod values;

pub use control::*;
pub use raw::*;
pub use sink::*;
pub use source::*;
pub use values::{parse_duration, parse_permissions};

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
    /// Every event stream: the sources in order, then the replies of each client sink.
    pub streams: Vec<Stream>,
    pub channel: ChannelConfig,
    pub dead_letter: SinkConfig,
    pub telemetry: TelemetryConfig,
    pub control: ControlConfig,
    pub metrics: MetricsConfig,
    pub log_format: LogFormat,
    /// The log filter (`--log-level` and RUST_LOG take precedence at start; `reload` applies it).
    pub log_level: Option<String>,
    /// The TOML this config was read from (for the control socket's `config`), and its file.
    pub text: String,
    pub file: Option<PathBuf>,
}

/// `[telemetry]`: the shutdown report and the event-latency stamp.
#[derive(Debug, Clone, Default)]
pub struct TelemetryConfig {
    /// Where the shutdown report (`*.hgrm`, `report.json`) goes; none if unset.
    pub report_dir: Option<PathBuf>,
    /// A top-level integer field holding the event's `CLOCK_MONOTONIC` send time in ns.
    pub latency_field: Option<String>,
}

/// An event stream: a configured source, or what the peer of a client sink sends back. Each has
/// its own lane in the channel, so a stalled sink holds back only the streams it takes.
#[derive(Debug, Clone)]
pub struct Stream {
    pub name: String,
    pub origin: StreamOrigin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamOrigin {
    /// `sources[i]`.
    Source(usize),
    /// The replies read by the client sink `sinks[i]`.
    Replies(usize),
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
        let mut c = raw.validate()?;
        c.text = text.to_string();
        Ok(c)
    }

    pub fn from_file(path: &std::path::Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut c = Self::from_toml(&text)?;
        c.file = Some(path.to_owned());
        Ok(c)
    }

    /// The embedded default ([`default_toml`]).
    pub fn embedded_default() -> Result<Config, Error> {
        Self::from_toml(&default_toml())
    }
}

/// The embedded default config as TOML, with `@SOCKET@` replaced by this user's runtime path
/// (what `ringway default-config` prints, so a file made from it runs as the default does).
pub fn default_toml() -> String {
    DEFAULT_CONFIG.replace("@SOCKET@", &default_socket_path().to_string_lossy())
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

/// The effective uid.
pub fn current_uid() -> u32 {
    rustix::process::geteuid().as_raw()
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
                RawSource::TcpServer(t) => SourceConfig::TcpServer(t.validate(&field, i)?),
                RawSource::WsServer(w) => SourceConfig::WsServer(w.validate(&field, i)?),
                RawSource::File(f) => SourceConfig::File(f.validate(&field, i)?),
            });
        }
        check_distinct(&sources)?;
        let mut sinks = Vec::with_capacity(self.sinks.len());
        let mut wanted = Vec::with_capacity(self.sinks.len());
        for (i, s) in self.sinks.into_iter().enumerate() {
            let (sink, inputs) = s.validate(&format!("sinks[{i}]"), i)?;
            if matches!(sink.kind, SinkKind::Log) {
                return Err(invalid(
                    format!("sinks[{i}].type"),
                    "\"log\" is only for [dead_letter]; use file, stdout, null, unix_socket_client or reply",
                ));
            }
            sinks.push(sink);
            wanted.push(inputs);
        }
        let streams = resolve_inputs(&sources, &mut sinks, wanted)?;
        let dead_letter = dead_letter(self.dead_letter)?;
        let channel = channel(self.channel)?;
        check_files(&sinks, &dead_letter)?;
        let telemetry = telemetry(self.telemetry)?;
        let control = self.control.validate(&sources)?;
        Ok(Config {
            control,
            metrics: self.metrics.validate()?,
            log_format: self.log_format,
            log_level: self.log_level,
            text: String::new(),
            file: None,
            telemetry,
            io_mode: self.io_mode,
            workers,
            shutdown_timeout,
            sources,
            sinks,
            streams,
            channel,
            dead_letter,
        })
    }
}

/// No two sources share a name, a socket path or a TCP port.
fn check_distinct(sources: &[SourceConfig]) -> Result<(), Error> {
    for (i, a) in sources.iter().enumerate() {
        for b in &sources[..i] {
            if a.name() == b.name() {
                return Err(invalid(
                    format!("sources[{i}].name"),
                    format!("the name {:?} is used by two sources", a.name()),
                ));
            }
            let same = match (a, b) {
                (SourceConfig::UnixSocketServer(x), SourceConfig::UnixSocketServer(y)) => {
                    x.path == y.path
                }
                // 0.0.0.0:P (or [::]:P) takes port P on every address.
                _ => match (a.tcp_addr(), b.tcp_addr()) {
                    (Some(x), Some(y)) => {
                        x.port() == y.port()
                            && x.port() != 0
                            && (x.ip() == y.ip()
                                || x.ip().is_unspecified()
                                || y.ip().is_unspecified())
                    }
                    _ => false,
                },
            };
            if same {
                let key = if a.tcp_addr().is_some() {
                    "url"
                } else {
                    "path"
                };
                return Err(invalid(
                    format!("sources[{i}].{key}"),
                    format!("{} is used by two sources", a.address()),
                ));
            }
        }
    }
    Ok(())
}

/// `[dead_letter]`: a file, stdout, null or log sink of JSON records (the default: log).
fn dead_letter(raw: Option<RawSink>) -> Result<SinkConfig, Error> {
    Ok(match raw {
        None => SinkConfig {
            name: "dead_letter".into(),
            kind: SinkKind::Log,
            format: Format::default(),
            inputs: Vec::new(),
        },
        Some(s) => {
            let (mut d, inputs) = s.validate("dead_letter", 0)?;
            d.name = "dead_letter".into();
            if inputs.is_some() {
                return Err(invalid(
                    "dead_letter.inputs",
                    "the dead-letter sink takes the bad lines of every stream",
                ));
            }
            if !matches!(
                d.kind,
                SinkKind::File { .. } | SinkKind::Stdout | SinkKind::Null | SinkKind::Log
            ) {
                return Err(invalid(
                    "dead_letter.type",
                    "use file, stdout, null or log for dead letters",
                ));
            }
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
    })
}

/// `[channel]`: sizes at least 1, within their bounds.
fn channel(c: RawChannel) -> Result<ChannelConfig, Error> {
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
    // Offsets inside a batch are u32: keep a batch (plus one line) well below 4 GiB.
    if channel.batch_max_bytes.get() > MAX_LEN {
        return Err(invalid("channel.batch_max_bytes", "at most 1 GiB"));
    }
    Ok(channel)
}

/// Two writers must never share one file.
fn check_files(sinks: &[SinkConfig], dead_letter: &SinkConfig) -> Result<(), Error> {
    let mut files: Vec<(&std::path::Path, String)> = Vec::new();
    let all = sinks
        .iter()
        .enumerate()
        .map(|(i, s)| (s, format!("sinks[{i}].path")))
        .chain(std::iter::once((
            dead_letter,
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
    Ok(())
}

/// `[telemetry]`: set values must not be empty.
fn telemetry(t: RawTelemetry) -> Result<TelemetryConfig, Error> {
    if t.report_dir
        .as_ref()
        .is_some_and(|d| d.as_os_str().is_empty())
    {
        return Err(invalid("telemetry.report_dir", "must not be empty"));
    }
    if t.latency_field.as_ref().is_some_and(String::is_empty) {
        return Err(invalid("telemetry.latency_field", "must not be empty"));
    }
    Ok(TelemetryConfig {
        report_dir: t.report_dir,
        latency_field: t.latency_field,
    })
}

impl Config {
    /// The codec of event stream `k`'s events (its source's, or a client sink's replies').
    pub fn stream_codec(&self, k: usize) -> crate::codec::Codec {
        match self.streams[k].origin {
            StreamOrigin::Source(i) => self.sources[i].codec(),
            StreamOrigin::Replies(i) => self.sinks[i].format.codec,
        }
    }
}

/// Name every event stream, check sink names, and turn each sink's `inputs` into stream indices.
/// By default a sink takes every stream but the replies of its own connection (a loop); a
/// `reply` sink takes every stream that can be replied to (every stream with `route_field`).
fn resolve_inputs(
    sources: &[SourceConfig],
    sinks: &mut [SinkConfig],
    wanted: Vec<Option<Vec<String>>>,
) -> Result<Vec<Stream>, Error> {
    let mut streams: Vec<Stream> = sources
        .iter()
        .enumerate()
        .map(|(i, s)| Stream {
            name: s.name().to_string(),
            origin: StreamOrigin::Source(i),
        })
        .collect();
    for (i, sink) in sinks.iter().enumerate() {
        if let Some(j) = sinks[..i].iter().position(|o| o.name == sink.name) {
            return Err(invalid(
                format!("sinks[{i}].name"),
                format!("the name {:?} is used by sinks[{j}] too", sink.name),
            ));
        }
        if matches!(sink.kind, SinkKind::Reply(_))
            && sinks[..i]
                .iter()
                .any(|o| matches!(o.kind, SinkKind::Reply(_)))
        {
            return Err(invalid(
                format!("sinks[{i}].type"),
                "only one reply sink: each event goes back to its connection once",
            ));
        }
        if matches!(sink.kind, SinkKind::Client(_)) {
            if sources.iter().any(|s| s.name() == sink.name) {
                return Err(invalid(
                    format!("sinks[{i}].name"),
                    format!(
                        "{:?} is a source's name too; a unix_socket_client's replies are the \
                         event stream of that name, so it must be unique",
                        sink.name
                    ),
                ));
            }
            streams.push(Stream {
                name: sink.name.clone(),
                origin: StreamOrigin::Replies(i),
            });
        }
    }
    let replyable = |k: usize| match streams[k].origin {
        StreamOrigin::Source(s) => sources[s].can_reply(),
        StreamOrigin::Replies(_) => false,
    };
    for (i, (sink, names)) in sinks.iter_mut().zip(wanted).enumerate() {
        let own = |k: usize| streams[k].origin == StreamOrigin::Replies(i);
        // A reply sink that routes by a field may take any stream; else only those it can answer.
        let is_reply = matches!(&sink.kind, SinkKind::Reply(r) if r.route_field.is_none());
        sink.inputs = match names {
            // A client sink never takes another client's replies by default: two clients
            // would feed each other in a loop.
            None => (0..streams.len())
                .filter(|&k| !own(k) && (!is_reply || replyable(k)))
                .filter(|&k| {
                    !matches!(sink.kind, SinkKind::Client(_))
                        || matches!(streams[k].origin, StreamOrigin::Source(_))
                })
                .collect(),
            Some(names) => {
                let mut v = Vec::with_capacity(names.len());
                for n in names {
                    let field = format!("sinks[{i}].inputs");
                    let Some(k) = streams.iter().position(|s| s.name == n) else {
                        let known: Vec<&str> = streams.iter().map(|s| s.name.as_str()).collect();
                        return Err(invalid(
                            field,
                            format!(
                                "no source or client sink is named {n:?} (there are: {})",
                                known.join(", ")
                            ),
                        ));
                    };
                    if own(k) {
                        return Err(invalid(
                            field,
                            format!("{n:?} is this sink's own replies: writing them back to the same peer is a loop"),
                        ));
                    }
                    if is_reply && !replyable(k) {
                        return Err(invalid(
                            field,
                            format!("{n:?} cannot be replied to: only unix_socket_server and tcp_server connections can"),
                        ));
                    }
                    if !v.contains(&k) {
                        v.push(k);
                    }
                }
                v
            }
        };
    }
    reject_reply_loops(sinks, &streams)?;
    Ok(streams)
}

/// Client sinks that take each other's replies in a ring would pass every reply around it
/// forever (their peers answer each one): refuse the config, naming the ring.
fn reject_reply_loops(sinks: &[SinkConfig], streams: &[Stream]) -> Result<(), Error> {
    // i → j: sink j takes the replies of client sink i.
    let next = |i: usize| {
        (0..sinks.len()).filter(move |&j| {
            sinks[j]
                .inputs
                .iter()
                .any(|&k| streams[k].origin == StreamOrigin::Replies(i))
        })
    };
    for start in 0..sinks.len() {
        let mut from: Vec<Option<usize>> = vec![None; sinks.len()];
        let mut todo = vec![start];
        while let Some(i) = todo.pop() {
            for j in next(i) {
                if j == start {
                    let mut ring = vec![sinks[i].name.as_str()];
                    let mut at = i;
                    while at != start {
                        at = from[at].expect("on the path from start");
                        ring.push(sinks[at].name.as_str());
                    }
                    ring.reverse();
                    ring.push(sinks[start].name.as_str());
                    return Err(invalid(
                        format!("sinks[{start}].inputs"),
                        format!(
                            "the replies go round in a loop: {} (each sink takes the previous one's replies)",
                            ring.join(" → ")
                        ),
                    ));
                }
                if from[j].is_none() {
                    from[j] = Some(i);
                    todo.push(j);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "config/tests.rs"]
mod tests;
