//! The `ringway` binary: CLI → Config → gateway::run. The only place `anyhow` meets the user.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ringway::config::Config;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A high-performance NDJSON socket gateway: services write newline-delimited JSON to its UNIX
/// socket; ringway validates every line and hands it, in order and without loss, to its sinks.
///
/// With no command it runs an embedded default config: a UNIX socket at
/// $XDG_RUNTIME_DIR/ringway.sock (else /tmp/ringway-<uid>.sock), json codec, stdout sink.
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// Log filter (error, warn, info, debug, trace, or a tracing directive); RUST_LOG overrides it.
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway with a TOML config file (SIGTERM or SIGINT stops it cleanly).
    Run {
        /// Path of the TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a TOML config file; an error names the field's path (sources[0].codec) and what
    /// was expected. Exit status 0 if valid.
    Check {
        /// Path of the TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print the embedded default config (a starting point for your own file).
    DefaultConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&cli.log_level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ringway: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = match cli.command {
        Some(Command::Check { config }) => {
            Config::from_file(&config)
                .with_context(|| format!("{} is not a valid config", config.display()))?;
            println!("config OK: {}", config.display());
            return Ok(ExitCode::SUCCESS);
        }
        Some(Command::DefaultConfig) => {
            print!("{}", ringway::config::DEFAULT_CONFIG);
            return Ok(ExitCode::SUCCESS);
        }
        Some(Command::Run { config }) => Config::from_file(&config)
            .with_context(|| format!("{} is not a valid config", config.display()))?,
        None => Config::embedded_default().context("the embedded default config")?,
    };
    let outcome = ringway::gateway::run(config)?;
    let summary = outcome.counters;
    tracing::info!("stopped: {}", summary.details());
    if summary.lost_at_shutdown > 0 {
        tracing::error!(
            "{} events could not be written before the shutdown grace ran out",
            summary.lost_at_shutdown
        );
    }
    eprintln!("{}", summary.summary_line());
    if outcome.abandoned {
        // Blocked threads would keep the process alive: leave now.
        std::process::exit(1);
    }
    Ok(ExitCode::SUCCESS)
}
