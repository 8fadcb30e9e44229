//! Delivery: what goes into the socket comes out of the sink, byte for byte, once, in
//! per-connection order — under load, at shutdown, on disconnects, with credentials.

mod util;

use std::time::Duration;

use serde_json::Value;
use util::*;

// ---------------------------------------------------------------------------------
// exact_delivery: 1,000,000 events over 32 concurrent connections.

const EVENTS: u64 = 1_000_000;
const PYTHON_CONNS: u64 = 24;
const SOCAT_CONNS: u64 = 8;

#[test]
fn exact_delivery_uring() {
    exact_delivery("uring");
}

#[test]
fn exact_delivery_epoll() {
    exact_delivery("epoll");
}

fn exact_delivery(mode: &str) {
    let mut gw = Gateway::start(&standard_config(mode));
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
        clients.push(Client::socat_file(gw.socket(), &file, socat_blocks[k]));
    }
    // Python clients cut their writes at random sizes.
    for c in 0..PYTHON_CONNS {
        let (n, seed) = (count(c).to_string(), (1000 + c).to_string());
        let writes = if c % 8 == 7 { "whole" } else { "random" };
        clients.push(Client::produce(
            gw.socket(),
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
    assert!(!gw.socket().exists(), "socket unlinked on clean exit");
}

// ---------------------------------------------------------------------------------
// sigterm_mid_stream: clients still writing when SIGTERM arrives.

#[test]
fn sigterm_mid_stream_uring() {
    sigterm_mid_stream("uring");
}

#[test]
fn sigterm_mid_stream_epoll() {
    sigterm_mid_stream("epoll");
}

fn sigterm_mid_stream(mode: &str) {
    let config =
        standard_config(mode).replace(r#"shutdown_timeout = "10s""#, r#"shutdown_timeout = "1s""#);
    let mut gw = Gateway::start(&config);
    let out = gw.path("out.ndjson");

    // Streams far longer than the test lasts; the gateway's shutdown ends them.
    let clients: Vec<Client> = (0..8)
        .map(|c| {
            let seed = (77 + c).to_string();
            Client::produce(
                gw.socket(),
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
    // connected yet would (rightly) find the socket path gone.
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
    assert!(!gw.socket().exists(), "socket unlinked on clean exit");
}

// ---------------------------------------------------------------------------------
// disconnect_mid_line: the unterminated last line of a closed connection.

#[test]
fn disconnect_mid_line_uring() {
    disconnect_mid_line("uring");
}

#[test]
fn disconnect_mid_line_epoll() {
    disconnect_mid_line("epoll");
}

fn disconnect_mid_line(mode: &str) {
    let mut gw = Gateway::start(&standard_config(mode));
    let cut = gw.path("cut.bin");
    std::fs::write(&cut, b"{\"a\":1}\n{\"b\":").unwrap();
    let whole = gw.path("whole.bin");
    std::fs::write(&whole, b"{\"x\":1}\n{\"y\":2}").unwrap();

    // Neighbours stream on other connections before, during and after.
    let neighbour = Client::produce(
        gw.socket(),
        &["--conn", "7", "--count", "20000", "--writes", "tiny"],
    );
    let cutter = Client::produce(
        gw.socket(),
        &["--file", cut.to_str().unwrap(), "--writes", "tiny"],
    );
    let cutter_creds = cutter.creds();
    cutter.finish();
    Client::produce(gw.socket(), &["--file", whole.to_str().unwrap()]).finish();
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
    assert_eq!(d["pid"].as_u64(), Some(cutter_creds.pid), "{d}");
    assert_eq!(d["path"], gw.socket_str(), "{d}");
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

#[test]
fn peer_credentials_uring() {
    peer_credentials("uring");
}

#[test]
fn peer_credentials_epoll() {
    peer_credentials("epoll");
}

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
// connection is accepted.

#[test]
fn shutdown_drains_open_connections_uring() {
    shutdown_drains_open_connections("uring");
}

#[test]
fn shutdown_drains_open_connections_epoll() {
    shutdown_drains_open_connections("epoll");
}

fn shutdown_drains_open_connections(mode: &str) {
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    let config =
        standard_config(mode).replace(r#"shutdown_timeout = "10s""#, r#"shutdown_timeout = "60s""#);
    let mut gw = Gateway::start(&config);
    let out = gw.path("out.ndjson");
    let mut open = UnixStream::connect(gw.socket()).unwrap();
    open.write_all(b"{\"n\":1}\n{\"n\":2,").unwrap();
    wait_until(PATIENCE, "the first event in the sink", || {
        count_lines(&out) == 1
    });

    gw.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(500)); // let the gateway begin its shutdown
    assert!(
        gw.is_running(),
        "the gateway must wait for the open connection (shutdown_timeout = 60s)"
    );

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
    assert!(!gw.socket().exists(), "socket unlinked on clean exit");
}

#[test]
fn shutdown_refuses_new_connections_uring() {
    shutdown_refuses_new_connections("uring");
}

#[test]
fn shutdown_refuses_new_connections_epoll() {
    shutdown_refuses_new_connections("epoll");
}

/// Once shutdown has begun, a new client must not be able to connect: a connect that
/// succeeds into a listener nobody accepts from any more loses whatever the client sends.
fn shutdown_refuses_new_connections(mode: &str) {
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    let config =
        standard_config(mode).replace(r#"shutdown_timeout = "10s""#, r#"shutdown_timeout = "60s""#);
    let mut gw = Gateway::start(&config);
    // An open connection keeps the shutdown going.
    let mut open = UnixStream::connect(gw.socket()).unwrap();
    open.write_all(b"{\"old\":1}\n").unwrap();
    wait_until(PATIENCE, "the first event in the sink", || {
        count_lines(&gw.path("out.ndjson")) == 1
    });

    gw.signal(libc::SIGTERM);
    let socket = gw.socket().to_path_buf();
    let mut late = Vec::new(); // connections that still got through, each sending one event
    let refused = poll_until(PATIENCE, || match UnixStream::connect(&socket) {
        Ok(mut s) => {
            let _ = s.write_all(b"{\"late\":1}\n");
            late.push(s);
            false
        }
        Err(_) => true,
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
        "{PATIENCE:?} after SIGTERM new connections to {} still succeed: {late_conns} connections made after SIGTERM \
         each sent one event, {late_events} of them reached the sink, the rest were lost (summary {summary:?})",
        socket.display(),
    );
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

#[test]
fn small_buffers_uring() {
    small_buffers("uring");
}

#[test]
fn small_buffers_epoll() {
    small_buffers("epoll");
}

fn small_buffers(mode: &str) {
    let config = standard_config(mode).replace(
        r#"path = "{dir}/in.sock""#,
        "path = \"{dir}/in.sock\"\nbuf_size = 64",
    );
    let mut gw = Gateway::start(&config);
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

#[test]
fn many_connections_uring() {
    many_connections("uring");
}

#[test]
fn many_connections_epoll() {
    many_connections("epoll");
}

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
