//! loadgen against real peers: the ringway binary, and a Python echo server that can stall,
//! drop lines or vanish. Run through `tests/run` (`cargo test --workspace`), which builds both.

use std::io::{BufRead as _, BufReader};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn loadgen() -> Command {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
}

fn ringway_bin() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_loadgen")).with_file_name("ringway");
    assert!(
        p.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (tests/run)",
        p.display()
    );
    p
}

/// A peer process listening on `socket`; killed on drop.
struct Peer {
    child: Child,
    socket: PathBuf,
    stderr: PathBuf,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Peer {
    fn wait_listening(mut self) -> Peer {
        let start = Instant::now();
        while UnixStream::connect(&self.socket).is_err() {
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "peer exited: {}",
                self.log()
            );
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "peer not listening"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The first line of its stderr that contains `needle`, waiting for it (a gateway prints a
    /// line per source after it has bound them all, so the first socket can answer before the
    /// last source's line is written).
    fn log_line(&self, needle: &str) -> String {
        let start = Instant::now();
        loop {
            if let Some(l) = self.log().lines().find(|l| l.contains(needle)) {
                return l.to_string();
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no line with {needle:?} in:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, wait, and return stderr (ringway's ends with its summary line).
    fn stop(mut self) -> String {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let start = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "peer did not stop"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.log()
    }
}

fn ringway(dir: &Path, extra: &str) -> Peer {
    let socket = dir.join("rw.sock");
    let cfg = format!(
        "io_mode = \"auto\"\nworkers = 2\n\n[[sources]]\ntype = \"unix_socket_server\"\nname = \"in\"\npath = \"{}\"\n\n[[sinks]]\ntype = \"file\"\npath = \"{}\"\n{extra}",
        socket.display(),
        dir.join("out.ndjson").display()
    );
    std::fs::write(dir.join("rw.toml"), cfg).unwrap();
    let stderr = dir.join("rw.stderr");
    let child = Command::new(ringway_bin())
        .args(["run", "--config"])
        .arg(dir.join("rw.toml"))
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    Peer {
        child,
        socket,
        stderr,
    }
    .wait_listening()
}

fn echo(dir: &Path, args: &[&str]) -> Peer {
    let socket = dir.join("echo.sock");
    let stderr = dir.join("echo.stderr");
    let child = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/echo.py"))
        .arg(&socket)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    Peer {
        child,
        socket,
        stderr,
    }
    .wait_listening()
}

fn run(args: &[&str]) -> (Output, String) {
    let out = loadgen().args(args).stdin(Stdio::null()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stderr)
}

fn target(p: &Peer) -> String {
    format!("unix:{}", p.socket.display())
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// SIGINT to a running loadgen (spawned with stderr piped): its exit status and stderr.
fn interrupt(mut child: Child) -> (std::process::ExitStatus, String) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "loadgen did not stop after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status, err)
}

fn summary_count(log: &str, key: &str) -> u64 {
    let at = log
        .rfind(key)
        .unwrap_or_else(|| panic!("no {key} in:\n{log}"))
        + key.len();
    log[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// The hgrm rows (value, percentile, total count) and the footer's total count.
fn hgrm(path: &Path) -> (Vec<(f64, f64, u64)>, u64) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut rows = vec![];
    let mut total = 0;
    for l in text.lines().skip(1) {
        if let Some(rest) = l.strip_prefix("#[Max") {
            total = rest
                .rsplit('=')
                .next()
                .unwrap()
                .trim()
                .trim_end_matches(']')
                .parse()
                .unwrap();
        } else if !l.trim().is_empty() && !l.starts_with('#') {
            let f: Vec<&str> = l.split_whitespace().collect();
            rows.push((
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            ));
        }
    }
    (rows, total)
}

#[test]
fn count_mode_delivers_every_event_in_order_to_ringway() {
    let dir = tempfile::tempdir().unwrap();
    let gw = ringway(dir.path(), "");
    let j = dir.path().join("run.json");
    let (out, err) = run(&[
        "--target",
        &target(&gw),
        "--count",
        "20000",
        "-c",
        "8",
        "-k",
        "16",
        "--json",
        j.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("sent        20000 events"), "{err}");
    let log = gw.stop();
    assert_eq!(summary_count(&log, "events_in="), 20000, "{log}");
    assert_eq!(summary_count(&log, "events_out="), 20000, "{log}");
    // Every event is valid JSON of 150–250 bytes; each connection's seqs arrive 0, 1, 2, …
    let mut next = [0u64; 8];
    let f = std::fs::File::open(dir.path().join("out.ndjson")).unwrap();
    for line in BufReader::new(f).lines() {
        let line = line.unwrap();
        assert!(
            (149..=249).contains(&line.len()),
            "{} bytes: {line}",
            line.len()
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        let c = v["conn"].as_u64().unwrap() as usize;
        assert_eq!(v["seq"], next[c], "connection {c} out of order");
        next[c] += 1;
    }
    assert_eq!(next, [2500; 8]);
    let r = json(&j);
    assert_eq!(r["sent"], 20000);
    assert_eq!(r["failed"], 0);
    assert_eq!(r["mode"], "closed");
    assert!(r["throughput_events_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(r["latency"]["send_lag"]["count"], 20000);
}

#[test]
fn open_loop_keeps_its_schedule_and_writes_hgrm_json_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    let gw = ringway(dir.path(), "");
    let (h, j, svg) = (
        dir.path().join("l.hgrm"),
        dir.path().join("l.json"),
        dir.path().join("l.svg"),
    );
    let (out, err) = run(&[
        "--target",
        &target(&gw),
        "--rate",
        "5k",
        "--duration",
        "1s",
        "--warmup",
        "200ms",
        "-c",
        "4",
        "--hgrm",
        h.to_str().unwrap(),
        "--json",
        j.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{err}");
    let r = json(&j);
    // 1.2 s of schedule at 5,000 events/s; 1 s of it measured.
    let sent = r["sent"].as_u64().unwrap();
    assert!((5900..=6000).contains(&sent), "sent {sent}");
    let measured = r["measured_events"].as_u64().unwrap();
    assert!((4950..=5000).contains(&measured), "measured {measured}");
    let rate = r["throughput_events_per_s"].as_f64().unwrap();
    assert!((rate - 5000.0).abs() < 250.0, "throughput {rate}");
    assert_eq!(r["mode"], "open");
    let (rows, total) = hgrm(&h);
    assert_eq!(total, measured);
    assert_eq!(rows.last().unwrap().2, measured);
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    let log = gw.stop();
    assert_eq!(summary_count(&log, "events_in="), sent, "{log}");
}

#[test]
fn roundtrip_latency_against_an_echo_peer() {
    let dir = tempfile::tempdir().unwrap();
    let peer = echo(dir.path(), &[]);
    let j = dir.path().join("r.json");
    let (out, err) = run(&[
        "--target",
        &target(&peer),
        "--count",
        "5000",
        "-c",
        "4",
        "-k",
        "8",
        "--roundtrip",
        "--json",
        j.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{err}");
    let r = json(&j);
    assert_eq!(r["replies"], 5000);
    assert_eq!(r["missing_replies"], 0);
    assert_eq!(r["latency"]["roundtrip"]["count"], 5000);
    assert!(err.contains("roundtrip   p50"), "{err}");
}

/// The same round trip through ringway itself: its `reply` sink writes every event back to the
/// connection it came from.
#[test]
fn roundtrip_through_ringways_reply_sink() {
    let dir = tempfile::tempdir().unwrap();
    let gw = ringway(dir.path(), "\n[[sinks]]\ntype = \"reply\"\n");
    let j = dir.path().join("r.json");
    let (out, err) = run(&[
        "--target",
        &target(&gw),
        "--count",
        "20000",
        "-c",
        "8",
        "-k",
        "16",
        "--roundtrip",
        "--json",
        j.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{err}");
    let r = json(&j);
    assert_eq!(r["replies"], 20000);
    assert_eq!(r["missing_replies"], 0);
    assert_eq!(r["latency"]["roundtrip"]["count"], 20000);
}

/// A 500 ms stall at a 2,000 events/s schedule delays ~1,000 events: charged from their
/// intended send times, they fill the top of the distribution (no coordinated omission).
#[test]
fn a_stall_is_charged_to_every_event_it_delayed() {
    let dir = tempfile::tempdir().unwrap();
    let peer = echo(dir.path(), &["--stall-after", "1000", "--stall-ms", "500"]);
    let j = dir.path().join("co.json");
    let (out, err) = run(&[
        "--target",
        &target(&peer),
        "--rate",
        "2000",
        "--duration",
        "2s",
        "-c",
        "1",
        "--roundtrip",
        "--json",
        j.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{err}");
    let r = json(&j);
    let rt = &r["latency"]["roundtrip"];
    assert_eq!(rt["count"], 4000, "{rt}");
    let p = |k: &str| rt["percentiles"][k].as_f64().unwrap();
    assert!(p("p100") >= 450.0, "max {}", p("p100"));
    // ~25% of the events waited behind the stall: p90 is deep inside it, p50 is not.
    assert!(
        p("p90") >= 150.0,
        "p90 {} ms: the stall was not charged to the delayed events",
        p("p90")
    );
    assert!(p("p50") < 50.0, "p50 {}", p("p50"));
}

#[test]
fn tcp_targets_work_like_unix_ones() {
    let mut child = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/echo.py"))
        .arg("tcp")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let port = first.trim().strip_prefix("ready ").unwrap().to_string();
    let (out, err) = run(&[
        "--target",
        &format!("tcp:127.0.0.1:{port}"),
        "--count",
        "3000",
        "-c",
        "3",
        "-k",
        "4",
        "--roundtrip",
    ]);
    let _ = child.kill();
    let _ = child.wait();
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("replies     3000 (0 missing, 0 unexpected)"),
        "{err}"
    );
}

/// What waits for a tick is charged from its intended time: with 20 ms ticks the median event
/// waits ~10 ms; waking for every write it waits well under 2 ms.
/// A `ws://` target: the upgrade at connect, then each write of K events as one text message
/// to ringway's ws_server (which splits it with `separate`): every event arrives, in order.
#[test]
fn ws_targets_deliver_every_event_to_ringways_ws_server() {
    let dir = tempfile::tempdir().unwrap();
    let gw = ringway(
        dir.path(),
        "\n[[sources]]\ntype = \"ws_server\"\nname = \"ws\"\nurl = \"127.0.0.1:0\"\npreprocessors = [\"separate\"]\n",
    );
    let url = gw
        .log_line("listening on ws://")
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next().map(str::to_string))
        .expect("a ws_server line");
    let (out, err) = run(&["--target", &url, "--count", "30000", "-c", "4", "-k", "32"]);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("sent        30000 events"), "{err}");
    let log = gw.stop();
    assert_eq!(summary_count(&log, "events_in="), 30000, "{log}");
    assert_eq!(summary_count(&log, "dead_lettered="), 0, "{log}");
    let mut next = [0u64; 4];
    let f = std::fs::File::open(dir.path().join("out.ndjson")).unwrap();
    for line in BufReader::new(f).lines() {
        let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
        let c = v["conn"].as_u64().unwrap() as usize;
        assert_eq!(v["seq"], next[c], "connection {c} out of order");
        next[c] += 1;
    }
    assert_eq!(next, [7500; 4]);
    // --roundtrip is refused over ws:// (for now), with the reason.
    let (out, err) = run(&["--target", &url, "--count", "10", "--roundtrip"]);
    assert!(!out.status.success());
    assert!(err.contains("not supported over ws://"), "{err}");
}

/// A `wss://` target, trusting a CA made here (`--cafile`): the same delivery over TLS.
#[test]
fn wss_targets_deliver_every_event() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("ca.pem"), ca.pem()).unwrap();
    std::fs::write(p("cert.pem"), cert.pem()).unwrap();
    std::fs::write(p("key.pem"), key.serialize_pem()).unwrap();
    let gw = ringway(
        dir.path(),
        &format!(
            "\n[[sources]]\ntype = \"ws_server\"\nname = \"ws\"\nurl = \"127.0.0.1:0\"\npreprocessors = [\"separate\"]\ntls = {{ cert = \"{}\", key = \"{}\" }}\n",
            p("cert.pem").display(),
            p("key.pem").display()
        ),
    );
    let url = gw
        .log_line("listening on wss://")
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next().map(str::to_string))
        .expect("a wss ws_server line")
        .replace("127.0.0.1", "localhost");
    let ca = p("ca.pem");
    let (out, err) = run(&[
        "--target",
        &url,
        "--cafile",
        ca.to_str().unwrap(),
        "--count",
        "20000",
        "-c",
        "2",
        "-k",
        "16",
    ]);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("sent        20000 events"), "{err}");
    // Without the CA the handshake is refused, with the reason.
    let (out, err) = run(&["--target", &url, "--count", "10"]);
    assert!(!out.status.success());
    assert!(err.contains("TLS handshake"), "{err}");
    let log = gw.stop();
    assert_eq!(summary_count(&log, "events_in="), 20000, "{log}");
    assert_eq!(summary_count(&log, "dead_lettered="), 0, "{log}");
}

#[test]
fn tick_coalescing_is_charged_to_latency() {
    let dir = tempfile::tempdir().unwrap();
    let peer = echo(dir.path(), &[]);
    let mut p50 = vec![];
    for tick in ["20ms", "0ms"] {
        let j = dir.path().join(format!("t{tick}.json"));
        let (out, err) = run(&[
            "--target",
            &target(&peer),
            "--rate",
            "2000",
            "--duration",
            "1s",
            "-c",
            "1",
            "--tick",
            tick,
            "--json",
            j.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{err}");
        let r = json(&j);
        assert_eq!(r["sent"], 2000);
        p50.push(
            r["latency"]["send_lag"]["percentiles"]["p50"]
                .as_f64()
                .unwrap(),
        );
    }
    assert!(
        (5.0..=15.0).contains(&p50[0]),
        "p50 with 20 ms ticks: {} ms",
        p50[0]
    );
    assert!(p50[1] < 2.0, "p50 without ticks: {} ms", p50[1]);
    // Ticks longer than a second are fine too (the sleep is split into steps).
    let (out, err) = run(&[
        "--target",
        &target(&peer),
        "--rate",
        "10",
        "--duration",
        "1s",
        "--tick",
        "1500ms",
    ]);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("sent        10 events"), "{err}");
}

/// On a terminal (a pty from `script`), a live line shows rate, sent, replies and errors.
#[test]
fn progress_line_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let peer = echo(dir.path(), &[]);
    let cmd = format!(
        "{} --target {} --rate 2000 --duration 2s --roundtrip",
        env!("CARGO_BIN_EXE_loadgen"),
        target(&peer)
    );
    let out = Command::new("script")
        .args(["-qfec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{tty}");
    assert!(
        tty.contains("events/s · sent"),
        "no progress line in:\n{tty}"
    );
    assert!(
        tty.contains("· replies") && tty.contains("· errors 0"),
        "{tty}"
    );
    assert!(tty.contains("throughput"), "the summary follows:\n{tty}");
}

#[test]
fn lost_replies_make_the_run_fail() {
    let dir = tempfile::tempdir().unwrap();
    let peer = echo(dir.path(), &["--drop-every", "100"]);
    let (out, err) = run(&[
        "--target",
        &target(&peer),
        "--count",
        "2000",
        "-c",
        "2",
        "--roundtrip",
        "--drain-timeout",
        "1s",
    ]);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("LOST        20 events"), "{err}");
}

#[test]
fn a_peer_that_vanishes_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let peer = echo(dir.path(), &["--close-after", "100"]);
    let j = dir.path().join("v.json");
    let (out, err) = run(&[
        "--target",
        &target(&peer),
        "--rate",
        "2000",
        "--duration",
        "2s",
        "-c",
        "2",
        "--roundtrip",
        "--json",
        j.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("closed by the peer") || err.contains("write failed"),
        "{err}"
    );
    // Every scheduled event is either sent or counted as not sent; every sent one is either
    // answered or missing (the unsent ones are not counted twice).
    let r = json(&j);
    let n = |k: &str| r[k].as_u64().unwrap();
    assert_eq!(n("sent") + n("failed"), 4000, "{r}");
    assert_eq!(n("replies") + n("missing_replies"), n("sent"), "{r}");
    assert_eq!(n("replies"), 200, "{r}");
}

/// A target that accepts and then never reads: loadgen gives up after --stall-timeout, reports
/// the unsent events and fails, instead of waiting forever; Ctrl-C works too.
#[test]
fn a_target_that_stops_reading_cannot_hang_loadgen() {
    let dir = tempfile::tempdir().unwrap();
    let peer = echo(dir.path(), &["--never-read"]);
    for mode in [["--rate", "max"], ["--rate", "50k"]] {
        let j = dir.path().join("h.json");
        let start = Instant::now();
        let (out, err) = run(&[
            "--target",
            &target(&peer),
            "--count",
            "200000",
            "-c",
            "2",
            "-k",
            "64",
            "--stall-timeout",
            "1s",
            "--json",
            j.to_str().unwrap(),
            mode[0],
            mode[1],
        ]);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "took {:?}",
            start.elapsed()
        );
        assert!(err.contains("the target took nothing for 1s"), "{err}");
        let r = json(&j);
        let (sent, failed) = (r["sent"].as_u64().unwrap(), r["failed"].as_u64().unwrap());
        assert!(
            failed > 0 && sent + failed == 200_000,
            "sent {sent} failed {failed}"
        );
    }
    // Without a stall timeout, SIGINT ends the wait: the drain timeout applies.
    let child = loadgen()
        .args([
            "--target",
            &target(&peer),
            "--count",
            "200000",
            "-c",
            "2",
            "-k",
            "64",
            "--stall-timeout",
            "0s",
            "--drain-timeout",
            "1s",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let (status, err) = interrupt(child);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("still unsent when the drain timeout ran out"),
        "{err}"
    );
}

/// Ctrl-C ends the schedule early; what was sent is reported, and nothing is lost.
#[test]
fn sigint_stops_the_run_and_still_reports() {
    let dir = tempfile::tempdir().unwrap();
    let peer = echo(dir.path(), &[]);
    let j = dir.path().join("i.json");
    let child = loadgen()
        .args([
            "--target",
            &target(&peer),
            "--rate",
            "2000",
            "--duration",
            "60s",
            "--roundtrip",
            "--json",
            j.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let (status, err) = interrupt(child);
    assert!(status.success(), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    let r = json(&j);
    assert_eq!(r["interrupted"], true);
    let sent = r["sent"].as_u64().unwrap();
    assert!((1000..=6000).contains(&sent), "sent {sent}");
    assert_eq!(r["replies"], sent);
}

#[test]
fn unreachable_targets_and_bad_options_are_clear_errors() {
    let (out, err) = run(&["--target", "unix:/nonexistent/x.sock", "--count", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains("cannot connect to unix:/nonexistent/x.sock (is the gateway running?)"),
        "{err}"
    );
    let (out, err) = run(&["--count", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("--target is required"), "{err}");
    let (out, err) = run(&["--target", "unix:/x", "--cafile", "/x.pem", "--count", "1"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(err.contains("--cafile is for wss://"), "{err}");
    let (out, err) = run(&["--target", "ws://127.0.0.1:1/", "--count", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("cannot connect to ws://127.0.0.1:1/"), "{err}");
    let (out, err) = run(&["--target", "unix:/x", "--rate", "fast"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(err.contains("\"max\""), "{err}");
    // A run that ends inside its warm-up measured nothing: that is an error, not a result.
    let dir = tempfile::tempdir().unwrap();
    let peer = echo(dir.path(), &[]);
    let (out, err) = run(&[
        "--target",
        &target(&peer),
        "--count",
        "100",
        "--warmup",
        "5s",
    ]);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("nothing was measured"), "{err}");
    // Output paths are checked before the run, not after it.
    let (out, err) = run(&[
        "--target",
        "unix:/nonexistent/x.sock",
        "--plot",
        "/tmp/x.jpg",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("use a .svg or .png"), "{err}");
    let (out, err) = run(&[
        "--target",
        "unix:/nonexistent/x.sock",
        "--json",
        "/nonexistent/dir/r.json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn stamps_feed_the_gateways_latency_report() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report");
    let gw = ringway(
        dir.path(),
        &format!(
            "\n[telemetry]\nreport_dir = \"{}\"\nlatency_field = \"sent_ns\"\n",
            report.display()
        ),
    );
    let j = dir.path().join("s.json");
    let (out, err) = run(&[
        "--target",
        &target(&gw),
        "--rate",
        "4000",
        "--duration",
        "1s",
        "--warmup",
        "300ms",
        "-c",
        "4",
        "--stamp",
        "--json",
        j.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{err}");
    let lg = json(&j);
    let (sent, measured) = (
        lg["sent"].as_u64().unwrap(),
        lg["measured_events"].as_u64().unwrap(),
    );
    assert!(
        measured > 0 && measured < sent,
        "sent {sent}, measured {measured}"
    );
    gw.stop();
    // Warm-up events go out unstamped: the gateway's histogram holds the measured ones only.
    let r = json(&report.join("report.json"));
    assert_eq!(r["histograms"]["event_latency"]["count"], measured);
    assert_eq!(r["unstamped_events"], sent - measured);
    // At 4,000 events/s on an idle gateway, events reach the sink within a second.
    let p99 = r["histograms"]["event_latency"]["percentiles"]["p99"]
        .as_f64()
        .unwrap();
    assert!(p99 > 0.0 && p99 < 1000.0, "p99 {p99} ms");
    let (_, total) = hgrm(&report.join("event_latency.hgrm"));
    assert_eq!(total, measured);
}

#[test]
fn replayed_payload_and_exact_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let gw = ringway(dir.path(), "");
    let payload = dir.path().join("p.ndjson");
    std::fs::write(&payload, "{\"a\":1}\n{\"b\":[1,2]}\n").unwrap();
    let (out, err) = run(&[
        "--target",
        &target(&gw),
        "--count",
        "10",
        "-c",
        "1",
        "--payload",
        payload.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{err}");
    let (out, err) = run(&[
        "--target",
        &target(&gw),
        "--count",
        "5",
        "-c",
        "1",
        "--size",
        "300",
    ]);
    assert!(out.status.success(), "{err}");
    gw.stop();
    let text = std::fs::read_to_string(dir.path().join("out.ndjson")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 15);
    assert_eq!(
        lines[..4],
        ["{\"a\":1}", "{\"b\":[1,2]}", "{\"a\":1}", "{\"b\":[1,2]}"]
    );
    for l in &lines[10..] {
        assert_eq!(l.len() + 1, 300, "{l}");
    }
}

#[test]
fn plot_overlays_several_hgrm_files() {
    let dir = tempfile::tempdir().unwrap();
    let peer = echo(dir.path(), &[]);
    let mut files = vec![];
    for (name, rate) in [("slow", "1000"), ("fast", "3000")] {
        let h = dir.path().join(format!("{name}.hgrm"));
        let (out, err) = run(&[
            "--target",
            &target(&peer),
            "--rate",
            rate,
            "--duration",
            "500ms",
            "--roundtrip",
            "--hgrm",
            h.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{err}");
        files.push(h);
    }
    let svg = dir.path().join("cmp.svg");
    let out = loadgen()
        .arg("plot")
        .args(&files)
        .arg("-o")
        .arg(&svg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        text.contains("slow") && text.contains("fast"),
        "both series are labelled"
    );
    let png = dir.path().join("cmp.png");
    let out = loadgen()
        .arg("plot")
        .args(&files)
        .arg("-o")
        .arg(&png)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(&std::fs::read(&png).unwrap()[..8], b"\x89PNG\r\n\x1a\n");
    let out = loadgen()
        .arg("plot")
        .arg(dir.path().join("nope.hgrm"))
        .arg("-o")
        .arg(&svg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// The whole comparison, in miniature: every section printed, every gateway run lossless.
#[test]
fn compare_runs_every_measurement_in_one_go() {
    let dir = tempfile::tempdir().unwrap();
    let out = loadgen()
        .args([
            "compare",
            "--duration",
            "400ms",
            "--warmup",
            "100ms",
            "--connections",
            "4",
            "--idle",
            "300",
            "--scaling",
            "1,8",
            "--latency-at",
            "10,50",
            "--out-dir",
        ])
        .arg(dir.path())
        .arg("--ringway")
        .arg(ringway_bin())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for section in [
        "Peak ingest",
        "io_mode = uring",
        "io_mode = epoll",
        "naive tokio baseline",
        "parse limit",
        "Latency",
        "10% of the uring peak",
        "Memory, 300 idle",
        "Scaling",
        "8 connections",
    ] {
        assert!(stdout.contains(section), "missing {section:?} in\n{stdout}");
    }
    let r = json(&dir.path().join("results.json"));
    for k in ["uring", "epoll", "baseline", "parse_limit"] {
        assert!(r["peak"][k].as_f64().unwrap() > 0.0, "{k}: {r}");
    }
    assert_eq!(r["lost"], serde_json::json!([]));
    let latency = r["latency"].as_array().unwrap();
    assert_eq!(latency.len(), 2);
    for l in latency {
        assert!(l["event_latency_ms"]["count"].as_u64().unwrap() > 0, "{l}");
        assert!(
            l["event_latency_ms"]["percentiles"]["p99"]
                .as_f64()
                .unwrap()
                > 0.0,
            "{l}"
        );
    }
    assert!(
        r["idle_rss_bytes_per_connection"]["uring"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(std::fs::read_to_string(dir.path().join("latency.svg"))
        .unwrap()
        .contains("<svg"));
}

/// A gateway that loses one event fails the comparison: exit 1 and a LOST line naming the run.
#[test]
fn compare_fails_when_a_gateway_loses_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let wrapper = dir.path().join("lossy-ringway");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec python3 {} {} \"$@\"\n",
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/lossy_ringway.py")
                .display(),
            ringway_bin().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = loadgen()
        .args([
            "compare",
            "--duration",
            "200ms",
            "--warmup",
            "50ms",
            "--connections",
            "2",
            "--idle",
            "10",
            "--scaling",
            "1",
            "--latency-at",
            "10",
            "--ringway",
        ])
        .arg(&wrapper)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("LOST: ringway uring: events_out = "),
        "{stdout}"
    );
    assert!(
        stdout.contains("LOST: ringway epoll: events_out = "),
        "{stdout}"
    );
    assert!(!stdout.contains("LOST: naive baseline"), "{stdout}");
}
