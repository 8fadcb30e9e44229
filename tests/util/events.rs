//! The generated event format shared with `tests/clients/produce.py`, and readers and
//! checkers for what the gateway wrote.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

/// Event `i` of connection `c`, as `tests/clients/produce.py` writes it (without "\n").
/// Padding length varies in `pad_min..=pad_max`; every 17th event carries a JSON
/// escape, a raw multi-byte character and escaped quotes.
pub fn event(c: u64, i: u64, (pad_min, pad_max): (u64, u64)) -> Vec<u8> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let n = (pad_min + (i * 7 + c * 13) % (pad_max - pad_min + 1)) as usize;
    let start = ((i * 31 + c) % ALPHABET.len() as u64) as usize;
    let mut out = format!("{{\"c\":{c},\"i\":{i},\"p\":\"").into_bytes();
    out.extend((0..n).map(|k| ALPHABET[(start + k) % ALPHABET.len()]));
    out.push(b'"');
    if i.is_multiple_of(17) {
        out.extend_from_slice(r#","u":"\u00e9 ☃ \"q\"""#.as_bytes());
    }
    out.push(b'}');
    out
}

/// The default padding of produce.py (`--pad 60:140`).
pub const PAD: (u64, u64) = (60, 140);

/// Writes `count` events of connection `c` to `path`, one per line (a socat client's input).
pub fn write_events_file(path: &Path, c: u64, count: u64, pad: (u64, u64)) {
    let mut buf = Vec::new();
    for i in 0..count {
        buf.extend_from_slice(&event(c, i, pad));
        buf.push(b'\n');
    }
    fs::write(path, buf).unwrap();
}

/// Checks delivered lines against [`event`]: each line is byte-for-byte an event, and
/// each connection's sequence numbers arrive as 0, 1, 2, … (in order, no gaps, no
/// duplicates). Connections may interleave arbitrarily.
pub struct SeqChecker {
    pad: (u64, u64),
    next: BTreeMap<u64, u64>,
    pub lines: u64,
}

impl SeqChecker {
    pub fn new(pad: (u64, u64)) -> SeqChecker {
        SeqChecker {
            pad,
            next: BTreeMap::new(),
            lines: 0,
        }
    }

    pub fn push(&mut self, line: &[u8]) {
        let (c, i) = parse_ci(line).unwrap_or_else(|| {
            panic!(
                "line {} is not a generated event: {}",
                self.lines + 1,
                show(line)
            )
        });
        let expected = self.next.entry(c).or_insert(0);
        assert_eq!(
            i, *expected,
            "connection {c}: got event {i} where event {expected} was due (out of order, gap, or duplicate) at output line {}",
            self.lines + 1
        );
        let want = event(c, i, self.pad);
        assert!(
            line == want.as_slice(),
            "event c={c} i={i} corrupted:\n got  {}\n want {}",
            show(line),
            show(&want)
        );
        *expected += 1;
        self.lines += 1;
    }

    /// Events seen per connection.
    pub fn counts(&self) -> &BTreeMap<u64, u64> {
        &self.next
    }
}

/// (c, i) from a line starting `{"c":<c>,"i":<i>,`.
pub fn parse_ci(line: &[u8]) -> Option<(u64, u64)> {
    let rest = line.strip_prefix(b"{\"c\":")?;
    let (c, rest) = take_number(rest)?;
    let rest = rest.strip_prefix(b",\"i\":")?;
    let (i, rest) = take_number(rest)?;
    rest.starts_with(b",").then_some((c, i))
}

fn take_number(s: &[u8]) -> Option<(u64, &[u8])> {
    let end = s
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(s.len());
    let n = std::str::from_utf8(&s[..end]).ok()?.parse().ok()?;
    Some((n, &s[end..]))
}

/// A line for an assertion message: lossy UTF-8, cut to 300 bytes.
pub fn show(line: &[u8]) -> String {
    let cut = &line[..line.len().min(300)];
    let more = if line.len() > 300 {
        format!("… ({} bytes)", line.len())
    } else {
        String::new()
    };
    format!("{:?}{more}", String::from_utf8_lossy(cut))
}

/// The lines of an NDJSON file (without "\n"); the file must end with "\n". A missing
/// file reads as no lines.
pub fn read_lines(path: &Path) -> Vec<Vec<u8>> {
    let data = match fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return vec![],
        Err(e) => panic!("read {}: {e}", path.display()),
    };
    split_lines(&data, path)
}

pub fn split_lines(data: &[u8], what: &Path) -> Vec<Vec<u8>> {
    if data.is_empty() {
        return vec![];
    }
    assert!(
        data.ends_with(b"\n"),
        "{} does not end with a newline: ...{}",
        what.display(),
        show(&data[data.len().saturating_sub(200)..])
    );
    data[..data.len() - 1]
        .split(|b| *b == b'\n')
        .map(|l| l.to_vec())
        .collect()
}

/// Each line of an NDJSON file parsed as JSON.
pub fn read_json_lines(path: &Path) -> Vec<serde_json::Value> {
    read_lines(path)
        .iter()
        .enumerate()
        .map(|(n, l)| {
            serde_json::from_slice(l).unwrap_or_else(|e| {
                panic!(
                    "{} line {}: not JSON ({e}): {}",
                    path.display(),
                    n + 1,
                    show(l)
                )
            })
        })
        .collect()
}

/// Counts "\n" in a file (0 if missing); cheap enough to poll.
pub fn count_lines(path: &Path) -> usize {
    fs::read(path).map(|d| memchr_count(&d)).unwrap_or(0)
}

fn memchr_count(d: &[u8]) -> usize {
    d.iter().filter(|b| **b == b'\n').count()
}

/// Python's `raw.decode("utf-8", "backslashreplace")`, computed by python3 itself.
pub fn py_backslashreplace(raw: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("python3")
        .args(["-c", "import sys, json; sys.stdout.write(json.dumps(sys.stdin.buffer.read().decode('utf-8', 'backslashreplace')))"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(raw).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}
