//! Helpers for ringway's integration tests, meant to read like the docs.
//!
//! - [`Gateway`] runs the real `ringway` binary on a config whose `{dir}` stands for a
//!   fresh temp dir, waits until its socket (UNIX or TCP, see [`Transport`]) accepts, and
//!   stops it with SIGTERM, handing back the [`Summary`] line. It is killed on drop, and its
//!   stderr is printed if the test panicked.
//! - [`Client`] (peer.rs) runs a real peer: `tests/clients/*.py` under python3, or socat;
//!   [`LineReader`] and [`Fifo`] read a stdout or FIFO sink.
//! - [`event`] (events.rs) is the generated event format shared with
//!   `tests/clients/produce.py`, and [`SeqChecker`] checks delivered lines against it:
//!   byte-exact, per-connection order, no gaps, no duplicates.
//! - [`Pki`] (pki.rs) makes a CA and certificates for the TLS tests.
//! - [`Config`] (config.rs) builds a config from typed [`Source`]s and [`Sink`]s and renders
//!   it as TOML; [`standard`] is the one most tests start from.
#![allow(dead_code)]

/// The io-mode test matrix: `io_modes!(name => body(args));` makes a module `name` with two
/// tests, `uring` and `epoll`, each calling `body("uring" | "epoll", args)`.
#[macro_export]
macro_rules! io_modes {
    ($name:ident => $body:ident($($arg:expr),* $(,)?)) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[test]
            fn uring() {
                super::$body("uring" $(, $arg)*);
            }

            #[test]
            fn epoll() {
                super::$body("epoll" $(, $arg)*);
            }
        }
    };
}

mod config;
mod events;
mod host;
mod logs;
mod peer;
mod pki;

// Not every test binary uses every helper.
#[allow(unused_imports)]
pub use config::*;
#[allow(unused_imports)]
pub use events::*;
#[allow(unused_imports)]
pub use host::*;
#[allow(unused_imports)]
pub use logs::*;
#[allow(unused_imports)]
pub use peer::*;
#[allow(unused_imports)]
pub use pki::Pki;

use std::ffi::OsString;
use std::fs;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Both I/O back ends; ingest tests run once per mode.
pub const MODES: [&str; 2] = ["uring", "epoll"];

/// How long anything may take to become true on a slow, noisy machine.
pub const PATIENCE: Duration = Duration::from_secs(20);
/// How long a gateway may take to drain and exit after SIGTERM.
pub const EXIT_PATIENCE: Duration = Duration::from_secs(90);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ringway")
}

pub fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// Polls `cond` every 20 ms until it holds; panics naming `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, cond: impl FnMut() -> bool) {
    if !poll_until(timeout, cond) {
        panic!("timed out after {timeout:?} waiting for {what}");
    }
}

/// Polls `cond` every 20 ms until it holds (true) or `timeout` passes (false).
pub fn poll_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > timeout {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
    true
}

/// How clients reach the gateway: the source `in` is a `unix_socket_server` or a `tcp_server`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Unix,
    Tcp,
}

impl Transport {
    /// The source `in`: a UNIX socket at `{dir}/in.sock`, or TCP on `127.0.0.1` with a port
    /// the gateway picks (see [`Gateway::target`]).
    pub fn source(self) -> Source {
        match self {
            Transport::Unix => Source::unix("in"),
            Transport::Tcp => Source::tcp("in"),
        }
    }
}

/// The config most tests start from: `io_mode = mode`, two workers, a 10 s shutdown timeout,
/// one UNIX socket source `in` at `{dir}/in.sock`, a file sink at `{dir}/out.ndjson`, dead
/// letters in `{dir}/dead.ndjson`. Its default control socket is `{dir}/in.ctl`.
pub fn standard(mode: &str) -> Config {
    standard_on(mode, Transport::Unix)
}

/// [`standard`] with the source `in` on `transport` (TCP: `url = "127.0.0.1:0"`).
pub fn standard_on(mode: &str, transport: Transport) -> Config {
    Config::new()
        .io_mode(mode)
        .workers(2)
        .shutdown_timeout("10s")
        .source(transport.source())
        .sink(Sink::file("out.ndjson"))
        .dead_letter(Sink::file("dead.ndjson"))
}

/// [`standard`], rendered.
pub fn standard_config(mode: &str) -> String {
    standard(mode).render()
}

/// [`standard_on`], rendered.
pub fn standard_config_on(mode: &str, transport: Transport) -> String {
    standard_on(mode, transport).render()
}

/// A gateway about to be started: its temp dir exists (prepare files in it), the
/// process does not yet.
pub struct Launch {
    dir: TempDir,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    stdout_piped: bool,
    nofile: Option<u64>,
}

impl Launch {
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Launch {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Lets the test read the gateway's stdout (for the stdout sink) via [`Gateway::take_stdout`].
    pub fn stdout_piped(mut self) -> Launch {
        self.stdout_piped = true;
        self
    }

    /// Runs the gateway with RLIMIT_NOFILE = n (soft and hard).
    pub fn nofile(mut self, n: u64) -> Launch {
        self.nofile = Some(n);
        self
    }

    /// Spawns the gateway without waiting for it to listen.
    pub fn spawn(self) -> Gateway {
        let stderr_path = self.dir.path().join("ringway.stderr");
        let stderr = fs::File::create(&stderr_path).unwrap();
        let mut cmd = Command::new(bin());
        cmd.args(&self.args)
            .env("NO_COLOR", "1")
            // Default paths (the control socket of a TCP-only config) stay in the test's dir.
            .env("XDG_RUNTIME_DIR", self.dir.path())
            .stdin(Stdio::null())
            .stderr(stderr)
            .stdout(if self.stdout_piped {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        if let Some(n) = self.nofile {
            // SAFETY: setrlimit is async-signal-safe; the closure touches nothing else.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().expect("spawn ringway");
        let stdout = child.stdout.take();
        Gateway {
            child,
            dir: self.dir,
            stderr_path,
            socket: None,
            target: None,
            stdout,
            exit: None,
        }
    }

    /// Spawns the gateway and waits until its socket accepts connections.
    pub fn start(self) -> Gateway {
        let mut gw = self.spawn();
        gw.wait_ready();
        gw
    }

    /// Runs a gateway that must refuse to start: waits for it to exit. Panics if it
    /// starts listening instead. The temp dir lives as long as the [`Refusal`].
    pub fn expect_failure(self) -> Refusal {
        let mut gw = self.spawn();
        let start = Instant::now();
        loop {
            if let Some(status) = gw.child.try_wait().unwrap() {
                gw.exit = Some(status);
                let stderr = gw.stderr();
                assert!(
                    listening_targets(&stderr).is_empty(),
                    "gateway listened before exiting:\n{stderr}"
                );
                return Refusal {
                    status,
                    stderr,
                    _gateway: gw,
                };
            }
            if start.elapsed() > PATIENCE {
                panic!(
                    "gateway did not exit within {PATIENCE:?}; stderr:\n{}",
                    gw.stderr()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A gateway that exited on its own (see [`Launch::expect_failure`]).
pub struct Refusal {
    pub status: ExitStatus,
    pub stderr: String,
    _gateway: Gateway,
}

/// A running `ringway` process and its temp dir.
pub struct Gateway {
    child: Child,
    dir: TempDir,
    stderr_path: PathBuf,
    /// The first `listening on unix:` path.
    socket: Option<PathBuf>,
    /// The first `listening on` line's address, UNIX or TCP.
    target: Option<Target>,
    stdout: Option<ChildStdout>,
    exit: Option<ExitStatus>,
}

impl Gateway {
    /// `ringway run --config <dir>/ringway.toml` on `config` with `{dir}` replaced,
    /// started and ready.
    pub fn start(config: &str) -> Gateway {
        Gateway::configure(config).start()
    }

    /// Writes `config` (with `{dir}` replaced by a fresh temp dir) to `<dir>/ringway.toml`;
    /// the gateway will run `ringway run --config` on it.
    pub fn configure(config: &str) -> Launch {
        let dir = tempfile::Builder::new()
            .prefix("ringway-test")
            .tempdir()
            .unwrap();
        let config = config.replace("{dir}", dir.path().to_str().unwrap());
        let config_path = dir.path().join("ringway.toml");
        fs::write(&config_path, config).unwrap();
        Launch {
            dir,
            args: vec!["run".into(), "--config".into(), config_path.into()],
            envs: vec![],
            stdout_piped: false,
            nofile: None,
        }
    }

    /// `ringway` with no arguments: the embedded default config.
    pub fn default_config() -> Launch {
        let dir = tempfile::Builder::new()
            .prefix("ringway-test")
            .tempdir()
            .unwrap();
        Launch {
            dir,
            args: vec![],
            envs: vec![],
            stdout_piped: false,
            nofile: None,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The socket path from the (first) `listening on unix:<path>` line.
    pub fn socket(&self) -> &Path {
        match (&self.socket, &self.target) {
            (Some(path), _) => path,
            (None, Some(t)) => panic!("the gateway has no UNIX socket source: it listens on {t}"),
            (None, None) => panic!("gateway is not ready"),
        }
    }

    pub fn socket_str(&self) -> &str {
        self.socket().to_str().unwrap()
    }

    /// Where the gateway listens (its first `listening on` line), as `tests/clients/*.py`
    /// and [`Client::produce`] / [`Client::socat_file`] take it: the UNIX socket path, or
    /// `tcp:HOST:PORT`.
    pub fn target(&self) -> String {
        self.listen_target().arg()
    }

    /// Where the gateway listens (its first `listening on` line).
    pub fn listen_target(&self) -> &Target {
        self.target.as_ref().expect("gateway is not ready")
    }

    /// The bound address of a TCP source (its first `listening on tcp:` line).
    pub fn tcp_addr(&self) -> SocketAddr {
        match self.listen_target() {
            Target::Tcp(addr) => *addr,
            t => panic!("the gateway does not listen on TCP: {t}"),
        }
    }

    /// A new connection to [`Gateway::listen_target`], from this process.
    pub fn connect(&self) -> io::Result<Conn> {
        self.listen_target().connect()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn take_stdout(&mut self) -> ChildStdout {
        self.stdout
            .take()
            .expect("stdout not piped (Launch::stdout_piped) or already taken")
    }

    pub fn is_running(&mut self) -> bool {
        if self.exit.is_some() {
            return false;
        }
        match self.child.try_wait().unwrap() {
            Some(status) => {
                self.exit = Some(status);
                false
            }
            None => true,
        }
    }

    /// VmRSS from /proc/<pid>/status, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// Waits for the first `listening on unix:<path>` or `listening on tcp:<host>:<port>` line
    /// on stderr, then until that address accepts.
    pub fn wait_ready(&mut self) {
        let start = Instant::now();
        let target = loop {
            if let Some(t) = listening_targets(&self.stderr()).into_iter().next() {
                break t;
            }
            if !self.is_running() {
                panic!(
                    "gateway exited with {:?} before listening; stderr:\n{}",
                    self.exit,
                    self.stderr()
                );
            }
            if start.elapsed() > PATIENCE {
                panic!(
                    "no `listening on unix:` or `listening on tcp:` line within {PATIENCE:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(20));
        };
        wait_until(PATIENCE, &format!("{target} to accept connections"), || {
            target.connect().is_ok()
        });
        // The gateway prints every source's line at once: by now all of them are there.
        self.socket = listening_path(&self.stderr());
        self.target = Some(target);
    }

    /// The control socket the gateway serves, as ringway picks it from its config: `[control]
    /// path`, else beside the first UNIX source's socket (`in.sock` → `in.ctl`), else
    /// `ringway.ctl` in the temp dir (the gateway's `XDG_RUNTIME_DIR`).
    pub fn control_socket(&self) -> PathBuf {
        let text = fs::read_to_string(self.path("ringway.toml"))
            .expect("a gateway started from a config (Gateway::configure)");
        let config: toml::Table = toml::from_str(&text).expect("the config is TOML");
        if let Some(path) = config
            .get("control")
            .and_then(|c| c.get("path"))
            .and_then(|p| p.as_str())
        {
            return PathBuf::from(path);
        }
        let first_unix = config
            .get("sources")
            .and_then(|s| s.as_array())
            .into_iter()
            .flatten()
            .find(|s| s.get("type").and_then(|t| t.as_str()) == Some("unix_socket_server"))
            .and_then(|s| s.get("path").and_then(|p| p.as_str()));
        match first_unix {
            Some(socket) => Path::new(socket).with_extension("ctl"),
            None => self.path("ringway.ctl"),
        }
    }

    /// `ringway ctl --json stats` on [`Gateway::control_socket`]: `totals`, `sources`, `sinks`,
    /// `connections`, … (see `control::protocol::Stats`).
    pub fn stats(&self) -> serde_json::Value {
        let (code, out, err) = ctl_at(&self.control_socket(), &["--json", "stats"]);
        assert_eq!(code, 0, "ringway ctl stats: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("stats is not JSON ({e}): {out}"))
    }

    /// `totals.<key>` of [`Gateway::stats`]: `events_in`, `events_out`, `dead_lettered`, …
    pub fn total(&self, key: &str) -> u64 {
        let stats = self.stats();
        stats["totals"][key]
            .as_u64()
            .unwrap_or_else(|| panic!("no totals.{key} in stats: {stats}"))
    }

    /// Waits until the gateway has taken in at least `n` events (`totals.events_in`).
    pub fn wait_events_in(&self, n: u64) {
        self.wait_total("events_in", n);
    }

    /// Waits until the gateway's sinks have written at least `n` events (`totals.events_out`).
    pub fn wait_events_out(&self, n: u64) {
        self.wait_total("events_out", n);
    }

    /// Waits until the gateway has taken in events and stopped taking more: `totals.events_in`
    /// is above 0 and the same at five polls in a row, 50 ms apart (every source is held back
    /// by backpressure, or idle). The state a test wants before it looks at a stall.
    pub fn wait_events_in_settle(&self) {
        let (mut last, mut same) = (0, 0);
        wait_until(PATIENCE, "events_in to stop growing", || {
            let now = self.total("events_in");
            same = if now > 0 && now == last { same + 1 } else { 0 };
            last = now;
            if same < 4 {
                thread::sleep(Duration::from_millis(30));
            }
            same >= 4
        });
    }

    /// Waits until `totals.<key>` of [`Gateway::stats`] is at least `n`.
    pub fn wait_total(&self, key: &str, n: u64) {
        wait_until(PATIENCE, &format!("totals.{key} >= {n}"), || {
            self.total(key) >= n
        });
    }

    /// Waits until `n` connections are open (`connections` of [`Gateway::stats`]).
    pub fn wait_connections(&self, n: u64) {
        wait_until(PATIENCE, &format!("{n} open connections"), || {
            self.stats()["connections"] == n
        });
    }

    /// Replaces the config file with `config` (`{dir}` replaced), for a `reload`.
    pub fn rewrite_config(&self, config: &str) {
        let config = config.replace("{dir}", self.dir().to_str().unwrap());
        fs::write(self.path("ringway.toml"), config).unwrap();
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: plain kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", self.child.id());
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        while self.is_running() {
            if start.elapsed() > timeout {
                panic!(
                    "gateway still running {timeout:?} after being told to stop; stderr:\n{}",
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
        self.exit.unwrap()
    }

    /// SIGTERM, wait for a clean exit (status 0), and parse the final summary line.
    pub fn stop(&mut self) -> Summary {
        self.signal(libc::SIGTERM);
        let status = self.wait_exit(EXIT_PATIENCE);
        let stderr = self.stderr();
        assert!(
            status.success(),
            "gateway exited with {status} after SIGTERM; stderr:\n{}",
            tail(&stderr)
        );
        Summary::parse(&stderr).unwrap_or_else(|e| panic!("{e}; stderr:\n{}", tail(&stderr)))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!(
                "--- ringway stderr ({}) ---\n{}",
                self.dir.path().display(),
                tail(&self.stderr())
            );
        }
    }
}

fn tail(s: &str) -> &str {
    let mut start = s.len().saturating_sub(8000);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// `ringway check` must refuse `config` with an error that names `field`; returns its stderr.
pub fn check_refuses(config: &str, field: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ringway.toml");
    fs::write(&path, config).unwrap();
    let out = Command::new(bin())
        .args(["check", "--config"])
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "accepted:\n{config}");
    assert!(
        err.contains(field),
        "the error does not name {field}: {err}"
    );
    err
}

/// The path in the first `listening on unix:<path>` line, if any.
pub fn listening_path(stderr: &str) -> Option<PathBuf> {
    listening_targets(stderr).into_iter().find_map(|t| match t {
        Target::Unix(path) => Some(path),
        Target::Tcp(_) => None,
    })
}

/// The address of every `listening on unix:<path>`, `tcp:<host>:<port>` and
/// `ws[s]://<host>:<port>` line, in order.
pub fn listening_targets(stderr: &str) -> Vec<Target> {
    stderr
        .lines()
        .map(strip_ansi)
        .filter_map(|line| {
            let rest = &line[line.find("listening on ")? + "listening on ".len()..];
            let word = rest.split_whitespace().next()?;
            let word = word.trim_end_matches(['"', '\'', ',', ')', '`']);
            if let Some(path) = word.strip_prefix("unix:") {
                Some(Target::Unix(PathBuf::from(path)))
            } else if let Some(ws) = word
                .strip_prefix("ws://")
                .or_else(|| word.strip_prefix("wss://"))
            {
                // (A WebSocket source: ready once its TCP listener accepts.)
                ws.parse().ok().map(Target::Tcp)
            } else {
                word.strip_prefix("tcp:")?.parse().ok().map(Target::Tcp)
            }
        })
        .collect()
}

/// Where a gateway listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl Target {
    /// What `tests/clients/*.py`, [`Client::produce`] and [`Client::socat_file`] take: the
    /// socket path, or `tcp:HOST:PORT`.
    pub fn arg(&self) -> String {
        match self {
            Target::Unix(path) => path.to_str().expect("UTF-8 socket path").to_string(),
            Target::Tcp(addr) => format!("tcp:{addr}"),
        }
    }

    pub fn connect(&self) -> io::Result<Conn> {
        Ok(match self {
            Target::Unix(path) => Conn::Unix(UnixStream::connect(path)?),
            Target::Tcp(addr) => Conn::Tcp(TcpStream::connect(addr)?),
        })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Unix(path) => write!(f, "unix:{}", path.display()),
            Target::Tcp(addr) => write!(f, "tcp:{addr}"),
        }
    }
}

/// A client connection made by the test itself.
pub enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl io::Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.write(buf),
            Conn::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl io::Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.read(buf),
            Conn::Tcp(s) => s.read(buf),
        }
    }
}

/// Waits for `clients`, stops the gateway, and asserts that the file sink `out.ndjson` holds,
/// for each connection in `conns`, exactly its events `0..count(c)` in order (see
/// [`SeqChecker`]) and nothing else, and that the summary says the same with no dead letters
/// and no drops.
pub fn finish_and_check_exact(
    gw: &mut Gateway,
    clients: Vec<Client>,
    conns: std::ops::Range<u64>,
    count: impl Fn(u64) -> u64,
) {
    for client in clients {
        client.finish();
    }
    let summary = gw.stop();
    let mut check = SeqChecker::new(PAD);
    for line in read_lines(&gw.path("out.ndjson")) {
        check.push(&line);
    }
    let total: u64 = conns.clone().map(&count).sum();
    for c in conns {
        assert_eq!(
            check.counts().get(&c).copied().unwrap_or(0),
            count(c),
            "events of connection {c}"
        );
    }
    assert_eq!(check.lines, total);
    assert_eq!(
        summary,
        Summary {
            events_in: total,
            events_out: total,
            dead_lettered: 0,
            dropped: 0
        }
    );
}

/// [`standard`] with the source's `separate` preprocessor configured, rendered, e.g.
/// `framing_config("uring", [("separator", ";")])`.
pub fn framing_config<V: Into<toml::Value>>(
    mode: &str,
    separate: impl IntoIterator<Item = (&'static str, V)>,
) -> String {
    standard(mode)
        .with_source("in", |s| s.separate(separate))
        .render()
}

/// Sends `payload` over one connection (UNIX or TCP) in tiny writes (produce.py --file) and
/// waits for it.
pub fn send_tiny(gw: &Gateway, payload: &[u8]) {
    let file = gw.path("payload.bin");
    fs::write(&file, payload).unwrap();
    Client::produce(
        gw.target(),
        &["--file", file.to_str().unwrap(), "--writes", "tiny"],
    )
    .finish();
}

/// `ringway ctl --socket SOCKET ARGS...`: (exit code, stdout, stderr).
pub fn ctl_at(socket: &Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(bin())
        .arg("ctl")
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
