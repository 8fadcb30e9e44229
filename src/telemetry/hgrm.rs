//! HdrHistogram's percentile-distribution text format (`.hgrm`), as Java's
//! `Histogram.outputPercentileDistribution` writes it and the HdrHistogram plotter
//! (<https://hdrhistogram.github.io/HdrHistogram/plotFiles.html>) reads it.
//!
//! In: a histogram of integer values and the factor that turns one of them into the output unit
//! (ringway records nanoseconds and writes milliseconds, as wrk2 and the plotter do). Out: text.
//! Shared by the gateway's reports and by `loadgen`, so both produce the same format.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

/// Percentile steps per halving of the distance to 100%, as Java's default.
pub const TICKS_PER_HALF: u32 = 5;

/// Decimal places of values (milliseconds with six decimals: nanosecond resolution).
const DECIMALS: usize = 6;

/// The distribution of `h` with values divided by `unit` (e.g. `1e6` for ns → ms).
#[must_use]
pub fn render(h: &Histogram<u64>, unit: f64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let p = DECIMALS;
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(TICKS_PER_HALF) {
            total += v.count_since_last_iteration();
            let q = v.quantile_iterated_to();
            let value = h.highest_equivalent(v.value_iterated_to()) as f64 / unit;
            if q < 1.0 {
                let _ = writeln!(
                    out,
                    "{value:>12.p$} {q:>2.12} {total:>10} {:>14.2}",
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(out, "{value:>12.p$} {q:>2.12} {total:>10}");
            }
        }
    }
    let mean = if h.is_empty() { 0.0 } else { h.mean() / unit };
    let stdev = if h.is_empty() { 0.0 } else { h.stdev() / unit };
    let max = h.max() as f64 / unit;
    let _ = writeln!(
        out,
        "#[Mean    = {mean:>12.p$}, StdDeviation   = {stdev:>12.p$}]"
    );
    let _ = writeln!(
        out,
        "#[Max     = {max:>12.p$}, Total count    = {:>12}]",
        h.len()
    );
    let sub_buckets = 1u64 << sub_bucket_bits(h.sigfig());
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {sub_buckets:>12}]",
        h.buckets()
    );
    out
}

/// Bits of the sub-bucket count HdrHistogram derives from the significant figures.
fn sub_bucket_bits(sigfig: u8) -> u32 {
    let largest = 2 * 10u64.pow(u32::from(sigfig));
    64 - (largest - 1).leading_zeros()
}

/// The percentiles reports and summaries quote.
pub const QUOTED: [f64; 6] = [50.0, 90.0, 99.0, 99.9, 99.99, 100.0];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_has_header_rows_and_footer() {
        let mut h = Histogram::<u64>::new(3).unwrap();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap();
        }
        let text = render(&h, 1e6);
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
            ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
        );
        assert_eq!(lines.next().unwrap(), "");
        let rows: Vec<Vec<f64>> = text
            .lines()
            .skip(2)
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().map(|f| f.parse().unwrap()).collect())
            .collect();
        assert!(rows.len() > 20);
        // Values and percentiles never decrease; the last row is 100% with every count.
        for w in rows.windows(2) {
            assert!(w[1][0] >= w[0][0] && w[1][1] >= w[0][1] && w[1][2] >= w[0][2]);
        }
        let last = rows.last().unwrap();
        assert_eq!(last[1], 1.0);
        assert_eq!(last[2], 1000.0);
        assert!((last[0] - 1.0).abs() < 0.001, "max ≈ 1 ms, got {}", last[0]);
        let median = rows.iter().find(|r| r[1] >= 0.5).unwrap();
        assert!((median[0] - 0.5).abs() < 0.001);
        let footer: Vec<&str> = text.lines().filter(|l| l.starts_with("#[")).collect();
        assert_eq!(footer.len(), 3);
        assert!(footer[0].starts_with("#[Mean    = ") && footer[0].contains("StdDeviation"));
        assert!(footer[1].contains("Total count    =         1000]"));
        assert!(footer[2].contains("SubBuckets     =         2048]"));
    }

    #[test]
    fn empty_histogram_has_only_header_and_footer() {
        let h = Histogram::<u64>::new(3).unwrap();
        let text = render(&h, 1e6);
        assert_eq!(text.lines().filter(|l| l.starts_with("#[")).count(), 3);
        assert!(text.contains("Total count    =            0]"));
    }
}
