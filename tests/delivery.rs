//! Delivery: what goes into the socket comes out of the sink, byte for byte, once, in
//! per-connection order — under load, at shutdown, on disconnects, with credentials.
//!
//! Exact delivery, shutdown (SIGTERM mid-stream, draining, refusing new clients) and
//! disconnects run over both transports: a UNIX socket (`<test>_<mode>`) and TCP
//! (`<test>_tcp_<mode>`), each in both io modes, on one body per test.

mod util;

use std::time::Duration;

use serde_json::Value;
use util::*;

// ---------------------------------------------------------------------------------
// exact_delivery: 1,000,000 events over 32 concurrent connections.

const EVENTS: u64 = 1_000_000;
const PYTHON_CONNS: u64 = 24;
const SOCAT_CONNS: u64 = 8;

io_modes!(exact_delivery => exact_delivery(Transport::Unix));

io_modes!(exact_delivery_tcp => exact_delivery(Transport::Tcp));

fn exact_delivery(mode: &str, transport: Transport) {
    let mut gw = Gateway::start(&standard_config_on(mode, transport));
    let target = gw.target();
    let conns = PYTHON_CONNS + SOCAT_CONNS;
    let per_conn = EVENTS / conns;
    let count = |c: u64| {
        if c == 0 {
            per_conn + EVENTS % conns
        } else {
            per_conn
        }
    };

    // socat clients send generated files, reading them in various block sizes.
    let socat_blocks = [8192, 4096, 1000, 65536, 333, 16384, 2048, 77];
    let mut clients = Vec::new();
    for (k, c) in (PYTHON_CONNS..conns).enumerate() {
        let file = gw.path(&format!("conn{c}.ndjson"));
        write_events_file(&file, c, count(c), PAD);
        clients.push(Client::socat_file(&target, &file, socat_blocks[k]));
    }
    // Python clients cut their writes at random sizes.
    for c in 0..PYTHON_CONNS {
        let (n, seed) = (count(c).to_string(), (1000 + c).to_string());
        let writes = if c % 8 == 7 { "whole" } else { "random" };
        clients.push(Client::produce(
            &target,
            &[
                "--conn",
                &c.to_string(),
                "--count",
                &n,
                "--seed",
                &seed,
                "--writes",
                writes,
            ],
        ));
    }
    finish_and_check_exact(&mut gw, clients, 0..conns, count);
    assert_eq!(
        read_lines(&gw.path("dead.ndjson")).len(),
        0,
        "no dead letters"
    );
    assert_closed_after_exit(&gw, transport);
}

/// After a clean exit, UNIX: the socket file is gone; TCP: the port refuses connections.
fn assert_closed_after_exit(gw: &Gateway, transport: Transport) {
    match transport {
        Transport::Unix => assert!(!gw.socket().exists(), "socket unlinked on clean exit"),
        Transport::Tcp => match gw.connect() {
            Err(e) if is_refusal(&e) => {}
            Err(e) => panic!("connect to {} after the exit: {e}", gw.listen_target()),
            Ok(_) => panic!(
                "{} still accepts connections after the gateway exited",
                gw.listen_target()
            ),
        },
    }
}

/// A connect refused because nobody listens: the path is gone (UNIX) or the port is closed.
/// (Not, say, EMFILE in the test process.)
fn is_refusal(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
    )
}

// ---------------------------------------------------------------------------------
// sigterm_mid_stream: clients still writing when SIGTERM arrives.

io_modes!(sigterm_mid_stream => sigterm_mid_stream(Transport::Unix));

io_modes!(sigterm_mid_stream_tcp => sigterm_mid_stream(Transport::Tcp));

fn sigterm_mid_stream(mode: &str, transport: Transport) {
    let config = standard_on(mode, transport).shutdown_timeout("1s");
    let mut gw = Gateway::start(&config.render());
    let out = gw.path("out.ndjson");
    let target = gw.target();

    // Streams far longer than the test lasts; the gateway's shutdown ends them.
    let clients: Vec<Client> = (0..8)
        .map(|c| {
            let seed = (77 + c).to_string();
            Client::produce(
                &target,
                &[
                    "--conn",
                    &c.to_string(),
                    "--count",
                    "20000000",
                    "--seed",
                    &seed,
                    "--forever",
                ],
            )
        })
        .collect();
    // Every client must be connected and streaming before SIGTERM: a client that has not
    // connected yet would (rightly) find the socket path gone, or the TCP port closed.
    wait_until(
        Duration::from_secs(60),
        "50,000 events in the sink, from all 8 connections",
        || {
            count_lines(&out) >= 50_000 && {
                // The file is being written: look at complete lines only.
                let bytes = std::fs::read(&out).unwrap_or_default();
                let complete =
                    &bytes[..bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1)];
                let conns: std::collections::BTreeSet<u64> = complete
                    .split(|b| *b == b'\n')
                    .filter_map(|l| parse_ci(l).map(|(c, _)| c))
                    .collect();
                conns.len() == 8
            }
        },
    );
    assert!(
        clients.iter().all(|c| c.lines().len() <= 1),
        "clients were still streaming at SIGTERM"
    );

    let summary = gw.stop();

    let mut sent = Vec::new();
    for client in clients {
        let report = client.finish();
        // Lines that may have reached the kernel (see produce.py): the gateway can't have more.
        sent.push(report["upper"].as_u64().expect("client reports lines sent"));
    }
    let mut check = SeqChecker::new(PAD);
    for line in read_lines(&out) {
        check.push(&line);
    }
    for (c, n) in check.counts() {
        assert!(
            *n <= sent[*c as usize],
            "connection {c}: {n} events in the sink but the client sent at most {} lines",
            sent[*c as usize]
        );
    }
    assert!(check.lines >= 50_000);
    assert_eq!(
        summary.events_out, check.lines,
        "summary events_out vs lines in the sink"
    );
    assert_eq!(
        summary.events_in,
        summary.events_out + summary.dropped,
        "{summary:?}"
    );
    assert_eq!(summary.dropped, 0, "when_full = block never drops");
    // At most one cut line per connection can be dead-lettered.
    assert!(summary.dead_lettered <= 8, "{summary:?}");
    assert_eq!(
        read_lines(&gw.path("dead.ndjson")).len() as u64,
        summary.dead_lettered
    );
    assert_closed_after_exit(&gw, transport);
}

// ---------------------------------------------------------------------------------
// disconnect_mid_line: the unterminated last line of a closed connection.

io_modes!(disconnect_mid_line => disconnect_mid_line(Transport::Unix));

io_modes!(disconnect_mid_line_tcp => disconnect_mid_line(Transport::Tcp));

fn disconnect_mid_line(mode: &str, transport: Transport) {
    let mut gw = Gateway::start(&standard_config_on(mode, transport));
    let target = gw.target();
    let cut = gw.path("cut.bin");
    std::fs::write(&cut, b"{\"a\":1}\n{\"b\":").unwrap();
    let whole = gw.path("whole.bin");
    std::fs::write(&whole, b"{\"x\":1}\n{\"y\":2}").unwrap();

    // Neighbours stream on other connections before, during and after.
    let neighbour = Client::produce(
        &target,
        &["--conn", "7", "--count", "20000", "--writes", "tiny"],
    );
    let cutter = Client::produce(
        &target,
        &["--file", cut.to_str().unwrap(), "--writes", "tiny"],
    );
    let cutter_creds = cutter.creds();
    cutter.finish();
    Client::produce(&target, &["--file", whole.to_str().unwrap()]).finish();
    neighbour.finish();

    let summary = gw.stop();

    let mut check = SeqChecker::new(PAD);
    let mut others = Vec::new();
    for line in read_lines(&gw.path("out.ndjson")) {
        if parse_ci(&line).is_some() {
            check.push(&line);
        } else {
            others.push(String::from_utf8(line).unwrap());
        }
    }
    assert_eq!(
        check.counts().get(&7),
        Some(&20000),
        "the neighbour connection is unaffected"
    );
    others.sort();
    assert_eq!(
        others,
        [r#"{"a":1}"#, r#"{"x":1}"#, r#"{"y":2}"#],
        "events from the closing connections"
    );

    let dead = read_json_lines(&gw.path("dead.ndjson"));
    assert_eq!(
        dead.len(),
        1,
        "only the cut line is dead-lettered: {dead:?}"
    );
    let d = &dead[0];
    assert_eq!(d["error"], "invalid_json", "{d}");
    assert_eq!(d["line"], 2, "{d}");
    assert_eq!(d["raw"], r#"{"b":"#, "{d}");
    assert_eq!(d["len"], 5, "{d}");
    assert_eq!(d["truncated"], false, "{d}");
    assert_eq!(d["source"], "in", "{d}");
    match transport {
        // Who wrote it: the kernel-verified SO_PEERCRED pid.
        Transport::Unix => {
            assert_eq!(d["pid"].as_u64(), Some(cutter_creds.pid), "{d}");
            assert_eq!(d["path"], gw.socket_str(), "{d}");
            assert!(
                d.get("remote").is_none(),
                "no remote address over UNIX: {d}"
            );
        }
        // Who wrote it: the peer address (TCP has no credentials).
        Transport::Tcp => {
            assert_eq!(d["path"], gw.tcp_addr().to_string(), "{d}");
            assert_eq!(d["remote"]["host"], "127.0.0.1", "{d}");
            let port = d["remote"]["port"].as_u64().unwrap_or(0);
            assert!(port > 0 && port != u64::from(gw.tcp_addr().port()), "{d}");
        }
    }
    assert_eq!(
        summary,
        Summary {
            events_in: 20003,
            events_out: 20003,
            dead_lettered: 1,
            dropped: 0
        }
    );
}

// ---------------------------------------------------------------------------------
// peer_credentials: the envelope carries the kernel-verified SO_PEERCRED.

io_modes!(peer_credentials => peer_credentials());

fn peer_credentials(mode: &str) {
    let config = format!(
        r#"
io_mode = "{mode}"
workers = 2

[[sources]]
type = "unix_socket_server"
name = "in"
path = "{{dir}}/in.sock"
permissions = "0666"

[[sinks]]
type = "file"
path = "{{dir}}/out.ndjson"
metadata = "envelope"
"#
    );
    let mut gw = Gateway::start(&config);
    // The temp dir must be searchable by the unprivileged client.
    std::fs::set_permissions(
        gw.dir(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    // Raw bytes with odd spacing and a non-ASCII char: the envelope must embed them verbatim.
    let events = gw.path("events.bin");
    std::fs::write(
        &events,
        "{ \"k\" : 0 }\n{\"k\":1,\"s\":\"h\u{e9}llo\"}\n{\"k\":2}\n",
    )
    .unwrap();
    let file = events.to_str().unwrap();

    let mut clients = vec![Client::produce(gw.socket(), &["--file", file])];
    if is_root() {
        // Another identity, so uid/gid cannot match by accident.
        clients.push(Client::produce(
            gw.socket(),
            &["--file", file, "--as-uid", "4242", "--as-gid", "4343"],
        ));
    } else {
        eprintln!("not root: checking credentials of one identity only");
    }
    let creds: Vec<Creds> = clients.iter().map(|c| c.creds()).collect();
    for client in clients {
        client.finish();
    }
    let summary = gw.stop();

    let raw_events = [
        "{ \"k\" : 0 }",
        "{\"k\":1,\"s\":\"h\u{e9}llo\"}",
        "{\"k\":2}",
    ];
    let lines = read_lines(&gw.path("out.ndjson"));
    assert_eq!(lines.len(), 3 * creds.len());
    let mut peers = std::collections::BTreeMap::new();
    for line in &lines {
        let text = std::str::from_utf8(line).unwrap();
        let v: Value = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("envelope is not JSON ({e}): {text}"));
        let meta = &v["meta"];
        assert_eq!(meta["source"], "in", "{text}");
        let uss = &meta["unix_socket_server"];
        assert_eq!(uss["path"], gw.socket_str(), "{text}");
        let pid = uss["pid"]
            .as_u64()
            .unwrap_or_else(|| panic!("no pid: {text}"));
        let who = creds
            .iter()
            .find(|c| c.pid == pid)
            .unwrap_or_else(|| panic!("pid {pid} is no client's: {text}"));
        assert_eq!(uss["uid"].as_u64(), Some(who.uid), "{text}");
        assert_eq!(uss["gid"].as_u64(), Some(who.gid), "{text}");
        let peer = uss["peer"]
            .as_u64()
            .unwrap_or_else(|| panic!("no peer id: {text}"));
        assert_eq!(
            *peers.entry(pid).or_insert(peer),
            peer,
            "one connection, one peer id"
        );
        assert!(
            raw_events
                .iter()
                .any(|raw| text.ends_with(&format!(r#","event":{raw}}}"#))),
            "event not embedded verbatim at the end: {text}"
        );
        assert!(
            text.starts_with(r#"{"meta":{"source":"in","unix_socket_server":{"path":"#),
            "{text}"
        );
    }
    let distinct: std::collections::BTreeSet<_> = peers.values().collect();
    assert_eq!(
        distinct.len(),
        creds.len(),
        "each connection has its own peer id: {peers:?}"
    );
    assert_eq!(summary.events_out, lines.len() as u64);
}

// ---------------------------------------------------------------------------------
// Shutdown: an open connection is read to EOF (within shutdown_timeout); no new
// connection is accepted. UNIX: the socket path is removed at once (and is gone after the
// exit). TCP has no path: a connect can still succeed until the listeners close, once the
// connections already queued have been taken in; from then on connects must be refused
// (and after the exit the port refuses them).

io_modes!(shutdown_drains_open_connections => shutdown_drains_open_connections(Transport::Unix));

io_modes!(shutdown_drains_open_connections_tcp => shutdown_drains_open_connections(Transport::Tcp));

fn shutdown_drains_open_connections(mode: &str, transport: Transport) {
    use std::io::Write;

    let config = standard_on(mode, transport).shutdown_timeout("60s");
    let mut gw = Gateway::start(&config.render());
    let out = gw.path("out.ndjson");
    let mut open = gw.connect().unwrap();
    open.write_all(b"{\"n\":1}\n{\"n\":2,").unwrap();
    wait_until(PATIENCE, "the first event in the sink", || {
        count_lines(&out) == 1
    });

    gw.signal(libc::SIGTERM);
    wait_until(PATIENCE, "the drain to begin", || {
        gw.stderr().contains("shutting down")
    });
    // Time passing is the test: half a second into its shutdown, it still waits.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        gw.is_running(),
        "the gateway must wait for the open connection (shutdown_timeout = 60s)"
    );
    // (That new clients are refused meanwhile is shutdown_refuses_new_connections.)

    // The open connection finishes its line, sends one more, and closes.
    open.write_all(b"\"late\":true}\n{\"n\":3}\n").unwrap();
    drop(open);
    let status = gw.wait_exit(EXIT_PATIENCE);
    assert!(status.success(), "exit status {status}");
    let summary = Summary::parse(&gw.stderr()).unwrap();

    let lines: Vec<String> = read_lines(&out)
        .into_iter()
        .map(|l| String::from_utf8(l).unwrap())
        .collect();
    assert_eq!(
        lines,
        [r#"{"n":1}"#, r#"{"n":2,"late":true}"#, r#"{"n":3}"#]
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
    assert_closed_after_exit(&gw, transport);
}

io_modes!(shutdown_refuses_new_connections => shutdown_refuses_new_connections(Transport::Unix));

io_modes!(shutdown_refuses_new_connections_tcp => shutdown_refuses_new_connections(Transport::Tcp));

/// Once shutdown has begun, a new client must not be able to connect: a connect that
/// succeeds into a listener nobody accepts from any more loses whatever the client sends.
/// (Over TCP a connect may succeed until the listeners close; then it must be refused.)
fn shutdown_refuses_new_connections(mode: &str, transport: Transport) {
    use std::io::Write;

    let config = standard_on(mode, transport).shutdown_timeout("60s");
    let mut gw = Gateway::start(&config.render());
    // An open connection keeps the shutdown going.
    let mut open = gw.connect().unwrap();
    open.write_all(b"{\"old\":1}\n").unwrap();
    wait_until(PATIENCE, "the first event in the sink", || {
        count_lines(&gw.path("out.ndjson")) == 1
    });

    gw.signal(libc::SIGTERM);
    let target = gw.listen_target().clone();
    let mut late = Vec::new(); // connections that still got through, each sending one event
    let refused = poll_until(PATIENCE, || match target.connect() {
        Ok(mut s) => {
            let _ = s.write_all(b"{\"late\":1}\n");
            late.push(s);
            false
        }
        Err(e) if is_refusal(&e) => true,
        Err(e) => panic!("connect to {target} after SIGTERM: {e}"),
    });
    assert!(
        gw.is_running(),
        "the open connection keeps the gateway draining"
    );
    let late_conns = late.len();
    drop(late);
    drop(open);
    let status = gw.wait_exit(EXIT_PATIENCE);
    assert!(status.success());
    let summary = Summary::parse(&gw.stderr()).unwrap();
    let late_events = read_lines(&gw.path("out.ndjson"))
        .iter()
        .filter(|l| l.as_slice() == br#"{"late":1}"#)
        .count();
    assert!(
        refused,
        "{PATIENCE:?} after SIGTERM new connections to {target} still succeed: {late_conns} connections made after SIGTERM \
         each sent one event, {late_events} of them reached the sink, the rest were lost (summary {summary:?})",
    );
    if transport == Transport::Tcp {
        eprintln!("{mode}/tcp: {late_conns} connects succeeded after SIGTERM before refusal; {late_events} of their events reached the sink");
    }
}

// ---------------------------------------------------------------------------------
// Every sink gets every event; events_out counts each event once.

#[test]
fn every_sink_gets_every_event() {
    let config = r#"
io_mode = "epoll"
workers = 2

[[sources]]
type = "unix_socket_server"
name = "in"
path = "{dir}/in.sock"

[[sinks]]
type = "file"
path = "{dir}/a.ndjson"

[[sinks]]
type = "null"

[[sinks]]
type = "file"
path = "{dir}/b.ndjson"
"#;
    let mut gw = Gateway::start(config);
    let clients: Vec<Client> = (0..3)
        .map(|c| Client::produce(gw.socket(), &["--conn", &c.to_string(), "--count", "10000"]))
        .collect();
    for client in clients {
        client.finish();
    }
    let summary = gw.stop();
    for sink in ["a.ndjson", "b.ndjson"] {
        let mut check = SeqChecker::new(PAD);
        for line in read_lines(&gw.path(sink)) {
            check.push(&line);
        }
        assert_eq!(check.lines, 30_000, "{sink}");
    }
    assert_eq!(
        summary,
        Summary {
            events_in: 30_000,
            events_out: 30_000,
            dead_lettered: 0,
            dropped: 0
        }
    );
}

// ---------------------------------------------------------------------------------
// Lines longer than the read buffer, split across many reads.

io_modes!(small_buffers => small_buffers());

fn small_buffers(mode: &str) {
    let config = standard(mode).with_source("in", |s| s.set("buf_size", 64));
    let mut gw = Gateway::start(&config.render());
    let clients: Vec<Client> = (0..4)
        .map(|c| {
            let writes = if c % 2 == 0 { "tiny" } else { "random" };
            let seed = (c + 40).to_string();
            Client::produce(
                gw.socket(),
                &[
                    "--conn",
                    &c.to_string(),
                    "--count",
                    "5000",
                    "--writes",
                    writes,
                    "--seed",
                    &seed,
                ],
            )
        })
        .collect();
    finish_and_check_exact(&mut gw, clients, 0..4, |_| 5000);
}

// ---------------------------------------------------------------------------------
// Many connections with data pending at once (more than a ring's worth of buffers).

io_modes!(many_connections => many_connections());

fn many_connections(mode: &str) {
    let mut gw = Gateway::start(&standard_config(mode));
    let clients: Vec<Client> = (0..2)
        .map(|k| {
            let first = (k * 300).to_string();
            let seed = (k + 3).to_string();
            Client::python(
                "many.py",
                &[
                    gw.socket_str(),
                    "--conns",
                    "300",
                    "--count",
                    "200",
                    "--first-conn",
                    &first,
                    "--seed",
                    &seed,
                ],
            )
        })
        .collect();
    finish_and_check_exact(&mut gw, clients, 0..600, |_| 200);
}
