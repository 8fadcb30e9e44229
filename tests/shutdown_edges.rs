//! Shutdown at the edges: a signal as soon as the socket exists, a second signal, a sink that
//! blocks for good, and a second gateway that cannot tell whether the socket is live.

mod util;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use util::*;

/// SIGTERM the moment the socket accepts: always a clean exit with a summary, never a kill by
/// the signal's default action, and no socket left behind.
#[test]
fn sigterm_right_after_start_is_clean() {
    for mode in MODES {
        for _ in 0..5 {
            let mut gw = Gateway::configure(&standard_config(mode)).spawn();
            let sock = gw.path("in.sock");
            wait_until(PATIENCE, "the socket to accept", || {
                UnixStream::connect(&sock).is_ok()
            });
            let mut c = UnixStream::connect(&sock).unwrap();
            c.write_all(b"{\"early\":1}\n").unwrap();
            drop(c);
            let summary = gw.stop();
            assert_eq!(summary.events_in, summary.events_out, "{mode}: {summary:?}");
            assert_eq!(
                count_lines(&gw.path("out.ndjson")) as u64,
                summary.events_out
            );
            assert!(!sock.exists(), "{mode}: socket removed");
        }
    }
}

/// While draining, a second SIGTERM (or Ctrl-C) ends the process at once, with a message.
#[test]
fn second_signal_exits_at_once() {
    for mode in MODES {
        let config = standard(mode).shutdown_timeout("5m");
        let mut gw = Gateway::start(&config.render());
        let open = UnixStream::connect(gw.socket()).unwrap(); // keeps the drain going
        gw.signal(libc::SIGTERM);
        wait_until(PATIENCE, "the drain to begin", || {
            gw.stderr().contains("shutting down")
        });
        assert!(
            gw.is_running(),
            "{mode}: an open connection keeps the gateway draining"
        );
        gw.signal(libc::SIGINT);
        let status = gw.wait_exit(PATIENCE);
        assert_eq!(status.code(), Some(130), "{mode}: {}", gw.stderr());
        assert!(gw.stderr().contains("second signal"), "{}", gw.stderr());
        drop(open);
    }
}

/// A sink blocked for good (a FIFO whose reader never reads): once the shutdown grace has run
/// out twice, the gateway stops waiting, says how many events it could not write, exits 1.
#[test]
fn blocked_sink_does_not_hang_shutdown() {
    for mode in MODES {
        let config = Config::new()
            .io_mode(mode)
            .workers(2)
            .shutdown_timeout("300ms")
            .source(Source::unix_at(in_dir("in.sock")))
            .sink(Sink::file("fifo"));
        let launch = Gateway::configure(&config.render());
        mkfifo(&launch.path("fifo"));
        // A reader that opens the FIFO (so the gateway can open it) and never reads.
        let reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(launch.path("fifo"))
            .unwrap();
        let mut gw = launch.start();
        // Far more than a pipe holds.
        let mut c = UnixStream::connect(gw.socket()).unwrap();
        c.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        let line = format!("{{\"pad\":\"{}\"}}\n", "x".repeat(200));
        let mut sent = 0u64;
        let started = Instant::now();
        while sent < 20_000 && started.elapsed() < Duration::from_secs(10) {
            if c.write_all(line.as_bytes()).is_err() {
                break;
            }
            sent += 1;
        }
        drop(c);
        gw.signal(libc::SIGTERM);
        let status = gw.wait_exit(Duration::from_secs(30));
        let stderr = gw.stderr();
        assert_eq!(status.code(), Some(1), "{mode}: {stderr}");
        assert!(stderr.contains("still blocked"), "{mode}: {stderr}");
        let summary = Summary::parse(&stderr).unwrap();
        assert!(
            summary.events_in > summary.events_out,
            "{mode}: {summary:?}"
        );
        drop(reader);
    }
}

/// A live socket owned by another user answers a test connection with EACCES: that is not
/// proof it is stale, so a second gateway refuses instead of stealing the path.
#[test]
fn socket_that_refuses_us_with_eacces_is_not_replaced() {
    let mut first = Gateway::start(&standard_config("epoll"));
    let dir = first.dir().to_path_buf();
    // Let user `nobody` create its private bind directory next to the socket.
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let ino =
        |p: &std::path::Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let before = ino(first.socket());
    let cfg = dir.join("second.toml");
    let second = Config::new()
        .io_mode("epoll")
        .source(Source::unix_at(first.socket()))
        .sink(Sink::null());
    std::fs::write(&cfg, second.render()).unwrap();
    std::fs::set_permissions(&cfg, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let mut cmd = Command::new(bin());
    cmd.args(["run", "--config"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: setgid/setuid are async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the second gateway started on a live socket"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{err}");
    assert!(err.contains("may belong to a live process"), "{err}");
    assert_eq!(ino(first.socket()), before, "the live socket was replaced");
    let mut c = UnixStream::connect(first.socket()).unwrap();
    c.write_all(b"{\"still\":\"served\"}\n").unwrap();
    drop(c);
    let summary = first.stop();
    assert_eq!(summary.events_out, 1);
}

use std::os::unix::fs::OpenOptionsExt;

/// A live server whose accept backlog is full makes a blocking connect wait forever; the
/// start-up probe must not hang on it, and must not take the path.
#[test]
fn live_socket_with_full_backlog_does_not_hang_start_up() {
    use std::os::fd::AsRawFd;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("busy.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    // SAFETY: listen(2) on a socket we own, to shrink its backlog to the minimum.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    // With a backlog of 0 one connection may wait; a second would block a blocking connect.
    let _queued = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let cfg = dir.path().join("ringway.toml");
    let config = Config::new()
        .source(Source::unix_at(&path))
        .sink(Sink::null());
    std::fs::write(&cfg, config.render()).unwrap();
    let mut child = Command::new(bin())
        .args(["run", "--config"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("start-up hung on a live socket with a full backlog");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{err}");
    assert!(err.contains("may belong to a live process"), "{err}");
    let _ = listener.accept(); // the original server is still there
    assert!(path.exists());
}
