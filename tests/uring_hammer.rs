//! Hammering the io_uring loop (the crate's only `unsafe` code): provided-buffer ring
//! exhaustion, parking under backpressure, and connections that vanish mid-recv, all at once.
//! Every good event must arrive exactly once and in order; the counters prove each path ran.

mod util;

use std::io::Write;
use std::os::unix::net::UnixStream;

use util::*;

/// The `stopped: …` log line's `key=N` value.
fn detail(stderr: &str, key: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.contains("stopped: "))
        .unwrap_or_else(|| panic!("no `stopped:` line in\n{stderr}"));
    let at = line
        .find(&format!("{key}="))
        .unwrap_or_else(|| panic!("no {key} in {line}"));
    line[at + key.len() + 1..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn buffer_ring_exhaustion_parking_and_vanishing_clients() {
    // 64-byte receive buffers: the worker's ring of 128 buffers holds 8 KiB, far less than the
    // data pending on 64 busy connections, so multishot recvs end with ENOBUFS again and again.
    // A channel of 2 batches of at most 16 events makes connections park constantly.
    // A long shutdown grace: every connection must end by its own EOF, never by the deadline.
    let config = standard("uring")
        .shutdown_timeout("120s")
        .with_source("in", |s| s.set("buf_size", 64))
        .set("channel.capacity", 2)
        .set("channel.batch_max_events", 16);
    let mut gw = Gateway::start(&config.render());
    let busy: Vec<Client> = (0..2)
        .map(|k| {
            let first = (k * 32).to_string();
            let seed = (k + 11).to_string();
            Client::python(
                "many.py",
                &[
                    gw.socket_str(),
                    "--conns",
                    "32",
                    "--count",
                    "1500",
                    "--first-conn",
                    &first,
                    "--seed",
                    &seed,
                ],
            )
        })
        .collect();
    // Meanwhile: 300 clients that write part of a line, or a burst of lines, and vanish.
    let mut vanished_cut = 0u64;
    for k in 0..300u64 {
        let Ok(mut s) = UnixStream::connect(gw.socket()) else {
            continue;
        };
        let mut burst = Vec::new();
        for i in 0..(k % 7) {
            burst.extend_from_slice(format!("{{\"vanish\":{k},\"i\":{i}}}\n").as_bytes());
        }
        if k % 2 == 0 {
            burst.extend_from_slice(b"{\"cut\":"); // never finished: dead-lettered at EOF
            vanished_cut += 1;
        }
        let _ = s.write_all(&burst);
        drop(s);
    }
    for c in busy {
        c.finish();
    }
    let summary = gw.stop();
    let stderr = gw.stderr();

    let mut check = SeqChecker::new(PAD);
    let mut vanish_events = 0u64;
    for line in read_lines(&gw.path("out.ndjson")) {
        if line.starts_with(b"{\"vanish\"") {
            vanish_events += 1;
        } else {
            check.push(&line);
        }
    }
    for c in 0..64 {
        assert_eq!(check.counts().get(&c), Some(&1500), "busy connection {c}");
    }
    let expected_vanish: u64 = (0..300u64).map(|k| k % 7).sum();
    assert_eq!(
        vanish_events, expected_vanish,
        "complete lines of vanished clients"
    );
    assert_eq!(summary.events_out, 64 * 1500 + expected_vanish);
    assert_eq!(summary.events_in, summary.events_out);
    assert_eq!(
        summary.dead_lettered, vanished_cut,
        "each cut line is dead-lettered"
    );
    assert_eq!(summary.dropped, 0);
    assert!(
        detail(&stderr, "recv_out_of_buffers") > 0,
        "the test must exhaust the buffer ring:\n{stderr}"
    );
    assert!(
        detail(&stderr, "parked") > 0,
        "the test must park connections:\n{stderr}"
    );
    assert!(
        !stderr.contains("still open"),
        "every connection must end at its EOF, not at the shutdown deadline:\n{stderr}"
    );
    eprintln!(
        "recv_stalls_recovered={} (missed multishot wake-ups, see source::uring::machine::Machine::sweep)",
        detail(&stderr, "recv_stalls_recovered")
    );
}
