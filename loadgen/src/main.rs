//! loadgen: drives ringway (or any NDJSON socket server) and measures it.
//!
//! - `loadgen --target unix:PATH [options]`: send events, open loop (`--rate R`) or closed loop
//!   (`--rate max`), and report throughput and latency (see [`engine`]).
//! - `loadgen plot A.hgrm B.hgrm -o cmp.svg`: overlay latency distributions ([`plot`]).
//! - `loadgen compare`: the performance table of docs/performance.md, measured in one run ([`compare`]).
//! - `loadgen baseline --listen PATH`: the naive reference server the table compares with.
//!
//! Exit status: 0 when every event was sent (and, with `--roundtrip`, answered) without error;
//! 1 when events were lost or errors occurred; 2 when the run could not start.

mod baseline;
mod compare;
mod engine;
mod output;
mod payload;
mod plot;
mod run;
mod target;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    version,
    about = "Load generator for ringway: open/closed loop, HdrHistogram latency, plots",
    args_conflicts_with_subcommands = true,
    after_help = "Exit status: 0 when every event was sent (and, with --roundtrip, answered) without error; \
1 when events were lost, not sent, or a connection failed; 2 when the run could not start."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Plot latency by percentile from .hgrm files, overlaid (SVG or PNG by extension).
    Plot {
        /// .hgrm files (HdrHistogram percentile distributions), one series each.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The chart to write: .svg or .png.
        #[arg(short, long)]
        output: PathBuf,
        #[arg(long, default_value = "Latency by percentile")]
        title: String,
    },
    /// Measure the performance table of docs/performance.md in one run and print it with ratios.
    Compare(compare::CompareArgs),
    /// The naive reference server: tokio UnixListener, BufReader::lines, serde_json::Value per
    /// line, one channel send per event. Prints `baseline events=N invalid=M` on SIGTERM/SIGINT.
    Baseline {
        /// UNIX socket path to listen on.
        #[arg(long)]
        listen: PathBuf,
    },
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Where to connect: unix:PATH, tcp:HOST:PORT, ws://HOST:PORT/ or wss://HOST:PORT/ (each
    /// write of --lines-per-write events is one WebSocket text message: give the ws_server
    /// preprocessors = ["separate"]).
    #[arg(long, short)]
    target: Option<target::Target>,
    /// wss://: the CA (PEM) to trust [default: the system's roots].
    #[arg(long)]
    cafile: Option<std::path::PathBuf>,
    /// Connections, spread evenly over the threads.
    #[arg(long, short, default_value_t = 4)]
    connections: usize,
    /// Sender threads (default: one per CPU, at most one per connection).
    #[arg(long)]
    threads: Option<usize>,
    /// How long to send after the warm-up (e.g. 10s, 500ms, 1m) [default: 10s].
    #[arg(long, short, value_parser = duration, conflicts_with = "count")]
    duration: Option<Duration>,
    /// Send exactly this many events in all (warm-up included), then stop.
    #[arg(long, short = 'n')]
    count: Option<u64>,
    /// Sent but not measured: the first part of the run.
    #[arg(long, value_parser = duration, default_value = "0s")]
    warmup: Duration,
    /// Events per write() (client-side batching).
    #[arg(long, short = 'k', default_value_t = 1)]
    lines_per_write: usize,
    /// Events a second over all connections (open loop, e.g. 50000, 250k, 1.5M), or "max"
    /// (closed loop: as fast as the gateway takes them).
    #[arg(long, short, default_value = "max", value_parser = rate)]
    rate: Rate,
    /// Every line padded to exactly this many bytes (newline included).
    #[arg(long, conflicts_with = "payload")]
    size: Option<usize>,
    /// Replay the lines of this NDJSON file, in order, over and over.
    #[arg(long)]
    payload: Option<PathBuf>,
    /// Stamp each event with its intended send time (CLOCK_MONOTONIC ns) in this field, for the
    /// gateway's `[telemetry] latency_field`. `--stamp` alone uses "sent_ns".
    #[arg(long, num_args = 0..=1, default_missing_value = "sent_ns")]
    stamp: Option<String>,
    /// Read reply lines on each connection (an echo/reply config) and measure the round trip.
    #[arg(long)]
    roundtrip: bool,
    /// Once the schedule is done (or after Ctrl-C): how long to wait for what is still unsent,
    /// and with --roundtrip for the last replies.
    #[arg(long, value_parser = duration, default_value = "5s")]
    drain_timeout: Duration,
    /// Open loop: sleep in steps of this long and send what fell due together (latency is
    /// still charged from each write's intended time); "0ms" wakes for every write.
    #[arg(long, value_parser = duration, default_value = "0.1ms")]
    tick: Duration,
    /// Fail when the target takes no bytes for this long while some wait to be sent (a target
    /// that stopped reading); "0s" waits forever.
    #[arg(long, value_parser = duration, default_value = "30s")]
    stall_timeout: Duration,
    /// Write the latency distribution (roundtrip if measured, else send lag) as .hgrm.
    #[arg(long)]
    hgrm: Option<PathBuf>,
    /// Write every figure of the run as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Plot the latency distribution (.svg or .png).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// No live progress line.
    #[arg(long, short)]
    quiet: bool,
    /// Seed of the generated payload.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    Max,
    PerSec(f64),
}

fn duration(s: &str) -> Result<Duration, String> {
    ringway::config::values::parse_duration(s)
}

fn rate(s: &str) -> Result<Rate, String> {
    if s == "max" {
        return Ok(Rate::Max);
    }
    let (num, mul) = match s.strip_suffix(['k', 'K']) {
        Some(n) => (n, 1e3),
        None => match s.strip_suffix('M') {
            Some(n) => (n, 1e6),
            None => (s, 1.0),
        },
    };
    match num.parse::<f64>() {
        Ok(r) if r * mul >= 1.0 && (r * mul).is_finite() => Ok(Rate::PerSec(r * mul)),
        _ => Err(format!(
            "{s:?}: expected events a second (e.g. 50000, 250k, 1.5M, at least 1) or \"max\""
        )),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Plot {
            files,
            output,
            title,
        }) => plot_files(&files, &output, &title).map(|()| ExitCode::SUCCESS),
        Some(Command::Compare(args)) => compare::run(&args),
        Some(Command::Baseline { listen }) => baseline::run(&listen).map(|()| ExitCode::SUCCESS),
        None => run::run(&cli.run),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadgen: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn plot_files(files: &[PathBuf], output: &std::path::Path, title: &str) -> anyhow::Result<()> {
    let series = files
        .iter()
        .map(|f| plot::load(f))
        .collect::<Result<Vec<_>, _>>()?;
    plot::plot(&series, output, title)?;
    eprintln!("loadgen: wrote {}", output.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_suffixes() {
        assert_eq!(rate("max"), Ok(Rate::Max));
        assert_eq!(rate("250k"), Ok(Rate::PerSec(250_000.0)));
        assert_eq!(rate("1.5M"), Ok(Rate::PerSec(1_500_000.0)));
        assert_eq!(rate("10"), Ok(Rate::PerSec(10.0)));
        assert!(rate("0").is_err() && rate("fast").is_err() && rate("-5").is_err());
    }
}
