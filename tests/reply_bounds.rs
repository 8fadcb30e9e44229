//! The reply queues' bounds and their accounting: a client that stops reading is closed after
//! `write_timeout` and every event it sent is either a reply it received whole or counted in
//! `replies_dropped` (exactly); a connection held back by its full reply queue does not hold up
//! shutdown; events routed to a connection that does not read are dropped past its bound
//! instead of piling up; a second gateway cannot take over a TCP port that one listens on.

mod util;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use util::*;

/// One UNIX source `in`, a file sink, and the `reply` sink.
fn config(mode: &str, reply: Sink, shutdown_timeout: &str) -> String {
    Config::new()
        .io_mode(mode)
        .workers(2)
        .shutdown_timeout(shutdown_timeout)
        .source(Source::unix("in"))
        .sink(Sink::file("out.ndjson"))
        .sink(reply)
        .render()
}

/// A client reads 1,000 replies, then stops reading while it sends on. The gateway parks the
/// connection (its queue is full), closes it after `write_timeout`, and counts what it could
/// not write: complete replies received + `replies_dropped` = events taken in.
fn accounting(mode: &str) {
    let mut gw = Gateway::start(&config(
        mode,
        Sink::reply().set("write_timeout", "1s"),
        "10s",
    ));
    let r = Client::python(
        "reply_client.py",
        &[
            &gw.target(),
            "--read-some",
            "1000",
            "--count",
            "200000",
            "--first",
            "7",
        ],
    )
    .finish();
    assert_eq!(r["in_order"], true, "{r}");
    let lines = r["lines"].as_u64().unwrap();
    let s = gw.stop();
    let err = gw.stderr();
    let dropped = exit_detail(&err, "replies_dropped");
    assert_eq!(exit_detail(&err, "reply_timeouts"), 1, "{err}");
    assert!(
        lines >= 1000 && dropped > 0,
        "lines={lines} dropped={dropped}"
    );
    assert_eq!(
        lines + dropped,
        s.events_in,
        "received {lines} + dropped {dropped} must be every event taken in; {err}"
    );
    // Parked once (or a few times: it reads again after each drain), not once per retry.
    let parked = exit_detail(&err, "parked");
    assert!(parked < 50, "parked={parked}: counted per retry? {err}");
}

io_modes!(reply_accounting => accounting());

/// A connection whose reply queue stays full (it never reads) is ended at the shutdown deadline
/// like any other: the gateway exits 0 soon after it, with the replies counted as dropped.
fn held_back_at_shutdown(mode: &str) {
    let mut gw = Gateway::start(&config(
        mode,
        Sink::reply()
            .set("queue_bytes", 1024)
            .set("write_timeout", "30s"),
        "1s",
    ));
    let hog = Client::python(
        "reply_client.py",
        &[&gw.target(), "--never-read", "--first", "3"],
    );
    let out = gw.path("out.ndjson");
    wait_until(PATIENCE, "the non-reader's first events", || {
        count_lines(&out) > 0
    });
    gw.wait_events_in_settle();
    let began = Instant::now();
    let s = gw.stop();
    let took = began.elapsed();
    let err = gw.stderr();
    assert!(
        took < Duration::from_secs(6),
        "exit took {took:?} with a 1s shutdown_timeout; {err}"
    );
    assert_eq!(s.events_in, s.events_out, "{err}");
    assert!(exit_detail(&err, "replies_dropped") > 0, "{err}");
    assert_eq!(exit_detail(&err, "lost_at_shutdown"), 0, "{err}");
    let (_, said) = hog.wait(PATIENCE);
    assert!(said.contains("\"closed\": true"), "{said}");
}

io_modes!(held_back_connection_ends_at_deadline => held_back_at_shutdown());

/// With `route_field`, the sender is not the connection its events go to, so it cannot be held
/// back for them: past the target's `queue_bytes` they are dropped and counted, and what the
/// target finally reads plus what was dropped is exactly what was routed to it.
#[test]
fn routed_replies_respect_the_bound() {
    let mut gw = Gateway::start(
        &Config::new()
            .source(Source::unix("in"))
            .sink(Sink::file("out.ndjson").set("metadata", "envelope"))
            .sink(
                Sink::reply()
                    .set("queue_bytes", 65536)
                    .set("route_field", "to"),
            )
            .render(),
    );
    let target = gw.target();
    // `a` says hello (to nobody), which shows its connection id in the file sink's envelope.
    let a = UnixStream::connect(&target).unwrap();
    (&a).write_all(b"{\"hello\":\"a\"}\n").unwrap();
    let out = gw.path("out.ndjson");
    wait_until(PATIENCE, "a's hello", || count_lines(&out) == 1);
    let a_id = read_json_lines(&out)[0]["meta"]["unix_socket_server"]["peer"]
        .as_u64()
        .unwrap();
    let pad = "x".repeat(1000);
    let n = 20_000u64;
    let mut b = UnixStream::connect(&target).unwrap();
    let mut block = String::new();
    for i in 0..n {
        block.push_str(&format!("{{\"to\":{a_id},\"i\":{i},\"p\":\"{pad}\"}}\n"));
        if block.len() > 256 * 1024 || i == n - 1 {
            b.write_all(block.as_bytes()).unwrap();
            block.clear();
        }
    }
    b.shutdown(std::net::Shutdown::Write).unwrap();
    // b is never held back for a's sake: all of it is taken in while a reads nothing.
    wait_until(PATIENCE, "b's events in the file", || {
        count_lines(&out) as u64 == n + 1
    });
    // Everything routed is queued or dropped by now: a reads what was kept for it.
    let reader = std::thread::spawn(move || {
        let (mut a, mut got) = (a, Vec::new());
        a.set_read_timeout(Some(PATIENCE)).unwrap();
        a.read_to_end(&mut got).unwrap();
        got.iter().filter(|&&c| c == b'\n').count() as u64
    });
    // A moment for a's reader to take what was kept for it before the shutdown. Nothing tells
    // when its queue is empty, and either way each reply is counted: received or dropped.
    std::thread::sleep(Duration::from_secs(1));
    drop(b);
    let s = gw.stop();
    let received = reader.join().unwrap();
    let err = gw.stderr();
    assert_eq!(s.events_in, n + 1);
    let dropped = exit_detail(&err, "replies_dropped");
    // a's hello named nobody: 1 of the dropped.
    assert_eq!(received + dropped, n + 1, "{err}");
    // 20 MB were routed to a while it did not read; its queue kept about 64 KiB of them (plus
    // what the socket buffers held), not all of them.
    assert!(
        received < 2_000,
        "a received {received} of {n} replies: the queue did not bound them"
    );
}

/// SO_REUSEPORT must not let a second gateway take part of a port the first listens on, nor
/// one config listen twice on the same port through `0.0.0.0` and `127.0.0.1`.
#[test]
fn tcp_port_in_use_is_refused() {
    let on = |url: String| {
        Config::new()
            .source(Source::new("tcp_server").set("url", url))
            .sink(Sink::null())
            .render()
    };
    let first = Gateway::start(&on("127.0.0.1:0".into()));
    let port = first.tcp_addr().port();
    for host in ["127.0.0.1", "0.0.0.0"] {
        let second = Gateway::configure(&on(format!("{host}:{port}"))).expect_failure();
        assert!(!second.status.success());
        assert!(
            second.stderr.contains("another process is listening on it"),
            "{}",
            second.stderr
        );
    }
    drop(first);
    check_refuses(
        r#"
[[sources]]
type = "tcp_server"
name = "a"
url = "0.0.0.0:4599"
[[sources]]
type = "tcp_server"
name = "b"
url = "127.0.0.1:4599"
[[sinks]]
type = "null"
"#,
        "sources[1].url",
    );
}

/// Only connections of a source the reply sink takes get a reply queue (a duplicate descriptor
/// and a writer task): counted here in the gateway's open descriptors.
#[test]
fn reply_queues_only_for_the_reply_sinks_inputs() {
    let gw = Gateway::start(
        &Config::new()
            .source(Source::unix("asks"))
            .source(Source::unix("tells"))
            .sink(Sink::null())
            .sink(Sink::reply().inputs(&["asks"]))
            .render(),
    );
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", gw.pid()))
            .unwrap()
            .count()
    };
    let connect = |name: &str| {
        let c: Vec<UnixStream> = (0..50)
            .map(|_| UnixStream::connect(gw.path(name)).unwrap())
            .collect();
        for mut s in &c {
            s.write_all(b"{\"x\":1}\n").unwrap();
        }
        c
    };
    let before = fds();
    let tells = connect("tells.sock");
    let tells_in = poll_until(PATIENCE, || fds() >= before + 45);
    assert!(tells_in, "descriptors: {before} before, {} now", fds());
    // Every one of them accepted and read: any reply queue made for them exists by now.
    gw.wait_events_in(50);
    let with_tells = fds();
    assert!(
        with_tells < before + 60,
        "50 connections to a source without replies took {} descriptors",
        with_tells - before
    );
    let asks = connect("asks.sock");
    let asks_in = poll_until(PATIENCE, || fds() >= with_tells + 95);
    assert!(asks_in, "descriptors: {with_tells} before, {} now", fds());
    drop((tells, asks));
}
