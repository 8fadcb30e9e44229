//! What a run reports: the human summary on stderr, and on request the latency distribution as
//! `.hgrm` (the gateway's own writer, so the formats match), every figure as JSON, and a plot.

use std::time::Duration;

use anyhow::Context as _;
use hdrhistogram::Histogram;
use ringway::telemetry::{hgrm, report::histogram_json};
use serde_json::json;

use crate::engine::{Limit, Plan, Tally};
use crate::RunArgs;

/// Everything a run measured.
pub struct RunReport {
    pub target: String,
    pub connections: usize,
    pub threads: usize,
    pub plan: Plan,
    pub stamp: Option<String>,
    pub mean_event_bytes: usize,
    pub elapsed: Duration,
    /// From the end of the warm-up to the last measured event accepted by the socket.
    pub window: Duration,
    pub interrupted: bool,
    pub tally: Tally,
}

impl RunReport {
    /// Events lost: sent and never answered (only known with `--roundtrip`).
    pub fn lost(&self) -> u64 {
        self.tally.missing_replies
    }

    pub fn throughput(&self) -> f64 {
        let secs = self.window.as_secs_f64();
        if secs > 0.0 {
            self.tally.measured as f64 / secs
        } else {
            0.0
        }
    }

    pub fn megabytes_per_sec(&self) -> f64 {
        let secs = self.window.as_secs_f64();
        if secs > 0.0 {
            self.tally.measured_bytes as f64 / secs / 1e6
        } else {
            0.0
        }
    }

    /// The distribution `--hgrm` and `--plot` write: roundtrip if measured, else send lag.
    pub fn main_latency(&self) -> (&'static str, &Histogram<u64>) {
        if self.plan.roundtrip {
            ("roundtrip", &self.tally.roundtrip)
        } else {
            ("send_lag", &self.tally.send_lag)
        }
    }

    fn mode(&self) -> String {
        match self.plan.rate {
            Some(r) => format!("open loop at {} events/s", si(r)),
            None => "closed loop (--rate max)".to_string(),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        let t = &self.tally;
        let mut latency = serde_json::Map::new();
        latency.insert("send_lag".into(), histogram_json(&t.send_lag, 1e6, "ms"));
        if self.plan.roundtrip {
            latency.insert("roundtrip".into(), histogram_json(&t.roundtrip, 1e6, "ms"));
        }
        json!({
            "target": self.target,
            "connections": self.connections,
            "threads": self.threads,
            "mode": if self.plan.rate.is_some() { "open" } else { "closed" },
            "rate": self.plan.rate,
            "lines_per_write": self.plan.lines_per_write,
            "duration_s": match self.plan.limit { Limit::Duration(d) => Some(d.as_secs_f64()), Limit::Count(_) => None },
            "count": match self.plan.limit { Limit::Count(n) => Some(n), Limit::Duration(_) => None },
            "warmup_s": self.plan.warmup.as_secs_f64(),
            "stamp_field": self.stamp,
            "mean_event_bytes": self.mean_event_bytes,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "window_s": self.window.as_secs_f64(),
            "interrupted": self.interrupted,
            "sent": t.sent,
            "bytes": t.bytes,
            "measured_events": t.measured,
            "measured_bytes": t.measured_bytes,
            "throughput_events_per_s": self.throughput(),
            "throughput_mb_per_s": self.megabytes_per_sec(),
            "failed": t.failed,
            "errors": t.errors.len(),
            "error_messages": t.errors,
            "replies": t.replies,
            "missing_replies": t.missing_replies,
            "unexpected_replies": t.unexpected_replies,
            "lost": self.lost(),
            "latency": latency,
        })
    }
}

/// `1 connection`, `2 connections`.
fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// `1234567.0` → `1.23M`.
pub fn si(v: f64) -> String {
    match v {
        v if v >= 1e9 => format!("{:.2}G", v / 1e9),
        v if v >= 1e6 => format!("{:.2}M", v / 1e6),
        v if v >= 1e4 => format!("{:.1}k", v / 1e3),
        v => format!("{v:.0}"),
    }
}

/// `p50 0.012  p90 …  max …` in ms.
pub fn percentiles(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "(no samples)".to_string();
    }
    let mut s = String::new();
    for p in hgrm::QUOTED {
        let label = if p == 100.0 {
            "max".to_string()
        } else {
            format!("p{p}")
        };
        s.push_str(&format!(
            "{label} {:.3}  ",
            h.value_at_percentile(p) as f64 / 1e6
        ));
    }
    s.push_str("(ms)");
    s
}

pub fn print_summary(r: &RunReport) {
    let t = &r.tally;
    let limit = match r.plan.limit {
        Limit::Duration(d) => format!("{:?}", d),
        Limit::Count(n) => format!("{n} events"),
    };
    let warmup = if r.plan.warmup.is_zero() {
        String::new()
    } else {
        format!(" after {:?} of warm-up", r.plan.warmup)
    };
    eprintln!(
        "loadgen: {} · {} · {} · {} · {limit}{warmup}{}",
        r.target,
        plural(r.connections, "connection"),
        plural(r.threads, "thread"),
        r.mode(),
        if r.interrupted { " · interrupted" } else { "" }
    );
    eprintln!(
        "              {} per write",
        plural(r.plan.lines_per_write, "event")
    );
    eprintln!(
        "  sent        {} events, {:.1} MB ({} bytes/event)",
        t.sent,
        t.bytes as f64 / 1e6,
        t.bytes
            .checked_div(t.sent)
            .unwrap_or(r.mean_event_bytes as u64)
    );
    eprintln!(
        "  throughput  {} events/s, {:.1} MB/s (measured {} events over {:.3} s)",
        si(r.throughput()),
        r.megabytes_per_sec(),
        t.measured,
        r.window.as_secs_f64()
    );
    if let Some(rate) = r.plan.rate {
        if r.throughput() < rate * 0.95 && t.measured > 0 {
            eprintln!(
                "  note        {} below the requested rate: the target pushed back (see send lag) or loadgen could not keep up",
                si(rate - r.throughput())
            );
        }
    }
    eprintln!("  send lag    {}", percentiles(&t.send_lag));
    eprintln!("              (intended send time → the socket took the bytes; not end-to-end)");
    if r.plan.roundtrip {
        eprintln!("  roundtrip   {}", percentiles(&t.roundtrip));
        eprintln!(
            "  replies     {} ({} missing, {} unexpected)",
            t.replies, t.missing_replies, t.unexpected_replies
        );
    }
    if let Some(f) = &r.stamp {
        eprintln!("  stamp       measured events carry {f:?} (CLOCK_MONOTONIC ns): end-to-end latency is in the");
        eprintln!("              gateway's report ([telemetry] latency_field = {f:?}, report_dir → event_latency.hgrm)");
    }
    eprintln!(
        "  errors      {} · events not sent: {}",
        t.errors.len(),
        t.failed
    );
    for e in &t.errors {
        eprintln!("    {e}");
    }
    if r.lost() > 0 {
        eprintln!(
            "  LOST        {} events were sent and never answered",
            r.lost()
        );
    }
}

/// Refuse, before the run, output paths that could not be written after it.
pub fn check_paths(args: &RunArgs) -> anyhow::Result<()> {
    for (flag, path) in [
        ("--hgrm", &args.hgrm),
        ("--json", &args.json),
        ("--plot", &args.plot),
    ] {
        let Some(path) = path else { continue };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => std::path::Path::new("."),
        };
        if !dir.is_dir() {
            anyhow::bail!(
                "{flag} {}: directory {} does not exist",
                path.display(),
                dir.display()
            );
        }
    }
    if let Some(p) = &args.plot {
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !matches!(ext, "svg" | "png") {
            anyhow::bail!("--plot {}: use a .svg or .png file name", p.display());
        }
    }
    Ok(())
}

pub fn write_files(r: &RunReport, args: &RunArgs) -> anyhow::Result<()> {
    let (name, h) = r.main_latency();
    if let Some(path) = &args.hgrm {
        std::fs::write(path, hgrm::render(h, 1e6))
            .with_context(|| format!("--hgrm {}", path.display()))?;
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&r.to_json()).expect("JSON serialises");
        std::fs::write(path, text + "\n").with_context(|| format!("--json {}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        let points = crate::plot::parse_hgrm(&hgrm::render(h, 1e6), name)?;
        let series = crate::plot::Series {
            label: format!("{name} ({})", r.mode()),
            points,
        };
        crate::plot::plot(&[series], path, &format!("loadgen {} latency", name))?;
    }
    Ok(())
}
