//! The `ws_client` sink against a real WebSocket server (Python's `websockets`): events go out
//! one message each, in order, and what the server sends back is an event stream; the server
//! killed and restarted loses nothing (spool and resend, retries on the configured schedule);
//! wss with a CA made by the test, and a wrong CA or domain refused with a clear error and
//! retried; without a CA file, the system's roots (the test's CA there: let in; else refused,
//! saying why); the example echo service (`examples/ws-echo.toml`: ws_client → ws_server over
//! wss, echoed back by the reply sink) in one gateway.

mod util;

use std::time::Duration;

use serde_json::Value;
use util::*;

/// An echoing wss:// peer with the server certificate of `pki`.
fn tls_echo_peer(pki: &Pki, port: u16, out: &std::path::Path) -> Client {
    let (cert, key) = (pki.path("server.pem"), pki.path("server.key"));
    peer(port, out, &["--echo", "--cert", &cert, "--key", &key])
}

fn peer(port: u16, out: &std::path::Path, extra: &[&str]) -> Client {
    let port = port.to_string();
    let out = out.to_string_lossy().into_owned();
    let mut args = vec![port.as_str(), "--out", out.as_str()];
    args.extend_from_slice(extra);
    let c = Client::python("ws_peer.py", &args);
    wait_until(PATIENCE, "the peer listening", || {
        c.lines().iter().any(|l| l.contains("listening"))
    });
    c
}

/// Events in on the UNIX source `in` go out to the ws_client sink `peer` at `url`
/// (`peer` as given, e.g. with `tls`); what comes back lands in `{dir}/echoes.ndjson`.
fn config(url: &str, peer: impl FnOnce(Sink) -> Sink) -> Config {
    let sink = Sink::ws_client(url)
        .name("peer")
        .inputs(&["in"])
        .set("reconnect.retry.interval_ms", 200)
        .set("reconnect.retry.growth_rate", 2.0)
        .set("reconnect.retry.max_interval_ms", 1000)
        .set("reconnect.retry.jitter", 0.0);
    Config::new()
        .shutdown_timeout("10s")
        .set("log_level", "info")
        .source(Source::unix("in"))
        .sink(peer(sink))
        .sink(Sink::file("echoes.ndjson").name("echoes").inputs(&["peer"]))
}

/// The ws_client's `tls` table.
fn tls(entries: &[(&str, String)]) -> toml::Table {
    entries
        .iter()
        .map(|(k, v)| (k.to_string(), toml::Value::from(v.as_str())))
        .collect()
}

fn check_lines(lines: &[Vec<u8>], conn: u64, count: u64) {
    let mut check = SeqChecker::new(PAD);
    for l in lines {
        check.push(l);
    }
    assert_eq!(check.counts().get(&conn).copied(), Some(count));
}

#[test]
fn events_go_out_and_replies_come_back() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let got = dir.path().join("peer.ndjson");
    let _peer = peer(port, &got, &["--echo"]);
    let mut gw = Gateway::start(&config(&format!("ws://127.0.0.1:{port}/ingest"), |s| s).render());
    let count = 20_000u64;
    Client::produce(gw.target(), &["--conn", "1", "--count", &count.to_string()]).finish();
    wait_until(PATIENCE, "the echoes", || {
        count_lines(&gw.path("echoes.ndjson")) as u64 == count
    });
    let s = gw.stop();
    check_lines(&read_lines(&got), 1, count);
    check_lines(&read_lines(&gw.path("echoes.ndjson")), 1, count);
    assert_eq!(s.events_in, 2 * count, "the events, and their echoes");
    assert_eq!(s.events_out, 2 * count);
}

/// The server is killed mid-stream and started again 2 s later: every event arrives (some
/// perhaps twice: at most the `resent` ones), in order after deduplication, and the connect
/// attempts meanwhile follow the retry schedule (200, 400, 800, 1000 ms).
#[test]
fn server_killed_and_restarted_loses_nothing() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let got = dir.path().join("peer.ndjson");
    let first = peer(port, &got, &["--stop-after", "3000"]);
    let mut gw = Gateway::start(&config(&format!("ws://127.0.0.1:{port}/"), |s| s).render());
    let count = 20_000u64;
    let producer = Client::python(
        "paced.py",
        &[
            gw.socket_str(),
            "--conn",
            "2",
            "--count",
            &count.to_string(),
            "--rate",
            "5000",
        ],
    );
    let (status, _) = first.wait(Duration::from_secs(30));
    assert!(status.success());
    // The server stays down for three refused connects (200 + 400 + 800 ms on the schedule).
    wait_until(PATIENCE, "three refused connects", || {
        gw.stderr().matches("connect failed").count() >= 3
    });
    let _second = peer(port, &got, &[]);
    assert_eq!(producer.finish()["sent"].as_u64(), Some(count));
    wait_until(Duration::from_secs(60), "every event at the peer", || {
        let mut seen = std::collections::BTreeSet::new();
        for l in read_lines(&got) {
            let v: Value = serde_json::from_slice(&l).unwrap();
            seen.insert(v["i"].as_u64().unwrap());
        }
        seen.len() as u64 == count
    });
    let s = gw.stop();
    let err = gw.stderr();
    // Duplicates only from resent batches; after them, the stream goes on in order.
    let lines = read_lines(&got);
    let resent = exit_detail(&err, "resent");
    assert!(
        lines.len() as u64 <= count + resent,
        "{} lines for {count} events, resent={resent}",
        lines.len()
    );
    let mut next = 0u64;
    for l in &lines {
        let i = serde_json::from_slice::<Value>(l).unwrap()["i"]
            .as_u64()
            .unwrap();
        assert!(i <= next, "event {i} came before event {next}: a gap");
        next = next.max(i + 1);
    }
    assert_eq!(next, count);
    assert_eq!(s.events_in, count);
    assert!(exit_detail(&err, "reconnects") >= 1, "{err}");
    // The attempts while the server was down, from the log (the connection it broke, then
    // the refused connects): the schedule of the config.
    let delays: Vec<u64> = err
        .lines()
        .filter(|l| l.contains("connect failed") || l.contains("connection lost within"))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|kv| kv.strip_prefix("retry_in_ms="))
                .and_then(|v| v.parse().ok())
        })
        .collect();
    assert!(delays.len() >= 3, "{err}");
    assert_eq!(&delays[..3], &[200, 400, 800], "{err}");
    assert!(delays[3..].iter().all(|&d| d == 1000), "{delays:?}");
}

#[test]
fn wss_with_cafile_and_a_wrong_ca_or_domain() {
    let pki = Pki::new();
    let port = free_port();
    let got = pki.root().join("peer.ndjson");
    let _peer = tls_echo_peer(&pki, port, &got);
    let url = format!("wss://localhost:{port}/");
    let with_ca = |ca: &str, domain: Option<&str>| {
        let mut tls = tls(&[("cafile", pki.path(ca))]);
        if let Some(domain) = domain {
            tls.insert("domain".into(), domain.into());
        }
        config(&url, |s| s.set("tls", tls))
    };
    let mut gw = Gateway::start(&with_ca("ca.pem", None).render());
    Client::produce(gw.target(), &["--conn", "3", "--count", "500"]).finish();
    wait_until(PATIENCE, "the echoes over wss", || {
        count_lines(&gw.path("echoes.ndjson")) == 500
    });
    gw.stop();
    check_lines(&read_lines(&got), 3, 500);

    // The wrong CA, then the wrong name: refused with the reason, retried, nothing sent.
    for (ca, domain, reason) in [
        ("other.pem", None, "UnknownIssuer"),
        (
            "ca.pem",
            Some("example.org"),
            "not valid for name \"example.org\"",
        ),
    ] {
        // (It cannot deliver: a short grace, so that it gives up soon at the end.)
        let cfg = with_ca(ca, domain).shutdown_timeout("1s").render();
        let mut gw = Gateway::start(&cfg);
        Client::produce(gw.target(), &["--conn", "4", "--count", "10"]).finish();
        wait_until(PATIENCE, "two failed attempts", || {
            gw.stderr().matches("TLS handshake with").count() >= 2
        });
        let err = gw.stderr();
        assert!(err.contains(reason), "{err}");
        gw.signal(libc::SIGTERM);
        gw.wait_exit(Duration::from_secs(60));
        let err = gw.stderr();
        assert!(exit_detail(&err, "connect_failures") >= 2, "{err}");
        assert_eq!(exit_detail(&err, "lost_at_shutdown"), 10, "{err}");
    }
    check_lines(&read_lines(&got), 3, 500);
}

/// `examples/ws-echo.toml`: events in on a UNIX socket go out through a ws_client over wss to
/// the same gateway's ws_server, whose reply sink echoes them back to the ws_client, whose
/// replies land in a file. (The test points it at its own certificate, port and paths.)
#[test]
fn the_example_echo_service_works() {
    let pki = Pki::new();
    let port = free_port().to_string();
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ws-echo.toml"),
    )
    .unwrap();
    let text = example
        .replace("/tmp/ringway-echo", "{dir}")
        .replace("examples/tls/localhost.pem", &pki.path("server.pem"))
        .replace("examples/tls/localhost.key", &pki.path("server.key"))
        .replace("examples/tls/ca.pem", &pki.path("ca.pem"))
        .replace("4443", &port);
    assert_ne!(text, example);
    let mut gw = Gateway::start(&text);
    let target = listening_targets(&gw.stderr())
        .into_iter()
        .find(|t| matches!(t, Target::Unix(_)))
        .unwrap();
    Client::produce(target.arg(), &["--conn", "5", "--count", "2000"]).finish();
    wait_until(PATIENCE, "the echoes", || {
        count_lines(&gw.path("echoes.ndjson")) == 2000
    });
    let s = gw.stop();
    check_lines(&read_lines(&gw.path("echoes.ndjson")), 5, 2000);
    // Each event passes three sources: in, the ws_server, the ws_client's replies.
    assert_eq!(s.events_in, 6000);
}

/// Events that came to a ws_server in binary messages go out of a ws_client as binary
/// messages (tremor's `$ws_server.binary`), text ones as text; `binary = true` sends all as
/// binary.
#[test]
fn binary_messages_stay_binary_through_ws_server_and_ws_client() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let got = dir.path().join("peer.ndjson");
    let _peer = peer(port, &got, &["--types"]);
    let cfg = |peer: Sink| {
        Config::new()
            .source(Source::ws("wsin"))
            .sink(peer.name("peer"))
            .render()
    };
    let mut gw = Gateway::start(&cfg(Sink::ws_client(&format!("ws://127.0.0.1:{port}/"))));
    let url = ws_urls(&gw.stderr()).remove(0);
    for (text, binary) in [
        ("{\"t\":1}", false),
        ("{\"b\":2}", true),
        ("{\"t\":3}", false),
    ] {
        let mut args = vec![url.as_str(), "raw", text];
        if binary {
            args.push("--binary");
        }
        let (_, last) = Client::python("ws_client.py", &args).wait(Duration::from_secs(30));
        assert!(last.contains("sent"), "{last}");
    }
    wait_until(PATIENCE, "three messages at the peer", || {
        read_lines(&got).len() == 3
    });
    gw.stop();
    let lines: Vec<String> = read_lines(&got)
        .into_iter()
        .map(|l| String::from_utf8(l).unwrap())
        .collect();
    assert_eq!(lines, ["T {\"t\":1}", "B {\"b\":2}", "T {\"t\":3}"]);

    // `binary = true`: everything as binary.
    let got2 = dir.path().join("peer2.ndjson");
    let port2 = free_port();
    let _peer2 = peer(port2, &got2, &["--types"]);
    let mut gw = Gateway::start(&cfg(
        Sink::ws_client(&format!("ws://127.0.0.1:{port2}/")).set("binary", true)
    ));
    let url = ws_urls(&gw.stderr()).remove(0);
    let (_, last) =
        Client::python("ws_client.py", &[&url, "raw", "{\"t\":4}"]).wait(Duration::from_secs(30));
    assert!(last.contains("sent"), "{last}");
    wait_until(PATIENCE, "the message at the peer", || {
        read_lines(&got2).len() == 1
    });
    gw.stop();
    assert_eq!(read_lines(&got2), [b"B {\"t\":4}".to_vec()]);
}

/// A server that does not read for 3 s while 60,000 events (~11 MB) are sent: the writes wait
/// (the socket's buffers fill), nothing is counted as a broken connection, and every event
/// arrives exactly once.
#[test]
fn a_server_that_reads_late_gets_everything_once() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let got = dir.path().join("peer.ndjson");
    let _peer = peer(port, &got, &["--stall", "3"]);
    let mut gw = Gateway::start(&config(&format!("ws://127.0.0.1:{port}/"), |s| s).render());
    let count = 60_000u64;
    Client::produce(gw.target(), &["--conn", "7", "--count", &count.to_string()]).finish();
    wait_until(Duration::from_secs(60), "every event at the peer", || {
        count_lines(&got) as u64 >= count
    });
    let s = gw.stop();
    let err = gw.stderr();
    assert_eq!(exit_detail(&err, "resent"), 0, "{err}");
    assert_eq!(exit_detail(&err, "reconnects"), 0, "{err}");
    check_lines(&read_lines(&got), 7, count);
    assert_eq!(count_lines(&got) as u64, count);
    assert_eq!(s.events_out, count);
}

/// A server that requires a client certificate: with `tls.cert` and `tls.key` the ws_client is
/// let in; without them its handshake is refused (a failed attempt, retried).
#[test]
fn client_certificate_for_a_server_that_asks_for_one() {
    let pki = Pki::new();
    let port = free_port();
    let got = pki.root().join("peer.ndjson");
    let _peer = peer(
        port,
        &got,
        &[
            "--cert",
            &pki.path("server.pem"),
            "--key",
            &pki.path("server.key"),
            "--client-ca",
            &pki.path("ca.pem"),
        ],
    );
    let url = format!("wss://localhost:{port}/");
    let with_cert = tls(&[
        ("cafile", pki.path("ca.pem")),
        ("cert", pki.path("client.pem")),
        ("key", pki.path("client.key")),
    ]);
    let mut gw = Gateway::start(&config(&url, |s| s.set("tls", with_cert)).render());
    Client::produce(gw.target(), &["--conn", "9", "--count", "100"]).finish();
    wait_until(PATIENCE, "100 events at the peer", || {
        count_lines(&got) == 100
    });
    gw.stop();
    check_lines(&read_lines(&got), 9, 100);

    let without = tls(&[("cafile", pki.path("ca.pem"))]);
    let cfg = config(&url, |s| s.set("tls", without))
        .shutdown_timeout("1s")
        .render();
    let mut gw = Gateway::start(&cfg);
    Client::produce(gw.target(), &["--conn", "9", "--count", "5"]).finish();
    wait_until(PATIENCE, "two refused attempts", || {
        gw.stderr().matches("connect failed").count() >= 2
    });
    gw.signal(libc::SIGTERM);
    gw.wait_exit(Duration::from_secs(60));
    assert_eq!(count_lines(&got), 100, "nothing more got through");
    assert!(exit_detail(&gw.stderr(), "connect_failures") >= 2);
}

/// Without `tls.cafile` the system's roots are trusted (`rustls-native-certs`; here through
/// `SSL_CERT_FILE`): the test's CA there lets it in; another CA, or no root that can be loaded,
/// is a failed attempt that says why, retried, never a hang. (The machine's own store, as the
/// environment names it or not, does not know the test's CA: refused too, whether it has roots
/// or none.)
#[test]
fn wss_without_cafile_trusts_the_system_roots() {
    let pki = Pki::new();
    let port = free_port();
    let got = pki.root().join("peer.ndjson");
    let _peer = tls_echo_peer(&pki, port, &got);
    let cfg = config(&format!("wss://localhost:{port}/"), |s| s);
    // (SSL_CERT_DIR empty: only SSL_CERT_FILE's roots, whatever the test's environment says.)
    let mut gw = Gateway::configure(&cfg.render())
        .env("SSL_CERT_FILE", pki.path("ca.pem"))
        .env("SSL_CERT_DIR", "")
        .start();
    Client::produce(gw.target(), &["--conn", "5", "--count", "200"]).finish();
    wait_until(PATIENCE, "the echoes over wss", || {
        count_lines(&gw.path("echoes.ndjson")) == 200
    });
    gw.stop();
    check_lines(&read_lines(&got), 5, 200);

    let no_file = pki
        .root()
        .join("no-such.pem")
        .to_string_lossy()
        .into_owned();
    let refused = [
        (Some(pki.path("other.pem")), &["UnknownIssuer"][..]),
        (Some(no_file), &["no trusted roots"][..]),
        (None, &["UnknownIssuer", "no trusted roots"][..]),
    ];
    for (file, reasons) in refused {
        // (It cannot deliver: a short grace, so that it gives up soon at the end.)
        let mut launch = Gateway::configure(&cfg.clone().shutdown_timeout("1s").render());
        if let Some(f) = &file {
            launch = launch.env("SSL_CERT_FILE", f).env("SSL_CERT_DIR", "");
        }
        let mut gw = launch.start();
        Client::produce(gw.target(), &["--conn", "6", "--count", "10"]).finish();
        wait_until(PATIENCE, "two failed attempts", || {
            gw.stderr().matches("connect failed").count() >= 2
        });
        let err = gw.stderr();
        assert!(reasons.iter().any(|r| err.contains(r)), "{file:?}: {err}");
        gw.signal(libc::SIGTERM);
        gw.wait_exit(Duration::from_secs(60));
        let err = gw.stderr();
        assert_eq!(exit_detail(&err, "lost_at_shutdown"), 10, "{err}");
    }
    check_lines(&read_lines(&got), 5, 200);
}

/// A ws_client config with a mistake is refused at `check`, naming the field.
#[test]
fn bad_ws_client_configs_are_refused() {
    let sink = |extra: &str| {
        format!(
            "[[sources]]\nname = \"in\"\ntype = \"unix_socket_server\"\npath = \"/tmp/x.sock\"\n\n\
             [[sinks]]\ntype = \"ws_client\"\n{extra}\n"
        )
    };
    for (extra, field) in [
        ("url = \"http://h:1/\"", "url"),
        ("url = \"ws://h:notaport/\"", "url"),
        ("url = \"ws://:1/\"", "url"),
        ("url = \"ws://h:1/\"\ntls = true", "tls"),
        ("url = \"wss://h:1/\"\ntls = false", "tls"),
        ("url = \"wss://h:1/\"\ntls = { cert = \"c.pem\" }", "tls"),
        ("url = \"ws://h:1/\"\npostprocessors = []", "postprocessors"),
        ("url = \"ws://h:1/\"\nspool_bytes = 10", "spool_bytes"),
        ("url = \"ws://h:1/\"\nbinray = true", "binray"),
    ] {
        check_refuses(&sink(extra), field);
    }
}
