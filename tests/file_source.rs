//! The `file` source: an NDJSON file read once (with the framing and codec rules of the socket
//! sources), or followed like `tail -F` through appends, a rename-and-recreate rotation and a
//! copytruncate.

mod util;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use util::*;

/// The file source `logs` reading `{dir}/in.ndjson`.
fn logs(follow: bool) -> Source {
    Source::file("logs", "in.ndjson").set("follow", follow)
}

/// [`logs`] into `{dir}/out.ndjson` and, with envelopes, `{dir}/env.ndjson`.
fn config(follow: bool) -> String {
    Config::new()
        .source(logs(follow))
        .sink(Sink::file("out.ndjson"))
        .sink(Sink::file("env.ndjson").set("metadata", "envelope"))
        .dead_letter(Sink::file("dead.ndjson"))
        .render()
}

/// How many times the gateway said it found its file truncated.
fn truncations(gw: &Gateway) -> usize {
    gw.stderr().matches("file truncated").count()
}

fn events(c: u64, range: std::ops::Range<u64>) -> Vec<u8> {
    let mut v = Vec::new();
    for i in range {
        v.extend_from_slice(&event(c, i, PAD));
        v.push(b'\n');
    }
    v
}

fn append(path: &Path, data: &[u8]) {
    fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap()
        .write_all(data)
        .unwrap();
}

fn ready(gw: &mut Gateway) {
    wait_until(PATIENCE, "the `reading file:` line", || {
        gw.stderr().contains("reading file:")
    });
}

#[test]
fn reads_a_file_once() {
    let launch = Gateway::configure(&config(false));
    let input = launch.path("in.ndjson");
    let mut data = events(1, 0..5000);
    data.extend_from_slice(b"{\"broken\": \n");
    data.extend_from_slice(&events(1, 5000..5001));
    data.extend_from_slice(&event(1, 5001, PAD)); // the last line has no newline
    fs::write(&input, &data).unwrap();
    let mut gw = launch.spawn();
    ready(&mut gw);
    let out = gw.path("out.ndjson");
    wait_until(PATIENCE, "every line", || count_lines(&out) == 5002);
    // The control socket (default path: the test's $XDG_RUNTIME_DIR) counts the file's one
    // "connection", closed once it is read to its end.
    wait_until(PATIENCE, "the file closed", || {
        let out = std::process::Command::new(bin())
            .args(["ctl", "--json", "stats"])
            .env("XDG_RUNTIME_DIR", gw.dir())
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["sources"][0]["connections"] == 0 && v["sources"][0]["connections_total"] == 1
    });
    let s = gw.stop();
    assert_eq!(
        (s.events_in, s.events_out, s.dead_lettered),
        (5002, 5002, 1)
    );
    let mut check = SeqChecker::new(PAD);
    for l in read_lines(&out) {
        check.push(&l);
    }
    let dead = read_json_lines(&gw.path("dead.ndjson"));
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["error"], "invalid_json");
    assert_eq!(dead[0]["line"], 5001);
    assert_eq!(dead[0]["source"], "logs");
    let env = read_json_lines(&gw.path("env.ndjson"));
    assert_eq!(env[0]["meta"]["file"]["path"], input.to_str().unwrap());
    assert_eq!(env[0]["meta"]["source"], "logs");
    assert!(gw.stderr().contains("file read to its end"));
}

#[test]
fn a_missing_file_is_a_clear_error_unless_followed() {
    let r = Gateway::configure(&config(false)).expect_failure();
    assert!(
        r.stderr.contains("source logs: cannot open") && r.stderr.contains("in.ndjson"),
        "{}",
        r.stderr
    );
}

#[test]
fn follows_appends_rotation_and_truncation() {
    let launch = Gateway::configure(&config(true));
    let input = launch.path("in.ndjson");
    // Started before the file exists: it waits for it.
    let mut gw = launch.spawn();
    ready(&mut gw);
    let out = gw.path("out.ndjson");
    append(&input, &events(2, 0..100));
    wait_until(PATIENCE, "the first 100", || count_lines(&out) == 100);
    // Appends, including a line written in two parts.
    let more = events(2, 100..200);
    let cut = more.len() - 30;
    append(&input, &more[..cut]);
    // The gateway has read the first part (its complete lines, and the cut one's start).
    wait_until(PATIENCE, "199 lines", || count_lines(&out) == 199);
    append(&input, &more[cut..]);
    wait_until(PATIENCE, "200 lines", || count_lines(&out) == 200);
    // Rotation: the file is renamed (and a last line still lands in it), a new one appears.
    let rotated = gw.path("in.ndjson.1");
    fs::rename(&input, &rotated).unwrap();
    append(&rotated, &events(2, 200..201));
    append(&input, &events(2, 201..250));
    wait_until(PATIENCE, "250 lines", || count_lines(&out) == 250);
    // copytruncate: emptied in place, then written again from its start.
    let truncated = truncations(&gw);
    fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&input)
        .unwrap();
    wait_until(PATIENCE, "the truncation noticed", || {
        truncations(&gw) > truncated
    });
    append(&input, &events(2, 250..270));
    wait_until(PATIENCE, "270 lines", || count_lines(&out) == 270);
    let s = gw.stop();
    assert_eq!((s.events_in, s.events_out, s.dead_lettered), (270, 270, 0));
    let mut check = SeqChecker::new(PAD);
    for l in read_lines(&out) {
        check.push(&l);
    }
    assert_eq!(check.counts().get(&2), Some(&270));
}

/// A rotation that leaves much unread in the old file (appended just before the rename, while
/// the sink is stalled) reads that rest a buffer at a time under backpressure: memory stays
/// bounded, and every line arrives once, in order, before the new file's.
#[test]
fn rotation_with_a_large_unread_rest_stays_bounded() {
    let launch = Gateway::configure(
        &Config::new()
            .source(logs(true))
            .sink(Sink::file("out.fifo"))
            .set("channel.capacity", 2)
            .set("channel.batch_max_bytes", 65536)
            .render(),
    );
    let input = launch.path("in.ndjson");
    let mut fifo = Fifo::create(&launch.path("out.fifo"));
    append(&input, &events(3, 0..10));
    let mut gw = launch.spawn();
    ready(&mut gw);
    // The first 10 lines, then the sink stalls (nobody reads the FIFO).
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    while got.iter().filter(|&&b| b == b'\n').count() < 10 {
        let n = fifo.read_timeout(&mut buf, PATIENCE).unwrap();
        assert!(n > 0, "the first lines did not come");
        got.extend_from_slice(&buf[..n]);
    }
    // Settling time before a memory measurement: nothing to wait on but time.
    std::thread::sleep(Duration::from_millis(300));
    let rss_before = gw.rss_kib();
    // 40 MB appended and the file renamed at once, then a new file.
    let big = 250_000u64;
    append(&input, &events(3, 10..10 + big));
    fs::rename(&input, gw.path("in.ndjson.1")).unwrap();
    append(&input, &events(3, 10 + big..10 + big + 100));
    // Time passing is the test: 1.5 s with the sink stalled, and memory must not grow.
    std::thread::sleep(Duration::from_millis(1500));
    let rss_stalled = gw.rss_kib();
    assert!(
        rss_stalled < rss_before + 20 * 1024,
        "RSS grew from {rss_before} to {rss_stalled} KiB with the sink stalled"
    );
    // Now the sink drains: everything arrives.
    let total = 10 + big + 100;
    let reader = LineReader::spawn(fifo.reader);
    fifo.keeper = None;
    wait_until(
        Duration::from_secs(60),
        "every line through the FIFO",
        || reader.len() as u64 + 10 >= total,
    );
    let s = gw.stop();
    assert_eq!(s.events_in, total);
    let mut check = SeqChecker::new(PAD);
    for l in got.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        check.push(l);
    }
    for l in reader.finish() {
        check.push(&l);
    }
    assert_eq!(check.counts().get(&3), Some(&total));
}

/// copytruncate again and again: after each, the lines written from the start arrive.
#[test]
fn repeated_copytruncate() {
    let launch = Gateway::configure(&config(true));
    let input = launch.path("in.ndjson");
    append(&input, &events(4, 0..50));
    let mut gw = launch.spawn();
    ready(&mut gw);
    let out = gw.path("out.ndjson");
    wait_until(PATIENCE, "the first 50", || count_lines(&out) == 50);
    for round in 1..=3u64 {
        let truncated = truncations(&gw);
        fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&input)
            .unwrap();
        wait_until(PATIENCE, "the truncation noticed", || {
            truncations(&gw) > truncated
        });
        append(&input, &events(4, round * 50..round * 50 + 50));
        wait_until(PATIENCE, "the lines after a truncation", || {
            count_lines(&out) as u64 == round * 50 + 50
        });
    }
    let s = gw.stop();
    assert_eq!((s.events_in, s.events_out), (200, 200));
    let mut check = SeqChecker::new(PAD);
    for l in read_lines(&out) {
        check.push(&l);
    }
    assert_eq!(check.counts().get(&4), Some(&200));
}
