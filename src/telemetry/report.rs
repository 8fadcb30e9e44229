//! The report a gateway writes at shutdown into `[telemetry] report_dir`: one `.hgrm` file per
//! histogram (HdrHistogram's percentile-distribution format, values in milliseconds, or events
//! for batch sizes) and `report.json` with every counter and each histogram's percentiles.
//! Files are replaced, so a directory holds the last run's report.

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use super::hgrm;
use super::hist::Histograms;
use super::Snapshot;

/// The JSON summary of one histogram: count, min, mean, stdev, max and the quoted percentiles.
#[must_use]
pub fn histogram_json(h: &hdrhistogram::Histogram<u64>, unit: f64, unit_name: &str) -> Value {
    let v = |x: u64| x as f64 / unit;
    let mut percentiles = Map::new();
    for p in hgrm::QUOTED {
        let at = if h.is_empty() {
            0
        } else {
            h.value_at_percentile(p)
        };
        percentiles.insert(format!("p{p}"), json!(v(at)));
    }
    json!({
        "unit": unit_name,
        "count": h.len(),
        "min": v(if h.is_empty() { 0 } else { h.min() }),
        "mean": if h.is_empty() { 0.0 } else { h.mean() / unit },
        "stdev": if h.is_empty() { 0.0 } else { h.stdev() / unit },
        "max": v(h.max()),
        "percentiles": percentiles,
    })
}

/// Write the report into `dir` (created if needed). Returns the files written.
///
/// # Errors
///
/// The first I/O error, with the path it happened on.
pub fn write(
    dir: &Path,
    counters: &Snapshot,
    hist: &Histograms,
    latency_field: Option<&str>,
) -> Result<Vec<PathBuf>, (PathBuf, std::io::Error)> {
    std::fs::create_dir_all(dir).map_err(|e| (dir.to_path_buf(), e))?;
    let mut written = Vec::new();
    let mut histograms = Map::new();
    for (name, h, unit, unit_name) in hist.named() {
        if name == "event_latency" && latency_field.is_none() {
            continue;
        }
        let path = dir.join(format!("{name}.hgrm"));
        std::fs::write(&path, hgrm::render(h, unit)).map_err(|e| (path.clone(), e))?;
        written.push(path);
        histograms.insert(name.to_string(), histogram_json(h, unit, unit_name));
    }
    let report = json!({
        "ringway_version": env!("CARGO_PKG_VERSION"),
        "pid": std::process::id(),
        "written_at_unix_ms": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        "latency_field": latency_field,
        "unstamped_events": hist.unstamped,
        "counters": counters,
        "histograms": histograms,
    });
    let path = dir.join("report.json");
    let text = serde_json::to_string_pretty(&report).expect("a JSON value serialises");
    std::fs::write(&path, text + "\n").map_err(|e| (path.clone(), e))?;
    written.push(path);
    Ok(written)
}
