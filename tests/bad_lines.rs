//! Bad lines: each is dead-lettered with its kind, line number and raw bytes; none
//! disturbs its neighbours or its connection.

mod util;

use serde_json::Value;
use util::*;

/// One line a client sends, and what the gateway must make of it.
enum Line {
    /// Arrives in the sink as these bytes.
    Good(&'static [u8]),
    /// Arrives in the sink as `event` (the line minus its trailing "\r").
    GoodCrlf(&'static [u8], &'static [u8]),
    /// Dead-lettered with this error kind.
    Bad(&'static str, Vec<u8>),
    /// Skipped silently (but counted as a line).
    Empty,
}

fn big_line() -> Vec<u8> {
    let mut l = b"{\"big\":\"".to_vec();
    l.resize(5 * 1024 * 1024, b'x');
    l.extend_from_slice(b"\"}");
    l
}

/// An unterminated 9,999-byte line whose 4,096-byte cut falls inside an "é".
fn long_cut_utf8() -> Vec<u8> {
    let mut l = b"{\"xy\":\"".to_vec();
    for _ in 0..4996 {
        l.extend_from_slice("é".as_bytes());
    }
    l
}

fn json_lines() -> Vec<Line> {
    use Line::*;
    vec![
        Good(br#"{"g":1}"#),
        Bad("invalid_json", br#"{"a":"#.to_vec()),
        Empty,
        Bad("invalid_utf8", b"{\"s\":\"caf\xff\xfe\"}".to_vec()),
        GoodCrlf(b"{\"g\":2}\r", br#"{"g":2}"#),
        Bad("invalid_json", br#"{"a":1} trailing"#.to_vec()),
        Bad("oversized", big_line()),
        Good(br#"{"g":3}"#),
        Bad("invalid_json", long_cut_utf8()),
        Bad("invalid_json", b"not json".to_vec()),
        Empty,
        Good("{\"u\":\"h\u{e9}llo \u{2713}\"}".as_bytes()),
        Good(br#"{"g":4}"#),
    ]
}

io_modes!(bad_lines => bad_lines("json", json_lines()));

fn string_lines() -> Vec<Line> {
    use Line::*;
    vec![
        Good(b"hello"),
        Bad("invalid_utf8", b"caf\xff".to_vec()),
        Good(br#"{"not":"json""#),
        Empty,
        Good("plain \u{2713} text".as_bytes()),
        Bad("invalid_utf8", b"\xe2\x9c".to_vec()),
    ]
}

io_modes!(string_codec_invalid_utf8 => bad_lines("string", string_lines()));

fn bad_lines(mode: &str, codec: &str, lines: Vec<Line>) {
    // The sink speaks the source's codec, so events are written as the bytes that came in
    // (a json sink would write string events as JSON strings, as tremor's codecs do).
    let config = standard(mode)
        .with_source("in", |s| s.set("codec", codec))
        .with_sink(0, |s| s.set("codec", codec));
    let mut gw = Gateway::start(&config.render());

    let mut payload = Vec::new();
    for line in &lines {
        match line {
            Line::Good(b) | Line::GoodCrlf(b, _) => payload.extend_from_slice(b),
            Line::Bad(_, b) => payload.extend_from_slice(b),
            Line::Empty => {}
        }
        payload.push(b'\n');
    }
    let file = gw.path("payload.bin");
    std::fs::write(&file, &payload).unwrap();

    let neighbour = Client::produce(gw.socket(), &["--conn", "9", "--count", "5000"]);
    let client = Client::produce(
        gw.socket(),
        &["--file", file.to_str().unwrap(), "--seed", "5"],
    );
    let creds = client.creds();
    client.finish();
    neighbour.finish();
    let summary = gw.stop();

    // Every bad line is dead-lettered once, with its kind, number and raw bytes.
    let dead = read_json_lines(&gw.path("dead.ndjson"));
    let bad: Vec<(usize, &str, &Vec<u8>)> = lines
        .iter()
        .enumerate()
        .filter_map(|(n, l)| match l {
            Line::Bad(kind, raw) => Some((n + 1, *kind, raw)),
            _ => None,
        })
        .collect();
    let mut dead_sorted: Vec<&Value> = dead.iter().collect();
    dead_sorted.sort_by_key(|d| d["line"].as_u64());
    assert_eq!(
        dead_sorted
            .iter()
            .map(|d| d["line"].as_u64().unwrap_or(0) as usize)
            .collect::<Vec<_>>(),
        bad.iter().map(|b| b.0).collect::<Vec<_>>(),
        "line numbers of dead letters (1-based, counting empty lines): {dead:?}"
    );
    let peer = dead_sorted[0]["peer"].clone();
    for (d, (line, kind, raw)) in dead_sorted.iter().zip(&bad) {
        let ctx = format!("line {line} ({kind}): {}", show(d.to_string().as_bytes()));
        assert_eq!(d["error"], *kind, "{ctx}");
        assert!(d["detail"].as_str().is_some_and(|s| !s.is_empty()), "{ctx}");
        assert_eq!(d["source"], "in", "{ctx}");
        assert_eq!(d["path"], gw.socket_str(), "{ctx}");
        assert!(peer.is_u64(), "{ctx}");
        assert_eq!(d["peer"], peer, "{ctx}");
        assert_eq!(d["pid"].as_u64(), Some(creds.pid), "{ctx}");
        assert_eq!(d["uid"].as_u64(), Some(creds.uid), "{ctx}");
        assert_eq!(d["gid"].as_u64(), Some(creds.gid), "{ctx}");
        assert_eq!(d["len"].as_u64(), Some(raw.len() as u64), "{ctx}");
        assert_eq!(d["truncated"].as_bool(), Some(raw.len() > 4096), "{ctx}");
        let expected_raw = py_backslashreplace(&raw[..raw.len().min(4096)]);
        assert_eq!(d["raw"].as_str(), Some(expected_raw.as_str()), "{ctx}");
    }

    // Every good line arrives, as sent; the neighbour's events arrive in order.
    let mut check = SeqChecker::new(PAD);
    let mut got = Vec::new();
    for line in read_lines(&gw.path("out.ndjson")) {
        match parse_ci(&line) {
            Some(_) => check.push(&line),
            None => got.push(line),
        }
    }
    let want: Vec<Vec<u8>> = lines
        .iter()
        .filter_map(|l| match l {
            Line::Good(b) | Line::GoodCrlf(_, b) => Some(b.to_vec()),
            _ => None,
        })
        .collect();
    if got != want {
        let first_bad = got
            .iter()
            .zip(&want)
            .position(|(g, w)| g != w)
            .unwrap_or(got.len().min(want.len()));
        panic!(
            "good lines in the sink are not the raw bytes sent: {} other lines, {} expected; first difference at #{first_bad}:\n got  {}\n want {}",
            got.len(),
            want.len(),
            got.get(first_bad).map(|l| show(l)).unwrap_or_default(),
            want.get(first_bad).map(|l| show(l)).unwrap_or_default(),
        );
    }
    assert_eq!(
        check.counts().get(&9),
        Some(&5000),
        "the neighbour connection is unaffected"
    );

    let good = want.len() as u64 + 5000;
    assert_eq!(
        summary,
        Summary {
            events_in: good,
            events_out: good,
            dead_lettered: bad.len() as u64,
            dropped: 0
        }
    );
}

// ---------------------------------------------------------------------------------
// A configured max_length: a line of exactly max_length bytes is an event, one byte
// more is oversized.

io_modes!(max_length_boundary => max_length_boundary());

fn padded(len: usize) -> Vec<u8> {
    let mut l = b"{\"p\":\"".to_vec();
    l.resize(len - 2, b'z');
    l.extend_from_slice(b"\"}");
    l
}

fn max_length_boundary(mode: &str) {
    let mut gw = Gateway::start(&framing_config(mode, [("max_length", 100)]));
    let (fits, over, way_over) = (padded(100), padded(101), padded(5000));
    let mut payload = Vec::new();
    for line in [&fits, &over, &fits, &way_over, &fits] {
        payload.extend_from_slice(line);
        payload.push(b'\n');
    }
    let file = gw.path("payload.bin");
    std::fs::write(&file, &payload).unwrap();
    Client::produce(
        gw.socket(),
        &["--file", file.to_str().unwrap(), "--writes", "tiny"],
    )
    .finish();
    let summary = gw.stop();

    assert_eq!(
        read_lines(&gw.path("out.ndjson")),
        [fits.clone(), fits.clone(), fits.clone()]
    );
    let dead = read_json_lines(&gw.path("dead.ndjson"));
    let got: Vec<_> = dead
        .iter()
        .map(|d| {
            (
                d["error"].clone(),
                d["line"].clone(),
                d["len"].clone(),
                d["truncated"].clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("oversized".into(), 2.into(), 101.into(), false.into()),
            ("oversized".into(), 4.into(), 5000.into(), true.into()),
        ],
        "{dead:?}"
    );
    assert_eq!(
        dead[0]["raw"].as_str().map(str::as_bytes),
        Some(over.as_slice())
    );
    assert_eq!(
        summary,
        Summary {
            events_in: 3,
            events_out: 3,
            dead_lettered: 2,
            dropped: 0
        }
    );
}

// ---------------------------------------------------------------------------------
// emit_incomplete = false: an unterminated last line is dead-lettered as `incomplete`;
// a custom separator frames the stream.

io_modes!(emit_incomplete_false => emit_incomplete_false());

fn emit_incomplete_false(mode: &str) {
    let mut gw = Gateway::start(&framing_config(mode, [("emit_incomplete", false)]));
    send_tiny(&gw, b"{\"a\":1}\n{\"b\":2}");
    let summary = gw.stop();

    assert_eq!(read_lines(&gw.path("out.ndjson")), [br#"{"a":1}"#.to_vec()]);
    let dead = read_json_lines(&gw.path("dead.ndjson"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(
        (
            &dead[0]["error"],
            &dead[0]["line"],
            &dead[0]["raw"],
            &dead[0]["len"]
        ),
        (
            &"incomplete".into(),
            &2.into(),
            &r#"{"b":2}"#.into(),
            &7.into()
        ),
        "{dead:?}"
    );
    assert_eq!(
        summary,
        Summary {
            events_in: 1,
            events_out: 1,
            dead_lettered: 1,
            dropped: 0
        }
    );
}

io_modes!(custom_separator => custom_separator());

fn custom_separator(mode: &str) {
    let mut gw = Gateway::start(&framing_config(mode, [("separator", ";")]));
    send_tiny(&gw, b"{\"a\":1};{\"b\":\"x\\ny\"};;{\"c\":3};");
    let summary = gw.stop();

    // Sink lines are still "\n"-separated; the events themselves are the raw bytes.
    assert_eq!(
        read_lines(&gw.path("out.ndjson")),
        [
            br#"{"a":1}"#.to_vec(),
            br#"{"b":"x\ny"}"#.to_vec(),
            br#"{"c":3}"#.to_vec()
        ]
    );
    assert_eq!(
        summary,
        Summary {
            events_in: 3,
            events_out: 3,
            dead_lettered: 0,
            dropped: 0
        }
    );
}

// ---------------------------------------------------------------------------------
// With a separator other than `\n`, a JSON event may span lines; the sink still writes one
// event a line (its raw newlines are JSON whitespace and become spaces).

#[test]
fn json_spanning_lines_with_custom_separator() {
    for mode in MODES {
        let mut gw = Gateway::start(&framing_config(mode, [("separator", ";")]));
        send_tiny(
            &gw,
            b"{\n  \"a\": \"x\\ny\",\r\n  \"b\": [1,\n2]\n};{\"c\":3};",
        );
        let summary = gw.stop();
        assert_eq!(summary.events_out, 2, "{mode}: {summary:?}");
        let out = std::fs::read_to_string(gw.path("out.ndjson")).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{mode}: {out:?}");
        let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(
            first,
            serde_json::json!({"a": "x\ny", "b": [1, 2]}),
            "{mode}"
        );
        assert_eq!(lines[1], r#"{"c":3}"#);
    }
}
