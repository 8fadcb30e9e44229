//! ringway: a Linux-only, high-performance socket gateway for newline-delimited JSON.
//!
//! ```text
//!  clients ──UNIX socket──▶ source (io_uring worker per core, or epoll)
//!                             │  multishot accept, multishot recv into a provided-buffer ring
//!                             ▼
//!                           framing (memchr; only a partial line is carried per connection)
//!                             ▼
//!                           codec (simd-json validation; raw bytes kept) ──bad line──▶ dead letter
//!                             ▼
//!                           batch (one copy: receive buffer → batch)
//!                             ▼
//!                           channel (bounded MPSR of batches; full ⇒ stop reading ⇒ writers block)
//!                             ▼
//!                           sink thread ──▶ file / stdout / null  (+ the dead-letter sink)
//! ```
//!
//! # Layout
//! - [`config`]: TOML → validated, typed [`config::Config`] (once, at start).
//! - [`source`]: the listeners and read loops: [`source::uring`] (the only `unsafe` module),
//!   [`source::epoll`], the socket-path rules in [`source::unix`], and per-connection ingest in
//!   [`source::conn`].
//! - [`framing`]: line splitting with per-connection carry and `max_length`.
//! - [`codec`]: json (simd-json), string (UTF-8), binary.
//! - [`channel`]: batches and the bounded channel with its `when_full` policy.
//! - [`sink`]: the sink thread, outputs and encodings (raw, envelope, dead-letter records).
//! - [`telemetry`]: counters and the summary line.
//! - [`gateway`]: wiring, signals and the shutdown order.

pub mod channel;
pub mod codec;
pub mod config;
pub mod framing;
pub mod gateway;
pub mod sink;
pub mod source;
pub mod telemetry;
