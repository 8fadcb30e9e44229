//! One load run: connect, start the sender threads on a common schedule, show progress, merge
//! what the threads measured, and report it ([`crate::output`]).

use std::process::ExitCode;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ringway::telemetry::mono_ns;

use crate::engine::{self, Ctx, Limit, Live, Plan, Tally};
use crate::output::{self, RunReport};
use crate::payload::{Payload, Shape};
use crate::{Rate, RunArgs};

pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    output::check_paths(args)?;
    let report = measure(args)?;
    output::print_summary(&report);
    if let Err(e) = output::write_files(&report, args) {
        // The run happened: its figures are above; only a file is missing.
        eprintln!("loadgen: error: {e:#}");
        return Ok(ExitCode::from(1));
    }
    if report.tally.measured == 0 && report.tally.sent > 0 {
        eprintln!("loadgen: error: every event was sent during the warm-up: nothing was measured (shorten --warmup or send more)");
        return Ok(ExitCode::from(1));
    }
    let clean = report.lost() == 0 && report.tally.errors.is_empty() && report.tally.failed == 0;
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Run the load described by `args` and return what was measured.
pub fn measure(args: &RunArgs) -> anyhow::Result<RunReport> {
    let Some(target) = &args.target else {
        bail!("--target is required (e.g. --target unix:/run/ringway.sock); see --help");
    };
    let websocket = matches!(target, crate::target::Target::Ws(..));
    if args.cafile.is_some() && !matches!(target, crate::target::Target::Ws(_, _, true)) {
        bail!("--cafile is for wss:// targets");
    }
    if websocket && args.roundtrip {
        bail!(
            "--roundtrip is not supported over ws:// yet (replies come back as WebSocket frames)"
        );
    }
    if args.connections == 0 || args.lines_per_write == 0 {
        bail!("--connections and --lines-per-write must be at least 1");
    }
    let limit = match (args.count, args.duration) {
        (Some(0), _) => bail!("--count must be at least 1"),
        (Some(n), _) => Limit::Count(n),
        (None, Some(d)) => Limit::Duration(d),
        (None, None) => Limit::Duration(Duration::from_secs(10)),
    };
    let shape = match (&args.payload, args.size) {
        (Some(p), _) => Shape::File(p.clone()),
        (None, Some(n)) => Shape::Size(n),
        (None, None) => Shape::Default,
    };
    let payload = Arc::new(Payload::new(&shape, args.stamp.as_deref(), args.seed)?);
    ringway::gateway::raise_fd_limit();
    let mut socks = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        socks.push((
            i as u32,
            target
                .connect(args.cafile.as_deref())
                .with_context(|| format!("connection {i}"))?,
        ));
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = args.threads.unwrap_or(cpus).clamp(1, args.connections);
    let plan = Plan {
        rate: match args.rate {
            Rate::Max => None,
            Rate::PerSec(r) => Some(r),
        },
        limit,
        warmup: args.warmup,
        lines_per_write: args.lines_per_write,
        roundtrip: args.roundtrip,
        drain_timeout: args.drain_timeout,
        tick: args.tick,
        stall_timeout: Some(args.stall_timeout).filter(|d| !d.is_zero()),
        websocket,
    };
    let live = Arc::new(Live::default());
    // Ctrl-C (or SIGTERM): stop scheduling, finish what is in flight, and report.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .context("installing signal handlers")?;
    let stop = Arc::clone(&live);
    std::thread::Builder::new()
        .name("loadgen-signal".into())
        .spawn(move || {
            // The first signal stops scheduling (the drain and the report follow); a second
            // one ends the process at once.
            for (n, _) in signals.forever().enumerate() {
                if n > 0 {
                    eprintln!("loadgen: second signal; exiting without a report");
                    std::process::exit(130);
                }
                stop.stop.store(true, Relaxed);
            }
        })
        .context("spawning the signal thread")?;
    let ctx = Arc::new(Ctx {
        plan: plan.clone(),
        payload,
        live: Arc::clone(&live),
        t0: mono_ns() + 50_000_000,
        connections: args.connections,
    });
    let mut per_thread: Vec<Vec<_>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, s) in socks.into_iter().enumerate() {
        per_thread[i % threads].push(s);
    }
    let started = Instant::now();
    let handles: Vec<_> = per_thread
        .into_iter()
        .enumerate()
        .map(|(i, socks)| {
            let ctx = Arc::clone(&ctx);
            std::thread::Builder::new()
                .name(format!("loadgen-{i}"))
                .spawn(move || engine::run_thread(&ctx, socks))
                .expect("spawning a sender thread")
        })
        .collect();
    let bar = progress(args.quiet);
    let mut last = (Instant::now(), 0u64);
    while !handles.iter().all(|h| h.is_finished()) {
        std::thread::sleep(Duration::from_millis(100));
        let sent = live.sent.load(Relaxed);
        if last.0.elapsed() >= Duration::from_millis(500) {
            let rate = (sent - last.1) as f64 / last.0.elapsed().as_secs_f64();
            let phase = if started.elapsed() < plan.warmup {
                "warm-up · "
            } else {
                ""
            };
            bar.set_message(format!(
                "{phase}{} events/s · sent {} · replies {} · errors {}",
                output::si(rate),
                output::si(sent as f64),
                output::si(live.replies.load(Relaxed) as f64),
                live.errors.load(Relaxed)
            ));
            last = (Instant::now(), sent);
        }
    }
    bar.finish_and_clear();
    let tally = handles
        .into_iter()
        .map(|h| h.join().expect("a sender thread panicked"))
        .reduce(Tally::merge)
        .expect("at least one thread");
    let warm_end = ctx.t0 + plan.warmup.as_nanos() as u64;
    // Up to the last event the socket took; an open-loop run for a duration lasts at least its
    // schedule, even if its last write fell due before the end.
    let mut end = tally.last_sent_at;
    if let (Some(_), Limit::Duration(d)) = (plan.rate, plan.limit) {
        if !live.stop.load(Relaxed) {
            end = end.max(warm_end + d.as_nanos() as u64);
        }
    }
    let window = Duration::from_nanos(end.saturating_sub(warm_end));
    Ok(RunReport {
        target: target.to_string(),
        connections: args.connections,
        threads,
        plan,
        stamp: args.stamp.clone(),
        mean_event_bytes: ctx.payload.mean_len(),
        elapsed: started.elapsed(),
        window,
        interrupted: live.stop.load(Relaxed),
        tally,
    })
}

fn progress(quiet: bool) -> ProgressBar {
    let target = if quiet {
        ProgressDrawTarget::hidden()
    } else {
        // Hidden by indicatif itself when stderr is not a terminal.
        ProgressDrawTarget::stderr_with_hz(4)
    };
    let bar = ProgressBar::with_draw_target(None, target);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            .expect("a valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(250));
    bar.set_message("connecting…");
    bar
}
