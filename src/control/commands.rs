//! The control commands: what each one reads or changes, and the JSON it answers with.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{json, Map, Value};

use super::protocol::{
    ClientStats, Connection, Connections, LatencyFormat, Peer, Request, SinkStats, SourceStats,
    Stats,
};
use crate::config::Config;
use crate::telemetry::{hgrm, report};
use crate::topology::Topology;

/// Sets the log filter; returns an error message for a bad directive.
pub type SetLogLevel = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// What the commands see of the running gateway.
pub struct Control {
    pub started: Instant,
    /// The running sources, lanes and sinks (`reload` changes them).
    pub topology: Arc<Topology>,
    pub log_level: Mutex<String>,
    pub set_log_level: SetLogLevel,
    /// Asks the gateway to shut down as on SIGTERM.
    pub drain: tokio::sync::mpsc::UnboundedSender<()>,
    /// One `reload` at a time (the control socket's and SIGHUP's).
    pub reload_lock: tokio::sync::Mutex<()>,
}

type Answer = Result<Value, String>;

/// A typed reply as the JSON payload it is sent as.
fn payload(reply: &impl serde::Serialize) -> Value {
    serde_json::to_value(reply).expect("replies serialise")
}

impl Control {
    /// Run one command.
    pub async fn run(&self, req: &Request) -> Answer {
        match req {
            Request::Ping => Ok(json!({"pong": true, "pid": std::process::id(),
                                 "version": env!("CARGO_PKG_VERSION")})),
            Request::Echo(args) => Ok(Value::Object(args.clone())),
            Request::Stats => Ok(payload(&self.stats())),
            Request::Connections => Ok(payload(&self.connections())),
            Request::Latency(format) => Ok(self.latency(*format)),
            Request::Pause { source } => self.pause(source, true),
            Request::Resume { source } => self.pause(source, false),
            Request::Close { id } => self.close(*id),
            Request::LogLevel(level) => self.log_level(level.as_deref()),
            Request::Config => {
                let c = self.topology.config.lock().unwrap();
                Ok(json!({
                    "file": c.file.as_ref().map(|p| p.display().to_string()),
                    "text": c.text,
                }))
            }
            Request::Reload => self.reload().await,
            Request::Drain => {
                let _ = self.drain.send(());
                let grace = self.topology.config.lock().unwrap().shutdown_timeout;
                Ok(json!({"draining": true, "shutdown_timeout_ms": grace.as_millis() as u64}))
            }
        }
    }

    fn stats(&self) -> Stats {
        let streams = self.topology.streams.lock().unwrap().clone();
        let sources = streams
            .iter()
            .map(|(m, at)| {
                let c = &m.counters;
                let lane = self.topology.lanes.depth(m.stream);
                SourceStats {
                    name: m.name.clone(),
                    kind: m.kind.as_str().to_string(),
                    address: at.clone(),
                    paused: m.pause.is_paused(),
                    connections: c.connections_active.load(Relaxed),
                    connections_total: c.connections_accepted.load(Relaxed),
                    events_in: c.events_in.load(Relaxed),
                    bytes_in: c.bytes_in.load(Relaxed),
                    dead_lettered: c.dead_lettered.load(Relaxed),
                    channel_depth: lane.map(|l| l.0),
                    channel_capacity: lane.map(|l| l.1),
                }
            })
            .collect();
        let sinks = self
            .topology
            .sinks
            .iter()
            .map(|s| SinkStats {
                name: s.cfg.name.clone(),
                kind: s.cfg.kind.type_name().to_string(),
                inputs: s.inputs.lock().unwrap().clone(),
                events_out: s.counters.events_out.load(Relaxed),
                bytes_out: s.counters.bytes_out.load(Relaxed),
                client: s.spool.as_ref().map(|sp| {
                    let (bytes, bound) = sp.depth();
                    let st = &sp.status;
                    ClientStats {
                        spool_bytes: bytes,
                        spool_capacity: bound,
                        connected: st.connected.load(Relaxed),
                        reconnects: st.reconnects.load(Relaxed),
                        circuit: if st.circuit_open.load(Relaxed) {
                            "open"
                        } else {
                            "closed"
                        }
                        .into(),
                    }
                }),
            })
            .collect();
        Stats {
            uptime_s: self.started.elapsed().as_secs_f64(),
            io_mode: self.topology.io_mode().to_string(),
            workers: self.topology.workers,
            when_full: match self.topology.policy.get() {
                crate::config::WhenFull::Block => "block",
                crate::config::WhenFull::DropNewest => "drop_newest",
            }
            .into(),
            totals: self.topology.counters.snapshot(),
            connections: self.topology.counters.connections_active.load(Relaxed),
            sources,
            sinks,
        }
    }

    fn connections(&self) -> Connections {
        let now = Instant::now();
        let connections = self
            .topology
            .registry
            .live()
            .iter()
            .map(|c| Connection {
                id: c.id,
                source: c.source.name.clone(),
                events_in: c.counters.events_in.load(Relaxed),
                bytes_in: c.counters.bytes_in.load(Relaxed),
                age_s: now.duration_since(c.opened).as_secs_f64(),
                peer: match c.peer_addr {
                    Some(a) => Peer::Addr {
                        host: a.ip().to_string(),
                        port: a.port(),
                    },
                    None => Peer::Cred {
                        pid: c.pid,
                        uid: c.uid,
                        gid: c.gid,
                    },
                },
            })
            .collect();
        Connections { connections }
    }

    fn latency(&self, format: LatencyFormat) -> Value {
        let hist = self.topology.counters.histograms();
        let mut out = Map::new();
        for (name, h, unit, unit_name) in hist.named() {
            let v = match format {
                LatencyFormat::Json => report::histogram_json(h, unit, unit_name),
                LatencyFormat::Hgrm => Value::String(hgrm::render(h, unit)),
            };
            out.insert(name.to_string(), v);
        }
        out.insert("unstamped_events".into(), json!(hist.unstamped));
        Value::Object(out)
    }

    fn pause(&self, name: &str, paused: bool) -> Answer {
        let streams = self.topology.streams.lock().unwrap().clone();
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
            self.topology.registry.wake_all();
        }
        tracing::info!(source = %name, "source {} by the control socket", if paused { "paused" } else { "resumed" });
        Ok(json!({"source": name, "paused": paused, "changed": changed}))
    }

    fn close(&self, id: u64) -> Answer {
        if self.topology.registry.close(id) {
            tracing::info!(conn = id, "connection closed by the control socket");
            Ok(json!({"id": id, "closing": true}))
        } else {
            Err(format!("no live connection {id}"))
        }
    }

    /// `reload` (and SIGHUP): read the config file again and have the topology take it (see
    /// `topology::reload` for what can change live); `log_level` is applied here.
    pub async fn reload(&self) -> Answer {
        let _one_at_a_time = self.reload_lock.lock().await;
        let (file, old_level) = {
            let c = self.topology.config.lock().unwrap();
            (c.file.clone(), c.log_level.clone())
        };
        let Some(path) = file else {
            return Err(
                "this gateway runs the embedded default config: there is no file to read again"
                    .into(),
            );
        };
        let new = Config::from_file(&path).map_err(|e| {
            format!(
                "{} is not a valid config, so the running one stays: {e}",
                path.display()
            )
        })?;
        let level = new
            .log_level
            .clone()
            .filter(|l| old_level.as_ref() != Some(l));
        let mut applied = self.topology.reload(new).await.map_err(|e| e.to_string())?;
        if let Some(level) = level {
            (self.set_log_level)(&level)?;
            *self.log_level.lock().unwrap() = level.clone();
            applied.push(format!("log_level → {level}"));
        }
        tracing::info!(file = %path.display(), "config reloaded: {}",
            if applied.is_empty() { "no changes".to_string() } else { applied.join("; ") });
        Ok(json!({"file": path.display().to_string(), "applied": applied}))
    }

    fn log_level(&self, level: Option<&str>) -> Answer {
        let mut current = self.log_level.lock().unwrap();
        let Some(level) = level else {
            return Ok(json!({"level": *current}));
        };
        (self.set_log_level)(level)?;
        let previous = std::mem::replace(&mut *current, level.to_string());
        Ok(json!({"level": level, "previous": previous}))
    }
}
