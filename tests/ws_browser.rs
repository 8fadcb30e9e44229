//! Headless Chromium (Debian's `chromium --headless --no-sandbox`) loads a page that opens a
//! WebSocket to the `ws_server` source, sends events and receives them back from the `reply`
//! sink; the page reports what it got as one more event, which the test reads from the sink.

mod util;

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use util::*;

#[test]
fn chromium_sends_events_and_gets_replies() {
    let mut gw = Gateway::start(
        r#"
[[sources]]
name = "ws"
type = "ws_server"
url = "127.0.0.1:0"

[[sinks]]
type = "file"
path = "{dir}/out.ndjson"

[[sinks]]
type = "reply"
inputs = ["ws"]
"#,
    );
    let url = ws_urls(&gw.stderr()).remove(0);
    let count = 500;
    let page = clients_dir().join("browser/ws_page.html");
    let profile = gw.path("chromium-profile");
    let mut browser = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("file://{}#url={url}&count={count}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium (Debian's package; tests/run installs it)");
    let mut result = Value::Null;
    let found = poll_until(Duration::from_secs(60), || {
        result = read_lines(&gw.path("out.ndjson"))
            .iter()
            .filter_map(|l| serde_json::from_slice::<Value>(l).ok())
            .find_map(|v| v.get("browser_result").cloned())
            .unwrap_or(Value::Null);
        !result.is_null()
    });
    let _ = browser.kill();
    let _ = browser.wait();
    assert!(
        found,
        "no result from the page; gateway stderr:\n{}",
        gw.stderr()
    );
    assert_eq!(result["replies"], count, "{result}");
    assert_eq!(result["same"], true, "{result}");
    assert!(
        result["agent"].as_str().unwrap_or("").contains("Chrome"),
        "{result}"
    );
    let s = gw.stop();
    assert_eq!(s.events_in, count + 1);
    let lines = read_lines(&gw.path("out.ndjson"));
    let first: Value = serde_json::from_slice(&lines[0]).unwrap();
    assert_eq!(
        first,
        serde_json::json!({"c": 20, "i": 0, "p": "from a browser ☃"})
    );
}
