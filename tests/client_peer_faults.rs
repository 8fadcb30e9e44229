//! The `unix_socket_client` sink against faulty peers (`tests/clients/faulty_peer.py`), over real
//! UNIX sockets:
//! - one that accepts and drops every connection is retried on the backoff schedule, the attempt
//!   counter growing into the circuit, not in a tight loop;
//! - one that shuts down its writing side at once but reads on gets every event on its one
//!   connection, and the gateway still shuts down cleanly;
//! - one that resets an idle connection (closes it with our bytes unread) is reconnected at once
//!   because the reply reader's error breaks the connection, not only a write's.

mod util;

use std::path::Path;
use std::time::Duration;

use util::*;

fn config(peer: &Path, retry: &str) -> String {
    format!(
        r#"
workers = 2
shutdown_timeout = "1s"

[[sources]]
name = "in"
type = "unix_socket_server"
path = "{{dir}}/in.sock"

[[sinks]]
type = "unix_socket_client"
name = "peer"
path = "{}"
reconnect = {{ retry = {{ interval_ms = 100, growth_rate = 2.0, max_interval_ms = 800, jitter = 0.0{retry} }} }}
"#,
        peer.display()
    )
}

fn start_peer(sock: &Path, args: &[&str]) -> Client {
    let mut all = vec![sock.to_str().unwrap()];
    all.extend_from_slice(args);
    let peer = Client::python("faulty_peer.py", &all);
    wait_until(PATIENCE, "the peer listening", || sock.exists());
    peer
}

/// The peer's `{"accepted":n,"t":secs}` lines so far: the accept times, in order.
fn accept_times(peer: &Client) -> Vec<f64> {
    peer.lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("t")?.as_f64())
        .collect()
}

/// The peer's `{"eof":n,"bytes":b}` lines so far, as (n, b).
fn eofs(peer: &Client) -> Vec<(u64, u64)> {
    peer.lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some((v.get("eof")?.as_u64()?, v.get("bytes")?.as_u64()?)))
        .collect()
}

/// SIGTERM to the peer; its final `{"accepts":n}`.
fn stop_peer(peer: Client) -> u64 {
    // SAFETY: plain kill(2) on our own child's pid.
    let rc = unsafe { libc::kill(peer.pid() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    peer.finish()["accepts"].as_u64().unwrap()
}

/// `key=<n>` of a log line.
fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
        .parse()
        .unwrap()
}

/// Against a peer that accepts and closes every connection at once, each connection is one
/// more failed attempt: accepts are spaced as the schedule plans (100, 200, 400, 800, 800 … ms;
/// after max_retries the circuit opens), not ~36 in 3 s as when every short-lived connection
/// was retried at once. The counters agree with what the peer saw.
#[test]
fn a_peer_that_drops_every_connection_is_retried_on_the_backoff_schedule() {
    let shared = tempfile::tempdir().unwrap();
    let sock = shared.path().join("peer.sock");
    let peer = start_peer(&sock, &["--drop"]);
    let mut gw = Gateway::start(&config(&sock, ", max_retries = 5"));
    // Events to write, so that every connection is written to (and found broken).
    let producer = Client::produce(gw.socket(), &["--conn", "0", "--count", "20000"]);
    // The 8th connection is due ~3.9 s after the first.
    wait_until(PATIENCE, "eight connections", || {
        accept_times(&peer).len() >= 8
    });
    let t = accept_times(&peer);
    let planned = [100.0, 200.0, 400.0, 800.0, 800.0, 800.0, 800.0];
    for (k, (w, want)) in t.windows(2).zip(planned).enumerate() {
        let gap = (w[1] - w[0]) * 1000.0;
        assert!(
            gap >= want * 0.95,
            "connections {} and {} accepted {gap:.0} ms apart, the schedule says {want} ms: {t:?}",
            k + 1,
            k + 2
        );
    }
    let in_3s = t.iter().filter(|&&x| x - t[0] < 3.0).count();
    assert!(in_3s <= 7, "{in_3s} connections within 3 s: {t:?}");

    // The gateway's own account: each loss is attempt n with the planned wait, up to the circuit.
    let err = gw.stderr();
    let lost: Vec<(u64, u64)> = err
        .lines()
        .filter(|l| l.contains("connection lost within"))
        .map(|l| (field(l, "attempt"), field(l, "retry_in_ms")))
        .collect();
    assert!(lost.len() >= 7, "{err}");
    let want: Vec<(u64, u64)> = (1..=7).zip([100, 200, 400, 800, 800, 800, 800]).collect();
    assert_eq!(&lost[..7], &want[..], "{err}");
    assert!(
        err.contains("circuit open after 6 failed attempts"),
        "{err}"
    );

    // Stop the gateway before the peer, so that every connect found it listening.
    gw.signal(libc::SIGTERM);
    gw.wait_exit(EXIT_PATIENCE);
    drop(producer);
    std::thread::sleep(Duration::from_millis(300)); // the peer accepts what is still queued
    let accepts = stop_peer(peer);
    let err = gw.stderr();
    assert_eq!(exit_detail(&err, "connect_failures"), 0, "{err}");
    assert_eq!(exit_detail(&err, "reconnects"), accepts - 1, "{err}");
    let lost = err.matches("connection lost (").count() as u64;
    assert!(
        lost == accepts || lost + 1 == accepts,
        "{lost} connections lost of {accepts}: {err}"
    );
    // Nothing can be delivered to such a peer: what was taken in and not written is counted.
    let s = Summary::parse(&err).unwrap();
    assert_eq!(
        s.events_out + exit_detail(&err, "lost_at_shutdown"),
        s.events_in,
        "{err}"
    );
}

/// A peer that shuts down its writing side right after accept (the client's reply reader reads
/// EOF at once) but reads on: every event arrives, once and in order, on that one connection;
/// nothing is reconnected; and at SIGTERM the gateway half-closes its side (the peer reads EOF
/// after the last event and closes) and exits cleanly.
#[test]
fn a_half_closing_peer_gets_every_event_on_one_connection() {
    let shared = tempfile::tempdir().unwrap();
    let sock = shared.path().join("peer.sock");
    let out = shared.path().join("got.ndjson");
    let peer = start_peer(&sock, &["--half-close", out.to_str().unwrap()]);
    let mut gw = Gateway::start(&config(&sock, ""));
    let count = 20_000u64;
    Client::produce(gw.socket(), &["--conn", "0", "--count", &count.to_string()]).finish();
    wait_until(PATIENCE, "every event at the peer", || {
        count_lines(&out) as u64 == count
    });
    // Quiet time: a client that took the peer's EOF for a broken connection would reconnect
    // every 100 ms meanwhile.
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(accept_times(&peer).len(), 1, "{}", gw.stderr());
    let s = gw.stop();
    let err = gw.stderr();
    assert_eq!((s.events_in, s.events_out, s.dropped), (count, count, 0));
    for key in [
        "reconnects",
        "connect_failures",
        "resent",
        "lost_at_shutdown",
    ] {
        assert_eq!(exit_detail(&err, key), 0, "{key}: {err}");
    }
    assert!(!err.contains("connection lost"), "{err}");
    // The peer read our EOF after the last byte, on its first connection.
    wait_until(PATIENCE, "the peer reading our EOF", || {
        !eofs(&peer).is_empty()
    });
    let size = std::fs::metadata(&out).unwrap().len();
    assert_eq!(eofs(&peer), [(1, size)]);
    assert_eq!(stop_peer(peer), 1);
    let mut check = SeqChecker::new(PAD);
    for line in read_lines(&out) {
        check.push(&line);
    }
    assert_eq!(check.counts().get(&0), Some(&count));
}

/// A peer that closes an idle connection with our bytes unread: the reply reader's read fails
/// (ECONNRESET), and that alone breaks the connection, so the client reconnects without waiting
/// for an event to write; later events go out on the new connection.
#[test]
fn a_peer_that_resets_an_idle_connection_is_reconnected_without_a_write() {
    let shared = tempfile::tempdir().unwrap();
    let sock = shared.path().join("peer.sock");
    let out = shared.path().join("got.ndjson");
    let peer = start_peer(&sock, &["--reset-first", out.to_str().unwrap()]);
    let mut gw = Gateway::start(&config(&sock, ""));
    // Written on the first connection, which the peer then closes unread: lost with it (the
    // kernel took them; only an acknowledging protocol could tell).
    Client::produce(gw.socket(), &["--conn", "0", "--count", "100"]).finish();
    wait_until(
        PATIENCE,
        "a second connection, with nothing more to write",
        || accept_times(&peer).len() >= 2,
    );
    let err = gw.stderr();
    assert!(
        err.lines()
            .any(|l| l.contains("connection lost") && l.contains("reading replies")),
        "{err}"
    );
    Client::produce(gw.socket(), &["--conn", "1", "--count", "100"]).finish();
    wait_until(PATIENCE, "the later events at the peer", || {
        count_lines(&out) == 100
    });
    let s = gw.stop();
    let err = gw.stderr();
    assert_eq!((s.events_in, s.events_out), (200, 200), "{err}");
    assert_eq!(exit_detail(&err, "reconnects"), 1, "{err}");
    assert_eq!(exit_detail(&err, "connect_failures"), 0, "{err}");
    wait_until(PATIENCE, "the peer reading our EOF", || {
        !eofs(&peer).is_empty()
    });
    assert_eq!(stop_peer(peer), 2);
    let mut check = SeqChecker::new(PAD);
    for line in read_lines(&out) {
        check.push(&line);
    }
    assert_eq!(check.counts().get(&1), Some(&100));
    assert_eq!(check.counts().get(&0), None);
}
