//! `loadgen compare`: the performance table of docs/performance.md, measured in ONE run so that the noise of a
//! shared machine hits every contender alike, printed with ratios.
//!
//! 1. Peak ingest over a UNIX socket (64 connections, json codec, null sink, closed loop):
//!    ringway `io_mode = "uring"` and `"epoll"`, the naive baseline (`loadgen baseline`), and
//!    the parse limit (one core, memchr + simd-json over the same bytes in memory).
//! 2. Latency at fixed offered rates (10%, 50%, 80% of the uring peak), open loop, measured by
//!    the gateway from the `sent_ns` stamp (`[telemetry] latency_field`).
//! 3. Memory: the gateway's RSS with 10,000 idle connections, per connection (both loops).
//! 4. Scaling: uring peak throughput at 1, 16, 256 and 1,000 connections.
//!
//! Every gateway run is checked for loss: its summary's `events_in` must equal what loadgen sent.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use crate::output::{si, RunReport};
use crate::payload::{Payload, Shape};
use crate::target::Target;
use crate::{Rate, RunArgs};

#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// The ringway binary (default: beside this loadgen, else `ringway` on PATH).
    #[arg(long)]
    ringway: Option<PathBuf>,
    /// Sending time of each throughput and latency measurement.
    #[arg(long, value_parser = crate::duration, default_value = "5s")]
    duration: Duration,
    /// Warm-up of each measurement (sent, not measured).
    #[arg(long, value_parser = crate::duration, default_value = "1s")]
    warmup: Duration,
    /// Events per write for every client (client-side batching).
    #[arg(long, default_value_t = 32)]
    lines_per_write: usize,
    /// Connections of the peak and latency measurements.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Idle connections of the memory measurement.
    #[arg(long, default_value_t = 10_000)]
    idle: usize,
    /// Connection counts of the scaling measurement.
    #[arg(long, value_delimiter = ',', default_value = "1,16,256,1000")]
    scaling: Vec<usize>,
    /// Offered rates of the latency measurement, in percent of the uring peak.
    #[arg(long, value_delimiter = ',', default_value = "10,50,80",
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    latency_at: Vec<u32>,
    /// Keep the gateways' reports (.hgrm, report.json), a latency plot and results.json here.
    #[arg(long)]
    out_dir: Option<PathBuf>,
}

/// A ringway (or baseline) process under test.
struct Server {
    child: Child,
    socket: PathBuf,
    stderr: PathBuf,
}

impl Drop for Server {
    /// A server left behind by an error is killed, never left running.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Server {
    /// SIGTERM, wait, and return (exit status, stdout + stderr).
    fn stop(mut self) -> anyhow::Result<(std::process::ExitStatus, String)> {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("a child pid");
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!(
                    "{} did not stop within 60 s of SIGTERM",
                    self.socket.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = String::new();
        if let Some(mut s) = self.child.stdout.take() {
            std::io::Read::read_to_string(&mut s, &mut out)?;
        }
        out.push_str(&std::fs::read_to_string(&self.stderr).unwrap_or_default());
        Ok((status, out))
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

struct Bench<'a> {
    args: &'a CompareArgs,
    ringway: PathBuf,
    dir: PathBuf,
    runs: u32,
    lost: Vec<String>,
}

impl Bench<'_> {
    fn ringway(&mut self, mode: &str, report: bool) -> anyhow::Result<Server> {
        self.runs += 1;
        let n = self.runs;
        let socket = self.dir.join(format!("rw{n}.sock"));
        let report_dir = self.dir.join(format!("report{n}"));
        let mut cfg = format!(
            "io_mode = \"{mode}\"\nshutdown_timeout = \"20s\"\n\n[[sources]]\ntype = \"unix_socket_server\"\nname = \"in\"\npath = \"{}\"\n\n[[sinks]]\ntype = \"null\"\n",
            socket.display()
        );
        if report {
            cfg.push_str(&format!(
                "\n[telemetry]\nreport_dir = \"{}\"\nlatency_field = \"sent_ns\"\n",
                report_dir.display()
            ));
        }
        let config = self.dir.join(format!("ringway{n}.toml"));
        std::fs::write(&config, cfg)?;
        let mut cmd = Command::new(&self.ringway);
        cmd.args(["--log-level", "warn", "run", "--config"])
            .arg(&config);
        self.spawn(cmd, socket, &format!("ringway{n}"))
    }

    fn baseline(&mut self) -> anyhow::Result<Server> {
        self.runs += 1;
        let socket = self.dir.join(format!("base{}.sock", self.runs));
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg("baseline").arg("--listen").arg(&socket);
        self.spawn(cmd, socket, &format!("baseline{}", self.runs))
    }

    fn spawn(&self, mut cmd: Command, socket: PathBuf, name: &str) -> anyhow::Result<Server> {
        let stderr = self.dir.join(format!("{name}.stderr"));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr)?)
            .spawn()
            .with_context(|| format!("cannot start {:?}", cmd.get_program()))?;
        let mut server = Server {
            child,
            socket,
            stderr,
        };
        let start = Instant::now();
        while UnixStream::connect(&server.socket).is_err() {
            if server.child.try_wait()?.is_some() || start.elapsed() > Duration::from_secs(20) {
                let log = std::fs::read_to_string(&server.stderr).unwrap_or_default();
                bail!("{name} did not start listening:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    fn load(&self, server: &Server, connections: usize, rate: Rate) -> anyhow::Result<RunReport> {
        let args = RunArgs {
            target: Some(Target::Unix(server.socket.clone())),
            cafile: None,
            connections,
            threads: None,
            duration: Some(self.args.duration),
            count: None,
            warmup: self.args.warmup,
            lines_per_write: self.args.lines_per_write,
            rate,
            size: None,
            payload: None,
            stamp: Some("sent_ns".into()),
            roundtrip: false,
            drain_timeout: Duration::from_secs(5),
            tick: Duration::from_micros(100),
            stall_timeout: Duration::from_secs(30),
            hgrm: None,
            json: None,
            plot: None,
            quiet: true,
            seed: 1,
        };
        let r = crate::run::measure(&args)?;
        if r.interrupted {
            bail!("interrupted: the comparison is incomplete and is not reported");
        }
        if !r.tally.errors.is_empty() || r.tally.failed > 0 {
            bail!(
                "load on {} failed: {:?}",
                server.socket.display(),
                r.tally.errors
            );
        }
        Ok(r)
    }

    /// Stop `server` and check it took every event sent: ringway's summary must read
    /// `events_in = events_out = sent` with nothing dead-lettered or dropped, the baseline's
    /// `events = sent` with nothing invalid, and either must exit cleanly.
    fn finish(&mut self, server: Server, what: &str, sent: u64) -> anyhow::Result<()> {
        let (status, log) = server.stop()?;
        let counts: Vec<(&str, Option<u64>, u64)> = if log.contains("summary events_in=") {
            vec![
                ("events_in", parse_count(&log, "summary events_in="), sent),
                ("events_out", parse_count(&log, "events_out="), sent),
                ("dead_lettered", parse_count(&log, "dead_lettered="), 0),
                ("dropped", parse_count(&log, "dropped="), 0),
            ]
        } else {
            vec![
                ("events", parse_count(&log, "baseline events="), sent),
                ("invalid", parse_count(&log, " invalid="), 0),
            ]
        };
        for (key, got, want) in counts {
            let got = got.with_context(|| format!("{what}: no {key}= in its output:\n{log}"))?;
            if got != want {
                self.lost.push(format!(
                    "{what}: {key} = {got}, expected {want} (sent {sent})"
                ));
            }
        }
        if !status.success() {
            self.lost.push(format!("{what}: exited with {status}"));
        }
        Ok(())
    }

    /// Peak throughput of one contender (closed loop).
    fn peak(&mut self, server: Server, what: &str, conns: usize) -> anyhow::Result<f64> {
        eprintln!("compare: {what}, {conns} connections …");
        let r = self.load(&server, conns, Rate::Max)?;
        self.finish(server, what, r.tally.sent)?;
        Ok(r.throughput())
    }
}

/// One latency measurement at a fixed offered rate.
struct Latency {
    pct: u32,
    offered: f64,
    achieved: f64,
    /// The gateway's `event_latency` summary (intended send → sink write).
    event: Value,
    /// Of that, receive completion → sink write.
    ingest_p99: f64,
    /// Intended send → the socket took the bytes (loadgen's own lateness and backpressure).
    send_lag_p99: f64,
    hgrm: PathBuf,
}

fn parse_count(log: &str, key: &str) -> Option<u64> {
    let at = log.rfind(key)? + key.len();
    log[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Events a second one core validates from memory: memchr splits, simd-json checks.
fn parse_limit(duration: Duration) -> f64 {
    let payload = Payload::new(&Shape::Default, Some("sent_ns"), 1).expect("default payload");
    let mut data = Vec::new();
    for seq in 0..100_000u64 {
        payload.write(&mut data, (seq % 64) as u32, seq, Some(1_000_000_000_000));
    }
    let mut dec = ringway::codec::Decoder::new(ringway::codec::Codec::Json);
    let (mut events, start) = (0u64, Instant::now());
    while start.elapsed() < duration {
        let mut from = 0;
        for end in memchr::memchr_iter(b'\n', &data) {
            dec.check(&data[from..end]).expect("valid JSON");
            from = end + 1;
            events += 1;
        }
    }
    events as f64 / start.elapsed().as_secs_f64()
}

/// RSS growth of a gateway per idle connection.
fn idle_memory(b: &mut Bench<'_>, mode: &str) -> anyhow::Result<f64> {
    eprintln!("compare: {mode}, {} idle connections …", b.args.idle);
    let server = b.ringway(mode, true)?;
    let report = b.dir.join(format!("report{}/report.json", b.runs));
    std::thread::sleep(Duration::from_millis(300));
    let before = server.rss_kib();
    ringway::gateway::raise_fd_limit();
    let mut conns = Vec::with_capacity(b.args.idle);
    for i in 0..b.args.idle {
        conns.push(
            UnixStream::connect(&server.socket).with_context(|| format!("idle connection {i}"))?,
        );
    }
    // Let the gateway accept and register them all, then take the RSS once it is steady.
    let mut last = 0;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(200));
        let now = server.rss_kib();
        if now == last {
            break;
        }
        last = now;
    }
    let after = server.rss_kib();
    drop(conns);
    b.finish(server, &format!("{mode} idle"), 0)?;
    // The figure only counts if the gateway held every connection (no EMFILE on the way).
    let counters = &serde_json::from_slice::<Value>(&std::fs::read(&report)?)?["counters"];
    let accepted = counters["connections_accepted"].as_u64().unwrap_or(0);
    let errors = counters["accept_errors"].as_u64().unwrap_or(0);
    if accepted < b.args.idle as u64 || errors > 0 {
        b.lost.push(format!(
            "{mode} idle: the gateway accepted {accepted} of {} connections ({errors} accept errors)",
            b.args.idle
        ));
    }
    Ok(after.saturating_sub(before) as f64 * 1024.0 / b.args.idle as f64)
}

pub fn run(args: &CompareArgs) -> anyhow::Result<ExitCode> {
    let ringway = match &args.ringway {
        Some(p) => p.clone(),
        None => {
            let beside = std::env::current_exe()?.with_file_name("ringway");
            if beside.exists() {
                beside
            } else {
                PathBuf::from("ringway")
            }
        }
    };
    let tmp = tempfile::Builder::new()
        .prefix("loadgen-compare")
        .tempdir()?;
    let dir = args
        .out_dir
        .clone()
        .unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let mut b = Bench {
        args,
        ringway,
        dir,
        runs: 0,
        lost: Vec::new(),
    };
    let conns = args.connections;
    let started = Instant::now();

    eprintln!("compare: parse limit (one core, in memory) …");
    let limit = parse_limit(args.duration.min(Duration::from_secs(3)));
    let s = b.ringway("uring", false)?;
    let uring = b.peak(s, "ringway uring", conns)?;
    let s = b.ringway("epoll", false)?;
    let epoll = b.peak(s, "ringway epoll", conns)?;
    let s = b.baseline()?;
    let base = b.peak(s, "naive baseline", conns)?;

    if uring < 1.0 {
        bail!("the uring peak measured {uring} events/s: nothing to take percentages of");
    }
    let mut latency = Vec::new();
    for pct in &args.latency_at {
        let rate = uring * f64::from(*pct) / 100.0;
        eprintln!(
            "compare: latency at {pct}% of peak ({} events/s) …",
            si(rate)
        );
        let server = b.ringway("uring", true)?;
        let report_dir = b.dir.join(format!("report{}", b.runs));
        let r = b.load(&server, conns, Rate::PerSec(rate))?;
        b.finish(server, &format!("latency {pct}%"), r.tally.sent)?;
        let report: Value =
            serde_json::from_slice(&std::fs::read(report_dir.join("report.json"))?)?;
        let hgrm = b.dir.join(format!("latency-{pct}pct.hgrm"));
        std::fs::copy(report_dir.join("event_latency.hgrm"), &hgrm)?;
        latency.push(Latency {
            pct: *pct,
            offered: rate,
            achieved: r.throughput(),
            event: report["histograms"]["event_latency"].clone(),
            ingest_p99: report["histograms"]["ingest_to_sink"]["percentiles"]["p99"]
                .as_f64()
                .unwrap_or(f64::NAN),
            send_lag_p99: r.tally.send_lag.value_at_quantile(0.99) as f64 / 1e6,
            hgrm,
        });
    }

    let mem_uring = idle_memory(&mut b, "uring")?;
    let mem_epoll = idle_memory(&mut b, "epoll")?;

    let mut scaling = Vec::new();
    for &n in &args.scaling {
        let s = b.ringway("uring", false)?;
        scaling.push((n, b.peak(s, "ringway uring", n)?));
    }

    // The table.
    let r = |x: f64, of: f64| {
        if of > 0.0 {
            format!("{:.2}×", x / of)
        } else {
            "–".into()
        }
    };
    println!(
        "\n## ringway performance ({} per measurement, {} warm-up, {} lines per write; {} CPUs)\n",
        fmt_d(args.duration),
        fmt_d(args.warmup),
        args.lines_per_write,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("| Peak ingest, {conns} UNIX connections, json, null sink | events/s | vs baseline | vs parse limit (1 core) |");
    println!("|---|---:|---:|---:|");
    for (name, v) in [
        ("ringway, io_mode = uring", uring),
        ("ringway, io_mode = epoll", epoll),
        (
            "naive tokio baseline (lines + serde_json::Value + send per event)",
            base,
        ),
        (
            "parse limit: memchr + simd-json, one core, in memory",
            limit,
        ),
    ] {
        println!("| {name} | {} | {} | {} |", si(v), r(v, base), r(v, limit));
    }
    println!("\n| Latency, open loop, {conns} connections: intended send → sink write (measured by the gateway) | offered | achieved | p50 ms | p99 ms | p99.9 ms | max ms | gateway recv → sink p99 ms (separate) | loadgen send lag p99 ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for l in &latency {
        let p = |k: &str| l.event["percentiles"][k].as_f64().unwrap_or(f64::NAN);
        println!(
            "| {}% of the uring peak | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
            l.pct,
            si(l.offered),
            si(l.achieved),
            p("p50"),
            p("p99"),
            p("p99.9"),
            p("p100"),
            l.ingest_p99,
            l.send_lag_p99
        );
    }
    println!(
        "\n| Memory, {} idle connections | RSS per connection |",
        args.idle
    );
    println!("|---|---:|");
    println!(
        "| ringway, io_mode = uring | {:.1} KiB |",
        mem_uring / 1024.0
    );
    println!(
        "| ringway, io_mode = epoll | {:.1} KiB |",
        mem_epoll / 1024.0
    );
    println!("\n| Scaling (uring, closed loop) | events/s | vs 1 connection |");
    println!("|---|---:|---:|");
    let one = scaling.first().map_or(0.0, |s| s.1);
    for (n, v) in &scaling {
        println!("| {n} connections | {} | {} |", si(*v), r(*v, one));
    }
    println!(
        "\n(compare took {:.0} s; every gateway run received exactly what was sent{})",
        started.elapsed().as_secs_f64(),
        if b.lost.is_empty() {
            ""
        } else {
            " — EXCEPT the runs below"
        }
    );

    let hgrms: Vec<_> = latency.iter().map(|l| l.hgrm.clone()).collect();
    if args.out_dir.is_some() {
        let series = hgrms
            .iter()
            .map(|f| crate::plot::load(f))
            .collect::<Result<Vec<_>, _>>()?;
        crate::plot::plot(
            &series,
            &b.dir.join("latency.svg"),
            "ringway send → sink latency by offered rate",
        )?;
        let results = json!({
            "peak": {"uring": uring, "epoll": epoll, "baseline": base, "parse_limit": limit, "connections": conns},
            "latency": latency.iter().map(|l| json!({
                "percent_of_peak": l.pct, "offered": l.offered, "achieved": l.achieved,
                "event_latency_ms": l.event, "ingest_to_sink_p99_ms": l.ingest_p99,
                "loadgen_send_lag_p99_ms": l.send_lag_p99,
            })).collect::<Vec<_>>(),
            "idle_rss_bytes_per_connection": {"uring": mem_uring, "epoll": mem_epoll, "connections": args.idle},
            "scaling": scaling.iter().map(|(n, v)| json!({"connections": n, "events_per_s": v})).collect::<Vec<_>>(),
            "lost": b.lost,
        });
        std::fs::write(
            b.dir.join("results.json"),
            serde_json::to_string_pretty(&results)? + "\n",
        )?;
        eprintln!(
            "compare: reports, latency.svg and results.json in {}",
            b.dir.display()
        );
    }
    if !b.lost.is_empty() {
        for l in &b.lost {
            println!("LOST: {l}");
        }
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn fmt_d(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}
