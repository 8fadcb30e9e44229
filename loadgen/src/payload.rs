//! The events loadgen sends: realistic log-like JSON by default, lines of an exact size, or the
//! lines of an NDJSON file replayed in a loop. Every event may carry a stamp field (its intended
//! send time, `CLOCK_MONOTONIC` ns) as its first field, for the gateway's `latency_field`.
//!
//! Lines are rendered once into a pool; sending an event copies one pooled line and writes a few
//! integers, so loadgen stays far cheaper per event than the gateway it measures.

use std::path::Path;

use anyhow::{bail, Context as _};

/// Pooled line variants for the default payload.
const POOL: usize = 4096;

/// What each event looks like.
#[derive(Debug, Clone)]
pub enum Shape {
    /// Varied log-like objects of ~150–250 bytes.
    Default,
    /// Objects padded to exactly this many bytes per line, newline included.
    Size(usize),
    /// The lines of an NDJSON file, in order, over and over.
    File(std::path::PathBuf),
}

/// The pool of event bodies and how to emit one.
pub struct Payload {
    /// Bodies; for generated shapes they follow `{"conn":C,"seq":N,` and end with `}`.
    bodies: Vec<Vec<u8>>,
    /// Replayed file lines are sent verbatim (plus an optional stamp).
    verbatim: bool,
    stamp: Option<Vec<u8>>,
    /// `Shape::Size`: the line length to pad every event to.
    exact: Option<usize>,
}

impl Payload {
    /// `stamp`: the field name to stamp, if any.
    pub fn new(shape: &Shape, stamp: Option<&str>, seed: u64) -> anyhow::Result<Payload> {
        let stamp_prefix = stamp.map(|f| {
            let mut p = serde_json::to_vec(f).expect("a string serialises");
            p.push(b':');
            p
        });
        let (bodies, verbatim) = match shape {
            Shape::Default => ((0..POOL).map(|i| log_body(seed, i as u64)).collect(), false),
            Shape::Size(n) => (vec![pad_letters(*n, stamp_prefix.as_deref(), seed)?], false),
            Shape::File(path) => (file_lines(path, stamp.is_some())?, true),
        };
        Ok(Payload {
            bodies,
            verbatim,
            stamp: stamp_prefix,
            exact: match shape {
                Shape::Size(n) => Some(*n),
                _ => None,
            },
        })
    }

    /// Append event `seq` of connection `conn`, and its newline; with a stamp field configured,
    /// `stamp_ns` goes in it (`None`: the event goes out unstamped, as warm-up events do, so
    /// the gateway's latency histogram leaves them out too).
    #[inline]
    pub fn write(&self, out: &mut Vec<u8>, conn: u32, seq: u64, stamp_ns: Option<u64>) {
        // Replayed files go in file order on every connection; generated ones vary per connection.
        let spread = if self.verbatim { 0 } else { conn as usize * 7 };
        let body = &self.bodies[(seq as usize + spread) % self.bodies.len()];
        let start = out.len();
        let stamp = self.stamp.as_ref().zip(stamp_ns);
        if self.verbatim && stamp.is_none() {
            out.extend_from_slice(body);
            out.push(b'\n');
            return;
        }
        out.push(b'{');
        if let Some((s, ns)) = stamp {
            out.extend_from_slice(s);
            push_u64(out, ns);
            // A replayed `{}` gets no comma after the stamp.
            if !(self.verbatim && is_empty_object(body)) {
                out.push(b',');
            }
        }
        if self.verbatim {
            out.extend_from_slice(&body[1..]);
        } else {
            out.extend_from_slice(b"\"conn\":");
            push_u64(out, u64::from(conn));
            out.extend_from_slice(b",\"seq\":");
            push_u64(out, seq);
            out.push(b',');
            match self.exact {
                None => out.extend_from_slice(body),
                Some(size) => {
                    // `"pad":"…"}` and the newline fill the line to exactly `size` bytes.
                    let used = out.len() - start + br#""pad":""}"#.len() + 1;
                    out.extend_from_slice(br#""pad":""#);
                    out.extend_from_slice(&body[..size.saturating_sub(used).min(body.len())]);
                    out.extend_from_slice(b"\"}");
                }
            }
        }
        out.push(b'\n');
    }

    /// The mean line length, newline included, with an 8-digit conn/seq and a stamp.
    pub fn mean_len(&self) -> usize {
        let mut buf = Vec::new();
        let n = self.bodies.len().min(256);
        for i in 0..n {
            self.write(
                &mut buf,
                1234,
                10_000_000 + i as u64,
                Some(1_000_000_000_000_000),
            );
        }
        buf.len() / n
    }
}

/// Appends the decimal digits of `v`.
#[inline]
pub fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

/// A small deterministic generator (splitmix64), so runs are repeatable.
fn mix(seed: u64, i: u64) -> u64 {
    let mut z = seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn pick<'a>(r: u64, shift: u32, from: &[&'a str]) -> &'a str {
    from[((r >> shift) % from.len() as u64) as usize]
}

/// One log-like object body (after `{"conn":C,"seq":N,`), 120–220 bytes.
fn log_body(seed: u64, i: u64) -> Vec<u8> {
    const LEVELS: &[&str] = &["info", "info", "info", "debug", "warn", "error"];
    const SERVICES: &[&str] = &[
        "checkout",
        "search",
        "auth",
        "inventory",
        "billing",
        "gateway",
    ];
    const METHODS: &[&str] = &["GET", "GET", "POST", "PUT", "DELETE"];
    const PATHS: &[&str] = &[
        "/api/v1/cart",
        "/api/v1/items/search",
        "/login",
        "/api/v2/orders",
        "/healthz",
        "/api/v1/users/me",
    ];
    const STATUS: &[&str] = &[
        "200", "200", "200", "201", "204", "304", "404", "500", "503",
    ];
    const NOTES: &[&str] = &[
        "",
        "cache miss",
        "retrying upstream after timeout",
        "slow query on \\\"db-3\\\"",
        "ua: Mozilla/5.0 (X11)",
        "café ✓ unicode",
    ];
    let r = mix(seed, i);
    let r2 = mix(seed ^ 0x5555, i);
    let body = format!(
        r#""ts":"2026-11-22T{:02}:{:02}:{:02}.{:03}Z","level":"{}","service":"{}","host":"node-{:02}","msg":"{} {} {}","note":"{}","took_ms":{}.{},"user_id":{},"trace":"{:012x}"}}"#,
        r % 24,
        (r >> 5) % 60,
        (r >> 11) % 60,
        (r >> 17) % 1000,
        pick(r, 27, LEVELS),
        pick(r, 30, SERVICES),
        (r >> 33) % 32,
        pick(r, 38, METHODS),
        pick(r, 41, PATHS),
        pick(r, 44, STATUS),
        pick(r, 47, NOTES),
        (r2 >> 3) % 2000,
        (r2 >> 15) % 10,
        (r2 >> 20) % 1_000_000,
        mix(seed, i ^ 0xabc) >> 16,
    );
    body.into_bytes()
}

/// Letters to pad `Shape::Size` events with: enough for the shortest prefix (conn and seq of
/// one digit, a one-digit stamp); refuses sizes too small for the longest one.
fn pad_letters(size: usize, stamp: Option<&[u8]>, seed: u64) -> anyhow::Result<Vec<u8>> {
    let longest = br#"{"conn":4294967295,"seq":18446744073709551615,"pad":""}"#.len()
        + 1
        + stamp.map_or(0, |s| s.len() + 20 + 1);
    if size < longest {
        bail!("--size {size} is too small: lines need at least {longest} bytes");
    }
    let letters = b"abcdefghijklmnopqrstuvwxyz";
    Ok((0..size)
        .map(|k| letters[(mix(seed, k as u64) % 26) as usize])
        .collect())
}

/// The non-empty lines of an NDJSON file; with a stamp each must be a JSON object.
fn file_lines(path: &Path, stamped: bool) -> anyhow::Result<Vec<Vec<u8>>> {
    let data = std::fs::read(path).with_context(|| format!("--payload {}", path.display()))?;
    let lines: Vec<Vec<u8>> = data
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .map(<[u8]>::to_vec)
        .collect();
    if lines.is_empty() {
        bail!("--payload {}: no lines in the file", path.display());
    }
    if stamped {
        if let Some(i) = lines.iter().position(|l| l.first() != Some(&b'{')) {
            bail!(
                "--payload {} line {}: --stamp needs every line to be a JSON object starting with '{{'",
                path.display(),
                i + 1
            );
        }
    }
    Ok(lines)
}

fn is_empty_object(body: &[u8]) -> bool {
    body[1..].iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(p: &Payload, n: u64, stamp: u64) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for seq in 0..n {
            p.write(&mut out, 3, seq, Some(stamp));
        }
        out.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    }

    #[test]
    fn default_events_are_valid_varied_json_of_150_to_250_bytes() {
        // A stamp is ~16 digits (CLOCK_MONOTONIC ns, days of uptime): 27 more bytes.
        let p = Payload::new(&Shape::Default, None, 1).unwrap();
        let ls = lines(&p, 5000, 0);
        let (min, max) = ls.iter().fold((usize::MAX, 0), |(a, b), l| {
            (a.min(l.len() + 1), b.max(l.len() + 1))
        });
        assert!(min >= 150 && max <= 250, "{min}..{max} bytes");
        let stamped = Payload::new(&Shape::Default, Some("sent_ns"), 1).unwrap();
        let mut dec = ringway::codec::Decoder::new(ringway::codec::Codec::Json);
        for l in lines(&stamped, 100, 123_456_789_012_345) {
            assert_eq!(dec.check_stamped(&l, "sent_ns"), Ok(123_456_789_012_345));
        }
        let mut dec = ringway::codec::Decoder::new(ringway::codec::Codec::Json);
        let mut distinct = std::collections::HashSet::new();
        for (i, l) in ls.iter().enumerate() {
            assert_eq!(dec.check(l), Ok(()));
            let v: serde_json::Value = serde_json::from_slice(l).unwrap();
            assert_eq!(v["seq"], i as u64);
            assert_eq!(v["conn"], 3);
            distinct.insert(v["msg"].as_str().unwrap().to_string());
        }
        assert!(
            distinct.len() > 50,
            "only {} distinct messages",
            distinct.len()
        );
        let mean = p.mean_len();
        assert!((170..=240).contains(&mean), "{mean}");
    }

    #[test]
    fn sized_events_have_the_exact_size() {
        for stamp in [None, Some("t")] {
            let p = Payload::new(&Shape::Size(150), stamp, 1).unwrap();
            for (i, l) in lines(&p, 20, 1_700_000_000_000).iter().enumerate() {
                assert_eq!(l.len() + 1, 150, "{}", String::from_utf8_lossy(l));
                let v: serde_json::Value = serde_json::from_slice(l).unwrap();
                assert_eq!(v["seq"], i as u64);
            }
        }
        let err = Payload::new(&Shape::Size(40), None, 1).err().unwrap();
        assert!(err.to_string().contains("too small"), "{err}");
    }

    #[test]
    fn replayed_files_are_sent_verbatim_and_stamped() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("in.ndjson");
        std::fs::write(&f, "{\"a\":1}\n\n[1,2]\r\n{\"b\":\"x\"}\n").unwrap();
        let p = Payload::new(&Shape::File(f.clone()), None, 0).unwrap();
        let text = |p: &Payload, stamp| {
            lines(p, 4, stamp)
                .into_iter()
                .map(|l| String::from_utf8(l).unwrap())
                .collect::<Vec<_>>()
        };
        // Lines go round in file order.
        assert_eq!(
            text(&p, 0),
            [r#"{"a":1}"#, "[1,2]", r#"{"b":"x"}"#, r#"{"a":1}"#]
        );
        let err = Payload::new(&Shape::File(f.clone()), Some("t"), 0)
            .err()
            .unwrap();
        assert!(err.to_string().contains("line 2"), "{err}");
        std::fs::write(&f, "{\"a\":1}\n{ }\n").unwrap();
        let p = Payload::new(&Shape::File(f), Some("t"), 0).unwrap();
        assert_eq!(text(&p, 7)[..2], [r#"{"t":7,"a":1}"#, r#"{"t":7 }"#]);
    }
}
