//! Helpers for ringway's integration tests, meant to read like the docs.
//!
//! - [`Gateway`] runs the real `ringway` binary on a config whose `{dir}` stands for a
//!   fresh temp dir, waits until its socket accepts, and stops it with SIGTERM, handing
//!   back the [`Summary`] line. It is killed on drop, and its stderr is printed if the
//!   test panicked.
//! - [`Client`] runs a real peer: `tests/clients/*.py` under python3, or socat.
//! - [`event`] is the generated event format shared with `tests/clients/produce.py`,
//!   and [`SeqChecker`] checks delivered lines against it: byte-exact, per-connection
//!   order, no gaps, no duplicates.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
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

/// The config most tests use: one UNIX socket source `in` at `{dir}/in.sock`, a file
/// sink at `{dir}/out.ndjson`, dead letters in `{dir}/dead.ndjson`.
pub fn standard_config(mode: &str) -> String {
    format!(
        r#"
io_mode = "{mode}"
workers = 2
shutdown_timeout = "10s"

[[sources]]
type = "unix_socket_server"
name = "in"
path = "{{dir}}/in.sock"

[[sinks]]
type = "file"
path = "{{dir}}/out.ndjson"

[dead_letter]
type = "file"
path = "{{dir}}/dead.ndjson"
"#
    )
}

/// The final stderr line: `summary events_in=<n> events_out=<n> dead_lettered=<n> dropped=<n>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub events_in: u64,
    pub events_out: u64,
    pub dead_lettered: u64,
    pub dropped: u64,
}

impl Summary {
    /// Parses the last non-empty line of `stderr`, which must be the summary: `summary`
    /// and the four counts, in order. (Whether anything follows them is checked by
    /// [`Summary::parse_exact`], in one test of its own.)
    pub fn parse(stderr: &str) -> Result<Summary, String> {
        let last = last_line(stderr)?;
        let fields: Vec<&str> = last.split_whitespace().collect();
        let keys = ["events_in", "events_out", "dead_lettered", "dropped"];
        if fields.len() < 5 || fields[0] != "summary" {
            return Err(format!("last stderr line is not a summary line: {last:?}"));
        }
        let mut values = [0u64; 4];
        for (i, key) in keys.iter().enumerate() {
            let value = fields[i + 1]
                .strip_prefix(key)
                .and_then(|rest| rest.strip_prefix('='))
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("expected {key}=<n> in summary line {last:?}"))?;
            values[i] = value;
        }
        Ok(Summary {
            events_in: values[0],
            events_out: values[1],
            dead_lettered: values[2],
            dropped: values[3],
        })
    }

    /// Like [`Summary::parse`], but the line must be exactly
    /// `summary events_in=<n> events_out=<n> dead_lettered=<n> dropped=<n>`.
    pub fn parse_exact(stderr: &str) -> Result<Summary, String> {
        let summary = Summary::parse(stderr)?;
        let want = format!(
            "summary events_in={} events_out={} dead_lettered={} dropped={}",
            summary.events_in, summary.events_out, summary.dead_lettered, summary.dropped
        );
        let last = last_line(stderr)?;
        if last != want {
            return Err(format!("summary line is not exactly of the documented form:\n got  {last:?}\n want {want:?}"));
        }
        Ok(summary)
    }
}

fn last_line(stderr: &str) -> Result<String, String> {
    stderr
        .lines()
        .map(strip_ansi)
        .filter(|l| !l.trim().is_empty())
        .last()
        .ok_or_else(|| "stderr is empty".to_string())
}

pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ params final-byte
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
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
                    listening_path(&stderr).is_none(),
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
    socket: Option<PathBuf>,
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

    /// The socket path from the `listening on unix:<path>` line.
    pub fn socket(&self) -> &Path {
        self.socket.as_deref().expect("gateway is not ready")
    }

    pub fn socket_str(&self) -> &str {
        self.socket().to_str().unwrap()
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

    /// Waits for the `listening on unix:<path>` line on stderr, then until the path accepts.
    pub fn wait_ready(&mut self) {
        let start = Instant::now();
        let socket = loop {
            if let Some(path) = listening_path(&self.stderr()) {
                break path;
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
                    "no `listening on unix:` line within {PATIENCE:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(20));
        };
        wait_until(
            PATIENCE,
            &format!("{} to accept connections", socket.display()),
            || UnixStream::connect(&socket).is_ok(),
        );
        self.socket = Some(socket);
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

/// The path in the first `listening on unix:<path>` line, if any.
pub fn listening_path(stderr: &str) -> Option<PathBuf> {
    stderr.lines().map(strip_ansi).find_map(|line| {
        let rest = &line[line.find("listening on unix:")? + "listening on unix:".len()..];
        let path = rest.split_whitespace().next()?;
        let path = path.trim_end_matches(|c| matches!(c, '"' | '\'' | ',' | ')' | '`'));
        Some(PathBuf::from(path))
    })
}

/// A peer process (python3 client or socat). Its stdout lines are collected by a
/// thread; it is killed on drop.
pub struct Client {
    name: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<thread::JoinHandle<()>>,
}

/// What a client reported on its first stdout line: its own pid/uid/gid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Creds {
    pub pid: u64,
    pub uid: u64,
    pub gid: u64,
}

impl Client {
    /// `python3 tests/clients/<script> <args>`.
    pub fn python(script: &str, args: &[&str]) -> Client {
        let mut cmd = Command::new("python3");
        cmd.arg(clients_dir().join(script)).args(args);
        Client::spawn(format!("{script} {}", args.join(" ")), cmd)
    }

    /// `produce.py <socket> <args>`: see tests/clients/produce.py.
    pub fn produce(socket: &Path, args: &[&str]) -> Client {
        let mut all = vec![socket.to_str().unwrap()];
        all.extend_from_slice(args);
        Client::python("produce.py", &all)
    }

    /// `socat -u -b <block> <file> UNIX-CONNECT:<socket>`: the file's bytes in `block`-sized reads.
    pub fn socat_file(socket: &Path, file: &Path, block: usize) -> Client {
        let mut cmd = Command::new("socat");
        cmd.arg("-u")
            .arg("-b")
            .arg(block.to_string())
            .arg(file)
            .arg(format!("UNIX-CONNECT:{}", socket.display()));
        Client::spawn(format!("socat {}", file.display()), cmd)
    }

    pub fn spawn(name: String, mut cmd: Command) -> Client {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(line) => sink.lock().unwrap().push(line),
                    Err(_) => break,
                }
            }
        });
        Client {
            name,
            child,
            lines,
            reader: Some(reader),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The stdout lines printed so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The latest `{"bytes":n}` progress report (0 before the first).
    pub fn progress(&self) -> u64 {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find_map(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .ok()?
                    .get("bytes")?
                    .as_u64()
            })
            .unwrap_or(0)
    }

    /// The client's own pid/uid/gid (its first stdout line).
    pub fn creds(&self) -> Creds {
        wait_until(
            PATIENCE,
            &format!("{} to report its credentials", self.name),
            || !self.lines.lock().unwrap().is_empty(),
        );
        let v: serde_json::Value = serde_json::from_str(&self.lines.lock().unwrap()[0]).unwrap();
        Creds {
            pid: v["pid"].as_u64().unwrap(),
            uid: v["uid"].as_u64().unwrap(),
            gid: v["gid"].as_u64().unwrap(),
        }
    }

    pub fn has_exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    /// Waits (up to `timeout`) for the client to exit; returns its status and last stdout line.
    pub fn wait(mut self, timeout: Duration) -> (ExitStatus, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > timeout {
                panic!("client `{}` still running after {timeout:?}", self.name);
            }
            thread::sleep(Duration::from_millis(20));
        };
        self.reader.take().unwrap().join().unwrap();
        let last = self
            .lines
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default();
        (status, last)
    }

    /// Waits for a successful exit and returns the final `{"sent":..}` report as JSON
    /// (Null for clients such as socat that print nothing).
    pub fn finish(self) -> serde_json::Value {
        let name = self.name.clone();
        let (status, last) = self.wait(Duration::from_secs(180));
        assert!(
            status.success(),
            "client `{name}` failed: {status}; last output: {last}"
        );
        serde_json::from_str(&last).unwrap_or(serde_json::Value::Null)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Event `i` of connection `c`, as `tests/clients/produce.py` writes it (without "\n").
/// Padding length varies in `pad_min..=pad_max`; every 17th event carries a JSON
/// escape, a raw multi-byte character and escaped quotes.
pub fn event(c: u64, i: u64, (pad_min, pad_max): (u64, u64)) -> Vec<u8> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let n = (pad_min + (i * 7 + c * 13) % (pad_max - pad_min + 1)) as usize;
    let start = ((i * 31 + c) % ALPHABET.len() as u64) as usize;
    let mut out = format!("{{\"c\":{c},\"i\":{i},\"p\":\"").into_bytes();
    out.extend((0..n).map(|k| ALPHABET[(start + k) % ALPHABET.len()]));
    out.push(b'"');
    if i % 17 == 0 {
        out.extend_from_slice(r#","u":"\u00e9 ☃ \"q\"""#.as_bytes());
    }
    out.push(b'}');
    out
}

/// The default padding of produce.py (`--pad 60:140`).
pub const PAD: (u64, u64) = (60, 140);

/// Writes `count` events of connection `c` to `path`, one per line (a socat client's input).
pub fn write_events_file(path: &Path, c: u64, count: u64, pad: (u64, u64)) {
    let mut buf = Vec::new();
    for i in 0..count {
        buf.extend_from_slice(&event(c, i, pad));
        buf.push(b'\n');
    }
    fs::write(path, buf).unwrap();
}

/// Checks delivered lines against [`event`]: each line is byte-for-byte an event, and
/// each connection's sequence numbers arrive as 0, 1, 2, … (in order, no gaps, no
/// duplicates). Connections may interleave arbitrarily.
pub struct SeqChecker {
    pad: (u64, u64),
    next: BTreeMap<u64, u64>,
    pub lines: u64,
}

impl SeqChecker {
    pub fn new(pad: (u64, u64)) -> SeqChecker {
        SeqChecker {
            pad,
            next: BTreeMap::new(),
            lines: 0,
        }
    }

    pub fn push(&mut self, line: &[u8]) {
        let (c, i) = parse_ci(line).unwrap_or_else(|| {
            panic!(
                "line {} is not a generated event: {}",
                self.lines + 1,
                show(line)
            )
        });
        let expected = self.next.entry(c).or_insert(0);
        assert_eq!(
            i, *expected,
            "connection {c}: got event {i} where event {expected} was due (out of order, gap, or duplicate) at output line {}",
            self.lines + 1
        );
        let want = event(c, i, self.pad);
        assert!(
            line == want.as_slice(),
            "event c={c} i={i} corrupted:\n got  {}\n want {}",
            show(line),
            show(&want)
        );
        *expected += 1;
        self.lines += 1;
    }

    /// Events seen per connection.
    pub fn counts(&self) -> &BTreeMap<u64, u64> {
        &self.next
    }
}

/// (c, i) from a line starting `{"c":<c>,"i":<i>,`.
pub fn parse_ci(line: &[u8]) -> Option<(u64, u64)> {
    let rest = line.strip_prefix(b"{\"c\":")?;
    let (c, rest) = take_number(rest)?;
    let rest = rest.strip_prefix(b",\"i\":")?;
    let (i, rest) = take_number(rest)?;
    rest.starts_with(b",").then_some((c, i))
}

fn take_number(s: &[u8]) -> Option<(u64, &[u8])> {
    let end = s
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(s.len());
    let n = std::str::from_utf8(&s[..end]).ok()?.parse().ok()?;
    Some((n, &s[end..]))
}

/// A line for an assertion message: lossy UTF-8, cut to 300 bytes.
pub fn show(line: &[u8]) -> String {
    let cut = &line[..line.len().min(300)];
    let more = if line.len() > 300 {
        format!("… ({} bytes)", line.len())
    } else {
        String::new()
    };
    format!("{:?}{more}", String::from_utf8_lossy(cut))
}

/// The lines of an NDJSON file (without "\n"); the file must end with "\n". A missing
/// file reads as no lines.
pub fn read_lines(path: &Path) -> Vec<Vec<u8>> {
    let data = match fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return vec![],
        Err(e) => panic!("read {}: {e}", path.display()),
    };
    split_lines(&data, path)
}

pub fn split_lines(data: &[u8], what: &Path) -> Vec<Vec<u8>> {
    if data.is_empty() {
        return vec![];
    }
    assert!(
        data.ends_with(b"\n"),
        "{} does not end with a newline: ...{}",
        what.display(),
        show(&data[data.len().saturating_sub(200)..])
    );
    data[..data.len() - 1]
        .split(|b| *b == b'\n')
        .map(|l| l.to_vec())
        .collect()
}

/// Each line of an NDJSON file parsed as JSON.
pub fn read_json_lines(path: &Path) -> Vec<serde_json::Value> {
    read_lines(path)
        .iter()
        .enumerate()
        .map(|(n, l)| {
            serde_json::from_slice(l).unwrap_or_else(|e| {
                panic!(
                    "{} line {}: not JSON ({e}): {}",
                    path.display(),
                    n + 1,
                    show(l)
                )
            })
        })
        .collect()
}

/// Counts "\n" in a file (0 if missing); cheap enough to poll.
pub fn count_lines(path: &Path) -> usize {
    fs::read(path).map(|d| memchr_count(&d)).unwrap_or(0)
}

fn memchr_count(d: &[u8]) -> usize {
    d.iter().filter(|b| **b == b'\n').count()
}

/// Python's `raw.decode("utf-8", "backslashreplace")`, computed by python3 itself.
pub fn py_backslashreplace(raw: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("python3")
        .args(["-c", "import sys, json; sys.stdout.write(json.dumps(sys.stdin.buffer.read().decode('utf-8', 'backslashreplace')))"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(raw).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Reads a pipe (the gateway's stdout, or a FIFO) in a thread, handing back lines.
pub struct LineReader {
    lines: Arc<Mutex<Vec<Vec<u8>>>>,
    handle: Option<thread::JoinHandle<()>>,
}

impl LineReader {
    pub fn spawn(mut r: impl Read + Send + 'static) -> LineReader {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let handle = thread::spawn(move || {
            let mut carry = Vec::new();
            let mut buf = vec![0u8; 1 << 16];
            loop {
                match r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        carry.extend_from_slice(&buf[..n]);
                        let mut start = 0;
                        let mut got = Vec::new();
                        while let Some(pos) = carry[start..].iter().position(|b| *b == b'\n') {
                            got.push(carry[start..start + pos].to_vec());
                            start += pos + 1;
                        }
                        carry.drain(..start);
                        sink.lock().unwrap().extend(got);
                    }
                }
            }
            if !carry.is_empty() {
                sink.lock().unwrap().push(carry);
            }
        });
        LineReader {
            lines,
            handle: Some(handle),
        }
    }

    pub fn lines(&self) -> Vec<Vec<u8>> {
        self.lines.lock().unwrap().clone()
    }

    pub fn len(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    /// Waits for EOF and returns every line.
    pub fn finish(mut self) -> Vec<Vec<u8>> {
        self.handle.take().unwrap().join().unwrap();
        std::mem::take(&mut *self.lines.lock().unwrap())
    }
}

/// mkfifo(3).
pub fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: valid NUL-terminated path.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(
        rc,
        0,
        "mkfifo {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

/// The read end of a FIFO sink, plus a write end the test holds so that reads block
/// for data (instead of seeing EOF) until the gateway has opened its own write end.
/// Drop `keeper` once the gateway has exited: then reads reach EOF after the last byte.
pub struct Fifo {
    pub reader: fs::File,
    pub keeper: Option<fs::File>,
}

impl Fifo {
    /// mkfifo at `path` and open both ends without blocking; reads are blocking.
    pub fn create(path: &Path) -> Fifo {
        use std::os::unix::fs::OpenOptionsExt;
        use std::os::unix::io::AsRawFd;
        mkfifo(path);
        let reader = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .unwrap();
        let keeper = fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .unwrap();
        // SAFETY: fcntl on a descriptor we own.
        unsafe {
            let flags = libc::fcntl(reader.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(reader.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK);
        }
        Fifo {
            reader,
            keeper: Some(keeper),
        }
    }

    /// Reads what is there, waiting up to `timeout` for something; Ok(0) on timeout or EOF.
    pub fn read_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> std::io::Result<usize> {
        use std::os::unix::io::AsRawFd;
        let mut pfd = libc::pollfd {
            fd: self.reader.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) };
        if rc <= 0 {
            return Ok(0);
        }
        self.reader.read(buf)
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}
