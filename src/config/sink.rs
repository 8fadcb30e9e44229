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
    File {
        path: PathBuf,
        mode: FileMode,
    },
    Stdout,
    Null,
    Log,
    /// `unix_socket_client` or `ws_client` (by its target).
    Client(Box<ClientConfig>),
    Reply(ReplyConfig),
    /// Not in the config file: a buffer in this process, for in-process tests and tools that
    /// run the topology as a library (see [`Memory`]).
    Memory(Memory),
}

/// The bytes an in-process `Memory` sink has written, shared with whoever made it.
#[derive(Clone, Default)]
pub struct Memory(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Memory {
    /// Everything written so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Reloads compare configs by their Debug form: a `Memory` sink is named by its buffer, so
/// moving to another buffer is a change.
impl std::fmt::Debug for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Memory({:p})", std::sync::Arc::as_ptr(&self.0))
    }
}

impl SinkKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            SinkKind::File { .. } => "file",
            SinkKind::Stdout => "stdout",
            SinkKind::Null => "null",
            SinkKind::Log => "log",
            SinkKind::Client(c) => match c.target {
                ClientTarget::Unix(_) => "unix_socket_client",
                ClientTarget::Ws(_) => "ws_client",
            },
            SinkKind::Reply(_) => "reply",
            SinkKind::Memory(_) => "memory",
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
pub struct ClientConfig {
    pub target: ClientTarget,
    pub buf_size: NonZeroUsize,
    pub retry: Retry,
    /// Encoded bytes held while the peer is away; past this the sources feel backpressure.
    pub spool_bytes: NonZeroUsize,
    pub framing: FramingConfig,
}

/// Where a client sink connects.
#[derive(Debug, Clone)]
pub enum ClientTarget {
    /// `unix_socket_client`: a UNIX socket path.
    Unix(PathBuf),
    /// `ws_client`: a WebSocket URL.
    Ws(WsClientTarget),
}

impl ClientTarget {
    /// The path or URL, for logs and metadata.
    pub fn describe(&self) -> String {
        match self {
            ClientTarget::Unix(p) => p.display().to_string(),
            ClientTarget::Ws(w) => w.url.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct WsClientTarget {
    /// `ws://host:port/path` or `wss://…`, as configured.
    pub url: String,
    /// Host and port to connect to (from the URL).
    pub host: String,
    pub port: u16,
    /// `wss://` (or `tls` given): the TLS settings.
    pub tls: Option<ClientTls>,
    pub no_delay: bool,
    /// Send events as binary messages (else text).
    pub binary: bool,
    /// The peer's messages are split into lines by `preprocessors = ["separate"]`; else each
    /// is one event.
    pub split: bool,
}

/// `tls = true` (the system's roots is not used: give `cafile`), or `{ cafile, domain, cert,
/// key }`.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// PEM file of the CA(s) to trust.
    pub cafile: Option<PathBuf>,
    /// The name the server's certificate must carry (default: the URL's host).
    pub domain: Option<String>,
    /// A client certificate and key (PEM), for servers that ask for one.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
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

/// What every client sink (UNIX or WebSocket) has beside its target, checked.
fn client_config(
    target: ClientTarget,
    buf_size: usize,
    spool_bytes: Option<usize>,
    reconnect: &super::RawReconnect,
    preprocessors: Option<&[super::RawProcessor]>,
    field: &str,
) -> Result<ClientConfig, Error> {
    let spool = spool_bytes.unwrap_or(16 << 20);
    if !(4096..=16 << 30).contains(&spool) {
        return Err(invalid(
            format!("{field}.spool_bytes"),
            "must be between 4096 bytes and 16 GiB",
        ));
    }
    Ok(ClientConfig {
        target,
        buf_size: NonZeroUsize::new(buf_size).expect("a checked, non-zero buf_size"),
        retry: retry(&reconnect.retry, field)?,
        spool_bytes: NonZeroUsize::new(spool).unwrap(),
        framing: framing(preprocessors, field)?,
    })
}

/// A `ws_client`'s URL and TLS settings.
fn ws_target(c: &super::RawWsClient, field: &str) -> Result<WsClientTarget, Error> {
    let bad = |m: String| invalid(format!("{field}.url"), m);
    let (secure, rest) = if let Some(r) = c.url.strip_prefix("wss://") {
        (true, r)
    } else if let Some(r) = c.url.strip_prefix("ws://") {
        (false, r)
    } else {
        return Err(bad(format!(
            "{:?}: use ws://host:port/path or wss://…",
            c.url
        )));
    };
    let authority = rest.split('/').next().unwrap_or("");
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            let port = p
                .parse::<u16>()
                .map_err(|_| bad(format!("{:?}: {p:?} is not a port", c.url)))?;
            (h, port)
        }
        _ => (authority, if secure { 443 } else { 80 }),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad(format!("{:?} names no host", c.url)));
    }
    let tls = match &c.tls {
        Some(super::RawClientTls::On(false)) if secure => {
            return Err(invalid(
                format!("{field}.tls"),
                "wss:// needs TLS: drop tls = false",
            ))
        }
        Some(super::RawClientTls::On(false)) => None,
        Some(super::RawClientTls::On(true)) => Some(ClientTls::default()),
        Some(super::RawClientTls::With(o)) => {
            if o.cert.is_some() != o.key.is_some() {
                return Err(invalid(
                    format!("{field}.tls"),
                    "give both cert and key for a client certificate, or neither",
                ));
            }
            Some(ClientTls {
                cafile: o.cafile.clone(),
                domain: o.domain.clone(),
                cert: o.cert.clone(),
                key: o.key.clone(),
            })
        }
        None if secure => Some(ClientTls::default()),
        None => None,
    };
    if tls.is_some() && !secure {
        return Err(invalid(
            format!("{field}.tls"),
            "TLS is set but the url is ws://: use wss://",
        ));
    }
    Ok(WsClientTarget {
        url: c.url.clone(),
        host: host.to_string(),
        port,
        tls,
        no_delay: c.no_delay,
        binary: c.binary,
        split: c.preprocessors.is_some(),
    })
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
                let cfg = client_config(
                    ClientTarget::Unix(c.path),
                    buf_size,
                    c.spool_bytes,
                    &c.reconnect,
                    c.preprocessors.as_deref(),
                    field,
                )?;
                let fmt = format(field, c.codec, c.postprocessors, c.metadata)?;
                (
                    plain(SinkKind::Client(Box::new(cfg)), fmt, c.name),
                    c.inputs,
                )
            }
            RawSink::WsClient(c) => {
                let cfg = client_config(
                    ClientTarget::Ws(ws_target(&c, field)?),
                    64 * 1024,
                    c.spool_bytes,
                    &c.reconnect,
                    c.preprocessors.as_deref(),
                    field,
                )?;
                let fmt = format(field, c.codec, c.postprocessors, c.metadata)?;
                if fmt.separator != Some(b'\n') {
                    return Err(invalid(
                        format!("{field}.postprocessors"),
                        "a ws_client sends one message per event: keep the default separator",
                    ));
                }
                (
                    plain(SinkKind::Client(Box::new(cfg)), fmt, c.name),
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
