//! `unix_socket_client`: the seed's client/server flows (examples/unix_socket), a forwarding
//! chain that survives its next hop being restarted twice, and the retry schedule with its
//! circuit breaker, all with real ringway processes on both ends.

mod util;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use util::*;

/// A ringway run in `dir` (paths in its config are relative to it), stderr kept in a file.
struct Proc {
    child: Child,
    err: PathBuf,
}

impl Proc {
    fn run(dir: &Path, config: &Path, name: &str) -> Proc {
        let err = dir.join(format!("{name}.stderr"));
        let child = Command::new(bin())
            .args(["run", "--config"])
            .arg(config)
            .current_dir(dir)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        Proc { child, err }
    }

    fn stderr(&self) -> String {
        fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// SIGTERM, a clean exit, and the summary.
    fn stop(&mut self) -> Summary {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                assert!(st.success(), "exit {st}: {}", self.stderr());
                break;
            }
            assert!(
                start.elapsed() < EXIT_PATIENCE,
                "still running: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Summary::parse(&self.stderr()).unwrap()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- {} ---\n{}", self.err.display(), self.stderr());
        }
    }
}

fn file_len(p: &Path) -> u64 {
    fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// The examples' server and client configs, run as they are: `client_out.log` and
/// `server_out.log` both end up equal to the input file.
#[test]
fn seed_flows_echo_a_file_through_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/unix_socket");
    for f in ["server.toml", "client.toml"] {
        fs::copy(examples.join(f), dir.path().join(f)).unwrap();
    }
    // 30,000 varied events (every 17th with escapes and multi-byte characters), no trailing
    // newline on the last: a file's last line is an event too.
    let mut input = Vec::new();
    for i in 0..30_000u64 {
        input.extend_from_slice(&event(i % 7, i, (10, 300)));
        input.push(b'\n');
    }
    input.pop();
    fs::write(dir.path().join("in.ndjson"), &input).unwrap();
    input.push(b'\n');

    // The client first: it retries until the server's socket exists.
    let mut client = Proc::run(dir.path(), Path::new("client.toml"), "client");
    wait_until(PATIENCE, "the client's first failed connect", || {
        client.stderr().contains("connect failed")
    });
    let mut server = Proc::run(dir.path(), Path::new("server.toml"), "server");
    let out = dir.path().join("client_out.log");
    wait_until(
        Duration::from_secs(60),
        "client_out.log to be complete",
        || file_len(&out) >= input.len() as u64,
    );
    let c = client.stop();
    let s = server.stop();
    assert_eq!(fs::read(&out).unwrap(), input, "client_out.log != input");
    assert_eq!(
        fs::read(dir.path().join("server_out.log")).unwrap(),
        input,
        "server_out.log != input"
    );
    assert_eq!(
        (s.events_in, s.events_out, s.dead_lettered),
        (30_000, 30_000, 0)
    );
    // The client took in the file and the replies.
    assert_eq!(
        (c.events_in, c.events_out, c.dead_lettered),
        (60_000, 60_000, 0)
    );
    assert!(
        client.stderr().contains("connect failed"),
        "the client started first"
    );
}

/// A's source `in`, at `{dir}/a.sock`.
fn a_source() -> Source {
    Source::unix_at(in_dir("a.sock")).name("in")
}

fn next_hop(shared: &Path) -> PathBuf {
    let cfg = shared.join("b.toml");
    let config = Config::new()
        .shutdown_timeout("1s")
        .source(Source::unix_at(shared.join("b.sock")))
        .sink(Sink::file_at(shared.join("b_out.ndjson")));
    fs::write(&cfg, config.render()).unwrap();
    cfg
}

/// Lines of `path`, checked: every line a generated event; per connection, the first copy of
/// each event comes in order. Returns (events per connection, duplicates).
fn check_at_least_once(path: &Path) -> (BTreeMap<u64, u64>, u64) {
    let mut next: BTreeMap<u64, u64> = BTreeMap::new();
    let mut dups = 0;
    for (n, line) in read_lines(path).iter().enumerate() {
        let (c, i) = parse_ci(line).unwrap_or_else(|| panic!("line {n}: {}", show(line)));
        assert_eq!(line, &event(c, i, PAD), "line {n} corrupted");
        let e = next.entry(c).or_insert(0);
        if i < *e {
            dups += 1;
        } else {
            assert_eq!(
                i, *e,
                "connection {c}: event {i} where {e} was due (a gap), line {n}"
            );
            *e += 1;
        }
    }
    (next, dups)
}

/// Producers → ringway A (unix server → unix_socket_client) → ringway B (unix server → file),
/// 1,000,000 events, while B is stopped and started again twice: everything arrives, in
/// per-connection order; duplicates only as many as A reports re-sent.
#[test]
fn forwarding_chain_survives_two_restarts_of_the_next_hop() {
    let shared = tempfile::tempdir().unwrap();
    let b_cfg = next_hop(shared.path());
    let b_out = shared.path().join("b_out.ndjson");
    let mut b = Proc::run(shared.path(), &b_cfg, "b0");
    let mut a = Gateway::start(
        &Config::new()
            .workers(2)
            .shutdown_timeout("20s")
            .source(a_source())
            .sink(
                Sink::unix_client_at(shared.path().join("b.sock"))
                    .name("b")
                    .set("spool_bytes", 4194304)
                    .set("reconnect.retry.interval_ms", 50)
                    .set("reconnect.retry.growth_rate", 1.5)
                    .set("reconnect.retry.max_interval_ms", 400),
            )
            .render(),
    );
    const CONNS: u64 = 8;
    const PER: u64 = 125_000;
    // About 8 s of traffic (~125 MB), so that B can be stopped in the middle of it, twice.
    let producers: Vec<Client> = (0..CONNS)
        .map(|c| {
            Client::python(
                "paced.py",
                &[
                    a.socket_str(),
                    "--conn",
                    &c.to_string(),
                    "--count",
                    &PER.to_string(),
                    "--rate",
                    "16000",
                ],
            )
        })
        .collect();
    for (k, at) in [35_000_000u64, 75_000_000].into_iter().enumerate() {
        wait_until(Duration::from_secs(120), "B to be up and writing", || {
            b.stderr().contains("listening on") && file_len(&b_out) >= at
        });
        let s = b.stop();
        assert_eq!(s.events_in, s.events_out);
        // The next hop is away: A notices, and keeps taking events into its spool.
        wait_until(PATIENCE, "A to spool with its next hop away", || {
            let sink = &a.stats()["sinks"][0];
            sink["connected"] == false && sink["spool_bytes"].as_u64() > Some(0)
        });
        b = Proc::run(shared.path(), &b_cfg, &format!("b{}", k + 1));
    }
    for p in producers {
        let r = p.finish();
        assert_eq!(r["sent"], PER, "{r}");
    }
    // A drains its spool into B, then ends its connection; then B stops.
    let sa = a.stop();
    let sb = b.stop();
    assert_eq!(sa.events_in, CONNS * PER);
    assert_eq!(sa.events_out, CONNS * PER, "A wrote every event to B");
    let err = a.stderr();
    let resent = exit_detail(&err, "resent");
    assert_eq!(
        exit_detail(&err, "reconnects"),
        2,
        "A reconnected twice: {err}"
    );
    let (counts, dups) = check_at_least_once(&b_out);
    eprintln!("B wrote {dups} duplicates; A re-sent {resent} events");
    for c in 0..CONNS {
        assert_eq!(counts.get(&c), Some(&PER), "connection {c}");
    }
    assert!(
        dups <= resent,
        "{dups} duplicates but A re-sent only {resent}"
    );
    assert_eq!(sb.dead_lettered, 0);
}

/// With the peer away, attempts follow interval_ms · growth_rateⁿ capped at max_interval_ms;
/// after max_retries the circuit opens, the sources feel backpressure (nothing is dropped), and
/// once the peer is there everything arrives.
#[test]
fn retry_schedule_circuit_breaker_and_backpressure() {
    let shared = tempfile::tempdir().unwrap();
    let b_cfg = next_hop(shared.path());
    let mut a = Gateway::start(
        &Config::new()
            .workers(1)
            .set("channel.capacity", 2)
            .set("channel.batch_max_events", 64)
            .source(a_source())
            .sink(
                Sink::unix_client_at(shared.path().join("b.sock"))
                    .name("b")
                    .set("spool_bytes", 4096)
                    .set("reconnect.retry.interval_ms", 100)
                    .set("reconnect.retry.growth_rate", 2.0)
                    .set("reconnect.retry.max_interval_ms", 800)
                    .set("reconnect.retry.max_retries", 5)
                    .set("reconnect.retry.jitter", 0.0),
            )
            .render(),
    );
    let producer = Client::produce(a.socket(), &["--conn", "0", "--count", "20000"]);
    // Attempts 1..=9: retry_in_ms 100, 200, 400, 800, 800, then (circuit open) 800 each.
    wait_until(Duration::from_secs(15), "nine failed attempts", || {
        a.stderr().matches("connect failed").count() >= 9
    });
    let err = a.stderr();
    let attempts: Vec<(f64, u64)> = err
        .lines()
        .filter(|l| l.contains("connect failed"))
        .map(|l| {
            let ts = l.split_whitespace().next().unwrap();
            let secs = parse_rfc3339_secs(ts);
            let retry: u64 = l
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix("retry_in_ms="))
                .unwrap()
                .parse()
                .unwrap();
            (secs, retry)
        })
        .collect();
    let planned: Vec<u64> = attempts.iter().map(|a| a.1).collect();
    assert_eq!(
        &planned[..8],
        &[100, 200, 400, 800, 800, 800, 800, 800],
        "{err}"
    );
    for w in attempts.windows(2).take(7) {
        let gap = (w[1].0 - w[0].0) * 1000.0;
        let want = w[0].1 as f64;
        assert!(
            gap >= want * 0.95 && gap <= want + 250.0,
            "attempts {gap:.0} ms apart, planned {want} ms: {attempts:?}"
        );
    }
    assert!(
        err.contains("circuit open after 6 failed attempts"),
        "{err}"
    );
    // The producer is held back: the spool and the lane are full, nothing is dropped.
    assert!(!producer_done(&producer), "the producer should be blocked");
    // The peer comes up: the circuit closes and everything goes through.
    let mut b = Proc::run(shared.path(), &b_cfg, "b");
    let r = producer.finish();
    assert_eq!(r["sent"], 20000);
    let sa = a.stop();
    assert!(a.stderr().contains("circuit closed"), "{}", a.stderr());
    let sb = b.stop();
    assert_eq!((sa.events_in, sa.events_out, sa.dropped), (20000, 20000, 0));
    let mut check = SeqChecker::new(PAD);
    for line in read_lines(&shared.path().join("b_out.ndjson")) {
        check.push(&line);
    }
    assert_eq!(check.counts().get(&0), Some(&20000));
    assert_eq!(sb.events_out, 20000);
}

fn producer_done(p: &Client) -> bool {
    p.lines().iter().any(|l| l.contains("\"sent\""))
}

/// Seconds of the day from a `2026-11-22T08:19:56.602443Z` timestamp.
fn parse_rfc3339_secs(ts: &str) -> f64 {
    let t = ts.split('T').nth(1).unwrap().trim_end_matches('Z');
    let mut parts = t.split(':');
    let h: f64 = parts.next().unwrap().parse().unwrap();
    let m: f64 = parts.next().unwrap().parse().unwrap();
    let s: f64 = parts.next().unwrap().parse().unwrap();
    h * 3600.0 + m * 60.0 + s
}

/// Config mistakes in a client sink name the field.
#[test]
fn client_config_errors() {
    for (bad, field) in [
        (
            "reconnect = { retry = { growth_rate = 0.5 } }",
            "sinks[0].reconnect.retry.growth_rate",
        ),
        (
            "reconnect = { retry = { interval_ms = 500, max_interval_ms = 100 } }",
            "sinks[0].reconnect.retry.max_interval_ms",
        ),
        (
            "reconnect = { retry = { intervall_ms = 5 } }",
            "intervall_ms",
        ),
        ("inputs = [\"c\"]", "sinks[0].inputs"),
        ("spool_bytes = 10", "sinks[0].spool_bytes"),
    ] {
        let text = format!(
            "[[sources]]\ntype = \"unix_socket_server\"\nname = \"in\"\npath = \"/tmp/x.sock\"\n\
             [[sinks]]\ntype = \"unix_socket_client\"\nname = \"c\"\npath = \"/tmp/y.sock\"\n{bad}\n"
        );
        check_refuses(&text, field);
    }
}

/// What a client's peer sends back is an event stream named after the sink, with
/// `unix_socket_client` metadata naming the peer's socket; a bad line in it is dead-lettered and
/// its neighbours arrive.
#[test]
fn replies_carry_client_metadata_and_bad_replies_are_dead_lettered() {
    let shared = tempfile::tempdir().unwrap();
    // A peer that echoes each line, and answers the first one with a line that is not JSON too.
    let script = "import socket, sys\n\
                  s = socket.socket(socket.AF_UNIX)\n\
                  s.bind(sys.argv[1])\n\
                  s.listen(1)\n\
                  c, _ = s.accept()\n\
                  first = True\n\
                  for line in c.makefile('rb'):\n\
                  \x20   c.sendall(line + (b'not json\\n' if first else b''))\n\
                  \x20   first = False\n\
                  c.close()\n";
    let peer = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(shared.path().join("s.sock"))
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _peer = Kill(peer);
    fs::write(shared.path().join("in.ndjson"), "{\"a\":1}\n{\"b\":2}\n").unwrap();
    let client_cfg = shared.path().join("c.toml");
    // Paths relative to the gateway's working directory (the peer is named after its path).
    let config = Config::new()
        .source(Source::new("file").name("input").path("in.ndjson"))
        .sink(
            Sink::unix_client_at("s.sock")
                .name("srv")
                .inputs(&["input"]),
        )
        .sink(
            Sink::file_at("replies.ndjson")
                .set("metadata", "envelope")
                .inputs(&["srv"]),
        )
        .dead_letter(Sink::file_at("dead.ndjson"));
    fs::write(&client_cfg, config.render()).unwrap();
    let mut c = Proc::run(shared.path(), &client_cfg, "client");
    let replies = shared.path().join("replies.ndjson");
    wait_until(PATIENCE, "two replies", || count_lines(&replies) == 2);
    let dead = shared.path().join("dead.ndjson");
    wait_until(PATIENCE, "one dead letter", || count_lines(&dead) == 1);
    let env = read_json_lines(&replies);
    assert_eq!(env[0]["meta"]["source"], "srv");
    assert_eq!(env[0]["meta"]["unix_socket_client"]["peer"], "s.sock");
    assert_eq!(env[0]["event"], serde_json::json!({"a": 1}));
    assert_eq!(env[1]["event"], serde_json::json!({"b": 2}));
    let d = &read_json_lines(&dead)[0];
    assert_eq!(d["error"], "invalid_json");
    assert_eq!(d["source"], "srv");
    assert_eq!(d["raw"], "not json");
    let sc = c.stop();
    assert_eq!((sc.events_in, sc.events_out, sc.dead_lettered), (4, 4, 1));
}

/// A peer that never comes: at shutdown the client gives up after the grace (twice
/// `shutdown_timeout`) and every event it held is counted as lost, none silently.
#[test]
fn a_peer_that_never_comes_is_counted_lost_at_shutdown() {
    let shared = tempfile::tempdir().unwrap();
    let mut a = Gateway::start(
        &Config::new()
            .shutdown_timeout("1s")
            .set("channel.capacity", 16)
            .source(Source::unix_at(in_dir("a.sock")))
            .sink(Sink::unix_client_at(shared.path().join("nobody.sock")).set("spool_bytes", 4096))
            .render(),
    );
    let producer = Client::produce(
        a.socket(),
        &["--conn", "0", "--count", "20000", "--progress"],
    );
    // 1 MiB written: more than the socket buffer holds, so the gateway has taken events in.
    wait_until(PATIENCE, "events taken in", || {
        producer.progress() >= 1 << 20
    });
    let started = Instant::now();
    a.signal(libc::SIGTERM);
    let status = a.wait_exit(EXIT_PATIENCE);
    assert!(started.elapsed() < Duration::from_secs(10));
    // A shutdown that lost events is not a clean one: exit status 1.
    assert_eq!(status.code(), Some(1), "{}", a.stderr());
    let s = Summary::parse(&a.stderr()).unwrap();
    drop(producer);
    let lost = exit_detail(&a.stderr(), "lost_at_shutdown");
    assert!(s.events_in > 0);
    assert_eq!(s.events_out, 0);
    assert_eq!(lost, s.events_in, "{}", a.stderr());
}
