//! An in-process gateway for tests of logic that needs no subprocess: the real topology
//! (sources on the chosen read loop, the channel, the sink thread) on a runtime of its own, with
//! every sink and the dead letters written to memory, and waits on its counters instead of
//! sleeps. Clients still talk to it over real sockets.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringway::config::{Config, Memory, SinkKind};
use ringway::telemetry::Snapshot;
use ringway::topology::{self, ReadLoop, Topology};

pub struct InProcess {
    pub dir: tempfile::TempDir,
    pub topology: Arc<Topology>,
    /// What every sink wrote.
    pub events: Memory,
    /// The dead-letter records.
    pub dead: Memory,
    runtime: tokio::runtime::Runtime,
    fatal: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl InProcess {
    /// Start a gateway reading `sources` (`[[sources]]` tables; `{dir}` is this test's
    /// directory) on `io_mode`, writing every stream to memory.
    pub fn start(io_mode: &str, sources: &str) -> InProcess {
        let dir = tempfile::tempdir().unwrap();
        let (events, dead) = (Memory::default(), Memory::default());
        let cfg = config(&dir, io_mode, sources, &events, &dead);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (fatal_tx, fatal) = tokio::sync::mpsc::unbounded_channel();
        let read_loop = ReadLoop::choose(cfg.io_mode).expect("the read loop");
        let staged = topology::stage(cfg).expect("the sources bind");
        let topology = Topology::start(
            staged,
            topology::Env {
                read_loop,
                runtime: runtime.handle().clone(),
                fatal: fatal_tx,
            },
        )
        .expect("the topology starts");
        InProcess {
            dir,
            topology: Arc::new(topology),
            events,
            dead,
            runtime,
            fatal,
        }
    }

    /// The config `sources` would run with now (for `reload`), its sinks in memory as at start.
    pub fn config(&self, io_mode: &str, sources: &str) -> Config {
        config(&self.dir, io_mode, sources, &self.events, &self.dead)
    }

    /// Apply `cfg` as a reload would; the lines saying what changed.
    pub fn reload(&self, cfg: Config) -> Result<Vec<String>, String> {
        self.runtime
            .block_on(self.topology.reload(cfg))
            .map_err(|e| e.to_string())
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The events written so far, one per line.
    pub fn lines(&self) -> Vec<String> {
        lines(&self.events)
    }

    /// The dead-letter records written so far.
    pub fn dead_letters(&self) -> Vec<serde_json::Value> {
        lines(&self.dead)
            .iter()
            .map(|l| serde_json::from_str(l).expect("a dead-letter record is JSON"))
            .collect()
    }

    pub fn counters(&self) -> Snapshot {
        self.topology.counters.snapshot()
    }

    /// Wait (on the counters, not a sleep) until `cond` holds for them; panics after 20 s.
    pub fn wait_for(&self, what: &str, cond: impl Fn(&Snapshot) -> bool) {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let c = self.counters();
            if cond(&c) {
                return;
            }
            assert!(
                Instant::now() < until,
                "timed out waiting for {what}: {c:?}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Shut down in order, as on SIGTERM; the final counters.
    pub fn stop(mut self) -> Snapshot {
        self.topology.begin_shutdown();
        let abandoned = self.topology.finish_shutdown(&self.runtime);
        assert!(!abandoned, "nothing may be left blocked");
        assert!(self.fatal.try_recv().is_err(), "no worker failed");
        self.counters()
    }
}

fn config(
    dir: &tempfile::TempDir,
    io_mode: &str,
    sources: &str,
    events: &Memory,
    dead: &Memory,
) -> Config {
    let text = format!(
        "io_mode = \"{io_mode}\"\nworkers = 2\nshutdown_timeout = \"5s\"\n[control]\nenabled = false\npath = \"{{dir}}/ctl.sock\"\n{sources}\n[[sinks]]\ntype = \"null\"\n"
    )
    .replace("{dir}", &dir.path().display().to_string());
    let mut cfg = Config::from_toml(&text).expect("a valid config");
    for s in &mut cfg.sinks {
        s.kind = SinkKind::Memory(events.clone());
    }
    cfg.dead_letter.kind = SinkKind::Memory(dead.clone());
    cfg
}

fn lines(m: &Memory) -> Vec<String> {
    String::from_utf8(m.bytes())
        .expect("UTF-8")
        .lines()
        .map(str::to_string)
        .collect()
}
