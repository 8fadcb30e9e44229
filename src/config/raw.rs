//! The config as the user writes it: serde types that mirror the TOML, unknown fields refused.
//!
//! Tagged tables (`[[sources]]`, `[[sinks]]`, `[dead_letter]`) are read in two steps, the `type`
//! first and then the table as that type's struct, so an error deep inside one still names its
//! full path (`sources[0].codec`), which serde's internally tagged enums cannot do.
//! What it does not do: check values (see `config.rs`).

use std::path::PathBuf;

use serde::de::{self, DeserializeOwned, Deserializer};
use serde::Deserialize;

use crate::codec::Codec;

/// Separates an inner field path from its message inside a serde error, so that `from_toml`
/// can join it to the outer path.
pub(super) const PATH_SEP: char = '\u{1f}';

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub io_mode: IoMode,
    pub workers: Option<usize>,
    pub shutdown_timeout: Option<RawDuration>,
    #[serde(default)]
    pub sources: Vec<RawSource>,
    #[serde(default)]
    pub sinks: Vec<RawSink>,
    #[serde(default)]
    pub channel: RawChannel,
    pub dead_letter: Option<RawSink>,
    #[serde(default)]
    pub telemetry: RawTelemetry,
    #[serde(default)]
    pub control: super::control::RawControl,
    #[serde(default)]
    pub metrics: super::control::RawMetrics,
    #[serde(default)]
    pub log_format: LogFormat,
    pub log_level: Option<String>,
}

/// `log_format`: how the log lines on stderr look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    pub report_dir: Option<std::path::PathBuf>,
    pub latency_field: Option<String>,
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

#[derive(Debug)]
pub enum RawSource {
    UnixSocketServer(RawUnixServer),
    TcpServer(RawTcpServer),
    WsServer(RawWsServer),
    File(RawFileSource),
}

impl<'de> Deserialize<'de> for RawSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (kind, table) = tagged(d)?;
        match kind.as_str() {
            "unix_socket_server" => Ok(RawSource::UnixSocketServer(inner(table)?)),
            "tcp_server" => Ok(RawSource::TcpServer(inner(table)?)),
            "ws_server" => Ok(RawSource::WsServer(inner(table)?)),
            "file" => Ok(RawSource::File(inner(table)?)),
            other => Err(field_error(
                "type",
                format!("unknown source type {other:?}, expected \"unix_socket_server\", \"tcp_server\", \"ws_server\" or \"file\""),
            )),
        }
    }
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

/// `type = "tcp_server"`: `url = "127.0.0.1:4242"`, or `host` and `port`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTcpServer {
    pub name: Option<String>,
    pub url: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub buf_size: Option<usize>,
    pub backlog: Option<u32>,
    #[serde(default)]
    pub socket_options: RawSocketOptions,
    #[serde(default)]
    pub codec: RawCodec,
    pub preprocessors: Option<Vec<RawProcessor>>,
}

/// `type = "ws_server"`: a WebSocket server (tremor's options, plus limits and keepalive).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWsServer {
    pub name: Option<String>,
    pub url: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub tls: Option<RawServerTls>,
    pub backlog: Option<u32>,
    #[serde(default)]
    pub socket_options: RawSocketOptions,
    #[serde(default)]
    pub codec: RawCodec,
    pub preprocessors: Option<Vec<RawProcessor>>,
    pub handshake_timeout: Option<RawDuration>,
    pub max_message_size: Option<usize>,
    pub ping_interval: Option<RawDuration>,
    pub ping_timeout: Option<RawDuration>,
    pub max_connections: Option<usize>,
}

/// `tls = { cert = "server.pem", key = "server.key" }` (PEM files).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSocketOptions {
    #[serde(default = "yes")]
    pub no_delay: bool,
}

impl Default for RawSocketOptions {
    fn default() -> Self {
        RawSocketOptions { no_delay: true }
    }
}

fn yes() -> bool {
    true
}

/// `type = "file"` as a source: read an NDJSON file once, or follow it like `tail -F`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFileSource {
    pub name: Option<String>,
    pub path: PathBuf,
    #[serde(default)]
    pub follow: bool,
    pub buf_size: Option<usize>,
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
#[derive(Debug, Clone)]
pub enum RawProcessor {
    Name(String),
    Full(RawProcessorFull),
}

impl<'de> Deserialize<'de> for RawProcessor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match toml::Value::deserialize(d)? {
            toml::Value::String(name) => Ok(RawProcessor::Name(name)),
            toml::Value::Table(t) => Ok(RawProcessor::Full(inner(t)?)),
            other => Err(de::Error::custom(format!(
                "expected \"separate\" or {{ name = \"separate\", config = {{ … }} }}, found {}",
                other.type_str()
            ))),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProcessorFull {
    pub name: String,
    #[serde(default)]
    pub config: RawSeparate,
}

#[derive(Debug, Clone, Default, Deserialize)]
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

#[derive(Debug, Clone)]
pub enum RawSink {
    File(RawFileSink),
    Stdout(RawStdoutSink),
    Null(RawNullSink),
    UnixSocketClient(RawUnixClient),
    WsClient(RawWsClient),
    Reply(RawReplySink),
    /// Only for `[dead_letter]`: a rate-limited `warn!` line per record.
    Log(RawNoOptions),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFileSink {
    pub name: Option<String>,
    pub inputs: Option<Vec<String>>,
    pub path: PathBuf,
    #[serde(default)]
    pub mode: FileMode,
    #[serde(default)]
    pub codec: RawCodec,
    pub postprocessors: Option<Vec<String>>,
    #[serde(default)]
    pub metadata: MetadataMode,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStdoutSink {
    pub name: Option<String>,
    pub inputs: Option<Vec<String>>,
    #[serde(default)]
    pub codec: RawCodec,
    pub postprocessors: Option<Vec<String>>,
    #[serde(default)]
    pub metadata: MetadataMode,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNoOptions {}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNullSink {
    pub name: Option<String>,
    pub inputs: Option<Vec<String>>,
}

/// `type = "unix_socket_client"`: a sink that connects to `path`; what the peer sends back is
/// an event stream of the same name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUnixClient {
    pub name: Option<String>,
    pub inputs: Option<Vec<String>>,
    pub path: PathBuf,
    pub buf_size: Option<usize>,
    #[serde(default)]
    pub reconnect: RawReconnect,
    pub spool_bytes: Option<usize>,
    #[serde(default)]
    pub codec: RawCodec,
    pub postprocessors: Option<Vec<String>>,
    pub preprocessors: Option<Vec<RawProcessor>>,
    #[serde(default)]
    pub metadata: MetadataMode,
}

/// `type = "ws_client"`: tremor's options (`url`, `tls`, `no_delay`, `reconnect`), plus the
/// client sinks' spool and a `binary` switch.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWsClient {
    pub name: Option<String>,
    pub inputs: Option<Vec<String>>,
    pub url: String,
    pub tls: Option<RawClientTls>,
    #[serde(default = "yes")]
    pub no_delay: bool,
    #[serde(default)]
    pub binary: bool,
    #[serde(default)]
    pub reconnect: RawReconnect,
    pub spool_bytes: Option<usize>,
    #[serde(default)]
    pub codec: RawCodec,
    pub postprocessors: Option<Vec<String>>,
    pub preprocessors: Option<Vec<RawProcessor>>,
    #[serde(default)]
    pub metadata: MetadataMode,
}

/// `tls = true`, or `tls = { cafile, domain, cert, key }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawClientTls {
    On(bool),
    With(RawClientTlsOptions),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientTlsOptions {
    pub cafile: Option<PathBuf>,
    pub domain: Option<String>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReconnect {
    #[serde(default)]
    pub retry: RawRetry,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    pub interval_ms: Option<u64>,
    pub growth_rate: Option<f64>,
    pub max_retries: Option<u64>,
    pub max_interval_ms: Option<u64>,
    pub jitter: Option<f64>,
}

/// `type = "reply"`: each event back down the connection it came from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReplySink {
    pub name: Option<String>,
    pub inputs: Option<Vec<String>>,
    pub route_field: Option<String>,
    pub queue_bytes: Option<usize>,
    pub write_timeout: Option<RawDuration>,
    #[serde(default)]
    pub codec: RawCodec,
    pub postprocessors: Option<Vec<String>>,
    #[serde(default)]
    pub metadata: MetadataMode,
}

impl<'de> Deserialize<'de> for RawSink {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (kind, table) = tagged(d)?;
        match kind.as_str() {
            "file" => Ok(RawSink::File(inner(table)?)),
            "stdout" => Ok(RawSink::Stdout(inner(table)?)),
            "null" => Ok(RawSink::Null(inner(table)?)),
            "unix_socket_client" => Ok(RawSink::UnixSocketClient(inner(table)?)),
            "ws_client" => Ok(RawSink::WsClient(inner(table)?)),
            "reply" => Ok(RawSink::Reply(inner(table)?)),
            "log" => Ok(RawSink::Log(inner(table)?)),
            other => Err(field_error(
                "type",
                format!("unknown sink type {other:?}, expected \"file\", \"stdout\", \"null\", \"unix_socket_client\", \"ws_client\" or \"reply\" (or \"log\" for [dead_letter])"),
            )),
        }
    }
}

/// Read a table and take its `type` out.
fn tagged<'de, D: Deserializer<'de>>(d: D) -> Result<(String, toml::Table), D::Error> {
    let mut table = toml::Table::deserialize(d)?;
    match table.remove("type") {
        Some(toml::Value::String(kind)) => Ok((kind, table)),
        Some(other) => Err(field_error(
            "type",
            format!("expected a string, found {}", other.type_str()),
        )),
        None => Err(field_error(
            "type",
            "missing; every source and sink names its type",
        )),
    }
}

/// Deserialize the rest of a tagged table, keeping the path of an error inside it.
fn inner<T: DeserializeOwned, E: de::Error>(table: toml::Table) -> Result<T, E> {
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let path = e.path().to_string();
        field_error(&path, e.into_inner().message())
    })
}

fn field_error<E: de::Error>(path: &str, message: impl std::fmt::Display) -> E {
    E::custom(format!("{path}{PATH_SEP}{message}"))
}

/// `"250ms"`, `"5s"`, … or a bare number of seconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawDuration {
    Secs(u64),
    Text(String),
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
