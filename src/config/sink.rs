//! Sinks in the config: validation of each `[[sinks]]` table (and `[dead_letter]`) into its typed
//! form. Which event streams a sink takes (`inputs`) is resolved by `config.rs`, which knows them all.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use super::source::framing;
use super::values::parse_duration;
use super::{invalid, Error, FileMode, MetadataMode, RawCodec, RawDuration, RawRetry, RawSink};
use crate::codec::Codec;
use crate::framing::FramingConfig;

#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub name: String,
    pub kind: SinkKind,
    pub format: Format,
    /// Indices into [`super::Config::streams`] of the event streams this sink writes.
    pub inputs: Vec<usize>,
}

#[derive(Debug, Clone)]
pub enum SinkKind {
    File { path: PathBuf, mode: FileMode },
    Stdout,
    Null,
    Log,
    UnixSocketClient(UnixClientConfig),
    Reply(ReplyConfig),
}

impl SinkKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            SinkKind::File { .. } => "file",
            SinkKind::Stdout => "stdout",
            SinkKind::Null => "null",
            SinkKind::Log => "log",
            SinkKind::UnixSocketClient(_) => "unix_socket_client",
            SinkKind::Reply(_) => "reply",
        }
    }
}

/// How a sink turns an event into bytes.
#[derive(Debug, Clone)]
pub struct Format {
    pub codec: Codec,
    /// `None` when `postprocessors = []`: events are written back to back.
    pub separator: Option<u8>,
    pub metadata: MetadataMode,
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

/// `unix_socket_client`: where it connects, how it retries, how much it holds during an outage,
/// and how what the peer sends back is framed and decoded.
#[derive(Debug, Clone)]
pub struct UnixClientConfig {
    pub path: PathBuf,
    pub buf_size: NonZeroUsize,
    pub retry: Retry,
    /// Encoded bytes held while the peer is away; past this the sources feel backpressure.
    pub spool_bytes: NonZeroUsize,
    pub framing: FramingConfig,
}

/// `reconnect.retry`: attempt n (from 0) waits `interval · growth_rateⁿ`, at most
/// `max_interval`, shortened by up to `jitter` of itself at random.
#[derive(Debug, Clone, PartialEq)]
pub struct Retry {
    pub interval: Duration,
    pub growth_rate: f64,
    pub max_interval: Duration,
    /// After this many failed attempts in a row the circuit opens (see `sink::client`).
    pub max_retries: Option<u64>,
    pub jitter: f64,
}

impl Retry {
    /// The wait before retry number `n` (0-based), before jitter.
    pub fn delay(&self, n: u64) -> Duration {
        let secs = self.interval.as_secs_f64() * self.growth_rate.powi(n.min(1000) as i32);
        Duration::from_secs_f64(secs.min(self.max_interval.as_secs_f64()))
    }
}

/// `reply`: each connection's queue bound and how long it may go without taking any bytes.
#[derive(Debug, Clone)]
pub struct ReplyConfig {
    pub queue_bytes: NonZeroUsize,
    pub write_timeout: Duration,
    /// Send each event to the connection whose id is in this top-level integer field of the
    /// event (the `peer`/`conn` of an envelope), instead of the one it came from.
    pub route_field: Option<String>,
}

fn format(
    field: &str,
    codec: RawCodec,
    post: Option<Vec<String>>,
    metadata: MetadataMode,
) -> Result<Format, Error> {
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
}

pub(super) fn duration(
    v: &Option<RawDuration>,
    default: Duration,
    field: &str,
) -> Result<Duration, Error> {
    match v {
        None => Ok(default),
        Some(RawDuration::Secs(n)) => Ok(Duration::from_secs(*n)),
        Some(RawDuration::Text(s)) => parse_duration(s).map_err(|m| invalid(field, m)),
    }
}

fn retry(r: &RawRetry, field: &str) -> Result<Retry, Error> {
    let f = |k: &str| format!("{field}.reconnect.retry.{k}");
    let interval = Duration::from_millis(r.interval_ms.unwrap_or(100));
    let growth_rate = r.growth_rate.unwrap_or(1.5);
    if !(1.0..=10.0).contains(&growth_rate) {
        return Err(invalid(f("growth_rate"), "must be between 1.0 and 10.0"));
    }
    let max_interval = Duration::from_millis(r.max_interval_ms.unwrap_or(30_000));
    if interval.is_zero() {
        return Err(invalid(f("interval_ms"), "must be at least 1"));
    }
    if max_interval < interval {
        return Err(invalid(
            f("max_interval_ms"),
            format!("must be at least interval_ms ({})", interval.as_millis()),
        ));
    }
    let jitter = r.jitter.unwrap_or(0.1);
    if !(0.0..=1.0).contains(&jitter) {
        return Err(invalid(f("jitter"), "must be between 0.0 and 1.0"));
    }
    Ok(Retry {
        interval,
        growth_rate,
        max_interval,
        max_retries: r.max_retries,
        jitter,
    })
}

impl RawSink {
    /// The sink and the names in its `inputs` (None: the default).
    pub(super) fn validate(
        self,
        field: &str,
        index: usize,
    ) -> Result<(SinkConfig, Option<Vec<String>>), Error> {
        let plain = |kind: SinkKind, format: Format, name: Option<String>| SinkConfig {
            name: name.unwrap_or_else(|| format!("{}_{index}", kind.type_name())),
            kind,
            format,
            inputs: Vec::new(),
        };
        Ok(match self {
            RawSink::File(f) => {
                if f.path.as_os_str().is_empty() {
                    return Err(invalid(format!("{field}.path"), "must not be empty"));
                }
                let fmt = format(field, f.codec, f.postprocessors, f.metadata)?;
                let kind = SinkKind::File {
                    path: f.path,
                    mode: f.mode,
                };
                (plain(kind, fmt, f.name), f.inputs)
            }
            RawSink::Stdout(s) => (
                plain(
                    SinkKind::Stdout,
                    format(field, s.codec, s.postprocessors, s.metadata)?,
                    s.name,
                ),
                s.inputs,
            ),
            RawSink::Null(n) => (plain(SinkKind::Null, Format::default(), n.name), n.inputs),
            RawSink::Log(_) => (plain(SinkKind::Log, Format::default(), None), None),
            RawSink::UnixSocketClient(c) => {
                if c.path.as_os_str().is_empty() {
                    return Err(invalid(format!("{field}.path"), "must not be empty"));
                }
                let buf_size = match c.buf_size {
                    None => 64 * 1024,
                    Some(n) if (64..=16 << 20).contains(&n) => n,
                    Some(n) => {
                        return Err(invalid(
                            format!("{field}.buf_size"),
                            format!("{n} is out of range: use 64 bytes to 16 MiB"),
                        ))
                    }
                };
                let spool = c.spool_bytes.unwrap_or(16 << 20);
                if !(4096..=16 << 30).contains(&spool) {
                    return Err(invalid(
                        format!("{field}.spool_bytes"),
                        "must be between 4096 bytes and 16 GiB",
                    ));
                }
                let cfg = UnixClientConfig {
                    path: c.path,
                    buf_size: NonZeroUsize::new(buf_size).unwrap(),
                    retry: retry(&c.reconnect.retry, field)?,
                    spool_bytes: NonZeroUsize::new(spool).unwrap(),
                    framing: framing(c.preprocessors.as_deref(), field)?,
                };
                let fmt = format(field, c.codec, c.postprocessors, c.metadata)?;
                (
                    plain(SinkKind::UnixSocketClient(cfg), fmt, c.name),
                    c.inputs,
                )
            }
            RawSink::Reply(r) => {
                let queue = r.queue_bytes.unwrap_or(1 << 20);
                if !(1024..=1 << 30).contains(&queue) {
                    return Err(invalid(
                        format!("{field}.queue_bytes"),
                        "must be between 1024 bytes and 1 GiB",
                    ));
                }
                let write_timeout = duration(
                    &r.write_timeout,
                    Duration::from_secs(10),
                    &format!("{field}.write_timeout"),
                )?;
                if write_timeout.is_zero() {
                    return Err(invalid(format!("{field}.write_timeout"), "must be above 0"));
                }
                if r.route_field.as_ref().is_some_and(String::is_empty) {
                    return Err(invalid(format!("{field}.route_field"), "must not be empty"));
                }
                let cfg = ReplyConfig {
                    queue_bytes: NonZeroUsize::new(queue).unwrap(),
                    write_timeout,
                    route_field: r.route_field,
                };
                let fmt = format(field, r.codec, r.postprocessors, r.metadata)?;
                (plain(SinkKind::Reply(cfg), fmt, r.name), r.inputs)
            }
        })
    }
}
