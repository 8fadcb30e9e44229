//! The shutdown report (`[telemetry] report_dir`): HdrHistogram files and report.json, with the
//! event latency measured from a `latency_field` stamp (CLOCK_MONOTONIC ns) that the client wrote.

mod util;

use std::fs;

use serde_json::Value;
use util::*;

fn report_config(mode: &str) -> String {
    standard_config(mode)
        + r#"
[telemetry]
report_dir = "{dir}/report"
latency_field = "sent_ns"
"#
}

/// Rows of an .hgrm file (value, percentile, total count) and its footer's total count.
fn read_hgrm(text: &str) -> (Vec<(f64, f64, u64)>, u64) {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
    );
    let mut rows = vec![];
    let mut total = None;
    for l in lines {
        if let Some(rest) = l.strip_prefix("#[Max") {
            let n = rest
                .rsplit('=')
                .next()
                .unwrap()
                .trim()
                .trim_end_matches(']');
            total = Some(n.parse().unwrap());
        } else if !l.trim().is_empty() && !l.starts_with('#') {
            let f: Vec<&str> = l.split_whitespace().collect();
            rows.push((
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            ));
        }
    }
    (rows, total.expect("a #[Max ... Total count ...] footer"))
}

fn report(mode: &str) {
    let mut gw = Gateway::start(&report_config(mode));
    let late_ms = 80;
    let out = Client::python(
        "stamped.py",
        &[
            gw.socket_str(),
            "3000",
            "25",
            &late_ms.to_string(),
            "sent_ns",
        ],
    )
    .finish();
    assert_eq!(out["sent"], 3025);
    let summary = gw.stop();
    assert_eq!(summary.events_in, 3025);
    assert_eq!(summary.events_out, 3025);

    let dir = gw.path("report");
    let report: Value =
        serde_json::from_slice(&fs::read(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["counters"]["events_in"], 3025);
    assert_eq!(report["counters"]["events_out"], 3025);
    assert_eq!(report["latency_field"], "sent_ns");
    assert_eq!(report["unstamped_events"], 25);
    let h = &report["histograms"];
    assert_eq!(h["event_latency"]["count"], 3000, "{h}");
    assert_eq!(h["event_latency"]["unit"], "ms");
    assert_eq!(
        h["ingest_to_sink"]["count"], 3025,
        "weighted by events: {h}"
    );
    let batches = h["batch_events"]["count"].as_u64().unwrap();
    assert!((1..=3025).contains(&batches), "{h}");
    // Ten events were stamped 80 ms in the past; the rest were written just now.
    let max = h["event_latency"]["max"].as_f64().unwrap();
    let p50 = h["event_latency"]["percentiles"]["p50"].as_f64().unwrap();
    assert!(max >= f64::from(late_ms), "max {max} ms");
    assert!(p50 < f64::from(late_ms) / 2.0, "p50 {p50} ms");
    // The gateway's own part is inside the end-to-end latency of the same events.
    let ingest_p99 = h["ingest_to_sink"]["percentiles"]["p99"].as_f64().unwrap();
    assert!(
        ingest_p99 > 0.0 && ingest_p99 <= max,
        "ingest p99 {ingest_p99} ms, max {max} ms"
    );

    let (rows, total) = read_hgrm(&fs::read_to_string(dir.join("event_latency.hgrm")).unwrap());
    assert_eq!(total, 3000);
    assert_eq!(rows.last().unwrap().2, 3000);
    assert_eq!(rows.last().unwrap().1, 1.0);
    assert!(rows.last().unwrap().0 >= f64::from(late_ms));
    for w in rows.windows(2) {
        assert!(w[1].0 >= w[0].0 && w[1].1 >= w[0].1 && w[1].2 >= w[0].2);
    }
    let (_, total) = read_hgrm(&fs::read_to_string(dir.join("ingest_to_sink.hgrm")).unwrap());
    assert_eq!(total, 3025);
    let (_, total) = read_hgrm(&fs::read_to_string(dir.join("batch_events.hgrm")).unwrap());
    assert_eq!(total, batches);
}

io_modes!(report => report());

#[test]
fn without_latency_field_no_event_latency_file() {
    let cfg = standard_config("auto") + "\n[telemetry]\nreport_dir = \"{dir}/r\"\n";
    let mut gw = Gateway::start(&cfg);
    send_tiny(&gw, b"{\"a\":1}\n{\"a\":2}\n");
    gw.stop();
    let dir = gw.path("r");
    assert!(dir.join("ingest_to_sink.hgrm").exists());
    assert!(!dir.join("event_latency.hgrm").exists());
    let report: Value =
        serde_json::from_slice(&fs::read(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["histograms"]["ingest_to_sink"]["count"], 2);
    assert!(report["histograms"].get("event_latency").is_none());
}

#[test]
fn unusable_report_dir_is_refused_at_start() {
    let cfg = standard_config("auto") + "\n[telemetry]\nreport_dir = \"{dir}/ringway.toml/sub\"\n";
    let refusal = Gateway::configure(&cfg).expect_failure();
    assert!(
        refusal.stderr.contains("telemetry.report_dir") && refusal.stderr.contains("cannot create"),
        "{}",
        refusal.stderr
    );
}
