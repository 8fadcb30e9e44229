//! `reload` adds and removes sources while producers write: the connections of the unchanged
//! source stay open (same ids) and lose nothing; a removed source stops accepting, its socket
//! path goes, and every line its clients got into the kernel is delivered once, in order (their
//! next write fails); a removed TCP source frees its port; a reload that cannot bind a new
//! source, or that changes a source's settings, is refused and changes nothing.

mod util;

use std::time::Duration;

use serde_json::Value;
use util::*;

/// The gateway of these tests: a control socket at `{dir}/gw.ctl`, a file sink, and `sources`
/// in this order.
fn config(mode: &str, sources: impl IntoIterator<Item = Source>) -> String {
    let config = Config::new()
        .io_mode(mode)
        .workers(2)
        .shutdown_timeout("10s")
        .control("gw.ctl")
        .sink(Sink::file("out.ndjson"));
    sources
        .into_iter()
        .fold(config, |config, source| config.source(source))
        .render()
}

/// The source that stays: `{dir}/in.sock`.
fn src_in() -> Source {
    Source::unix("in")
}

/// A UNIX source added and removed: `{dir}/extra.sock`.
fn src_extra() -> Source {
    Source::unix("extra")
}

/// A followed file source: `{dir}/feed.ndjson`.
fn src_feed() -> Source {
    Source::file("feed", "feed.ndjson").set("follow", true)
}

fn tcp_source(name: &str, port: u16) -> Source {
    Source::new("tcp_server")
        .name(name)
        .set("url", format!("127.0.0.1:{port}"))
}

fn ctl(gw: &Gateway, args: &[&str]) -> (i32, String, String) {
    ctl_at(&gw.path("gw.ctl"), args)
}

/// (name, address) of every running source.
fn sources(gw: &Gateway) -> Vec<(String, String)> {
    gw.stats()["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["address"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn source_events(gw: &Gateway, name: &str) -> u64 {
    gw.stats()["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .map_or(0, |s| s["events_in"].as_u64().unwrap())
}

fn conn_ids_of(gw: &Gateway, source: &str) -> Vec<u64> {
    let (code, out, err) = ctl(gw, &["--json", "connections"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let mut ids: Vec<u64> = v["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["source"] == source)
        .map(|c| c["id"].as_u64().unwrap())
        .collect();
    ids.sort_unstable();
    ids
}

fn reload_ok(gw: &Gateway) -> String {
    let (code, out, err) = ctl(gw, &["reload"]);
    assert_eq!(code, 0, "reload failed: {err}");
    out
}

fn paced(target: &str, conn: u64, count: u64, rate: u64) -> Client {
    Client::python(
        "paced.py",
        &[
            target,
            "--conn",
            &conn.to_string(),
            "--count",
            &count.to_string(),
            "--rate",
            &rate.to_string(),
        ],
    )
}

fn add_and_remove_sources(mode: &str) {
    let mut gw = Gateway::start(&config(mode, [src_in()]));
    // Two producers on the source that stays.
    let (steady, steady_count) = (2u64, 60_000u64);
    let producers: Vec<Client> = (0..steady)
        .map(|c| {
            paced(
                gw.path("in.sock").to_str().unwrap(),
                c,
                steady_count,
                10_000,
            )
        })
        .collect();
    wait_until(PATIENCE, "the producers connected", || {
        conn_ids_of(&gw, "in").len() as u64 == steady
    });
    let ids = conn_ids_of(&gw, "in");

    // Add a UNIX source, a TCP source on a port of the kernel's choosing, and a followed file.
    let feed: Vec<u8> = (0..500u64)
        .flat_map(|i| {
            let mut l = event(5, i, PAD);
            l.push(b'\n');
            l
        })
        .collect();
    std::fs::write(gw.path("feed.ndjson"), &feed).unwrap();
    gw.rewrite_config(&config(
        mode,
        [src_in(), src_extra(), src_feed(), tcp_source("tcp", 0)],
    ));
    let out = reload_ok(&gw);
    for added in [
        "source extra added",
        "source tcp added",
        "source feed added",
    ] {
        assert!(out.contains(added), "{out}");
    }
    let now = sources(&gw);
    let names: Vec<&str> = now.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["in", "extra", "feed", "tcp"], "{now:?}");
    let tcp_addr = now[3].1.strip_prefix("tcp:").unwrap().to_string();
    let port: u16 = tcp_addr.rsplit(':').next().unwrap().parse().unwrap();
    assert_ne!(port, 0);

    // The new sources take connections; the old connections are the same ones.
    let extra = paced(
        gw.path("extra.sock").to_str().unwrap(),
        2,
        1_000_000,
        10_000,
    );
    let tcp = paced(&tcp_addr, 3, 1000, 100_000).finish();
    assert_eq!(tcp["sent"], 1000, "{tcp}");
    wait_until(PATIENCE, "events of the new sources", || {
        source_events(&gw, "extra") > 2000
            && source_events(&gw, "tcp") == 1000
            && source_events(&gw, "feed") == 500
    });
    assert_eq!(conn_ids_of(&gw, "in"), ids);

    // Remove the UNIX source while its producer writes, and the TCP and file sources.
    gw.rewrite_config(&config(mode, [src_in()]));
    let out = reload_ok(&gw);
    for removed in [
        "source extra removed",
        "source tcp removed",
        "source feed removed",
    ] {
        assert!(out.contains(removed), "{out}");
    }
    assert!(
        !gw.path("extra.sock").exists(),
        "the removed source's path is gone"
    );
    let (status, last) = extra.wait(PATIENCE);
    assert!(!status.success(), "{last}");
    let extra: Value = serde_json::from_str(&last).unwrap();
    assert_ne!(
        extra["error"],
        Value::Null,
        "the producer's writes fail: {extra}"
    );
    let extra_sent = extra["sent"].as_u64().unwrap();
    assert!(extra_sent > 2000 && extra_sent < 1_000_000, "{extra}");
    let names: Vec<String> = sources(&gw).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["in"]);
    assert_eq!(conn_ids_of(&gw, "in"), ids);
    wait_until(PATIENCE, "the removed source's events delivered", || {
        let s = gw.stats();
        s["totals"]["events_out"] == s["totals"]["events_in"]
    });

    // The port is free again: a new source binds it.
    gw.rewrite_config(&config(mode, [src_in(), tcp_source("tcp2", port)]));
    let out = reload_ok(&gw);
    assert!(out.contains("source tcp2 added"), "{out}");
    let tcp2 = paced(&tcp_addr, 4, 1000, 100_000).finish();
    assert_eq!(tcp2["sent"], 1000, "{tcp2}");

    // A source that cannot be bound refuses the whole reload: tcp2 is not removed.
    std::fs::write(gw.path("notasocket"), b"a regular file").unwrap();
    let bad = Source::unix_at(in_dir("notasocket")).name("bad");
    gw.rewrite_config(&config(mode, [src_in(), bad]));
    let (code, _, err) = ctl(&gw, &["reload"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("notasocket") && err.contains("nothing was applied"),
        "{err}"
    );
    let names: Vec<String> = sources(&gw).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["in", "tcp2"]);
    // A source whose settings change is refused too (its connections would have to go).
    let changed = src_in().set("backlog", 17);
    gw.rewrite_config(&config(mode, [changed, tcp_source("tcp2", port)]));
    let (code, _, err) = ctl(&gw, &["reload"]);
    assert_eq!(code, 1);
    assert!(err.contains("source \"in\" changed"), "{err}");
    assert_eq!(conn_ids_of(&gw, "in"), ids);

    for p in producers {
        let last = p.finish();
        assert_eq!(last["sent"].as_u64(), Some(steady_count), "{last}");
    }
    let s = gw.stop();
    // Every line the kernel accepted, once, in each connection's order.
    let mut check = SeqChecker::new(PAD);
    for line in read_lines(&gw.path("out.ndjson")) {
        check.push(&line);
    }
    let counts = check.counts();
    for c in 0..steady {
        assert_eq!(counts.get(&c).copied(), Some(steady_count));
    }
    assert_eq!(counts.get(&2).copied(), Some(extra_sent), "removed source");
    assert_eq!(counts.get(&3).copied(), Some(1000), "removed tcp source");
    assert_eq!(counts.get(&4).copied(), Some(1000), "re-added tcp port");
    assert_eq!(counts.get(&5).copied(), Some(500), "removed file source");
    let total = steady * steady_count + extra_sent + 2500;
    assert_eq!(check.lines, total);
    assert_eq!(s.events_in, total);
    assert_eq!(s.events_out, total);
    // At most the line the producer was cut in the middle of.
    assert!(s.dead_lettered <= 1, "{s:?}");
}

io_modes!(add_and_remove_sources => add_and_remove_sources());

// Removing a source whose connections are paused, or whose clients are idle: they are read to
// their end and closed at once, and the gateway still shuts down cleanly.
io_modes!(removing_a_paused_source_ends_its_connections => removing_a_paused_source_ends_its_connections());

fn removing_a_paused_source_ends_its_connections(mode: &str) {
    let mut gw = Gateway::start(&config(mode, [src_in(), src_extra()]));
    let (code, _, err) = ctl(&gw, &["pause", "extra"]);
    assert_eq!(code, 0, "{err}");
    let idle = std::os::unix::net::UnixStream::connect(gw.path("extra.sock")).unwrap();
    let mut writer = std::os::unix::net::UnixStream::connect(gw.path("extra.sock")).unwrap();
    use std::io::{Read, Write};
    let mut lines = Vec::new();
    for i in 0..100 {
        lines.extend(event(7, i, PAD));
        lines.push(b'\n');
    }
    writer.write_all(&lines).unwrap();
    wait_until(PATIENCE, "two connections", || {
        conn_ids_of(&gw, "extra").len() == 2
    });
    // Time passing is the point: 200 ms in which a paused source must read nothing.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(source_events(&gw, "extra"), 0, "paused");
    gw.rewrite_config(&config(mode, [src_in()]));
    reload_ok(&gw);
    // Both connections end: EOF for the idle one, a failed write for the writer.
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(
        (&idle).read(&mut buf).unwrap(),
        0,
        "EOF on the idle connection"
    );
    wait_until(PATIENCE, "the removed source's connections closed", || {
        conn_ids_of(&gw, "extra").is_empty() && gw.stats()["connections"] == 0
    });
    assert!(
        writer.write_all(b"{\"late\":1}\n").is_err() || {
            // (The first write after the peer's shutdown may still be buffered; the next fails.
            // The pause gives the kernel's reset time to arrive: nothing of the gateway to wait on.)
            std::thread::sleep(Duration::from_millis(50));
            writer.write_all(b"{\"late\":2}\n").is_err()
        }
    );
    let s = gw.stop();
    assert_eq!(
        s.events_in, 100,
        "what was written before the removal is delivered"
    );
    assert_eq!(s.events_out, 100);
    assert_eq!(count_lines(&gw.path("out.ndjson")), 100);
}

/// A ws_server added by `reload` takes WebSocket clients at once; removed, its clients get a
/// close frame (1001, "this source was removed") after what they sent is delivered.
#[test]
fn a_ws_server_added_and_removed_live() {
    let mut gw = Gateway::start(&config("uring", [src_in()]));
    gw.rewrite_config(&config("uring", [src_in(), Source::ws("ws")]));
    let out = reload_ok(&gw);
    assert!(out.contains("source ws added (ws://127.0.0.1:"), "{out}");
    let url = sources(&gw)
        .into_iter()
        .find(|(n, _)| n == "ws")
        .map(|(_, a)| a)
        .unwrap();
    let sent = Client::python(
        "ws_client.py",
        &[&url, "send", "--conn", "11", "--count", "300"],
    )
    .finish();
    assert_eq!(sent["sent"], 300);
    let held = Client::python("ws_client.py", &[&url, "hold", "--seconds", "20"]);
    wait_until(PATIENCE, "the held client connected", || {
        !held.lines().is_empty() && conn_ids_of(&gw, "ws").len() == 1
    });
    gw.rewrite_config(&config("uring", [src_in()]));
    let out = reload_ok(&gw);
    assert!(out.contains("source ws removed"), "{out}");
    let r = held.finish();
    assert_eq!(r["close_code"], 1001, "{r}");
    let s = gw.stop();
    assert_eq!(s.events_in, 300);
    let mut check = SeqChecker::new(PAD);
    for line in read_lines(&gw.path("out.ndjson")) {
        check.push(&line);
    }
    assert_eq!(check.lines, 300);
}
