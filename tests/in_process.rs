//! The gateway as a library: the real topology in this process, clients on real sockets, and
//! every sink in memory (see `inproc`). Waits are on the gateway's counters.

mod inproc;

use std::io::Write;
use std::os::unix::net::UnixStream;

use inproc::InProcess;

fn unix(name: &str) -> String {
    format!("[[sources]]\ntype = \"unix_socket_server\"\nname = \"{name}\"\npath = \"{{dir}}/{name}.sock\"\n")
}

/// Good and bad lines from two connections: each connection's events arrive in order, every bad
/// line is one dead letter of its kind with its raw bytes, and no neighbour is lost.
fn lines_in_order_and_bad_lines_dead_lettered(mode: &str) {
    let gw = InProcess::start(mode, &unix("in"));
    let mut a = UnixStream::connect(gw.path("in.sock")).unwrap();
    let mut b = UnixStream::connect(gw.path("in.sock")).unwrap();
    for i in 0..500 {
        writeln!(a, "{{\"c\":\"a\",\"i\":{i}}}").unwrap();
        writeln!(b, "{{\"c\":\"b\",\"i\":{i}}}").unwrap();
        if i % 100 == 7 {
            a.write_all(b"{\"broken\":\n").unwrap();
            b.write_all(b"\xff\xfe not utf-8\n").unwrap();
        }
    }
    drop((a, b));
    gw.wait_for("1000 events and 10 dead letters", |c| {
        c.events_out == 1000 && c.dead_lettered == 10
    });
    let mut next = [0u64; 2];
    for line in gw.lines() {
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let c = (v["c"] == "b") as usize;
        assert_eq!(v["i"], next[c], "connection {c} out of order");
        next[c] += 1;
    }
    assert_eq!(next, [500, 500]);
    let dead = gw.dead_letters();
    assert_eq!(dead.len(), 10);
    for d in &dead {
        match d["raw"].as_str().unwrap() {
            "{\"broken\":" => assert_eq!(d["error"], "invalid_json", "{d}"),
            _ => assert_eq!(d["error"], "invalid_utf8", "{d}"),
        }
    }
    let end = gw.stop();
    assert_eq!((end.events_in, end.events_out), (1000, 1000));
}

#[test]
fn lines_in_order_and_bad_lines_dead_lettered_uring() {
    lines_in_order_and_bad_lines_dead_lettered("uring");
}

#[test]
fn lines_in_order_and_bad_lines_dead_lettered_epoll() {
    lines_in_order_and_bad_lines_dead_lettered("epoll");
}

/// A reload through the topology itself: a source added while another is read, both delivered;
/// what a removed source's client had sent is delivered; a change that needs a restart is
/// refused.
#[test]
fn reload_adds_and_removes_sources_in_process() {
    let gw = InProcess::start("epoll", &unix("one"));
    let mut one = UnixStream::connect(gw.path("one.sock")).unwrap();
    writeln!(one, "{{\"from\":\"one\"}}").unwrap();
    let applied = gw
        .reload(gw.config("epoll", &format!("{}{}", unix("one"), unix("two"))))
        .unwrap();
    assert!(
        applied.iter().any(|l| l.starts_with("source two added")),
        "{applied:?}"
    );
    let mut two = UnixStream::connect(gw.path("two.sock")).unwrap();
    writeln!(two, "{{\"from\":\"two\"}}").unwrap();
    gw.wait_for("both events", |c| c.events_out == 2);
    // What a removed source's client got into the kernel is delivered.
    writeln!(one, "{{\"from\":\"one\",\"last\":true}}").unwrap();
    let applied = gw.reload(gw.config("epoll", &unix("two"))).unwrap();
    assert!(
        applied.iter().any(|l| l.starts_with("source one removed")),
        "{applied:?}"
    );
    assert!(
        !gw.path("one.sock").exists(),
        "a removed source's path goes at once"
    );
    gw.wait_for("the removed source's last event", |c| c.events_out == 3);
    drop(one);
    let refused = gw.reload({
        let mut c = gw.config("epoll", &unix("two"));
        c.workers = std::num::NonZeroUsize::new(7).unwrap();
        c
    });
    assert!(refused.unwrap_err().contains("workers changed"));
    drop(two);
    let mut from: Vec<String> = gw
        .lines()
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["from"].to_string())
        .collect();
    from.sort();
    assert_eq!(from, ["\"one\"", "\"one\"", "\"two\""]);
    let end = gw.stop();
    assert_eq!((end.events_in, end.events_out), (3, 3));
}
