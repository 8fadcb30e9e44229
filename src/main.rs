//! The `ringway` binary: CLI → Config → gateway::run. The only place `anyhow` meets the user.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ringway::config::{Config, LogFormat};
use ringway::gateway::Hooks;

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
    /// Default: the config's `log_level`, else info.
    #[arg(long, global = true)]
    log_level: Option<String>,
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
    /// Ask a running gateway over its control socket (see docs/operations.md, "Control socket").
    Ctl(CtlArgs),
}

#[derive(clap::Args)]
struct CtlArgs {
    /// The control socket. Default: the one the config given by --config uses, else the
    /// embedded default's ($XDG_RUNTIME_DIR/ringway.ctl, else /tmp/ringway-<uid>.ctl).
    #[arg(long, short)]
    socket: Option<PathBuf>,
    /// Find the control socket in this config file.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Print the gateway's JSON payload instead of a table.
    #[arg(long)]
    json: bool,
    /// Repeat every interval (e.g. 1s, 500ms) until interrupted, like top.
    #[arg(long, value_name = "INTERVAL")]
    watch: Option<String>,
    /// How long to wait for the gateway's answer.
    #[arg(long, default_value = "10s")]
    timeout: String,
    #[command(subcommand)]
    cmd: ringway::control::ctl::CtlCommand,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ringway: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Start logging (text or JSON lines on stderr) with a filter the control socket can change.
/// Returns the filter in effect and how to change it.
fn init_logging(level: &str, format: LogFormat) -> Hooks {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{reload, EnvFilter};
    let (filter, log_level) = match EnvFilter::try_from_default_env() {
        Ok(f) => (f, std::env::var("RUST_LOG").unwrap_or_default()),
        Err(_) => match EnvFilter::try_new(level) {
            Ok(f) => (f, level.to_string()),
            Err(_) => (EnvFilter::new("info"), "info".to_string()),
        },
    };
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => registry.with(fmt).init(),
        LogFormat::Json => registry.with(fmt.json()).init(),
    }
    Hooks {
        log_level,
        set_log_level: Box::new(move |l: &str| {
            let f = EnvFilter::try_new(l).map_err(|e| format!("bad log filter {l:?}: {e}"))?;
            handle.reload(f).map_err(|e| e.to_string())
        }),
    }
}

fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = match cli.command {
        Some(Command::Ctl(a)) => return ctl(a),
        Some(Command::Check { config }) => {
            Config::from_file(&config)
                .with_context(|| format!("{} is not a valid config", config.display()))?;
            println!("config OK: {}", config.display());
            return Ok(ExitCode::SUCCESS);
        }
        Some(Command::DefaultConfig) => {
            print!("{}", ringway::config::default_toml());
            return Ok(ExitCode::SUCCESS);
        }
        Some(Command::Run { config }) => Config::from_file(&config)
            .with_context(|| format!("{} is not a valid config", config.display()))?,
        None => Config::embedded_default().context("the embedded default config")?,
    };
    let level = cli
        .log_level
        .clone()
        .or_else(|| config.log_level.clone())
        .unwrap_or_else(|| "info".into());
    let hooks = init_logging(&level, config.log_format);
    let outcome = ringway::gateway::run(config, hooks)?;
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
    // Events that were taken in and could not be written: not a clean shutdown.
    if summary.lost_at_shutdown > 0 {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// `ringway ctl`: exit 0 on an answer, 1 if the gateway answered with an error, 2 if it could
/// not be asked (no socket, refused, timed out).
fn ctl(a: CtlArgs) -> anyhow::Result<ExitCode> {
    use ringway::control::ctl;
    let socket = match (a.socket, a.config) {
        (Some(s), _) => s,
        (None, Some(c)) => {
            Config::from_file(&c)
                .with_context(|| format!("{} is not a valid config", c.display()))?
                .control
                .path
        }
        (None, None) => {
            ringway::config::control_path_beside(&ringway::config::default_socket_path())
        }
    };
    let parse = |what: &str, s: &str| {
        ringway::config::parse_duration(s).map_err(|e| anyhow::anyhow!("--{what} {s:?}: {e}"))
    };
    let timeout = parse("timeout", &a.timeout)?;
    let watch = a.watch.as_deref().map(|w| parse("watch", w)).transpose()?;
    let opts = ctl::Options {
        socket,
        json: a.json,
        watch,
        timeout,
    };
    Ok(ExitCode::from(ctl::run(&opts, &a.cmd)))
}
