//! `ringway ctl`: the control socket's client. One request, one answer, shown as a table (or the
//! raw JSON payload with `--json`); `--watch` repeats it like top.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

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
    fn request(&self) -> (&'static str, Value) {
        match self {
            CtlCommand::Ping => ("ping", json!({})),
            CtlCommand::Stats => ("stats", json!({})),
            CtlCommand::Connections => ("connections", json!({})),
            CtlCommand::Latency { hgrm } => (
                "latency",
                json!({"format": if *hgrm { "hgrm" } else { "json" }}),
            ),
            CtlCommand::Pause { source } => ("pause", json!({ "source": source })),
            CtlCommand::Resume { source } => ("resume", json!({ "source": source })),
            CtlCommand::Close { id } => ("close", json!({ "id": id })),
            CtlCommand::LogLevel { level } => ("log_level", json!({ "level": level })),
            CtlCommand::Config => ("config", json!({})),
            CtlCommand::Reload => ("reload", json!({})),
            CtlCommand::Drain => ("drain", json!({})),
        }
    }
}

/// Ask once (or every `watch` interval). Returns the exit status: 0 answered, 1 the gateway
/// answered with an error, 2 it could not be asked.
pub fn run(opts: &Options, cmd: &CtlCommand) -> u8 {
    let (name, mut args) = cmd.request();
    if let CtlCommand::LogLevel { level: None } = cmd {
        args = json!({});
    }
    let mut previous: Option<(Instant, Value)> = None;
    loop {
        let payload = match ask(opts, name, &args) {
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
pub fn ask(opts: &Options, cmd: &str, args: &Value) -> std::io::Result<Result<Value, String>> {
    let mut s = UnixStream::connect(&opts.socket)?;
    s.set_read_timeout(Some(opts.timeout))?;
    s.set_write_timeout(Some(opts.timeout))?;
    let mut line = serde_json::to_vec(&json!({"cmd": cmd, "args": args}))?;
    line.push(b'\n');
    s.write_all(&line)?;
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
        CtlCommand::Stats => stats(p, previous),
        CtlCommand::Connections => connections(p),
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

fn stats(p: &Value, previous: Option<&(Instant, Value)>) -> String {
    let t = &p["totals"];
    let mut head = format!(
        "ringway: up {:.1}s, io_mode {}, {} workers, {} connections, when_full {}\n\
         events: in {}, out {}, dead-lettered {}, dropped {}",
        p["uptime_s"].as_f64().unwrap_or(0.0),
        n(&p["io_mode"]),
        p["workers"],
        n(&p["connections"]),
        n(&p["when_full"]),
        n(&t["events_in"]),
        n(&t["events_out"]),
        n(&t["dead_lettered"]),
        n(&t["dropped"]),
    );
    if let Some((at, prev)) = previous {
        let secs = at.elapsed().as_secs_f64().max(1e-3);
        let rate = |k: &str| {
            let d =
                t[k].as_u64().unwrap_or(0) as f64 - prev["totals"][k].as_u64().unwrap_or(0) as f64;
            group((d / secs).max(0.0) as u64)
        };
        head.push_str(&format!(
            " | now: {} in/s, {} out/s",
            rate("events_in"),
            rate("events_out")
        ));
    }
    let empty = Vec::new();
    let sources: Vec<Vec<String>> = p["sources"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|s| {
            vec![
                n(&s["name"]),
                n(&s["type"]),
                n(&s["address"]),
                if s["paused"] == true {
                    "PAUSED"
                } else {
                    "reading"
                }
                .into(),
                n(&s["connections"]),
                n(&s["events_in"]),
                n(&s["bytes_in"]),
                n(&s["dead_lettered"]),
                format!("{}/{}", n(&s["channel_depth"]), n(&s["channel_capacity"])),
            ]
        })
        .collect();
    let sinks: Vec<Vec<String>> = p["sinks"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|s| {
            let spool = match s.get("spool_bytes") {
                Some(b) => format!("{}/{}", n(b), n(&s["spool_capacity"])),
                None => "-".into(),
            };
            vec![
                n(&s["name"]),
                n(&s["type"]),
                s["inputs"]
                    .as_array()
                    .map(|a| a.iter().map(n).collect::<Vec<_>>().join(","))
                    .unwrap_or_default(),
                n(&s["events_out"]),
                n(&s["bytes_out"]),
                spool,
                s.get("circuit").map_or("-".into(), n),
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

fn connections(p: &Value) -> String {
    let empty = Vec::new();
    let rows: Vec<Vec<String>> = p["connections"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|c| {
            let peer = &c["peer"];
            let who = if peer.get("host").is_some() {
                format!("{}:{}", n(&peer["host"]), peer["port"])
            } else {
                format!(
                    "pid {} uid {} gid {}",
                    peer["pid"], peer["uid"], peer["gid"]
                )
            };
            vec![
                c["id"].to_string(),
                n(&c["source"]),
                who,
                n(&c["events_in"]),
                n(&c["bytes_in"]),
                format!("{:.1}s", c["age_s"].as_f64().unwrap_or(0.0)),
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
