//! `reload` (control socket and SIGHUP) while producers write: the sink's path and the log
//! level change live, the connections stay open (same ids), and every event is written exactly
//! once, in order, across the switch; an invalid config, or a change that needs a restart, is
//! refused and the running config goes on.

mod util;

use std::process::Command;

use util::*;

fn config(out: &str, extra: &str) -> String {
    format!(
        r#"
io_mode = "uring"
workers = 2
shutdown_timeout = "10s"
{extra}
[[sources]]
name = "in"
type = "unix_socket_server"
path = "{{dir}}/in.sock"

[[sinks]]
type = "file"
path = "{{dir}}/{out}"
"#
    )
}

/// `ringway ctl --socket <the gateway's> ARGS`: (exit code, stdout, stderr). (Not `--config`:
/// the test rewrites that file, invalid at times.)
fn ctl(gw: &Gateway, args: &[&str]) -> (i32, String, String) {
    ctl_at(&gw.path("in.ctl"), args)
}

fn conn_ids(gw: &Gateway) -> Vec<u64> {
    let (code, out, err) = ctl(gw, &["--json", "connections"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_u64().unwrap())
        .collect()
}

/// Write the gateway's config file again (with its `{dir}` filled in).
fn rewrite(gw: &Gateway, text: &str) {
    let dir = gw.dir().to_string_lossy().into_owned();
    std::fs::write(gw.path("ringway.toml"), text.replace("{dir}", &dir)).unwrap();
}

#[test]
fn reload_moves_the_sink_and_log_level_without_losing_an_event() {
    let mut gw = Gateway::start(&config("a.ndjson", ""));
    let (conns, count) = (4u64, 40_000u64);
    let producers: Vec<Client> = (0..conns)
        .map(|c| {
            Client::python(
                "paced.py",
                &[
                    gw.socket_str(),
                    "--conn",
                    &c.to_string(),
                    "--count",
                    &count.to_string(),
                    "--rate",
                    "10000",
                ],
            )
        })
        .collect();
    wait_until(PATIENCE, "events in a.ndjson", || {
        count_lines(&gw.path("a.ndjson")) > 1000
    });
    wait_until(PATIENCE, "the producers connected", || {
        conn_ids(&gw).len() as u64 == conns
    });
    let ids = conn_ids(&gw);
    // ctl finds the control socket through the config file too.
    let out = Command::new(bin())
        .args(["ctl", "--config"])
        .arg(gw.path("ringway.toml"))
        .arg("ping")
        .output()
        .unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("pong"));

    // The sink moves to b.ndjson and the log level to debug.
    rewrite(&gw, &config("b.ndjson", "log_level = \"debug\""));
    let (code, out, err) = ctl(&gw, &["reload"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("b.ndjson") && out.contains("log_level"),
        "{out}"
    );
    let (_, level, _) = ctl(&gw, &["log-level"]);
    assert!(level.contains("level=debug"), "{level}");
    wait_until(PATIENCE, "events in b.ndjson", || {
        count_lines(&gw.path("b.ndjson")) > 1000
    });
    assert_eq!(
        conn_ids(&gw),
        ids,
        "the connections of the unchanged source stay open"
    );

    // An invalid file is refused; the running config goes on (still writing b).
    rewrite(
        &gw,
        &config("c.ndjson", "").replace("type = \"file\"", "type = \"fiel\""),
    );
    let (code, _, err) = ctl(&gw, &["reload"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("not a valid config") && err.contains("fiel"),
        "{err}"
    );
    // So is a change that needs a restart, and nothing of it is applied.
    rewrite(
        &gw,
        &config("c.ndjson", "").replace("workers = 2", "workers = 1"),
    );
    let (code, _, err) = ctl(&gw, &["reload"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("workers changed") && err.contains("nothing was applied"),
        "{err}"
    );
    let b_before = count_lines(&gw.path("b.ndjson"));
    wait_until(PATIENCE, "b to keep growing", || {
        count_lines(&gw.path("b.ndjson")) > b_before
    });
    assert!(!gw.path("c.ndjson").exists());
    let (_, text, _) = ctl(&gw, &["config"]);
    assert!(text.contains("b.ndjson"), "{text}");
    // The same refusal through a raw client of the socket.
    let raw = Client::python(
        "control_client.py",
        &[&gw.path("in.ctl").to_string_lossy(), r#"{"cmd":"reload"}"#],
    )
    .finish();
    assert_eq!(raw["responses"][0]["status"], "error", "{raw}");
    assert!(raw["responses"][0]["error"]
        .as_str()
        .unwrap()
        .contains("workers changed"));

    // SIGHUP does the same as `reload`.
    rewrite(&gw, &config("c.ndjson", "log_level = \"debug\""));
    gw.signal(libc::SIGHUP);
    wait_until(PATIENCE, "events in c.ndjson", || {
        count_lines(&gw.path("c.ndjson")) > 0
    });
    assert_eq!(conn_ids(&gw), ids);

    for p in producers {
        let last = p.finish();
        assert_eq!(last["sent"].as_u64(), Some(count), "{last}");
    }
    let s = gw.stop();
    // a, then b, then c: every event exactly once, in each connection's order.
    let mut check = SeqChecker::new(PAD);
    for f in ["a.ndjson", "b.ndjson", "c.ndjson"] {
        for line in read_lines(&gw.path(f)) {
            check.push(&line);
        }
    }
    assert_eq!(check.lines, conns * count);
    for c in 0..conns {
        assert_eq!(check.counts().get(&c).copied(), Some(count));
    }
    assert_eq!(s.events_in, conns * count);
    assert_eq!(s.events_out, conns * count);
    assert!(gw.stderr().contains("config reloaded"));
}

/// A gateway on the embedded default has no file to read again: `reload` says so.
#[test]
fn reload_without_a_file_is_refused() {
    let gw = Gateway::default_config().start();
    let out = Command::new(bin())
        .args(["ctl", "reload"])
        .env("XDG_RUNTIME_DIR", gw.dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no file to read again"));
}

/// `log_format = "json"`: the log lines are JSON objects (the summary line stays as it is).
#[test]
fn json_log_lines() {
    let mut gw = Gateway::start(&config("a.ndjson", "log_format = \"json\""));
    let s = gw.stop();
    assert_eq!(s.events_in, 0);
    let err = gw.stderr();
    let logs: Vec<serde_json::Value> = err
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        logs.iter().any(|l| l["level"] == "INFO"
            && l["fields"]["message"]
                .as_str()
                .unwrap_or("")
                .starts_with("stopped:")),
        "{err}"
    );
    assert!(err
        .lines()
        .all(|l| l.starts_with('{') || l.starts_with("ringway: ") || l.starts_with("summary ")));
}
