//! The epoll read loop (tokio): for kernels or sandboxes that refuse io_uring, and our baseline.
//!
//! Stage: source. In: the same bound listeners as [`super::uring`]. Out: the same batches. One
//! task accepts per source; one task per connection waits for readiness, then reads into a
//! per-thread scratch buffer and frames and decodes it before the next `.await`, so an idle
//! connection holds no read buffer here either. Backpressure: under `when_full = "block"` the
//! connection's task awaits room in the channel and does not read meanwhile.
//! What it does not do: anything io_uring-specific, or use `unsafe`.

use std::cell::RefCell;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use super::conn::{Conn, IngestCtx};
use super::{Shutdown, SourceRt};
use crate::channel::Sender;
use crate::codec::{Codec, Decoder, Decoders};
use crate::config::ChannelConfig;
use crate::telemetry::{Counters, RateLimit};

const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static DECODERS: RefCell<Option<Decoders>> = const { RefCell::new(None) };
}

fn with_decoder<R>(codec: Codec, f: impl FnOnce(&mut Decoder) -> R) -> R {
    DECODERS.with(|d| {
        f(d.borrow_mut()
            .get_or_insert_with(Decoders::default)
            .get(codec))
    })
}

#[derive(Clone)]
pub struct Shared {
    pub sender: Sender,
    pub counters: Arc<Counters>,
    pub channel: ChannelConfig,
    pub shutdown: Arc<Shutdown>,
    pub stop: watch::Receiver<bool>,
}

/// Accept on one source until shutdown; every connection task it spawns is tracked in `tasks`.
pub async fn run_source(
    src: Arc<SourceRt>,
    listener: std::os::unix::net::UnixListener,
    shared: Shared,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = UnixListener::from_std(listener)?;
    let stop = stopped(shared.stop.clone());
    tokio::pin!(stop);
    let mut warn = RateLimit::new(5);
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    tasks.spawn(connection(Arc::clone(&src), stream, shared.clone()));
                }
                Err(e) => {
                    Counters::add(&shared.counters.accept_errors, 1);
                    if warn.allow().is_some() {
                        tracing::warn!(source = %src.cfg.name, error = %e,
                            "accept failed; backing off {ACCEPT_BACKOFF:?} and listening on");
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    // The socket path is gone, so no client can join the queue any more: take in the ones
    // already in it (the listener is non-blocking) and read what they wrote.
    // Out of descriptors (EMFILE): try again after a backoff, until the deadline.
    let listener = listener.into_std()?;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Ok(stream) = stream
                    .set_nonblocking(true)
                    .and_then(|()| UnixStream::from_std(stream))
                {
                    tasks.spawn(connection(Arc::clone(&src), stream, shared.clone()));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                Counters::add(&shared.counters.accept_errors, 1);
                if shared
                    .shutdown
                    .deadline()
                    .is_some_and(|d| std::time::Instant::now() >= d)
                {
                    break;
                }
                tracing::warn!(source = %src.cfg.name, error = %e,
                    "accepting queued connections at shutdown failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                }
            }
        }
    }
    drop(listener);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Counts a connection as active for as long as its task runs.
struct ActiveGuard<'a>(&'a Counters);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.connection_closed();
    }
}

/// Resolves once shutdown has been signalled (or the signal is gone).
async fn stopped(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

enum Read {
    /// Nothing more to read now.
    Pending,
    /// The batch is at its bounds: send it before reading on.
    Full,
    Eof,
}

async fn connection(src: Arc<SourceRt>, stream: UnixStream, shared: Shared) {
    let cred = stream
        .peer_cred()
        .ok()
        .map(|c| (c.pid().unwrap_or(0), c.uid(), c.gid()));
    let mut conn = Conn::new(src.conn_meta(cred));
    shared.counters.connection_opened();
    let _active = ActiveGuard(&shared.counters);
    let ctx = IngestCtx {
        framing: &src.cfg.framing,
        channel: &shared.channel,
        counters: &shared.counters,
        latency_field: src.meta.latency_field.as_deref(),
    };
    let buf_size = src.cfg.buf_size.get();
    let past_deadline = async {
        stopped(shared.stop.clone()).await;
        if let Some(d) = shared.shutdown.deadline() {
            tokio::time::sleep_until(d.into()).await;
        }
    };
    tokio::pin!(past_deadline);
    loop {
        tokio::select! {
            biased;
            _ = &mut past_deadline => break,
            r = stream.readable() => if r.is_err() { break },
        }
        let state = SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            if scratch.len() < buf_size {
                scratch.resize(buf_size, 0);
            }
            with_decoder(src.cfg.codec, |dec| loop {
                match stream.try_read(&mut scratch[..buf_size]) {
                    Ok(0) => return Read::Eof,
                    Ok(n) => {
                        if conn.feed(&ctx, dec, &scratch[..n]) {
                            return Read::Full;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Read::Pending,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        tracing::debug!(conn = conn.meta.id, error = %e, "read ended");
                        return Read::Eof;
                    }
                }
            })
        });
        if let Some(b) = conn.take_batch(&shared.counters) {
            if shared.sender.send(b).await.is_err() {
                return;
            }
        }
        if matches!(state, Read::Eof) {
            break;
        }
    }
    with_decoder(src.cfg.codec, |dec| conn.finish(&ctx, dec));
    if let Some(b) = conn.take_batch(&shared.counters) {
        let _ = shared.sender.send(b).await;
    }
}
