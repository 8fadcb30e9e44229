//! ringway: a Linux-only, high-performance socket gateway for newline-delimited JSON.
//!
//! ```text
//!  clients ──UNIX / TCP socket──▶ source (io_uring worker per core, or epoll)
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
//!                             └──▶ unix_socket_client: a spool and a writer thread per peer;
//!                                  the peer's answers come back as an event stream of their own
//! ```
//!
//! # Layout
//! - [`config`]: TOML → validated, typed [`config::Config`] (once, at start).
//! - [`source`]: the listeners and read loops: [`source::uring`] (the only `unsafe` module),
//!   [`source::epoll`], the socket-path rules in [`source::unix`], TCP listeners in
//!   [`source::tcp`], the file source in [`source::file`], and per-connection ingest in
//!   [`source::conn`].
//! - [`framing`]: line splitting with per-connection carry and `max_length`.
//! - [`codec`]: json (simd-json), string (UTF-8), binary.
//! - [`channel`]: batches and the bounded channel with its `when_full` policy.
//! - [`sink`]: the sink thread, outputs and encodings (raw, envelope, dead-letter records), the
//!   reply queues ([`sink::reply`]) and the client sinks ([`sink::client`]).
//! - [`telemetry`]: counters and the summary line.
//! - [`gateway`]: wiring, signals and the shutdown order.

pub mod channel;
pub mod codec;
pub mod config;
pub mod control;
pub mod framing;
pub mod gateway;
pub mod sink;
pub mod source;
pub mod telemetry;
