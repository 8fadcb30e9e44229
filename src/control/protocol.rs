//! The control protocol's requests, typed: what the server dispatches on and what `ringway ctl`
//! sends, so the two cannot drift. On the wire a request is one JSON line,
//! `{"cmd": "<name>", "args": {…}}` (`args` optional); [`Request::parse`] reads it and
//! [`Request::to_line`] writes it. Answers are `{"status": "ok", "payload": …}` or
//! `{"status": "error", "error": "…"}`; the payloads of `stats` and `connections` are typed too
//! ([`Stats`], [`Connections`]), for the server, `ctl` and the tests alike.

use serde_json::{json, Map, Value};

use crate::telemetry::Snapshot;

/// `latency`'s output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencyFormat {
    /// Percentiles, as JSON.
    Json,
    /// HdrHistogram's percentile-distribution text.
    Hgrm,
}

/// One control request.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Is the gateway there? (its pid and version)
    Ping,
    /// The args, back as they came.
    Echo(Map<String, Value>),
    Stats,
    Connections,
    Latency(LatencyFormat),
    Pause {
        source: String,
    },
    Resume {
        source: String,
    },
    Close {
        id: u64,
    },
    /// Show the log filter (None), or set it.
    LogLevel(Option<String>),
    Config,
    Reload,
    Drain,
}

/// Every command's name, for the error an unknown one gets.
pub const COMMANDS: &str =
    "ping, echo, stats, connections, latency, pause, resume, close, log_level, config, reload, drain";

impl Request {
    /// The command's name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Ping => "ping",
            Request::Echo(_) => "echo",
            Request::Stats => "stats",
            Request::Connections => "connections",
            Request::Latency(_) => "latency",
            Request::Pause { .. } => "pause",
            Request::Resume { .. } => "resume",
            Request::Close { .. } => "close",
            Request::LogLevel(_) => "log_level",
            Request::Config => "config",
            Request::Reload => "reload",
            Request::Drain => "drain",
        }
    }

    /// The request's `args` object.
    pub fn args(&self) -> Value {
        match self {
            Request::Echo(m) => Value::Object(m.clone()),
            Request::Latency(f) => json!({"format": match f {
                LatencyFormat::Json => "json",
                LatencyFormat::Hgrm => "hgrm",
            }}),
            Request::Pause { source } | Request::Resume { source } => json!({ "source": source }),
            Request::Close { id } => json!({ "id": id }),
            Request::LogLevel(Some(level)) => json!({ "level": level }),
            _ => json!({}),
        }
    }

    /// The request as one line (with its `\n`).
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(&json!({"cmd": self.name(), "args": self.args()}))
            .expect("a JSON value serialises");
        line.push(b'\n');
        line
    }

    /// Read one request line: `{"cmd": "...", "args": {...}}`. The error says what is wrong in
    /// words a person at a terminal can act on.
    pub fn parse(line: &[u8]) -> Result<Request, String> {
        let text = std::str::from_utf8(line).map_err(|_| "the request is not UTF-8".to_string())?;
        let v: Value = serde_json::from_str(text.trim())
            .map_err(|e| format!("the request is not JSON ({e}); send {{\"cmd\": \"ping\"}}"))?;
        let Value::Object(mut o) = v else {
            return Err("the request must be a JSON object like {\"cmd\": \"stats\"}".into());
        };
        let cmd = match o.remove("cmd") {
            Some(Value::String(c)) => c,
            Some(_) => return Err("\"cmd\" must be a string".into()),
            None => return Err("the request has no \"cmd\"".into()),
        };
        let args = match o.remove("args") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(a)) => a,
            Some(_) => return Err("\"args\" must be an object".into()),
        };
        if let Some(k) = o.keys().next() {
            return Err(format!(
                "unknown key {k:?} in the request (only \"cmd\" and \"args\")"
            ));
        }
        Request::from_parts(&cmd, args)
    }

    /// A command and its args, checked.
    pub fn from_parts(cmd: &str, args: Map<String, Value>) -> Result<Request, String> {
        let source = |args: &Map<String, Value>| {
            args.get("source")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| "args.source (a source name) is required".to_string())
        };
        Ok(match cmd {
            "ping" => Request::Ping,
            "echo" => Request::Echo(args),
            "stats" => Request::Stats,
            "connections" => Request::Connections,
            "latency" => Request::Latency(
                match args.get("format").and_then(Value::as_str).unwrap_or("json") {
                    "json" => LatencyFormat::Json,
                    "hgrm" => LatencyFormat::Hgrm,
                    other => {
                        return Err(format!(
                            "unknown format {other:?}: \"json\" (percentiles) or \"hgrm\""
                        ))
                    }
                },
            ),
            "pause" => Request::Pause {
                source: source(&args)?,
            },
            "resume" => Request::Resume {
                source: source(&args)?,
            },
            "close" => Request::Close {
                id: args
                    .get("id")
                    .and_then(Value::as_u64)
                    .ok_or("args.id (a connection id, see `connections`) is required")?,
            },
            "log_level" => Request::LogLevel(match args.get("level") {
                None | Some(Value::Null) => None,
                Some(Value::String(l)) => Some(l.clone()),
                Some(_) => {
                    return Err(
                        "args.level must be a string (error, warn, info, debug, trace, \
                                or a directive)"
                            .into(),
                    )
                }
            }),
            "config" => Request::Config,
            "reload" => Request::Reload,
            "drain" => Request::Drain,
            _ => return Err(format!("unknown command {cmd:?}; commands: {COMMANDS}")),
        })
    }
}

/// `stats`: counters per source and sink, channel depths, spools, totals.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    pub uptime_s: f64,
    pub io_mode: String,
    pub workers: usize,
    /// `block` or `drop_newest`.
    pub when_full: String,
    pub totals: Snapshot,
    /// Connections open now, every source.
    pub connections: u64,
    pub sources: Vec<SourceStats>,
    pub sinks: Vec<SinkStats>,
}

/// One event stream of `stats`: a source, or a client sink's replies.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SourceStats {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// Where it listens or reads.
    pub address: String,
    pub paused: bool,
    pub connections: u64,
    pub connections_total: u64,
    pub events_in: u64,
    pub bytes_in: u64,
    pub dead_lettered: u64,
    /// Batches queued in its channel lane (None once the lane has closed).
    pub channel_depth: Option<usize>,
    pub channel_capacity: Option<usize>,
}

/// One sink of `stats`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SinkStats {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// The streams it takes, by name.
    pub inputs: Vec<String>,
    pub events_out: u64,
    pub bytes_out: u64,
    /// A client sink's spool, connection and circuit.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientStats>,
}

/// What `stats` shows of a client sink (absent for the others).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ClientStats {
    pub spool_bytes: usize,
    pub spool_capacity: usize,
    pub connected: bool,
    pub reconnects: u64,
    /// `open` or `closed`.
    pub circuit: String,
}

/// `connections`: every live connection of the listening sources.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Connections {
    pub connections: Vec<Connection>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Connection {
    pub id: u64,
    pub source: String,
    pub events_in: u64,
    pub bytes_in: u64,
    pub age_s: f64,
    pub peer: Peer,
}

/// Who is at the other end: a TCP/WebSocket address, or a UNIX peer's credentials.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Peer {
    Addr { host: String, port: u16 },
    Cred { pid: i32, uid: u32, gid: u32 },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        assert_eq!(Request::parse(br#"{"cmd":"ping"}"#), Ok(Request::Ping));
        assert!(Request::parse(b"ping").unwrap_err().contains("not JSON"));
        assert!(Request::parse(br#"{"cmd":1}"#).is_err());
        assert!(Request::parse(br#"{"cmd":"stats","args":[1]}"#).is_err());
        assert!(Request::parse(br#"{"cmd":"stats","typo":1}"#)
            .unwrap_err()
            .contains("typo"));
        assert!(Request::parse(b"\xff").unwrap_err().contains("UTF-8"));
        assert!(Request::parse(br#"{"cmd":"nosuch"}"#)
            .unwrap_err()
            .contains("unknown command \"nosuch\""));
        assert!(Request::parse(br#"{"cmd":"pause"}"#)
            .unwrap_err()
            .contains("args.source"));
        assert!(Request::parse(br#"{"cmd":"close","args":{"id":"x"}}"#)
            .unwrap_err()
            .contains("args.id"));
        assert!(
            Request::parse(br#"{"cmd":"latency","args":{"format":"xml"}}"#)
                .unwrap_err()
                .contains("unknown format")
        );
        assert!(Request::parse(br#"{"cmd":"log_level","args":{"level":3}}"#).is_err());
    }

    #[test]
    fn every_request_survives_the_wire() {
        let mut echo = Map::new();
        echo.insert("a".into(), json!([1, "two"]));
        for r in [
            Request::Ping,
            Request::Echo(echo),
            Request::Stats,
            Request::Connections,
            Request::Latency(LatencyFormat::Json),
            Request::Latency(LatencyFormat::Hgrm),
            Request::Pause {
                source: "in".into(),
            },
            Request::Resume {
                source: "in".into(),
            },
            Request::Close { id: 42 },
            Request::LogLevel(None),
            Request::LogLevel(Some("debug,ringway=trace".into())),
            Request::Config,
            Request::Reload,
            Request::Drain,
        ] {
            assert_eq!(Request::parse(&r.to_line()), Ok(r.clone()), "{r:?}");
        }
    }
}
