//! Per-connection ingest: bytes as a connection delivered them in, batches of checked events
//! (and dead letters) out. Framing and the codec run here, once per connection, the same
//! whatever read them: the io_uring workers, the tokio readiness tasks, a WebSocket task
//! ([`Conn`], its caller sends the batches), or a thread with blocking reads ([`Feeder`], which
//! sends them itself: a file source, a client sink's replies).
//!
//! Stage: between the sources and the channel. What it does not do: read sockets, or decide
//! what happens when the channel is full (the caller of [`Conn`] does; [`Feeder`] blocks).

mod conn;
mod feeder;

pub use conn::{Conn, IngestCtx};
pub use feeder::Feeder;
