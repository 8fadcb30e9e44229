//! The command line: `ringway check`, a bad config under `ringway run`, and `ringway`
//! with no arguments.

mod util;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use util::*;

const VALID: &str = r#"
io_mode = "auto"
workers = 2
shutdown_timeout = "250ms"

[[sources]]
type = "unix_socket_server"
name = "in"
path = "{dir}/in.sock"
permissions = "0640"
buf_size = 65536
codec = "json"
preprocessors = [{ name = "separate", config = { separator = "\n", max_length = 1048576, oversized = "drop", buffered = true, emit_incomplete = true } }]

[[sinks]]
type = "file"
path = "{dir}/out.ndjson"
metadata = "envelope"

[[sinks]]
type = "null"

[channel]
capacity = 256
when_full = "block"

[dead_letter]
type = "file"
path = "{dir}/dead.ndjson"
"#;

/// `ringway check --config <file>` on `config` ({dir} → a temp dir); waits up to PATIENCE.
fn check(config: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ringway.toml");
    std::fs::write(&path, config.replace("{dir}", dir.path().to_str().unwrap())).unwrap();
    let mut child = Command::new(bin())
        .args(["check", "--config"])
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > PATIENCE {
            child.kill().unwrap();
            panic!("`ringway check` still running after {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        !dir.path().join("in.sock").exists(),
        "`check` must not create the socket"
    );
    out
}

#[test]
fn check_accepts_a_valid_config() {
    let out = check(VALID);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "status {}; stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("config OK"), "stdout: {stdout}");
}

#[test]
fn check_accepts_a_minimal_config() {
    let minimal = "[[sources]]\ntype = \"unix_socket_server\"\npath = \"{dir}/in.sock\"\n\n[[sinks]]\ntype = \"stdout\"\n";
    let out = check(minimal);
    assert!(
        out.status.success(),
        "stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("config OK"));
}

/// Each case: (what to replace in VALID, replacement, words the error must contain).
const BROKEN: &[(&str, &str, &[&str])] = &[
    // A typo'd key: unknown field, with its path.
    (
        r#"path = "{dir}/in.sock""#,
        r#"pathh = "{dir}/in.sock""#,
        &["sources[0]", "pathh"],
    ),
    // A wrong type.
    ("workers = 2", r#"workers = "two""#, &["workers"]),
    // An unknown codec.
    (
        r#"codec = "json""#,
        r#"codec = "jsn""#,
        &["sources[0]", "codec", "jsn"],
    ),
    // An unknown key at the top level.
    ("workers = 2", "workers = 2\nwrokers = 3", &["wrokers"]),
    // A bad duration.
    (
        r#"shutdown_timeout = "250ms""#,
        r#"shutdown_timeout = "soon""#,
        &["shutdown_timeout"],
    ),
    // An unknown policy.
    (
        r#"when_full = "block""#,
        r#"when_full = "sometimes""#,
        &["when_full"],
    ),
    // An unknown io mode.
    (r#"io_mode = "auto""#, r#"io_mode = "kqueue""#, &["io_mode"]),
    // A typo inside a sink.
    (
        r#"metadata = "envelope""#,
        r#"metadata = "envelope"
metdata = "none""#,
        &["sinks[0]", "metdata"],
    ),
];

#[test]
fn check_rejects_broken_configs_naming_the_field() {
    let mut failures = Vec::new();
    for (from, to, words) in BROKEN {
        assert!(VALID.contains(from), "test bug: {from:?} not in VALID");
        let config = VALID.replacen(from, to, 1);
        let out = check(&config);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() || String::from_utf8_lossy(&out.stdout).contains("config OK") {
            failures.push(format!("`check` accepted {to:?}"));
            continue;
        }
        let missing: Vec<_> = words.iter().filter(|w| !stderr.contains(**w)).collect();
        if !missing.is_empty() {
            failures.push(format!(
                "error for {to:?} does not name {missing:?}: {}",
                stderr.trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} broken configs:\n{}",
        failures.len(),
        BROKEN.len(),
        failures.join("\n")
    );
}

#[test]
fn run_fails_fast_on_a_bad_config_without_creating_the_socket() {
    let launch =
        Gateway::configure(&VALID.replace("path = \"{dir}/in.sock\"", "pathh = \"{dir}/in.sock\""));
    let socket = launch.path("in.sock");
    let refusal = launch.expect_failure();
    assert!(!refusal.status.success());
    assert!(
        refusal.stderr.contains("pathh"),
        "stderr:\n{}",
        refusal.stderr
    );
    assert!(
        !socket.exists(),
        "no socket for a config that does not load"
    );
}

#[test]
fn default_config_runs() {
    // The default socket is $XDG_RUNTIME_DIR/ringway.sock; point it at a temp dir.
    let launch = Gateway::default_config().stdout_piped();
    let runtime_dir = launch.dir().to_path_buf();
    let mut gw = launch
        .env("XDG_RUNTIME_DIR", &runtime_dir)
        .env("TMPDIR", &runtime_dir)
        .start();
    assert_eq!(
        gw.socket(),
        runtime_dir.join("ringway.sock"),
        "the printed socket path"
    );
    let stdout = LineReader::spawn(gw.take_stdout());

    let mut socat = Command::new("socat")
        .args(["-u", "STDIN"])
        .arg(format!("UNIX-CONNECT:{}", gw.socket().display()))
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    socat
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"hello\":\"world\"}\n")
        .unwrap();
    assert!(socat.wait().unwrap().success());

    wait_until(PATIENCE, "the event echoed on stdout", || stdout.len() >= 1);
    let summary = gw.stop();
    let lines = stdout.finish();
    assert_eq!(
        lines.len(),
        1,
        "{:?}",
        lines.iter().map(|l| show(l)).collect::<Vec<_>>()
    );
    let line = String::from_utf8(lines[0].clone()).unwrap();
    assert!(line.contains(r#"{"hello":"world"}"#), "stdout line: {line}");
    assert_eq!(summary.events_in, 1);
    assert_eq!(summary.events_out, 1);
    assert!(
        !runtime_dir.join("ringway.sock").exists(),
        "socket unlinked on clean exit"
    );
}

#[test]
fn summary_line_is_exactly_the_documented_form() {
    let mut gw = Gateway::start(&standard_config("epoll"));
    let mut s = std::os::unix::net::UnixStream::connect(gw.socket()).unwrap();
    s.write_all(b"{\"a\":1}\nnot json\n").unwrap();
    drop(s);
    wait_until(PATIENCE, "the event in the sink", || {
        count_lines(&gw.path("out.ndjson")) == 1
    });
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(EXIT_PATIENCE).success());
    let summary = Summary::parse_exact(&gw.stderr()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        summary,
        Summary {
            events_in: 1,
            events_out: 1,
            dead_lettered: 1,
            dropped: 0
        }
    );
}

#[test]
fn sigint_stops_like_sigterm() {
    let mut gw = Gateway::start(&standard_config("epoll"));
    let mut s = std::os::unix::net::UnixStream::connect(gw.socket()).unwrap();
    s.write_all(b"{\"a\":1}\n").unwrap();
    drop(s);
    wait_until(PATIENCE, "the event in the sink", || {
        count_lines(&gw.path("out.ndjson")) == 1
    });
    gw.signal(libc::SIGINT);
    let status = gw.wait_exit(EXIT_PATIENCE);
    assert!(status.success(), "exit status {status} after SIGINT");
    let summary = Summary::parse(&gw.stderr()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        summary,
        Summary {
            events_in: 1,
            events_out: 1,
            dead_lettered: 0,
            dropped: 0
        }
    );
    assert!(
        !gw.path("in.sock").exists(),
        "socket unlinked on clean exit"
    );
}

#[test]
fn default_config_prints_a_runnable_file() {
    // `ringway default-config > f.toml` must give a file that runs as the default does: the
    // socket placeholder is filled in with this user's runtime path.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .arg("default-config")
        .env("XDG_RUNTIME_DIR", dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains("@SOCKET@"), "placeholder left in:\n{text}");
    let sock = dir.path().join("ringway.sock");
    assert!(
        text.contains(sock.to_str().unwrap()),
        "the runtime path {} is not in:\n{text}",
        sock.display()
    );
    let checked = check(&text);
    assert!(
        checked.status.success(),
        "stderr:\n{}",
        String::from_utf8_lossy(&checked.stderr)
    );
}
