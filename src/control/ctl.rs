//! `ringway ctl`: the control socket's client. One request, one answer, shown as a table (or the
//! raw JSON payload with `--json`); `--watch` repeats it like top.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::protocol::{Connections, LatencyFormat, Peer, Request, Stats};

#[derive(clap::Subcommand, Debug)]
pub enum CtlCommand {
    /// Is the gateway there? (its pid and version)
    Ping,
    /// Counters per source and sink, channel depth, spools, totals.
    Stats,
    /// Every live connection: id, source, peer (pid/uid/gid or address), events, bytes, age.
    Connections,
    /// Latency percentiles; --hgrm prints the full distributions.
    Latency {
        #[arg(long)]
        hgrm: bool,
    },
    /// Stop reading a source: its writers block (backpressure); nothing is lost.
    Pause { source: String },
    /// Read a paused source again.
    Resume { source: String },
    /// Shut down one connection (by the id `connections` shows).
    Close { id: u64 },
    /// Show the log filter, or set it (error, warn, info, debug, trace, or a directive).
    LogLevel { level: Option<String> },
    /// The running config, as it was read.
    Config,
    /// Read the config file again and apply what can change live.
    Reload,
    /// Shut down gracefully, as on SIGTERM.
    Drain,
}

pub struct Options {
    pub socket: PathBuf,
    pub json: bool,
    pub watch: Option<Duration>,
    pub timeout: Duration,
}

impl CtlCommand {
    /// The request this command sends.
    pub fn request(&self) -> Request {
        match self {
            CtlCommand::Ping => Request::Ping,
            CtlCommand::Stats => Request::Stats,
            CtlCommand::Connections => Request::Connections,
            CtlCommand::Latency { hgrm } => Request::Latency(if *hgrm {
                LatencyFormat::Hgrm
            } else {
                LatencyFormat::Json
            }),
            CtlCommand::Pause { source } => Request::Pause {
                source: source.clone(),
            },
            CtlCommand::Resume { source } => Request::Resume {
                source: source.clone(),
            },
            CtlCommand::Close { id } => Request::Close { id: *id },
            CtlCommand::LogLevel { level } => Request::LogLevel(level.clone()),
            CtlCommand::Config => Request::Config,
            CtlCommand::Reload => Request::Reload,
            CtlCommand::Drain => Request::Drain,
        }
    }
}

/// Ask once (or every `watch` interval). Returns the exit status: 0 answered, 1 the gateway
/// answered with an error, 2 it could not be asked.
pub fn run(opts: &Options, cmd: &CtlCommand) -> u8 {
    let req = cmd.request();
    let name = req.name();
    let mut previous: Option<(Instant, Value)> = None;
    loop {
        let payload = match ask(opts, &req) {
            Ok(Ok(p)) => p,
            Ok(Err(msg)) => {
                eprintln!("ringway ctl: {name}: {msg}");
                return 1;
            }
            Err(e) => {
                eprintln!(
                    "ringway ctl: cannot ask the gateway at {}: {e} (is ringway running? \
                     --socket PATH or --config FILE names another control socket)",
                    opts.socket.display()
                );
                return 2;
            }
        };
        let now = Instant::now();
        let text = if opts.json {
            serde_json::to_string_pretty(&payload).unwrap_or_default()
        } else {
            render(cmd, &payload, previous.as_ref())
        };
        if opts.watch.is_some() && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            print!("\x1b[H\x1b[2J");
        }
        println!("{text}");
        let _ = std::io::stdout().flush();
        match opts.watch {
            Some(every) => {
                previous = Some((now, payload));
                std::thread::sleep(every);
            }
            None => return 0,
        }
    }
}

/// One request on a fresh connection: `Ok(Ok(payload))`, `Ok(Err(the gateway's error))`, or
/// `Err` if it could not be asked.
pub fn ask(opts: &Options, req: &Request) -> std::io::Result<Result<Value, String>> {
    let mut s = UnixStream::connect(&opts.socket)?;
    s.set_read_timeout(Some(opts.timeout))?;
    s.set_write_timeout(Some(opts.timeout))?;
    s.write_all(&req.to_line())?;
    let mut answer = String::new();
    BufReader::new(&s).read_line(&mut answer)?;
    if answer.is_empty() {
        return Err(std::io::Error::other(
            "the gateway closed the connection without answering",
        ));
    }
    let v: Value = serde_json::from_str(&answer)
        .map_err(|e| std::io::Error::other(format!("unreadable answer: {e}")))?;
    Ok(match v["status"].as_str() {
        Some("ok") => Ok(v["payload"].clone()),
        _ => Err(v["error"].as_str().unwrap_or("unknown error").to_string()),
    })
}

fn render(cmd: &CtlCommand, p: &Value, previous: Option<&(Instant, Value)>) -> String {
    match cmd {
        CtlCommand::Stats => typed(p, |now: Stats| {
            let before = previous.and_then(|(at, v)| Some((*at, typed_value::<Stats>(v)?)));
            stats(&now, before.as_ref())
        }),
        CtlCommand::Connections => typed(p, |c: Connections| connections(&c)),
        CtlCommand::Latency { hgrm: false } => latency(p),
        CtlCommand::Latency { hgrm: true } => p
            .as_object()
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| Some(format!("# {k}\n{}", v.as_str()?)))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default(),
        CtlCommand::Config => p["text"].as_str().unwrap_or_default().to_string(),
        CtlCommand::Ping => format!(
            "pong: ringway {} (pid {})",
            p["version"].as_str().unwrap_or("?"),
            p["pid"]
        ),
        _ => brief(p),
    }
}

/// A payload read as the reply it should be, rendered by `show`; shown raw if it is not.
fn typed<T: serde::de::DeserializeOwned>(p: &Value, show: impl FnOnce(T) -> String) -> String {
    match typed_value(p) {
        Some(t) => show(t),
        None => serde_json::to_string_pretty(p).unwrap_or_default(),
    }
}

fn typed_value<T: serde::de::DeserializeOwned>(p: &Value) -> Option<T> {
    serde_json::from_value(p.clone()).ok()
}

/// `key=value` pairs of a flat payload.
fn brief(p: &Value) -> String {
    match p.as_object() {
        Some(o) => o
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().map_or(v.to_string(), str::to_string)))
            .collect::<Vec<_>>()
            .join(" "),
        None => p.to_string(),
    }
}

/// Columns padded to their widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&width)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(header.iter().map(|h| h.to_string()).collect())];
    out.extend(rows.iter().map(|r| line(r.clone())));
    out.join("\n")
}

fn n(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Number(x) => match x.as_u64() {
            Some(u) => group(u),
            None => format!("{:.3}", x.as_f64().unwrap_or(0.0)),
        },
        other => other.to_string(),
    }
}

/// 1234567 → "1,234,567".
fn group(u: u64) -> String {
    let s = u.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn stats(p: &Stats, previous: Option<&(Instant, Stats)>) -> String {
    let t = &p.totals;
    let mut head = format!(
        "ringway: up {:.1}s, io_mode {}, {} workers, {} connections, when_full {}\n\
         events: in {}, out {}, dead-lettered {}, dropped {}",
        p.uptime_s,
        p.io_mode,
        p.workers,
        group(p.connections),
        p.when_full,
        group(t.events_in),
        group(t.events_out),
        group(t.dead_lettered),
        group(t.dropped),
    );
    if let Some((at, prev)) = previous {
        let secs = at.elapsed().as_secs_f64().max(1e-3);
        let rate = |now: u64, before: u64| group((now.saturating_sub(before) as f64 / secs) as u64);
        head.push_str(&format!(
            " | now: {} in/s, {} out/s",
            rate(t.events_in, prev.totals.events_in),
            rate(t.events_out, prev.totals.events_out)
        ));
    }
    let or_dash = |v: Option<usize>| v.map_or("-".to_string(), |x| group(x as u64));
    let sources: Vec<Vec<String>> = p
        .sources
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.kind.clone(),
                s.address.clone(),
                if s.paused { "PAUSED" } else { "reading" }.into(),
                group(s.connections),
                group(s.events_in),
                group(s.bytes_in),
                group(s.dead_lettered),
                format!(
                    "{}/{}",
                    or_dash(s.channel_depth),
                    or_dash(s.channel_capacity)
                ),
            ]
        })
        .collect();
    let sinks: Vec<Vec<String>> = p
        .sinks
        .iter()
        .map(|s| {
            let (spool, circuit) = match &s.client {
                Some(c) => (
                    format!(
                        "{}/{}",
                        group(c.spool_bytes as u64),
                        group(c.spool_capacity as u64)
                    ),
                    c.circuit.clone(),
                ),
                None => ("-".into(), "-".into()),
            };
            vec![
                s.name.clone(),
                s.kind.clone(),
                s.inputs.join(","),
                group(s.events_out),
                group(s.bytes_out),
                spool,
                circuit,
            ]
        })
        .collect();
    format!(
        "{head}\n\n{}\n\n{}",
        table(
            &[
                "SOURCE",
                "TYPE",
                "ADDRESS",
                "STATE",
                "CONNS",
                "EVENTS_IN",
                "BYTES_IN",
                "DEAD",
                "CHANNEL"
            ],
            &sources
        ),
        table(
            &[
                "SINK",
                "TYPE",
                "INPUTS",
                "EVENTS_OUT",
                "BYTES_OUT",
                "SPOOL",
                "CIRCUIT"
            ],
            &sinks
        )
    )
}

fn connections(p: &Connections) -> String {
    let rows: Vec<Vec<String>> = p
        .connections
        .iter()
        .map(|c| {
            let who = match &c.peer {
                Peer::Addr { host, port } => format!("{host}:{port}"),
                Peer::Cred { pid, uid, gid } => format!("pid {pid} uid {uid} gid {gid}"),
            };
            vec![
                c.id.to_string(),
                c.source.clone(),
                who,
                group(c.events_in),
                group(c.bytes_in),
                format!("{:.1}s", c.age_s),
            ]
        })
        .collect();
    format!(
        "{}\n({} connections)",
        table(
            &["ID", "SOURCE", "PEER", "EVENTS_IN", "BYTES_IN", "AGE"],
            &rows
        ),
        rows.len()
    )
}

fn latency(p: &Value) -> String {
    let rows: Vec<Vec<String>> = p
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(_, h)| h.is_object())
                .map(|(k, h)| {
                    let q = &h["percentiles"];
                    let pick = |name: &str| n(&q[name]);
                    vec![
                        k.clone(),
                        n(&h["unit"]),
                        n(&h["count"]),
                        pick("p50"),
                        pick("p90"),
                        pick("p99"),
                        pick("p99.9"),
                        n(&h["max"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    table(
        &[
            "HISTOGRAM",
            "UNIT",
            "COUNT",
            "P50",
            "P90",
            "P99",
            "P99.9",
            "MAX",
        ],
        &rows,
    )
}
