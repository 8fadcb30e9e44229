//! A typed builder for ringway configs, rendered as TOML by the `toml` crate, so that paths and
//! strings are always quoted correctly:
//!
//! ```ignore
//! let config = Config::new()
//!     .io_mode(mode)
//!     .workers(2)
//!     .source(Source::unix("in"))                 // name = "in", path = "{dir}/in.sock"
//!     .sink(Sink::file("out.ndjson").set("metadata", "envelope"))
//!     .dead_letter(Sink::file("dead.ndjson"))
//!     .set("channel.capacity", 64)                // any other key, dotted into tables
//!     .render();
//! Gateway::start(&config);
//! ```
//!
//! `{dir}` stands for the gateway's temp dir, as everywhere in these helpers: [`Gateway::start`]
//! and [`Gateway::configure`](super::Gateway::configure) replace it. Constructors that take a
//! file *name* (`Source::unix`, `Sink::file`) put it in `{dir}`; the `_at` ones take a path as
//! it is (relative paths are then relative to the gateway's working directory).
//!
//! Configs that are meant to be *wrong* (a typo in a key, a refused value) stay raw strings in
//! the tests: a builder cannot spell a typo, and those tests are about the spelling.
//!
//! [`Gateway::start`]: super::Gateway::start

use std::path::Path;

use toml::{Table, Value};

/// `{dir}/<name>`: a file in the gateway's temp dir.
pub fn in_dir(name: &str) -> String {
    format!("{{dir}}/{name}")
}

/// A path as a TOML string (it must be UTF-8).
fn path_str(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    path.to_str()
        .unwrap_or_else(|| panic!("non-UTF-8 path in a config: {}", path.display()))
        .to_string()
}

/// Sets `key` in `table`; a dotted key (`reconnect.retry.max_retries`) goes into nested tables,
/// made as needed.
fn set_in(table: &mut Table, key: &str, value: Value) {
    let (parents, last) = match key.rsplit_once('.') {
        Some((parents, last)) => (Some(parents), last),
        None => (None, key),
    };
    let mut at = table;
    for part in parents.into_iter().flat_map(|p| p.split('.')) {
        let entry = at
            .entry(part.to_string())
            .or_insert_with(|| Value::Table(Table::new()));
        at = match entry {
            Value::Table(t) => t,
            other => panic!("config key {key:?}: {part:?} is already {other}, not a table"),
        };
    }
    at.insert(last.to_string(), value);
}

/// A whole config: top-level settings, `[[sources]]`, `[[sinks]]`, `[dead_letter]`, and any
/// other table through [`Config::set`].
#[derive(Debug, Clone, Default)]
pub struct Config {
    table: Table,
    sources: Vec<Source>,
    sinks: Vec<Sink>,
    dead_letter: Option<Sink>,
}

impl Config {
    pub fn new() -> Config {
        Config::default()
    }

    /// `io_mode = "uring" | "epoll"`.
    pub fn io_mode(self, mode: &str) -> Config {
        self.set("io_mode", mode)
    }

    pub fn workers(self, n: u32) -> Config {
        self.set("workers", n)
    }

    /// `shutdown_timeout = "10s"` (a duration as ringway spells it).
    pub fn shutdown_timeout(self, duration: &str) -> Config {
        self.set("shutdown_timeout", duration)
    }

    /// `[control] path = "{dir}/<name>"`: the control socket in the temp dir.
    pub fn control(self, name: &str) -> Config {
        self.set("control.path", in_dir(name))
    }

    /// Another `[[sources]]` table, after those already added.
    pub fn source(mut self, source: Source) -> Config {
        self.sources.push(source);
        self
    }

    /// Another `[[sinks]]` table, after those already added.
    pub fn sink(mut self, sink: Sink) -> Config {
        self.sinks.push(sink);
        self
    }

    /// `[dead_letter]`: where bad lines go.
    pub fn dead_letter(mut self, sink: Sink) -> Config {
        self.dead_letter = Some(sink);
        self
    }

    /// Any other key: `set("log_level", "info")`, `set("channel.when_full", "block")`.
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Config {
        set_in(&mut self.table, key, value.into());
        self
    }

    /// Changes the source named `name` (panics if there is none).
    pub fn with_source(mut self, name: &str, change: impl FnOnce(Source) -> Source) -> Config {
        let at = self
            .sources
            .iter()
            .position(|s| s.0.get("name").and_then(Value::as_str) == Some(name))
            .unwrap_or_else(|| panic!("no source named {name:?} in the config"));
        let source = self.sources.remove(at);
        self.sources.insert(at, change(source));
        self
    }

    /// Changes the `index`th sink (panics if there is none).
    pub fn with_sink(mut self, index: usize, change: impl FnOnce(Sink) -> Sink) -> Config {
        assert!(index < self.sinks.len(), "no sink {index} in the config");
        let sink = self.sinks.remove(index);
        self.sinks.insert(index, change(sink));
        self
    }

    /// The config as a TOML document (`{dir}` still to be replaced by the launcher).
    pub fn render(&self) -> String {
        let mut table = self.table.clone();
        let sources = self.sources.iter().map(|s| &s.0);
        let sinks = self.sinks.iter().map(|s| &s.0);
        for (key, tables) in [
            ("sources", sources.collect::<Vec<_>>()),
            ("sinks", sinks.collect()),
        ] {
            if !tables.is_empty() {
                let tables = tables.into_iter().cloned().map(Value::Table).collect();
                table.insert(key.to_string(), Value::Array(tables));
            }
        }
        if let Some(dead) = &self.dead_letter {
            table.insert("dead_letter".to_string(), Value::Table(dead.0.clone()));
        }
        toml::to_string(&table).expect("a config renders as TOML")
    }
}

/// One `[[sources]]` table.
#[derive(Debug, Clone)]
pub struct Source(Table);

impl Source {
    /// `type = kind`, nothing else yet (no name: ringway names it after its type).
    pub fn new(kind: &str) -> Source {
        Source(Table::new()).set("type", kind)
    }

    /// A `unix_socket_server` named `name` at `{dir}/<name>.sock`.
    pub fn unix(name: &str) -> Source {
        Source::unix_at(in_dir(&format!("{name}.sock"))).name(name)
    }

    /// An unnamed `unix_socket_server` at `path`, as given.
    pub fn unix_at(path: impl AsRef<Path>) -> Source {
        Source::new("unix_socket_server").path(path)
    }

    /// A `tcp_server` named `name` on `127.0.0.1`, port of the kernel's choosing.
    pub fn tcp(name: &str) -> Source {
        Source::new("tcp_server")
            .name(name)
            .set("url", "127.0.0.1:0")
    }

    /// A `ws_server` named `name` on `127.0.0.1`, port of the kernel's choosing.
    pub fn ws(name: &str) -> Source {
        Source::new("ws_server")
            .name(name)
            .set("url", "127.0.0.1:0")
    }

    /// A `file` source named `name` reading `{dir}/<file>`.
    pub fn file(name: &str, file: &str) -> Source {
        Source::new("file").name(name).path(in_dir(file))
    }

    pub fn name(self, name: &str) -> Source {
        self.set("name", name)
    }

    pub fn path(self, path: impl AsRef<Path>) -> Source {
        self.set("path", path_str(path))
    }

    /// Any other key, e.g. `set("backlog", 17)`, `set("codec", "json")`.
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Source {
        set_in(&mut self.0, key, value.into());
        self
    }

    /// `preprocessors = [{ name = "separate", config = { <key> = <value>, … } }]`.
    pub fn separate<K: Into<String>, V: Into<Value>>(
        self,
        config: impl IntoIterator<Item = (K, V)>,
    ) -> Source {
        let config: Table = config
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let mut separate = Table::new();
        separate.insert("name".into(), "separate".into());
        separate.insert("config".into(), Value::Table(config));
        self.set("preprocessors", vec![Value::Table(separate)])
    }
}

/// One `[[sinks]]` table, or the `[dead_letter]` table.
#[derive(Debug, Clone)]
pub struct Sink(Table);

impl Sink {
    /// `type = kind`, nothing else yet.
    pub fn new(kind: &str) -> Sink {
        Sink(Table::new()).set("type", kind)
    }

    /// A `file` sink writing `{dir}/<file>`.
    pub fn file(file: &str) -> Sink {
        Sink::file_at(in_dir(file))
    }

    /// A `file` sink writing `path`, as given.
    pub fn file_at(path: impl AsRef<Path>) -> Sink {
        Sink::new("file").path(path)
    }

    pub fn null() -> Sink {
        Sink::new("null")
    }

    pub fn stdout() -> Sink {
        Sink::new("stdout")
    }

    /// The `reply` sink: events back to the connection they came from.
    pub fn reply() -> Sink {
        Sink::new("reply")
    }

    /// A `unix_socket_client` to the socket at `path`, as given.
    pub fn unix_client_at(path: impl AsRef<Path>) -> Sink {
        Sink::new("unix_socket_client").path(path)
    }

    /// A `ws_client` to `url`.
    pub fn ws_client(url: &str) -> Sink {
        Sink::new("ws_client").set("url", url)
    }

    pub fn name(self, name: &str) -> Sink {
        self.set("name", name)
    }

    pub fn path(self, path: impl AsRef<Path>) -> Sink {
        self.set("path", path_str(path))
    }

    /// `inputs = [...]`: the sources (or client sinks) it takes events from.
    pub fn inputs(self, inputs: &[&str]) -> Sink {
        self.set("inputs", inputs.to_vec())
    }

    /// Any other key, e.g. `set("metadata", "envelope")`, `set("reconnect.retry.max_retries", 5)`.
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Sink {
        set_in(&mut self.0, key, value.into());
        self
    }
}
