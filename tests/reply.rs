//! The `reply` sink: every event goes back down the connection it came from, over UNIX and TCP,
//! in both io modes; one client that never reads its replies does not hold up the others, and
//! is closed after `write_timeout` with its undelivered replies counted.

mod util;

use std::time::{Duration, Instant};

use util::*;

fn config(mode: &str, tcp: bool, write_timeout: &str) -> String {
    let source = if tcp {
        "type = \"tcp_server\"\nurl = \"127.0.0.1:0\"".to_string()
    } else {
        "type = \"unix_socket_server\"\npath = \"{dir}/in.sock\"".to_string()
    };
    format!(
        r#"
io_mode = "{mode}"
workers = 2
shutdown_timeout = "10s"

[[sources]]
name = "in"
{source}

[[sinks]]
type = "file"
path = "{{dir}}/out.ndjson"

[[sinks]]
type = "reply"
write_timeout = "{write_timeout}"
"#
    )
}

/// Start a gateway and return it with the target its clients connect to.
fn start(config: &str) -> (Gateway, String) {
    let gw = Gateway::start(config);
    let target = gw.target();
    (gw, target)
}

fn clients(target: &str, n: usize, count: usize, first: usize) -> serde_json::Value {
    Client::python(
        "reply_client.py",
        &[
            target,
            "--clients",
            &n.to_string(),
            "--count",
            &count.to_string(),
            "--first",
            &first.to_string(),
        ],
    )
    .finish()
}

fn routing(mode: &str, tcp: bool) {
    let (mut gw, target) = start(&config(mode, tcp, "3s"));
    // 64 clients, each sends 1,500 events and must get back exactly its own, in order.
    let r = clients(&target, 64, 1500, 0);
    assert_eq!(r["ok"], 64, "{r}");
    let alone = r["wall"].as_f64().unwrap();

    // Again, beside a client that writes without ever reading its replies.
    let hog = Client::python(
        "reply_client.py",
        &[&target, "--never-read", "--first", "999"],
    );
    // Until it is held back: its queue full, its reading parked.
    gw.wait_events_in_settle();
    let started = Instant::now();
    let r = clients(&target, 64, 1500, 100);
    assert_eq!(r["ok"], 64, "{r}");
    let beside = r["wall"].as_f64().unwrap();
    // The non-reader's queue is bounded and its reading parked: the others barely notice.
    assert!(
        beside < alone * 3.0 + 2.0,
        "64 clients took {beside:.2}s beside a non-reader, {alone:.2}s alone"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3) + Duration::from_secs_f64(alone * 3.0 + 2.0)
    );

    // The non-reader is closed once it has taken no bytes for write_timeout.
    let (status, out) = hog.wait(PATIENCE);
    assert!(status.success(), "{out}");
    assert!(out.contains("\"closed\": true"), "{out}");

    let s = gw.stop();
    let err = gw.stderr();
    assert_eq!(exit_detail(&err, "reply_timeouts"), 1, "{err}");
    assert!(exit_detail(&err, "replies_dropped") > 0, "{err}");
    // Every event was taken in and written to the file sink, the hog's included (its last
    // line may have been cut when it was closed).
    assert_eq!(s.events_in, s.events_out);
    assert!(s.dead_lettered <= 1, "{s:?}");
    assert!(s.events_in >= 2 * 64 * 1500);
}

io_modes!(reply_routing_unix => routing(false));

io_modes!(reply_routing_tcp => routing(true));

/// A client that shuts down its writing side still gets every reply, then EOF; invalid lines
/// are dead-lettered and not replied.
#[test]
fn replies_after_half_close_and_bad_lines() {
    let (mut gw, target) = start(&config("uring", false, "10s"));
    let out = std::process::Command::new("socat")
        .args(["-t", "5", "-", &format!("UNIX-CONNECT:{target}")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all(b"{\"a\":1}\nnot json\n{\"b\":2}\n{\"c\":3}")?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n"
    );
    let s = gw.stop();
    assert_eq!((s.events_in, s.events_out, s.dead_lettered), (3, 3, 1));
}

/// Config errors name the field.
#[test]
fn reply_config_errors() {
    for (bad, field) in [
        (
            "[[sinks]]\ntype = \"reply\"\nwrite_timeout = \"0s\"",
            "sinks[1].write_timeout",
        ),
        (
            "[[sinks]]\ntype = \"reply\"\nqueue_bytes = 10",
            "sinks[1].queue_bytes",
        ),
        (
            "[[sinks]]\ntype = \"reply\"\n[[sinks]]\ntype = \"reply\"",
            "sinks[2].type",
        ),
        (
            "[[sinks]]\ntype = \"reply\"\ninputs = [\"nope\"]",
            "sinks[1].inputs",
        ),
    ] {
        let text = format!(
            "[[sources]]\ntype = \"unix_socket_server\"\nname = \"in\"\npath = \"/tmp/x.sock\"\n\
             [[sinks]]\ntype = \"null\"\n{bad}\n"
        );
        check_refuses(&text, field);
    }
}

/// `route_field`: an event goes to the connection whose id it names (as the envelope's
/// `peer` shows it), not back to its sender; events naming no live connection are counted.
#[test]
fn route_field_sends_to_the_named_connection() {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;
    let (mut gw, target) = start(
        r#"
[[sources]]
type = "unix_socket_server"
name = "in"
path = "{dir}/in.sock"
[[sinks]]
type = "file"
path = "{dir}/env.ndjson"
metadata = "envelope"
[[sinks]]
type = "reply"
route_field = "to"
"#,
    );
    let mut a = UnixStream::connect(&target).unwrap();
    a.write_all(b"{\"hello\":\"from a\"}\n").unwrap();
    let env = gw.path("env.ndjson");
    wait_until(PATIENCE, "a's first event", || count_lines(&env) == 1);
    let a_id = read_json_lines(&env)[0]["meta"]["unix_socket_server"]["peer"]
        .as_u64()
        .unwrap();
    let mut b = UnixStream::connect(&target).unwrap();
    b.write_all(format!("{{\"to\":{a_id},\"msg\":\"for a\"}}\n{{\"to\":999999}}\n").as_bytes())
        .unwrap();
    a.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut line = String::new();
    BufReader::new(&a).read_line(&mut line).unwrap();
    assert_eq!(line, format!("{{\"to\":{a_id},\"msg\":\"for a\"}}\n"));
    drop((a, b));
    let s = gw.stop();
    assert_eq!(s.events_out, 3);
    // a's own event named nobody, and nobody is 999999.
    assert_eq!(
        exit_detail(&gw.stderr(), "replies_dropped"),
        2,
        "{}",
        gw.stderr()
    );
}
