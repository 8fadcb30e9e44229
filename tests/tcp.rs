//! TCP-only behaviour of the `tcp_server` source (the shared delivery, shutdown and
//! backpressure tests run over TCP in `delivery.rs` and `backpressure.rs`): the envelope names the
//! peer's address, and a bad `url` is a config error.

mod util;

use serde_json::Value;
use util::*;

// ---------------------------------------------------------------------------------
// tcp_envelope: the envelope of a TCP event names the listener's bound address, the
// connection id and the peer's address (TCP has no credentials).

io_modes!(tcp_envelope_peer_address => tcp_envelope_peer_address());

fn tcp_envelope_peer_address(mode: &str) {
    use std::io::Write;
    use std::net::TcpStream;

    let config = standard_on(mode, Transport::Tcp).with_sink(0, |s| s.set("metadata", "envelope"));
    let mut gw = Gateway::start(&config.render());
    let addr = gw.tcp_addr();
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    assert_ne!(addr.port(), 0, "port 0 resolved to the bound port");

    // Two connections open at once: the peer port and the connection id tell them apart.
    // Connection k sends raw events with odd spacing and a non-ASCII char, carrying k.
    let raw = |k: usize| {
        [
            format!("{{\"k\":{k}}}"),
            format!("{{ \"k\" : {k}, \"s\":\"h\u{e9}llo\" }}"),
        ]
    };
    let mut conns: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let ports: Vec<u16> = conns
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect();
    for (k, s) in conns.iter_mut().enumerate() {
        for event in raw(k) {
            s.write_all(event.as_bytes()).unwrap();
            s.write_all(b"\n").unwrap();
        }
    }
    drop(conns);
    wait_until(PATIENCE, "4 events in the sink", || {
        count_lines(&gw.path("out.ndjson")) == 4
    });
    let summary = gw.stop();

    let lines = read_lines(&gw.path("out.ndjson"));
    assert_eq!(lines.len(), 4);
    let mut conn_of_port = std::collections::BTreeMap::new();
    for line in &lines {
        let text = std::str::from_utf8(line).unwrap();
        let v: Value = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("envelope is not JSON ({e}): {text}"));
        let meta = &v["meta"];
        assert_eq!(meta["source"], "in", "{text}");
        let tcp = &meta["tcp_server"];
        let keys: std::collections::BTreeSet<&str> = tcp
            .as_object()
            .unwrap_or_else(|| panic!("no meta.tcp_server object: {text}"))
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["conn", "peer", "url"].into(), "{text}");
        assert_eq!(tcp["url"], addr.to_string(), "{text}");
        assert_eq!(tcp["peer"]["host"], "127.0.0.1", "{text}");
        let k = v["event"]["k"]
            .as_u64()
            .unwrap_or_else(|| panic!("no event.k: {text}")) as usize;
        assert_eq!(
            tcp["peer"]["port"].as_u64(),
            Some(u64::from(ports[k])),
            "peer.port must be the local port of the client socket that sent it: {text}"
        );
        let conn = tcp["conn"]
            .as_u64()
            .unwrap_or_else(|| panic!("no conn id: {text}"));
        assert_eq!(
            *conn_of_port.entry(ports[k]).or_insert(conn),
            conn,
            "one connection, one conn id: {text}"
        );
        assert!(
            raw(k)
                .iter()
                .any(|raw| text.ends_with(&format!(r#","event":{raw}}}"#))),
            "event not embedded verbatim at the end: {text}"
        );
        assert!(
            text.starts_with(&format!(
                r#"{{"meta":{{"source":"in","tcp_server":{{"url":"{addr}","conn":{conn},"peer":{{"host":"127.0.0.1","port":{}}}}}}},"event":"#,
                ports[k]
            )),
            "{text}"
        );
    }
    let distinct: std::collections::BTreeSet<_> = conn_of_port.values().collect();
    assert_eq!(
        distinct.len(),
        2,
        "each connection has its own conn id: {conn_of_port:?}"
    );
    assert_eq!(
        summary,
        Summary {
            events_in: 4,
            events_out: 4,
            dead_lettered: 0,
            dropped: 0
        }
    );
}

/// A `tcp_server` url that is no host:port address is a config error naming the field, for
/// `ringway check` and `ringway run` alike.
#[test]
fn tcp_bad_url_is_a_config_error() {
    let config =
        standard_on("epoll", Transport::Tcp).with_source("in", |s| s.set("url", "nonsense"));
    let launch = Gateway::configure(&config.render());
    let out = std::process::Command::new(bin())
        .args(["check", "--config"])
        .arg(launch.path("ringway.toml"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "`ringway check` on url = \"nonsense\": {}; stdout {:?}; stderr {stderr}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains("sources[0].url"),
        "the error must name sources[0].url: {stderr}"
    );
    let refusal = launch.expect_failure();
    assert_eq!(refusal.status.code(), Some(2), "{}", refusal.stderr);
    assert!(
        refusal.stderr.contains("sources[0].url"),
        "`ringway run` must name sources[0].url: {}",
        refusal.stderr
    );
}
