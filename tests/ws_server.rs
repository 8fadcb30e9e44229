//! The `ws_server` source with real peers (Python's `websockets`, raw sockets): text, binary and
//! multi-line messages, exactly-once over 16 clients, messages without a separator, oversized
//! messages (close 1009), metadata, `max_connections`, slowloris clients, keepalive, wss with a
//! CA made by the test (rcgen), and bad TLS files.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;
use util::*;

fn config(source_extra: &str, sink_extra: &str) -> String {
    format!(
        r#"
shutdown_timeout = "10s"

[[sources]]
name = "ws"
type = "ws_server"
url = "127.0.0.1:0"
{source_extra}

[[sinks]]
type = "file"
path = "{{dir}}/out.ndjson"
{sink_extra}
"#
    )
}

fn start(source_extra: &str, sink_extra: &str) -> (Gateway, String) {
    let gw = Gateway::start(&config(source_extra, sink_extra));
    let url = ws_urls(&gw.stderr()).remove(0);
    (gw, url)
}

fn ws(url: &str, args: &[&str]) -> Client {
    let mut all = vec![url];
    all.extend_from_slice(args);
    Client::python("ws_client.py", &all)
}

/// Runs a client to its end and returns its last line as JSON, whatever its exit status.
fn ws_result(url: &str, args: &[&str]) -> Value {
    let (_, last) = ws(url, args).wait(Duration::from_secs(60));
    serde_json::from_str(&last).unwrap_or_else(|e| panic!("{e}: {last:?}"))
}

fn addr_of(url: &str) -> String {
    url.trim_start_matches("wss://")
        .trim_start_matches("ws://")
        .to_string()
}

#[test]
fn sixteen_clients_exactly_once() {
    let (mut gw, url) = start("preprocessors = [\"separate\"]", "");
    let (clients, per) = (16u64, 6250u64);
    let running: Vec<Client> = (0..clients)
        .map(|c| {
            // Single events and multi-line messages, as text, binary or both.
            let per_message = ["1", "7", "50"][(c % 3) as usize];
            let kind = ["--mixed", "--binary", "--mixed", "--mixed"][(c % 4) as usize];
            ws(
                &url,
                &[
                    "send",
                    "--conn",
                    &c.to_string(),
                    "--count",
                    &per.to_string(),
                    "--per-message",
                    per_message,
                    kind,
                ],
            )
        })
        .collect();
    for c in running {
        assert_eq!(c.finish()["sent"].as_u64(), Some(per));
    }
    let s = gw.stop();
    let mut check = SeqChecker::new(PAD);
    for line in read_lines(&gw.path("out.ndjson")) {
        check.push(&line);
    }
    assert_eq!(check.lines, clients * per);
    for c in 0..clients {
        assert_eq!(check.counts().get(&c).copied(), Some(per), "client {c}");
    }
    assert_eq!(s.events_in, clients * per);
    assert_eq!(s.events_out, clients * per);
    assert_eq!(s.dead_lettered, 0);
}

#[test]
fn messages_are_events_with_or_without_separate() {
    // Without preprocessors each message is one event, line breaks and all.
    let (mut gw, url) = start("", "");
    let pretty = "{\\n  \"a\": 1,\\n  \"b\": [1, 2]\\n}";
    assert_eq!(ws_result(&url, &["raw", pretty])["sent"], 1);
    assert_eq!(
        ws_result(&url, &["raw", "{\"c\":3}\\n", "--binary"])["sent"],
        1
    );
    assert_eq!(
        ws_result(&url, &["raw", "{\"d\":4}\\n{\"e\":5}"])["sent"],
        1
    );
    let s = gw.stop();
    let lines = read_lines(&gw.path("out.ndjson"));
    let got: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(got.len(), 2, "{lines:?}");
    assert_eq!(got[0], serde_json::json!({"a": 1, "b": [1, 2]}));
    assert_eq!(got[1], serde_json::json!({"c": 3}));
    // Two documents in one message are not one JSON event: dead-lettered, nothing else lost.
    assert_eq!((s.events_in, s.dead_lettered), (2, 1));

    // With `separate`, a message is split into lines; its last needs no separator.
    let (mut gw, url) = start("preprocessors = [\"separate\"]", "");
    assert_eq!(
        ws_result(&url, &["raw", "{\"d\":4}\\n{\"e\":5}"])["sent"],
        1
    );
    assert_eq!(
        ws_result(&url, &["raw", "{\"f\":6}\\nnot json\\n{\"g\":7}\\n"])["sent"],
        1
    );
    let s = gw.stop();
    let lines = read_lines(&gw.path("out.ndjson"));
    assert_eq!(
        lines,
        [&b"{\"d\":4}"[..], b"{\"e\":5}", b"{\"f\":6}", b"{\"g\":7}"]
    );
    assert_eq!((s.events_in, s.dead_lettered), (4, 1));
}

#[test]
fn oversized_message_is_closed_with_1009() {
    let (mut gw, url) = start("max_message_size = 1024", "");
    let big = ws_result(&url, &["message", "--size", "4000"]);
    assert_eq!(big["close_code"], 1009, "{big}");
    assert!(
        big["close_reason"]
            .as_str()
            .unwrap()
            .contains("max_message_size"),
        "{big}"
    );
    // Others are not touched.
    let ok = ws(&url, &["send", "--conn", "1", "--count", "100"]).finish();
    assert_eq!(ok["sent"], 100);
    let s = gw.stop();
    assert_eq!(s.events_in, 100);
    assert_eq!(exit_detail(&gw.stderr(), "ws_messages_too_big"), 1);
}

#[test]
fn envelope_names_the_peer_and_connection() {
    let (mut gw, url) = start("", "metadata = \"envelope\"");
    assert_eq!(ws_result(&url, &["raw", "{\"x\":1}"])["sent"], 1);
    gw.stop();
    let lines = read_lines(&gw.path("out.ndjson"));
    let v: Value = serde_json::from_slice(&lines[0]).unwrap();
    assert_eq!(v["event"], serde_json::json!({"x": 1}));
    let meta = &v["meta"]["ws_server"];
    assert_eq!(meta["tls"], false, "{v}");
    assert_eq!(meta["url"], url.as_str());
    assert_eq!(meta["peer"]["host"], "127.0.0.1");
    assert!(meta["peer"]["port"].as_u64().unwrap() > 0);
    assert!(meta["conn"].as_u64().unwrap() > 0);
    assert_eq!(v["meta"]["source"], "ws");
}

#[test]
fn max_connections_refuses_with_503() {
    let (mut gw, url) = start("max_connections = 2", "");
    let held: Vec<Client> = (0..2)
        .map(|_| ws(&url, &["hold", "--seconds", "3"]))
        .collect();
    for h in &held {
        wait_until(PATIENCE, "a held connection", || !h.lines().is_empty());
    }
    let third = ws_result(&url, &["raw", "{}"]);
    assert_eq!(third["status"], 503, "{third}");
    for h in held {
        h.finish();
    }
    // Room again.
    assert_eq!(ws_result(&url, &["raw", "{\"y\":2}"])["sent"], 1);
    let s = gw.stop();
    assert_eq!(s.events_in, 1);
}

/// 200 clients open TCP connections and never finish the handshake (some send half a request);
/// a normal client still connects at once and is delivered; the stalled ones are dropped after
/// `handshake_timeout` and counted.
#[test]
fn slowloris_clients_do_not_block_others() {
    let (mut gw, url) = start("handshake_timeout = \"5s\"", "");
    let addr = addr_of(&url);
    let stalled: Vec<TcpStream> = (0..200)
        .map(|i| {
            let mut s = TcpStream::connect(&addr).unwrap();
            if i % 2 == 0 {
                s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websock")
                    .unwrap();
            }
            s
        })
        .collect();
    let began = Instant::now();
    let ok = ws(&url, &["send", "--conn", "3", "--count", "500"]).finish();
    assert_eq!(ok["sent"], 500);
    assert!(
        began.elapsed() < Duration::from_secs(4),
        "a normal client waited {:?} behind stalled handshakes",
        began.elapsed()
    );
    // The stalled ones are closed by the deadline.
    for mut s in stalled {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 64];
        assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)));
    }
    let s = gw.stop();
    assert_eq!(s.events_in, 500);
    // (The 201st: the harness's readiness probe, a bare TCP connect.)
    assert_eq!(exit_detail(&gw.stderr(), "ws_handshake_failures"), 201);
}

/// A client that completes the upgrade, then never answers pings, is closed after
/// `ping_interval + ping_timeout`.
#[test]
fn silent_client_is_closed_by_keepalive() {
    let (mut gw, url) = start("ping_interval = \"300ms\"\nping_timeout = \"300ms\"", "");
    let mut s = TcpStream::connect(addr_of(&url)).unwrap();
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let began = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let took = began.elapsed();
    assert!(
        got.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    // Pings (opcode 0x9) came, then a close (0x8), then the end.
    assert!(
        got.windows(2).any(|w| w == [0x89, 0x00]),
        "no ping: {got:?}"
    );
    assert!(got.contains(&0x88), "no close frame: {got:?}");
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(5),
        "closed after {took:?}"
    );
    // A client that answers pings (Python's websockets does) stays.
    let held = ws(&url, &["hold", "--seconds", "2"]).finish();
    assert_eq!(held["close_code"], Value::Null, "{held}");
    gw.stop();
}

#[test]
fn wss_with_a_ca_made_here() {
    let pki = Pki::new();
    let tls = format!(
        "tls = {{ cert = \"{}\", key = \"{}\" }}",
        pki.path("server.pem"),
        pki.path("server.key")
    );
    let (mut gw, url) = start(&tls, "metadata = \"envelope\"");
    assert!(url.starts_with("wss://"), "{url}");
    let url = url.replace("127.0.0.1", "localhost");
    let ok = ws(
        &url,
        &[
            "send",
            "--conn",
            "4",
            "--count",
            "300",
            "--per-message",
            "1",
            "--cafile",
            &pki.path("ca.pem"),
        ],
    )
    .finish();
    assert_eq!(ok["sent"], 300);
    // The wrong CA: the client refuses the certificate; the server counts a failed handshake
    // and goes on.
    let bad = ws_result(&url, &["raw", "{}", "--cafile", &pki.path("other.pem")]);
    assert!(
        bad["detail"]
            .as_str()
            .unwrap_or("")
            .contains("CERTIFICATE_VERIFY_FAILED"),
        "{bad}"
    );
    // Plain ws:// against a wss server fails too, without harm.
    let plain = ws_result(&url.replace("wss://", "ws://"), &["raw", "{}"]);
    assert!(plain["error"].is_string(), "{plain}");
    let again = ws(&url, &["raw", "{\"z\":1}", "--cafile", &pki.path("ca.pem")]).finish();
    assert_eq!(again["sent"], 1);
    let s = gw.stop();
    assert_eq!(s.events_in, 301);
    assert!(exit_detail(&gw.stderr(), "ws_handshake_failures") >= 2);
    let lines = read_lines(&gw.path("out.ndjson"));
    let v: Value = serde_json::from_slice(&lines[0]).unwrap();
    assert_eq!(v["meta"]["ws_server"]["tls"], true, "{v}");
}

#[test]
fn bad_tls_files_and_typos_are_refused() {
    let pki = Pki::new();
    let missing = format!(
        "tls = {{ cert = \"{}/nope.pem\", key = \"{}\" }}",
        pki.root().display(),
        pki.path("server.key")
    );
    let r = Gateway::configure(&config(&missing, "")).expect_failure();
    assert!(
        r.stderr.contains("tls.cert") && r.stderr.contains("nope.pem"),
        "{}",
        r.stderr
    );
    // A key that does not belong to the certificate.
    let wrong = format!(
        "tls = {{ cert = \"{}\", key = \"{}\" }}",
        pki.path("ca.pem"),
        pki.path("server.key")
    );
    let r = Gateway::configure(&config(&wrong, "")).expect_failure();
    assert!(r.stderr.contains("tls.key"), "{}", r.stderr);
    check_refuses(&config("max_mesage_size = 10", ""), "max_mesage_size");
    check_refuses(&config("max_message_size = 10", ""), "max_message_size");
    check_refuses(
        &config("handshake_timeout = \"soon\"", ""),
        "handshake_timeout",
    );
}

/// A sink that is not read: the lane fills, the connection is no longer read, the client's
/// sends block (TCP window), the gateway's memory stays bounded; then everything arrives.
#[test]
fn full_channel_stops_reading_without_loss() {
    let cfg = r#"
shutdown_timeout = "10s"

[[sources]]
name = "ws"
type = "ws_server"
url = "127.0.0.1:0"

[[sinks]]
type = "file"
path = "{dir}/out.fifo"

[channel]
capacity = 4
when_full = "block"
"#;
    let launch = Gateway::configure(cfg);
    let mut fifo = Fifo::create(&launch.path("out.fifo"));
    let mut gw = launch.start();
    let url = ws_urls(&gw.stderr()).remove(0);
    let (count, pad) = (100_000u64, (900u64, 1100u64));
    let client = ws(
        &url,
        &[
            "send",
            "--conn",
            "9",
            "--count",
            &count.to_string(),
            "--pad",
            "900:1100",
            "--progress",
        ],
    );
    // The client stalls well before its ~100 MB are through.
    let mut last = (0, Instant::now());
    let stalled_at = loop {
        let now = client.progress();
        if now != last.0 {
            last = (now, Instant::now());
        } else if now > 0 && last.1.elapsed() > Duration::from_secs(2) {
            break now;
        }
        assert!(
            last.1.elapsed() < Duration::from_secs(60),
            "the client never started"
        );
        // Time is what is measured here: "stalled" is 2 s without progress.
        std::thread::sleep(Duration::from_millis(100));
    };
    let allowance = tcp_mem_max("tcp_rmem") + tcp_mem_max("tcp_wmem") + (16 << 20);
    assert!(
        stalled_at < allowance,
        "{stalled_at} bytes got through a stalled sink"
    );
    assert!(gw.rss_kib() < 150 * 1024, "RSS {} KiB", gw.rss_kib());
    // Now read everything.
    let mut check = SeqChecker::new(pad);
    fifo.read_checked(
        &mut check,
        count,
        Duration::from_secs(60),
        || {},
        String::new,
    );
    assert_eq!(client.finish()["sent"].as_u64(), Some(count));
    let s = gw.stop();
    assert_eq!((s.events_in, s.events_out, s.dropped), (count, count, 0));
}

/// A `reply` sink sends each event back to the WebSocket connection it came from, one message
/// per event; four clients each get exactly their own events back, in order.
#[test]
fn replies_go_back_to_each_client() {
    let (mut gw, url) = start("", "\n[[sinks]]\ntype = \"reply\"\ninputs = [\"ws\"]\n");
    let clients: Vec<Client> = (0..4)
        .map(|c| ws(&url, &["echo", "--conn", &c.to_string(), "--count", "2000"]))
        .collect();
    for c in clients {
        let r = c.finish();
        assert_eq!(
            (r["sent"].as_u64(), r["replies"].as_u64()),
            (Some(2000), Some(2000)),
            "{r}"
        );
        assert_eq!(r["same"], true, "{r}");
    }
    // A client that sends and vanishes: its replies are counted as dropped, nothing else.
    assert_eq!(
        ws_result(&url, &["send", "--conn", "7", "--count", "50"])["sent"],
        50
    );
    let s = gw.stop();
    assert_eq!(s.events_in, 8050);
    assert_eq!(count_lines(&gw.path("out.ndjson")), 8050);
    assert!(exit_detail(&gw.stderr(), "replies_dropped") <= 50);
}

/// `route_field` over WebSocket: an event goes to the connection whose id it names (the
/// envelope's `conn`), not back to its sender.
#[test]
fn route_field_sends_to_the_named_ws_connection() {
    let (mut gw, url) = start(
        "",
        "metadata = \"envelope\"\n\n[[sinks]]\ntype = \"reply\"\nroute_field = \"to\"\n",
    );
    let a = ws(&url, &["chat", "{\"hello\":\"from a\"}", "--seconds", "5"]);
    let out = gw.path("out.ndjson");
    wait_until(PATIENCE, "a's first event", || count_lines(&out) == 1);
    let env: Value = serde_json::from_slice(&read_lines(&out)[0]).unwrap();
    let a_id = env["meta"]["ws_server"]["conn"].as_u64().unwrap();
    let msg = format!("{{\"to\":{a_id},\"msg\":\"for a\"}}");
    assert_eq!(ws_result(&url, &["raw", &msg])["sent"], 1);
    wait_until(PATIENCE, "a gets the routed event", || {
        a.lines().iter().any(|l| l.contains("got"))
    });
    let got: Value =
        serde_json::from_str(a.lines().iter().find(|l| l.contains("got")).unwrap()).unwrap();
    assert_eq!(got["got"], msg.as_str());
    let _ = a.wait(Duration::from_secs(30));
    gw.stop();
}

/// Messages of about 1 MiB each (under the default 16 MiB bound) arrive whole, one event each.
#[test]
fn large_messages_arrive_whole() {
    let (mut gw, url) = start("", "");
    let pad = "1000000:1048576";
    let sent = ws(&url, &["send", "--conn", "8", "--count", "5", "--pad", pad]).finish();
    assert_eq!(sent["sent"], 5);
    let s = gw.stop();
    assert_eq!((s.events_in, s.dead_lettered), (5, 0));
    let mut check = SeqChecker::new((1_000_000, 1_048_576));
    for line in read_lines(&gw.path("out.ndjson")) {
        assert!(line.len() > 1_000_000);
        check.push(&line);
    }
    assert_eq!(check.lines, 5);
}

/// `ctl pause` of a ws_server source: its connections are not read (the client's sends wait in
/// the TCP window); `resume` lets everything through, nothing lost.
#[test]
fn pause_and_resume_a_ws_source() {
    let (mut gw, url) = start("preprocessors = [\"separate\"]", "");
    // (Without a UNIX source, the control socket is $XDG_RUNTIME_DIR/ringway.ctl.)
    let ctl_path = gw.path("ringway.ctl");
    let ctl = |args: &[&str]| ctl_at(&ctl_path, args);
    let (code, _, err) = ctl(&["pause", "ws"]);
    assert_eq!(code, 0, "{err}");
    let sender = ws(
        &url,
        &[
            "send",
            "--conn",
            "6",
            "--count",
            "3000",
            "--per-message",
            "10",
        ],
    );
    // Time passing is the test: 1.5 s in which a paused source reads nothing.
    std::thread::sleep(Duration::from_millis(1500));
    let (_, stats, _) = ctl(&["--json", "stats"]);
    let v: Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(v["sources"][0]["events_in"], 0, "paused: {v}");
    assert_eq!(v["sources"][0]["paused"], true);
    let (code, _, err) = ctl(&["resume", "ws"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(sender.finish()["sent"], 3000);
    let s = gw.stop();
    assert_eq!(s.events_in, 3000);
    let mut check = SeqChecker::new(PAD);
    for line in read_lines(&gw.path("out.ndjson")) {
        check.push(&line);
    }
    assert_eq!(check.lines, 3000);
}

/// A client that sends but never reads its replies: once its reply queue is over `queue_bytes`
/// it is not read any more, and after `write_timeout` without taking a reply it is closed
/// (counted); another client's echo meanwhile goes on untouched, and every event read from
/// either is delivered to the file sink.
#[test]
fn a_client_that_takes_no_replies_hurts_nobody_else() {
    let (mut gw, url) = start(
        "",
        "\n[[sinks]]\ntype = \"reply\"\ninputs = [\"ws\"]\nqueue_bytes = 4096\nwrite_timeout = \"2s\"\n",
    );
    let greedy = ws(
        &url,
        &[
            "send", "--conn", "1", "--count", "200000", "--pad", "900:1100",
        ],
    );
    // The greedy client is well under way (its events coming in) before the polite one starts.
    gw.wait_events_in(1000);
    let began = Instant::now();
    let polite = ws(&url, &["echo", "--conn", "2", "--count", "2000"]).finish();
    assert_eq!(polite["replies"], 2000, "{polite}");
    assert_eq!(polite["same"], true);
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "{:?}",
        began.elapsed()
    );
    let (status, last) = greedy.wait(Duration::from_secs(60));
    assert!(!status.success(), "the greedy client was closed: {last}");
    let s = gw.stop();
    let err = gw.stderr();
    assert_eq!(exit_detail(&err, "reply_timeouts"), 1, "{err}");
    assert_eq!(s.events_in, s.events_out);
    assert_eq!(count_lines(&gw.path("out.ndjson")) as u64, s.events_in);
    assert!(
        s.events_in < 200_000 + 2000,
        "the greedy client was held back"
    );
}
