//! The `unix_socket_client` sink against peers that misbehave: one that accepts and drops every
//! connection at once is retried on the backoff schedule (not in a tight loop); one that shuts
//! down its writing side at once but reads on is written to on that one connection, without
//! reconnecting.

mod util;

use std::process::Command;
use std::time::Duration;

use util::*;

fn config(peer: &str) -> String {
    format!(
        r#"
io_mode = "uring"
workers = 2
shutdown_timeout = "1s"

[[sources]]
name = "in"
type = "unix_socket_server"
path = "{{dir}}/in.sock"

[[sinks]]
type = "unix_socket_client"
name = "peer"
path = "{peer}"
reconnect = {{ retry = {{ interval_ms = 100, growth_rate = 2.0, max_interval_ms = 800, jitter = 0.0 }} }}
"#
    )
}

fn term(c: &Client) {
    Command::new("kill")
        .args(["-TERM", &c.pid().to_string()])
        .status()
        .unwrap();
}

#[test]
fn a_peer_that_drops_every_connection_is_retried_on_schedule() {
    let shared = tempfile::tempdir().unwrap();
    let sock = shared.path().join("peer.sock");
    let peer = Client::python("unix_peer.py", &[&sock.to_string_lossy(), "--drop"]);
    wait_until(PATIENCE, "the peer listening", || sock.exists());
    let mut gw = Gateway::start(&config(&sock.to_string_lossy()));
    let producer = Client::produce(gw.socket(), &["--conn", "0", "--count", "200000"]);
    // Time passing is the test: how many connects the schedule makes in 3 s.
    std::thread::sleep(Duration::from_secs(3));
    // The control socket shows the sink's own reconnects and its circuit.
    let stats = Command::new(bin())
        .args(["ctl", "--json", "--socket"])
        .arg(gw.path("in.ctl"))
        .arg("stats")
        .output()
        .unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    let sink = &stats["sinks"][0];
    assert!(sink["reconnects"].as_u64().unwrap() >= 2, "{sink}");
    assert_eq!(sink["circuit"], "closed", "{sink}");
    term(&peer);
    let accepts = peer.finish()["accepts"].as_u64().unwrap();
    // 100, 200, 400, 800, 800 … ms apart: at most about 7 in 3 s (a tight loop made ~36).
    assert!(
        (3..=10).contains(&accepts),
        "{accepts} connections in 3 s; stderr:\n{}",
        gw.stderr()
    );
    gw.signal(libc::SIGTERM);
    let status = gw.wait_exit(EXIT_PATIENCE);
    drop(producer);
    let err = gw.stderr();
    // Exit 1 when anything was lost at shutdown, else 0.
    let lost = exit_detail(&err, "lost_at_shutdown");
    assert_eq!(status.code(), Some(if lost > 0 { 1 } else { 0 }), "{err}");
    assert!(err.contains("connection lost within"), "{err}");
    // Nothing can be delivered to such a peer: what was taken in and not written is counted.
    let s = Summary::parse(&err).unwrap();
    assert_eq!(
        s.events_out + exit_detail(&err, "lost_at_shutdown"),
        s.events_in,
        "{err}"
    );
}

#[test]
fn a_peer_that_half_closes_keeps_its_one_connection() {
    let shared = tempfile::tempdir().unwrap();
    let sock = shared.path().join("peer.sock");
    let out = shared.path().join("got.ndjson");
    let peer = Client::python(
        "unix_peer.py",
        &[
            &sock.to_string_lossy(),
            "--half-close",
            &out.to_string_lossy(),
        ],
    );
    wait_until(PATIENCE, "the peer listening", || sock.exists());
    let mut gw = Gateway::start(&config(&sock.to_string_lossy()));
    let count = 20_000u64;
    Client::produce(gw.socket(), &["--conn", "0", "--count", &count.to_string()]).finish();
    wait_until(PATIENCE, "every event at the peer", || {
        count_lines(&out) as u64 == count
    });
    // Some quiet time: a client that took the peer's EOF for a broken connection would
    // reconnect every 100 ms meanwhile.
    std::thread::sleep(Duration::from_millis(700));
    let s = gw.stop();
    term(&peer);
    assert_eq!(peer.finish()["accepts"], 1);
    let err = gw.stderr();
    assert_eq!(exit_detail(&err, "reconnects"), 0, "{err}");
    assert_eq!((s.events_in, s.events_out), (count, count));
    let mut check = SeqChecker::new(PAD);
    for line in read_lines(&out) {
        check.push(&line);
    }
    assert_eq!(check.lines, count);
}
