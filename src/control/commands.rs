//! The control commands: what each one reads or changes, and the JSON it answers with.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{json, Map, Value};

use crate::channel::LaneGauge;
use crate::config::{Config, SinkConfig};
use crate::event::SourceMeta;
use crate::sink::client::Spool;
use crate::source::Registry;
use crate::telemetry::{hgrm, report, Counters, SinkCounters};

/// Sets the log filter; returns an error message for a bad directive.
pub type SetLogLevel = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// What the commands see of the running gateway.
pub struct Control {
    pub started: Instant,
    pub io_mode: String,
    pub workers: usize,
    pub counters: Arc<Counters>,
    /// Every event stream's source (sources in config order, then client sinks' replies), with
    /// where it listens or reads.
    /// (Sources added by `reload` are appended; removed ones leave.)
    pub streams: Mutex<Vec<(Arc<SourceMeta>, String)>>,
    pub sinks: Vec<SinkView>,
    pub lanes: Arc<LaneGauge>,
    pub registry: Arc<Registry>,
    /// The running config (replaced by a successful `reload`).
    pub config: Mutex<Config>,
    pub reconfig: Arc<crate::sink::Reconfig>,
    pub policy: Arc<crate::channel::Policy>,
    pub log_level: Mutex<String>,
    pub set_log_level: SetLogLevel,
    /// Asks the gateway to shut down as on SIGTERM.
    pub drain: tokio::sync::mpsc::UnboundedSender<()>,
    /// The running sources (`reload` adds and removes them).
    pub running: Arc<crate::source::running::Running>,
    /// One `reload` at a time (the control socket's and SIGHUP's).
    pub reload_lock: tokio::sync::Mutex<()>,
}

/// A sink as `stats` shows it.
pub struct SinkView {
    pub cfg: SinkConfig,
    /// The streams it takes, by name (`reload` may change them).
    pub inputs: Mutex<Vec<String>>,
    /// The lanes it takes (with their codec), including those of removed sources still
    /// draining.
    pub lanes: Mutex<Vec<(usize, crate::codec::Codec)>>,
    pub counters: Arc<SinkCounters>,
    pub spool: Option<Arc<Spool>>,
}

type Answer = Result<Value, String>;

impl Control {
    /// Run one command.
    pub async fn run(&self, cmd: &str, args: &Value) -> Answer {
        match cmd {
            "ping" => Ok(json!({"pong": true, "pid": std::process::id(),
                                 "version": env!("CARGO_PKG_VERSION")})),
            "echo" => Ok(args.clone()),
            "stats" => Ok(self.stats()),
            "connections" => Ok(self.connections()),
            "latency" => self.latency(args),
            "pause" => self.pause(args, true),
            "resume" => self.pause(args, false),
            "close" => self.close(args),
            "log_level" => self.log_level(args),
            "config" => {
                let c = self.config.lock().unwrap();
                Ok(json!({
                    "file": c.file.as_ref().map(|p| p.display().to_string()),
                    "text": c.text,
                }))
            }
            "reload" => self.reload().await,
            "drain" => {
                let _ = self.drain.send(());
                let grace = self.config.lock().unwrap().shutdown_timeout;
                Ok(json!({"draining": true, "shutdown_timeout_ms": grace.as_millis() as u64}))
            }
            _ => Err(format!(
                "unknown command {cmd:?}; commands: ping, echo, stats, connections, latency, \
                 pause, resume, close, log_level, config, reload, drain"
            )),
        }
    }

    fn stats(&self) -> Value {
        let totals = self.counters.snapshot();
        let streams = self.streams.lock().unwrap().clone();
        let sources: Vec<Value> = streams
            .iter()
            .map(|(m, at)| {
                let c = &m.counters;
                let lane = self.lanes.depth(m.stream);
                json!({
                    "name": m.name,
                    "type": m.kind.as_str(),
                    "address": at,
                    "paused": m.pause.is_paused(),
                    "connections": c.connections_active.load(Relaxed),
                    "connections_total": c.connections_accepted.load(Relaxed),
                    "events_in": c.events_in.load(Relaxed),
                    "bytes_in": c.bytes_in.load(Relaxed),
                    "dead_lettered": c.dead_lettered.load(Relaxed),
                    "channel_depth": lane.map(|l| l.0),
                    "channel_capacity": lane.map(|l| l.1),
                })
            })
            .collect();
        let sinks: Vec<Value> = self
            .sinks
            .iter()
            .map(|s| {
                let mut v = json!({
                    "name": s.cfg.name,
                    "type": s.cfg.kind.type_name(),
                    "inputs": *s.inputs.lock().unwrap(),
                    "events_out": s.counters.events_out.load(Relaxed),
                    "bytes_out": s.counters.bytes_out.load(Relaxed),
                });
                if let Some(sp) = &s.spool {
                    let (bytes, bound) = sp.depth();
                    v["spool_bytes"] = json!(bytes);
                    v["spool_capacity"] = json!(bound);
                    let st = &sp.status;
                    v["connected"] = json!(st.connected.load(Relaxed));
                    v["reconnects"] = json!(st.reconnects.load(Relaxed));
                    v["circuit"] = json!(if st.circuit_open.load(Relaxed) {
                        "open"
                    } else {
                        "closed"
                    });
                }
                v
            })
            .collect();
        json!({
            "uptime_s": self.started.elapsed().as_secs_f64(),
            "io_mode": self.io_mode,
            "workers": self.workers,
            "when_full": match self.policy.get() {
                crate::config::WhenFull::Block => "block",
                crate::config::WhenFull::DropNewest => "drop_newest",
            },
            "totals": totals,
            "connections": self.counters.connections_active.load(Relaxed),
            "sources": sources,
            "sinks": sinks,
        })
    }

    fn connections(&self) -> Value {
        let now = Instant::now();
        let list: Vec<Value> = self
            .registry
            .live()
            .iter()
            .map(|c| {
                let mut v = json!({
                    "id": c.id,
                    "source": c.source.name,
                    "events_in": c.counters.events_in.load(Relaxed),
                    "bytes_in": c.counters.bytes_in.load(Relaxed),
                    "age_s": now.duration_since(c.opened).as_secs_f64(),
                });
                match c.peer_addr {
                    Some(a) => v["peer"] = json!({"host": a.ip().to_string(), "port": a.port()}),
                    None => {
                        v["peer"] = json!({"pid": c.pid, "uid": c.uid, "gid": c.gid});
                    }
                }
                v
            })
            .collect();
        json!({ "connections": list })
    }

    fn latency(&self, args: &Value) -> Answer {
        let hist = self.counters.histograms();
        let format = args.get("format").and_then(Value::as_str).unwrap_or("json");
        let mut out = Map::new();
        for (name, h, unit, unit_name) in hist.named() {
            let v = match format {
                "json" => report::histogram_json(h, unit, unit_name),
                "hgrm" => Value::String(hgrm::render(h, unit)),
                other => {
                    return Err(format!(
                        "unknown format {other:?}: \"json\" (percentiles) or \"hgrm\""
                    ))
                }
            };
            out.insert(name.to_string(), v);
        }
        out.insert("unstamped_events".into(), json!(hist.unstamped));
        Ok(Value::Object(out))
    }

    fn pause(&self, args: &Value, paused: bool) -> Answer {
        let name = args
            .get("source")
            .and_then(Value::as_str)
            .ok_or("args.source (a source name) is required")?;
        let streams = self.streams.lock().unwrap().clone();
        let Some((m, _)) = streams.iter().find(|(m, _)| m.name == name) else {
            let known: Vec<&str> = streams.iter().map(|(m, _)| m.name.as_str()).collect();
            return Err(format!(
                "no source named {name:?} (there are: {})",
                known.join(", ")
            ));
        };
        if !matches!(
            m.kind,
            crate::config::SourceKind::UnixSocketServer
                | crate::config::SourceKind::TcpServer
                | crate::config::SourceKind::WsServer
        ) {
            return Err(format!(
                "{name:?} is a {} source; only unix_socket_server, tcp_server and ws_server sources can be paused",
                m.kind
            ));
        }
        let changed = m.pause.set(paused);
        if !paused {
            self.registry.wake_all();
        }
        tracing::info!(source = %name, "source {} by the control socket", if paused { "paused" } else { "resumed" });
        Ok(json!({"source": name, "paused": paused, "changed": changed}))
    }

    fn close(&self, args: &Value) -> Answer {
        let id = args
            .get("id")
            .and_then(Value::as_u64)
            .ok_or("args.id (a connection id, see `connections`) is required")?;
        if self.registry.close(id) {
            tracing::info!(conn = id, "connection closed by the control socket");
            Ok(json!({"id": id, "closing": true}))
        } else {
            Err(format!("no live connection {id}"))
        }
    }

    fn log_level(&self, args: &Value) -> Answer {
        let mut current = self.log_level.lock().unwrap();
        let Some(level) = args.get("level") else {
            return Ok(json!({"level": *current}));
        };
        let level = level.as_str().ok_or(
            "args.level must be a string (error, warn, info, debug, trace, or a directive)",
        )?;
        (self.set_log_level)(level)?;
        let previous = std::mem::replace(&mut *current, level.to_string());
        Ok(json!({"level": level, "previous": previous}))
    }
}
