//! `[metrics] listen`: `curl /metrics` returns text that Prometheus' own parser (Python's
//! prometheus_client) reads, carrying the same numbers as the control socket's `stats` and
//! `latency`.

mod util;

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;
use util::*;

fn scrape(url: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "10", url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn parse(text: &str) -> Value {
    let mut p = Command::new("python3")
        .arg(clients_dir().join("parse_metrics.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        out.status.success(),
        "the exposition does not parse: {v}\n{text}"
    );
    v
}

/// The value of sample `name` whose labels include `labels`.
fn sample(m: &Value, name: &str, labels: &[(&str, &str)]) -> f64 {
    m["samples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s[0] == name && labels.iter().all(|(k, v)| s[1][k] == *v))
        .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))[2]
        .as_f64()
        .unwrap()
}

#[test]
fn metrics_parse_and_match_stats() {
    let mut gw = Gateway::start(&format!(
        "{}\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
        standard_config("uring")
    ));
    let url = gw
        .stderr()
        .lines()
        .find_map(|l| l.strip_prefix("ringway: metrics at ").map(str::to_string))
        .expect("the metrics line");
    // 10,000 events and 3 bad lines, on 2 connections; one stays open.
    let p = Client::produce(gw.socket(), &["--conn", "0", "--count", "10000"]);
    p.finish();
    let mut open = std::os::unix::net::UnixStream::connect(gw.socket()).unwrap();
    open.write_all(b"{\"ok\":1}\nnot json\n{\"bad\":\n[1,2\n")
        .unwrap();
    wait_until(PATIENCE, "everything in", || {
        count_lines(&gw.path("out.ndjson")) == 10_001 && count_lines(&gw.path("dead.ndjson")) == 3
    });
    let m = parse(&scrape(&url));
    assert_eq!(m["families"]["ringway_events_received"], "counter");
    assert_eq!(m["families"]["ringway_ingest_to_sink_seconds"], "histogram");

    let ctl = |cmd: &str| -> Value {
        let out = Command::new(bin())
            .args(["ctl", "--json", "--socket"])
            .arg(gw.path("in.ctl"))
            .arg(cmd)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let stats = ctl("stats");
    let src = [("source", "in")];
    let s0 = &stats["sources"][0];
    assert_eq!(sample(&m, "ringway_events_received_total", &src), 10_001.0);
    assert_eq!(s0["events_in"], 10_001);
    for (metric, key) in [
        ("ringway_events_received_total", "events_in"),
        ("ringway_bytes_received_total", "bytes_in"),
        ("ringway_events_dead_lettered_total", "dead_lettered"),
        ("ringway_connections_open", "connections"),
        ("ringway_connections_accepted_total", "connections_total"),
    ] {
        assert_eq!(
            sample(&m, metric, &src),
            s0[key].as_f64().unwrap(),
            "{metric} vs stats.{key}"
        );
    }
    assert_eq!(sample(&m, "ringway_events_dead_lettered_total", &src), 3.0);
    assert_eq!(sample(&m, "ringway_connections_open", &src), 1.0);
    let sink = [("sink", "file_0")];
    assert_eq!(
        sample(&m, "ringway_sink_events_total", &sink),
        stats["sinks"][0]["events_out"].as_f64().unwrap()
    );
    assert_eq!(
        sample(&m, "ringway_events_delivered_total", &[]),
        stats["totals"]["events_out"].as_f64().unwrap()
    );
    let latency = ctl("latency");
    assert_eq!(
        sample(&m, "ringway_ingest_to_sink_seconds_count", &[]),
        latency["ingest_to_sink"]["count"].as_f64().unwrap()
    );
    assert_eq!(
        sample(
            &m,
            "ringway_ingest_to_sink_seconds_bucket",
            &[("le", "+Inf")]
        ),
        latency["ingest_to_sink"]["count"].as_f64().unwrap()
    );
    drop(open);
    let s = gw.stop();
    assert_eq!(s.events_in, 10_001);
}

#[test]
fn metrics_listen_errors() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let r = Gateway::configure(&format!(
        "{}\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n",
        standard_config("uring")
    ))
    .expect_failure();
    assert!(r.stderr.contains("metrics.listen"), "{}", r.stderr);
    check_refuses(
        &format!(
            "{}\n[metrics]\nlisten = \"localhost\"\n",
            standard_config("uring")
        ),
        "metrics.listen",
    );
}
