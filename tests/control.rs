//! The control socket and `ringway ctl`, against a gateway under load: every command through
//! both a raw Python client and `ringway ctl`; pause blocks the producers and resume lets them
//! finish with nothing lost; stats add up with what the sink wrote; bad requests (garbage, cut,
//! 100 MiB, stalled) get errors without hurting the gateway; other uids are refused.

mod util;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use util::*;

fn ctl_socket(gw: &Gateway) -> String {
    gw.path("in.ctl").to_string_lossy().into_owned()
}

/// Requests on one connection through the raw Python client: the parsed responses.
fn raw(gw: &Gateway, requests: &[&str]) -> Vec<Value> {
    let mut args = vec![ctl_socket(gw)];
    args.extend(requests.iter().map(|r| r.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = Client::python("control_client.py", &args).finish();
    out["responses"].as_array().unwrap().clone()
}

/// One request through the raw client; its payload (panics on an error response).
fn ask(gw: &Gateway, request: &str) -> Value {
    let r = raw(gw, &[request]);
    assert_eq!(r.len(), 1, "{request}: {r:?}");
    assert_eq!(r[0]["status"], "ok", "{request}: {}", r[0]);
    r[0]["payload"].clone()
}

/// `ringway ctl --socket <gw's> ARGS...`: (exit code, stdout, stderr).
fn ctl(gw: &Gateway, args: &[&str]) -> (i32, String, String) {
    ctl_at(std::path::Path::new(&ctl_socket(gw)), args)
}

fn source_stat(stats: &Value, key: &str) -> u64 {
    stats["sources"][0][key].as_u64().unwrap()
}

/// Producers send while every command is called. Pause stops the reading (the producers stall
/// with their kernel buffers full); resume lets them finish; the counts add up exactly; drain
/// stops the gateway as SIGTERM does.
fn commands_under_load(mode: &str) {
    let mut gw = Gateway::start(&standard_config(mode));
    let (conns, count) = (4u64, 250_000u64);
    // Paused before anyone connects: the producers connect, write what their socket buffers
    // hold, and block.
    assert_eq!(
        ask(&gw, r#"{"cmd":"pause","args":{"source":"in"}}"#)["paused"],
        true
    );
    let producers: Vec<Client> = (0..conns)
        .map(|c| {
            Client::produce(
                gw.socket(),
                &[
                    "--conn",
                    &c.to_string(),
                    "--count",
                    &count.to_string(),
                    "--progress",
                ],
            )
        })
        .collect();
    wait_until(PATIENCE, "the producers connected", || {
        source_stat(&ask(&gw, r#"{"cmd":"stats"}"#), "connections") == conns
    });
    assert_eq!(source_stat(&ask(&gw, r#"{"cmd":"stats"}"#), "events_in"), 0);

    // ping and echo, raw and through ctl.
    assert_eq!(ask(&gw, r#"{"cmd":"ping"}"#)["pong"], true);
    assert_eq!(
        ask(&gw, r#"{"cmd":"echo","args":{"x":[1,2]}}"#),
        serde_json::json!({"x":[1,2]})
    );
    let (code, out, _) = ctl(&gw, &["ping"]);
    assert_eq!(code, 0);
    assert!(out.contains("pong"), "{out}");

    // connections: one per producer, with its pid.
    let list = ask(&gw, r#"{"cmd":"connections"}"#)["connections"].clone();
    let list = list.as_array().unwrap();
    assert_eq!(list.len() as u64, conns, "{list:?}");
    let pids: Vec<u64> = list
        .iter()
        .map(|c| c["peer"]["pid"].as_u64().unwrap())
        .collect();
    for p in &producers {
        assert!(pids.contains(&(p.pid() as u64)), "{pids:?} vs {}", p.pid());
    }
    let (code, out, _) = ctl(&gw, &["connections"]);
    assert_eq!(code, 0);
    assert!(out.contains(&format!("({conns} connections)")), "{out}");

    // Resume, and pause again while they write: reading stops; the producers stall.
    let r = raw(
        &gw,
        &[
            r#"{"cmd":"resume","args":{"source":"in"}}"#,
            r#"{"cmd":"pause","args":{"source":"in"}}"#,
        ],
    );
    assert_eq!(r[1]["payload"]["paused"], true, "{r:?}");
    // Time passing is the test here: a paused source reads nothing, for 1.5 s (after 0.5 s for
    // what was read before the pause to pass through).
    std::thread::sleep(Duration::from_millis(500));
    let s1 = ask(&gw, r#"{"cmd":"stats"}"#);
    let sent1: u64 = producers.iter().map(Client::progress).sum();
    std::thread::sleep(Duration::from_millis(1500));
    let s2 = ask(&gw, r#"{"cmd":"stats"}"#);
    let sent2: u64 = producers.iter().map(Client::progress).sum();
    assert_eq!(s2["sources"][0]["paused"], true);
    assert_eq!(
        source_stat(&s1, "events_in"),
        source_stat(&s2, "events_in"),
        "a paused source read on"
    );
    assert!(
        sent2 < sent1 + 4 * (2 << 20),
        "producers kept writing while paused: {sent1} → {sent2} bytes"
    );
    assert!(
        source_stat(&s2, "events_in") < conns * count,
        "all was read before the pause"
    );
    let (code, out, _) = ctl(&gw, &["stats"]);
    assert_eq!(code, 0);
    assert!(out.contains("PAUSED"), "{out}");

    // resume (through ctl): the producers finish.
    let (code, out, err) = ctl(&gw, &["resume", "in"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("paused=false"), "{out}");
    for p in producers {
        let last = p.finish();
        assert_eq!(last["sent"].as_u64(), Some(count), "{last}");
    }
    wait_until(PATIENCE, "every event written", || {
        count_lines(&gw.path("out.ndjson")) as u64 == conns * count
    });

    // stats add up with what the sink wrote.
    let s = ask(&gw, r#"{"cmd":"stats"}"#);
    assert_eq!(s["totals"]["events_in"], conns * count);
    assert_eq!(s["totals"]["events_out"], conns * count);
    assert_eq!(source_stat(&s, "events_in"), conns * count);
    assert_eq!(s["sinks"][0]["events_out"], conns * count);
    let bytes = std::fs::metadata(gw.path("out.ndjson")).unwrap().len();
    assert_eq!(s["sinks"][0]["bytes_out"], bytes);
    assert_eq!(s["sources"][0]["connections"], 0);
    // (The test harness connects once to see that the gateway is up.)
    assert_eq!(
        s["sources"][0]["connections_total"],
        s["totals"]["connections_accepted"]
    );
    assert!(source_stat(&s, "connections_total") >= conns);

    // latency, log_level, config.
    let l = ask(&gw, r#"{"cmd":"latency"}"#);
    assert!(l["ingest_to_sink"]["count"].as_u64().unwrap() > 0, "{l}");
    let h = ask(&gw, r#"{"cmd":"latency","args":{"format":"hgrm"}}"#);
    assert!(
        h["ingest_to_sink"].as_str().unwrap().contains("Percentile"),
        "{h}"
    );
    let (code, out, _) = ctl(&gw, &["latency"]);
    assert_eq!(code, 0);
    assert!(out.contains("ingest_to_sink"), "{out}");
    let r = ask(&gw, r#"{"cmd":"log_level","args":{"level":"debug"}}"#);
    assert_eq!(r["previous"], "info");
    let (code, out, _) = ctl(&gw, &["log-level", "info"]);
    assert_eq!(code, 0);
    assert!(out.contains("previous=debug"), "{out}");
    let c = ask(&gw, r#"{"cmd":"config"}"#);
    assert_eq!(
        c["text"].as_str().unwrap(),
        std::fs::read_to_string(gw.path("ringway.toml")).unwrap()
    );

    // drain: a clean exit, as on SIGTERM (through ctl in one mode, the raw client in the other).
    if mode == "uring" {
        let (code, out, _) = ctl(&gw, &["drain"]);
        assert_eq!(code, 0);
        assert!(out.contains("draining=true"), "{out}");
    } else {
        assert_eq!(ask(&gw, r#"{"cmd":"drain"}"#)["draining"], true);
    }
    let status = gw.wait_exit(EXIT_PATIENCE);
    assert!(status.success());
    let summary = Summary::parse(&gw.stderr()).unwrap();
    assert_eq!(summary.events_in, conns * count);
    assert_eq!(summary.events_out, conns * count);
}

io_modes!(commands_under_load => commands_under_load());

/// `close` shuts one connection down (the others go on); ctl's errors and exit codes.
#[test]
fn close_and_ctl_errors() {
    use std::io::{Read, Write};
    let gw = Gateway::start(&standard_config("uring"));
    let mut a = std::os::unix::net::UnixStream::connect(gw.socket()).unwrap();
    a.write_all(b"{\"a\":1}\n").unwrap();
    let ids = || -> Vec<u64> {
        ask(&gw, r#"{"cmd":"connections"}"#)["connections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_u64().unwrap())
            .collect()
    };
    wait_until(PATIENCE, "a's connection", || ids().len() == 1);
    let victim = ids()[0];
    let mut b = std::os::unix::net::UnixStream::connect(gw.socket()).unwrap();
    b.write_all(b"{\"b\":1}\n").unwrap();
    wait_until(PATIENCE, "b's connection", || ids().len() == 2);
    let other = ids().into_iter().find(|&i| i != victim).unwrap();
    let (code, out, err) = ctl(&gw, &["close", &victim.to_string()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("closing=true"), "{out}");
    wait_until(PATIENCE, "the closed connection gone", || {
        ids() == vec![other]
    });
    // The closed one sees EOF; the other is still served.
    a.set_read_timeout(Some(PATIENCE)).unwrap();
    assert_eq!(a.read(&mut [0u8; 16]).unwrap(), 0);
    b.write_all(b"{\"b\":2}\n").unwrap();
    wait_until(PATIENCE, "b's second event", || {
        count_lines(&gw.path("out.ndjson")) == 3
    });

    // The raw client closes b.
    let r = ask(
        &gw,
        &format!(r#"{{"cmd":"close","args":{{"id":{other}}}}}"#),
    );
    assert_eq!(r["closing"], true);
    b.set_read_timeout(Some(PATIENCE)).unwrap();
    assert_eq!(b.read(&mut [0u8; 16]).unwrap(), 0);
    let (code, _, err) = ctl(&gw, &["close", "999999"]);
    assert_eq!(code, 1);
    assert!(err.contains("no live connection 999999"), "{err}");
    let (code, _, err) = ctl(&gw, &["pause", "nosuch"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("no source named \"nosuch\" (there are: in)"),
        "{err}"
    );
    let (code, _, err) = ctl(&gw, &["frobnicate"]);
    assert_eq!(code, 2);
    assert!(err.contains("unrecognized subcommand"), "{err}");
    let out = Command::new(bin())
        .args(["ctl", "--socket", "/nonexistent/ringway.ctl", "stats"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is ringway running?"));
    let (code, out, _) = ctl(&gw, &["--json", "stats"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["sources"][0]["name"], "in");
    let (code, out, _) = ctl(&gw, &["log-level", "warn,ringway=nonsense["]);
    assert_eq!(code, 1, "{out}");
}

/// Garbage, a cut request, a stalled one and a 100 MiB one each get an error; the connection
/// stays usable where it can; the gateway's memory does not grow with the request.
#[test]
fn bad_requests_get_errors() {
    let mut gw = Gateway::start(&format!(
        "{}\n[control]\nrequest_timeout = \"1s\"\n",
        standard_config("uring")
    ));
    let r = raw(
        &gw,
        &[
            "raw:\u{1}\u{2}garbage",
            "raw:{\"cmd\":\"stats\"",
            "[1,2]",
            "{\"cmd\":\"nosuch\"}",
            "{\"cmd\":\"ping\",\"typo\":1}",
            "{\"cmd\":\"ping\"}",
        ],
    );
    assert_eq!(r.len(), 6, "{r:?}");
    for bad in &r[..5] {
        assert_eq!(bad["status"], "error", "{bad}");
    }
    assert!(r[0]["error"].as_str().unwrap().contains("not JSON"));
    assert!(r[3]["error"]
        .as_str()
        .unwrap()
        .contains("unknown command \"nosuch\""));
    assert!(r[4]["error"].as_str().unwrap().contains("typo"));
    assert_eq!(r[5]["status"], "ok", "the connection stays usable");

    let half = Client::python("control_client.py", &[&ctl_socket(&gw), "--half"]).finish();
    assert!(
        half["responses"][0]["error"]
            .as_str()
            .unwrap()
            .contains("cut off"),
        "{half}"
    );
    let stall = Client::python("control_client.py", &[&ctl_socket(&gw), "--stall", "10"]).finish();
    assert!(
        stall["responses"][0]["error"]
            .as_str()
            .unwrap()
            .contains("deadline"),
        "{stall}"
    );
    assert!(stall["after_s"].as_f64().unwrap() < 5.0, "{stall}");

    let rss_before = gw.rss_kib();
    let big = Client::python("control_client.py", &[&ctl_socket(&gw), "--big", "100"]).finish();
    let rss_after = gw.rss_kib();
    assert_eq!(big["responses"][0]["status"], "error", "{big}");
    assert!(
        big["responses"][0]["error"]
            .as_str()
            .unwrap()
            .contains("too long"),
        "{big}"
    );
    assert_eq!(big["responses"][1]["status"], "ok", "{big}");
    assert!(
        rss_after < rss_before + 16 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB on a 100 MiB request"
    );
    let s = gw.stop();
    assert_eq!(s.events_in, 0);
}

/// Only the gateway's uid, root and `allow_uids` are served: another uid (here `nobody`,
/// through setpriv) gets a refusal, unless it is allowed.
#[test]
fn other_uids_are_refused() {
    if !is_root() {
        eprintln!("skipped: needs root to run a client as another uid");
        return;
    }
    for (allow, served) in [("", false), ("allow_uids = [65534]", true)] {
        let gw = Gateway::start(&format!(
            "{}\n[control]\npermissions = \"=666\"\n{allow}\n",
            standard_config("uring")
        ));
        // nobody must reach the socket: open the test's directory to it.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(gw.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
        // The client script and an interpreter nobody may run (not a per-user shim).
        let script = gw.path("control_client.py");
        std::fs::copy(clients_dir().join("control_client.py"), &script).unwrap();
        let python = ["/usr/bin/python3", "/bin/python3"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("python3");
        let out = Command::new("setpriv")
            .args([
                "--reuid",
                "65534",
                "--regid",
                "65534",
                "--clear-groups",
                python,
            ])
            .arg(&script)
            .args([&ctl_socket(&gw), r#"{"cmd":"ping"}"#])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let v: Value = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("{e}: {stdout} {}", String::from_utf8_lossy(&out.stderr)));
        let r = &v["responses"][0];
        if served {
            assert_eq!(r["status"], "ok", "{v}");
        } else {
            assert_eq!(r["status"], "error", "{v}");
            assert!(
                r["error"]
                    .as_str()
                    .unwrap()
                    .contains("uid 65534 may not use"),
                "{v}"
            );
        }
    }
}

/// The control socket is there by default, beside the ingest socket, mode 0600; it can be
/// turned off; a path already in use is refused at start.
#[test]
fn control_socket_defaults() {
    use std::os::unix::fs::PermissionsExt;
    let gw = Gateway::start(&standard_config("uring"));
    let meta = std::fs::metadata(gw.path("in.ctl")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let started = Instant::now();
    assert_eq!(ask(&gw, r#"{"cmd":"ping"}"#)["pong"], true);
    assert!(started.elapsed() < PATIENCE);
    let off = Gateway::start(&format!(
        "{}\n[control]\nenabled = false\n",
        standard_config("uring")
    ));
    assert!(!off.path("in.ctl").exists());
    let taken = Gateway::configure(&format!(
        "{}\n[control]\npath = \"{}\"\n",
        standard_config("uring"),
        ctl_socket(&gw)
    ))
    .expect_failure();
    assert!(
        taken.stderr.contains("in use by a live process"),
        "{}",
        taken.stderr
    );
}

/// `max_connections`: one over the limit gets an error line and is closed; the others are
/// served. `ctl --watch` repeats with rates.
#[test]
fn connection_limit_and_watch() {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;
    let gw = Gateway::start(&format!(
        "{}\n[control]\nmax_connections = 2\n",
        standard_config("uring")
    ));
    let hold: Vec<UnixStream> = (0..2)
        .map(|_| UnixStream::connect(gw.path("in.ctl")).unwrap())
        .collect();
    // Both held connections are served (so both hold their slot).
    for mut c in &hold {
        c.write_all(b"{\"cmd\":\"ping\"}\n").unwrap();
        let mut line = String::new();
        BufReader::new(c).read_line(&mut line).unwrap();
        assert!(line.contains("\"ok\""), "{line}");
    }
    let third = Client::python(
        "control_client.py",
        &[&ctl_socket(&gw), r#"{"cmd":"ping"}"#],
    )
    .finish();
    let r = &third["responses"][0];
    assert_eq!(r["status"], "error", "{third}");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("too many control connections"),
        "{third}"
    );
    drop(hold);
    wait_until(PATIENCE, "a slot free again", || {
        raw(&gw, &[r#"{"cmd":"ping"}"#])[0]["status"] == "ok"
    });

    let mut watch = Command::new(bin());
    watch.args([
        "ctl",
        "--socket",
        &ctl_socket(&gw),
        "--watch",
        "200ms",
        "stats",
    ]);
    let watch = Client::spawn("ringway ctl --watch".into(), watch);
    let text = || watch.lines().join("\n");
    wait_until(PATIENCE, "three screens of `ctl --watch`", || {
        text().matches("ringway: up").count() >= 3
    });
    assert!(text().contains("in/s"), "{}", text());
}
