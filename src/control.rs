//! The control socket: an operator (or `ringway ctl`) asks the running gateway for its state and
//! tells it what to do, one JSON request per line, one JSON response per line.
//!
//! Stage: beside the data flow. In: requests on a UNIX socket (mode 0600 by default), from the
//! gateway's own uid, root, or `allow_uids` (SO_PEERCRED; anyone else gets a refusal and is
//! disconnected). Out: responses, and the few levers the data path exposes: [`Pause`](crate::event::Pause) (a source
//! stops reading, so its writers feel backpressure), [`Registry::close`](crate::source::Registry::close) (a connection is shut
//! down and ends through the normal path), the log filter, a drain request. The request size is
//! bounded before anything is allocated for it, each request has a deadline, and a bad request
//! gets an error response on a connection that stays usable. Control connections are tokio tasks
//! on the gateway's runtime; nothing here touches the read loops' hot path except the
//! per-batch counters and one atomic load where a connection decides whether to read on.
//! What it does not do: decide what a `reload` changes (see `topology`).

pub mod commands;
pub mod ctl;
pub mod metrics;
pub mod protocol;
pub mod server;
