//! What a gateway says on stderr, read back: the summary line, the `stopped:` line's details,
//! the `listening on` WebSocket URLs.

/// The final stderr line: `summary events_in=<n> events_out=<n> dead_lettered=<n> dropped=<n>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub events_in: u64,
    pub events_out: u64,
    pub dead_lettered: u64,
    pub dropped: u64,
}

impl Summary {
    /// Parses the last non-empty line of `stderr`, which must be the summary: `summary`
    /// and the four counts, in order. (Whether anything follows them is checked by
    /// [`Summary::parse_exact`], in one test of its own.)
    pub fn parse(stderr: &str) -> Result<Summary, String> {
        let last = last_line(stderr)?;
        let fields: Vec<&str> = last.split_whitespace().collect();
        let keys = ["events_in", "events_out", "dead_lettered", "dropped"];
        if fields.len() < 5 || fields[0] != "summary" {
            return Err(format!("last stderr line is not a summary line: {last:?}"));
        }
        let mut values = [0u64; 4];
        for (i, key) in keys.iter().enumerate() {
            let value = fields[i + 1]
                .strip_prefix(key)
                .and_then(|rest| rest.strip_prefix('='))
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("expected {key}=<n> in summary line {last:?}"))?;
            values[i] = value;
        }
        Ok(Summary {
            events_in: values[0],
            events_out: values[1],
            dead_lettered: values[2],
            dropped: values[3],
        })
    }

    /// Like [`Summary::parse`], but the line must be exactly
    /// `summary events_in=<n> events_out=<n> dead_lettered=<n> dropped=<n>`.
    pub fn parse_exact(stderr: &str) -> Result<Summary, String> {
        let summary = Summary::parse(stderr)?;
        let want = format!(
            "summary events_in={} events_out={} dead_lettered={} dropped={}",
            summary.events_in, summary.events_out, summary.dead_lettered, summary.dropped
        );
        let last = last_line(stderr)?;
        if last != want {
            return Err(format!("summary line is not exactly of the documented form:\n got  {last:?}\n want {want:?}"));
        }
        Ok(summary)
    }
}

fn last_line(stderr: &str) -> Result<String, String> {
    stderr
        .lines()
        .map(strip_ansi)
        .rfind(|l| !l.trim().is_empty())
        .ok_or_else(|| "stderr is empty".to_string())
}

pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ params final-byte
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A `key=value` of the `stopped:` line ringway logs before its summary (0 when absent: the
/// line leaves out counters that are zero).
pub fn exit_detail(stderr: &str, key: &str) -> u64 {
    stderr
        .lines()
        .rev()
        .find(|l| l.contains("stopped:"))
        .and_then(|l| {
            l.split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
                .map(|v| v.parse().unwrap())
        })
        .unwrap_or(0)
}

/// The URL of every `listening on ws://…` or `wss://…` line, in order.
pub fn ws_urls(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|line| {
            let rest = &line[line.find("listening on ")? + "listening on ".len()..];
            let word = rest.split_whitespace().next()?;
            (word.starts_with("ws://") || word.starts_with("wss://")).then(|| word.to_string())
        })
        .collect()
}
