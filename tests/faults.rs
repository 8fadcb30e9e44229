//! Faults the gateway must ride out: running out of file descriptors (EMFILE on
//! accept), and a sink whose disk is full (ENOSPC on write).

mod util;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use util::*;

io_modes!(emfile_backoff => emfile_backoff());

fn emfile_backoff(mode: &str) {
    let mut gw = Gateway::configure(&standard_config(mode))
        .nofile(64)
        .start();

    // 100 connections at once, each sending one line, against a 64-descriptor limit.
    let flood = Client::python(
        "flood.py",
        &[gw.socket_str(), "--conns", "100", "--hold", "2"],
    );
    let report = flood.finish();
    let connected: Vec<u64> = report["connected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert!(
        connected.len() >= 64,
        "the flood must exceed the descriptor limit: {report}"
    );
    assert!(
        gw.is_running(),
        "gateway died under EMFILE; stderr:\n{}",
        gw.stderr()
    );

    // After the flood: a fresh client is served.
    Client::produce(gw.socket(), &["--conn", "1", "--count", "1000"]).finish();
    let out = gw.path("out.ndjson");
    let expected = connected.len() + 1000;
    wait_until(
        Duration::from_secs(60),
        "the fresh client's events and the flood's lines",
        || count_lines(&out) >= expected,
    );

    let summary = gw.stop();
    let emfile_logged =
        gw.stderr().contains("Too many open files") || gw.stderr().contains("os error 24");
    eprintln!(
        "{mode}: {} of 100 flood connections got their line in; EMFILE logged: {emfile_logged}",
        connected.len()
    );
    let mut check = SeqChecker::new(PAD);
    let mut flooded = Vec::new();
    for line in read_lines(&out) {
        if parse_ci(&line).is_some() {
            check.push(&line);
        } else {
            let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
            flooded.push(
                v["flood"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("unexpected line {}", show(&line))),
            );
        }
    }
    assert_eq!(
        check.counts().get(&1),
        Some(&1000),
        "the fresh client's events"
    );
    flooded.sort();
    assert_eq!(
        flooded, connected,
        "each flood connection that got its line in is read once it can be accepted"
    );
    assert_eq!(summary.events_out, expected as u64);
}

// ---------------------------------------------------------------------------------

/// A small tmpfs in its own temp dir; unmounted (then removed) on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::Builder::new()
            .prefix("ringway-disk")
            .tempdir()
            .unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Writes to `path` until the file system is full, then frees `leave` bytes (rounded
/// down to whole pages): the sink's next writes succeed in part, then fail.
fn fill(path: &Path, leave: u64) {
    let mut f = fs::File::create(path).unwrap();
    let block = vec![0u8; 64 * 1024];
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    while let Ok(1) = f.write(&block[..1]) {}
    let len = f.metadata().unwrap().len();
    f.set_len(len - leave).unwrap();
}

io_modes!(sink_write_error => sink_write_error());

fn sink_write_error(mode: &str) {
    // Declared before the gateway, so it is unmounted only after the gateway is gone.
    let disk = match Tmpfs::mount("8m") {
        Ok(disk) => disk,
        Err(why) => {
            eprintln!("SKIPPED sink_write_error_{mode}: {why}");
            return;
        }
    };
    let out = disk.path("out.ndjson");
    let filler = disk.path("filler");
    fill(&filler, 50_001);

    let config = standard(mode).with_sink(0, |_| Sink::file_at(&out));
    let mut gw = Gateway::start(&config.render());
    let client = Client::produce(
        gw.socket(),
        &["--conn", "3", "--count", "40000", "--seed", "9"],
    );
    // Let the gateway run into ENOSPC for a while (it should log it; not required here).
    let logged = poll_until(Duration::from_secs(5), || {
        let e = gw.stderr();
        e.contains("No space left on device") || e.contains("os error 28")
    });
    if !logged {
        eprintln!("note: no ENOSPC log line within 5 s");
    }
    // Time passing is the test: a second more against a full disk, and it is still up.
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        gw.is_running(),
        "the gateway must survive a full disk; stderr:\n{}",
        gw.stderr()
    );
    let written = count_lines(&out);
    assert!(
        written < 40_000,
        "the disk was full: not all events can have been written"
    );
    eprintln!("{mode}: {written} events fit on the disk before it was full");

    fs::remove_file(&filler).unwrap();
    client.finish();
    wait_until(
        Duration::from_secs(60),
        "all events written once the disk has room",
        || count_lines(&out) >= 40_000,
    );
    let summary = gw.stop();

    let mut check = SeqChecker::new(PAD);
    for line in read_lines(&out) {
        check.push(&line);
    }
    assert_eq!(
        check.counts().get(&3),
        Some(&40_000),
        "all events, in order, no duplicates"
    );
    assert_eq!(
        summary,
        Summary {
            events_in: 40_000,
            events_out: 40_000,
            dead_lettered: 0,
            dropped: 0
        }
    );
}

// ---------------------------------------------------------------------------------
// Connections still queued on the listener when SIGTERM arrives (here: because the gateway
// is out of descriptors) are accepted and read during the shutdown grace, not dropped.

io_modes!(queued_connections_are_read_at_shutdown => queued_connections_are_read_at_shutdown());

fn queued_connections_are_read_at_shutdown(mode: &str) {
    use std::os::unix::net::UnixStream;
    let config = standard(mode).shutdown_timeout("60s");
    let mut gw = Gateway::configure(&config.render()).nofile(48).start();
    let mut clients = Vec::new();
    for k in 0..100 {
        let mut s = UnixStream::connect(gw.socket()).expect("connect (the listen backlog is 1024)");
        writeln!(s, "{{\"queued\":{k}}}").unwrap();
        clients.push(s);
    }
    let out = gw.path("out.ndjson");
    // Some are accepted and read; the rest wait in the queue for descriptors.
    wait_until(PATIENCE, "the first accepted connections' lines", || {
        count_lines(&out) > 0
    });
    // Time passing is the test: 300 ms in which the queued connections must stay unread.
    std::thread::sleep(Duration::from_millis(300));
    let before = count_lines(&out);
    assert!(
        before < 100,
        "the descriptor limit must leave connections queued ({before} read)"
    );

    gw.signal(libc::SIGTERM);
    wait_until(PATIENCE, "the socket path to be removed", || {
        !gw.socket().exists()
    });
    assert!(
        UnixStream::connect(gw.socket()).is_err(),
        "no new client after SIGTERM"
    );
    drop(clients); // EOF on the accepted ones frees descriptors for the queued ones
    assert!(gw.wait_exit(EXIT_PATIENCE).success());
    let summary = Summary::parse(&gw.stderr()).unwrap();
    let mut got: Vec<u64> = read_lines(&out)
        .iter()
        .map(|l| {
            serde_json::from_slice::<serde_json::Value>(l).unwrap()["queued"]
                .as_u64()
                .unwrap()
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        (0..100).collect::<Vec<u64>>(),
        "every queued client's line, once"
    );
    assert_eq!(summary.events_out, 100);
}
