//! ringway: a Linux-only, high-performance socket gateway for newline-delimited JSON.
//!
//! ```text
//!  clients ──UNIX / TCP socket──▶ source (io_uring worker per core, or epoll)
//!  clients ──WebSocket (ws/wss)──▶ source (a tokio task per connection)
//!  a file (read once, or followed) ──▶ source (a thread of its own)
//!                             │  multishot accept, multishot recv into a provided-buffer ring
//!                             ▼
//!                           framing (memchr; only a partial line is carried per connection)
//!                             ▼
//!                           codec (simd-json validation; raw bytes kept) ──bad line──▶ dead letter
//!                             ▼
//!                           batch (one copy: receive buffer → batch)
//!                             ▼
//!                           channel (one bounded lane per event stream; full ⇒ stop reading
//!                             │      ⇒ writers block)
//!                             ▼
//!                           sink thread ──▶ file / stdout / null  (+ the dead-letter sink)
//!                             ├──▶ reply: back down the connection each event came from
//!                             └──▶ unix_socket_client / ws_client: a spool and a writer thread
//!                                  per peer; the peer's answers come back as an event stream
//!
//!  beside it: the control socket (stats, pause, resume, close, reload, drain, …) and /metrics
//! ```
//!
//! # Layout
//! Dependencies point down this list (a module imports only modules below it):
//! - [`gateway`]: the binary's edge: the read loop choice, the runtime, signals, exit status.
//! - [`control`]: the control socket (commands, `ctl`, `reload`) and the metrics endpoint.
//! - [`topology`]: the running sources, lanes and sinks: built from a config (the diff from
//!   nothing), changed by `reload` (the diff from the running config), shut down in order.
//! - [`source`]: the listeners and read loops: [`source::uring`] (the only `unsafe` module),
//!   [`source::readiness`] (the tokio readiness loop, `io_mode = "epoll"`), [`source::ws`] (WebSocket), the socket-path
//!   rules in [`source::unix`], TCP listeners in [`source::tcp`], the file source in
//!   [`source::file`], and the live connections' [`source::Registry`].
//! - [`sink`]: the sink thread, outputs and encodings (raw, envelope, dead-letter records) and
//!   the client sinks ([`sink::client`]).
//! - [`ingest`]: per-connection framing + codec + batching ([`ingest::Conn`], [`ingest::Feeder`]).
//! - [`reply`]: the way back: a bounded reply queue per connection, filled by the `reply` sink.
//! - [`channel`]: the bounded lanes of batches and the `when_full` policy.
//! - [`config`]: TOML → validated, typed [`config::Config`].
//! - [`framing`]: line splitting with per-connection carry and `max_length`.
//! - [`codec`]: json (simd-json), string (UTF-8), binary.
//! - [`telemetry`]: counters, histograms, the summary line, report and Prometheus text.
//! - [`socket`]: a connected UNIX/TCP socket registered with tokio.
//! - [`event`]: the shared vocabulary (batches, metadata, dead-letter kinds, shutdown and pause
//!   signals, the reply-target trait); it imports nothing else of the crate.

#![deny(unsafe_code)]

pub mod channel;
pub mod codec;
pub mod config;
pub mod control;
pub mod event;
pub mod framing;
pub mod gateway;
pub mod ingest;
pub mod reply;
pub mod sink;
pub mod socket;
pub mod source;
pub mod telemetry;
pub mod topology;
