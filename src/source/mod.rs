//! Sources: where events come from.
//!
//! In: connections on the configured sockets. Out: [`Batch`](crate::channel::Batch)es on the
//! channel. The read loop exists twice, behind one interface: [`uring`] (io_uring, the default)
//! and [`epoll`] (tokio, for kernels or sandboxes that refuse io_uring, and our baseline). Both
//! feed the same per-connection state ([`conn::Conn`]), so framing, decoding, batching and dead
//! letters behave the same whatever the loop. What this module does not do: write to sinks.

pub mod balance;
pub mod conn;
pub mod epoll;
pub mod unix;
pub mod uring;

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::channel::{ConnMeta, SourceMeta};
use crate::config::UnixServerConfig;

/// A bound source, shared by every worker.
pub struct SourceRt {
    pub cfg: UnixServerConfig,
    pub meta: Arc<SourceMeta>,
    pub listener_fd: RawFd,
    next_conn_id: Arc<AtomicU64>,
}

impl SourceRt {
    /// `socket` must outlive every worker that uses this source.
    pub fn new(
        cfg: UnixServerConfig,
        socket: &unix::BoundSocket,
        ids: Arc<AtomicU64>,
        latency_field: Option<String>,
    ) -> SourceRt {
        let meta = Arc::new(SourceMeta {
            name: cfg.name.clone(),
            path: cfg.path.to_string_lossy().into_owned(),
            codec: cfg.codec,
            latency_field,
        });
        SourceRt {
            listener_fd: socket.listener.as_raw_fd(),
            cfg,
            meta,
            next_conn_id: ids,
        }
    }

    /// The metadata of a new connection, with its SO_PEERCRED (pid, uid, gid) when the kernel
    /// gave them (else 0, u32::MAX, u32::MAX).
    pub fn conn_meta(&self, cred: Option<(i32, u32, u32)>) -> Arc<ConnMeta> {
        let id = self.next_conn_id.fetch_add(1, Ordering::Relaxed);
        let (pid, uid, gid) = cred.unwrap_or((0, u32::MAX, u32::MAX));
        let envelope_prefix =
            crate::sink::encode::envelope_prefix(&self.meta, id, pid, uid, gid).into_boxed_slice();
        Arc::new(ConnMeta {
            source: Arc::clone(&self.meta),
            id,
            pid,
            uid,
            gid,
            envelope_prefix,
        })
    }
}

/// The shutdown signal every worker watches: requested once, with a deadline for reading.
#[derive(Default)]
pub struct Shutdown {
    requested: AtomicBool,
    deadline: OnceLock<Instant>,
    grace: OnceLock<Duration>,
}

impl Shutdown {
    pub fn request(&self, grace: Duration) {
        let _ = self.grace.set(grace);
        let _ = self.deadline.set(Instant::now() + grace);
        self.requested.store(true, Ordering::Release);
    }

    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline.get().copied()
    }

    /// When a failing sink stops retrying: one more grace period after the reading deadline.
    pub fn sink_give_up(&self) -> Option<Instant> {
        let d = self.deadline()?;
        Some(d + self.grace.get().copied().unwrap_or_default())
    }
}
