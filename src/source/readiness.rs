//! The readiness read loop (tokio; `io_mode = "epoll"`): for kernels or sandboxes that refuse
//! io_uring, and our baseline.
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

use std::os::fd::OwnedFd;

use rustix::net::SocketFlags;
use tokio::sync::watch;

use super::SourceRt;
use crate::codec::{Codec, Decoder, Decoders};
use crate::config::ChannelConfig;
use crate::event::Shutdown;
use crate::ingest::{Conn, IngestCtx};
use crate::socket::Stream;
use crate::telemetry::{Counters, RateLimit};

const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static DECODERS: RefCell<Option<Decoders>> = const { RefCell::new(None) };
}

pub(super) fn with_decoder<R>(codec: Codec, f: impl FnOnce(&mut Decoder) -> R) -> R {
    DECODERS.with(|d| {
        f(d.borrow_mut()
            .get_or_insert_with(Decoders::default)
            .get(codec))
    })
}

#[derive(Clone)]
pub struct Shared {
    pub counters: Arc<Counters>,
    pub channel: ChannelConfig,
    pub shutdown: Arc<Shutdown>,
    pub stop: watch::Receiver<bool>,
}

/// Accept on one listener of a source until shutdown (or until `reload` removes the source);
/// every connection task it spawns is tracked in `tasks`. `listener` is a duplicate of the
/// source's (non-blocking) listener.
pub async fn run_source(src: Arc<SourceRt>, listener: OwnedFd, shared: Shared) -> io::Result<()> {
    let tcp = matches!(src.cfg, crate::config::SourceConfig::TcpServer(_));
    let listener = AsyncListener::new(listener, tcp)?;
    let ended = accepting_ends(&src, &shared);
    tokio::pin!(ended);
    let mut warn = RateLimit::new(5);
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut ended => break,
            r = listener.accept() => match r {
                Ok(stream) => {
                    tasks.spawn(connection(src.clone(), stream, shared.clone()));
                }
                Err(e) => accept_failed(&src, &shared, &mut warn, e).await,
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    // A UNIX socket's path is gone, so no client can join the queue any more: take in the ones
    // already in it and read what they wrote. Out of descriptors (EMFILE): try again after a
    // backoff, until the deadline.
    loop {
        match listener.try_accept() {
            Ok(stream) => {
                tasks.spawn(connection(src.clone(), stream, shared.clone()));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                listener.stop_listening();
                break;
            }
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
                tracing::warn!(source = %src.meta.name, error = %e,
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

/// Resolves when a source's accept loop is to end: shutdown, or `reload` removed the source.
pub(super) async fn accepting_ends(src: &SourceRt, shared: &Shared) {
    tokio::select! {
        _ = stopped(shared.stop.clone()) => {}
        _ = src.retired() => {}
    }
}

/// An accept failed (EMFILE, say): count it, warn (rate-limited), back off, listen on.
pub(super) async fn accept_failed(
    src: &SourceRt,
    shared: &Shared,
    warn: &mut RateLimit,
    e: io::Error,
) {
    Counters::add(&shared.counters.accept_errors, 1);
    if warn.allow().is_some() {
        tracing::warn!(source = %src.meta.name, error = %e,
            "accept failed; backing off {ACCEPT_BACKOFF:?} and listening on");
    }
    tokio::time::sleep(ACCEPT_BACKOFF).await;
}

/// A UNIX or TCP listener, registered with tokio.
enum AsyncListener {
    Unix(tokio::net::UnixListener),
    Tcp(tokio::net::TcpListener),
}

impl AsyncListener {
    fn new(fd: OwnedFd, tcp: bool) -> io::Result<AsyncListener> {
        Ok(if tcp {
            let l = std::net::TcpListener::from(fd);
            l.set_nonblocking(true)?;
            AsyncListener::Tcp(tokio::net::TcpListener::from_std(l)?)
        } else {
            let l = std::os::unix::net::UnixListener::from(fd);
            l.set_nonblocking(true)?;
            AsyncListener::Unix(tokio::net::UnixListener::from_std(l)?)
        })
    }

    async fn accept(&self) -> io::Result<Stream> {
        Ok(match self {
            AsyncListener::Unix(l) => Stream::Unix(l.accept().await?.0),
            AsyncListener::Tcp(l) => Stream::Tcp(l.accept().await?.0),
        })
    }

    /// A TCP listener whose queue was taken in: stop listening now (new connections are
    /// refused) rather than when the gateway exits. A UNIX socket's path is already gone.
    fn stop_listening(&self) {
        if let AsyncListener::Tcp(l) = self {
            let _ = rustix::net::shutdown(l, rustix::net::Shutdown::Read);
        }
    }

    /// Accept without waiting (WouldBlock when the queue is empty).
    fn try_accept(&self) -> io::Result<Stream> {
        let fd = match self {
            AsyncListener::Unix(l) => {
                rustix::net::accept_with(l, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC)
            }
            AsyncListener::Tcp(l) => {
                rustix::net::accept_with(l, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC)
            }
        }?;
        Stream::from_fd(fd, matches!(self, AsyncListener::Tcp(_)))
    }
}

/// Counts a connection as active for as long as its task runs.
pub(super) struct ActiveGuard<'a>(pub &'a Counters, pub &'a SourceRt, pub u64);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.connection_closed();
        self.1.closed(self.2);
    }
}

/// Resolves once shutdown has been signalled (or the signal is gone).
pub(super) async fn stopped(mut rx: watch::Receiver<bool>) {
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

async fn connection(src: Arc<SourceRt>, stream: Stream, shared: Shared) {
    let mut conn = Conn::new(src.accepted(stream.as_fd(), None));
    shared.counters.connection_opened();
    let _active = ActiveGuard(&shared.counters, &src, conn.meta.id);
    let ctx = IngestCtx {
        framing: src.cfg.framing(),
        channel: &shared.channel,
        counters: &shared.counters,
        latency_field: src.meta.latency_field.as_deref(),
    };
    let buf_size = src.cfg.buf_size().get();
    let codec = src.cfg.codec();
    let past_deadline = async {
        stopped(shared.stop.clone()).await;
        if let Some(d) = shared.shutdown.deadline() {
            tokio::time::sleep_until(d.into()).await;
        }
    };
    tokio::pin!(past_deadline);
    // Removed by `reload`: what the socket holds is read, then EOF.
    let retired = src.retired();
    tokio::pin!(retired);
    let mut retiring = false;
    let mut late = false;
    loop {
        // A reply sink holds too much for this connection, or its source is paused: read no
        // more until it drains or resumes.
        let pause = &conn.meta.source.pause;
        while !late && !conn.meta.should_read() {
            let room = async {
                match &conn.meta.reply {
                    Some(r) if r.backlogged() => r.room().notified().await,
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = &mut past_deadline => {
                    // Reading ends here as everywhere else at the deadline: what is queued
                    // is read, then EOF (the loop below no longer waits on the deadline).
                    late = true;
                    let _ = rustix::net::shutdown(stream.as_fd(), rustix::net::Shutdown::Read);
                }
                _ = room => {}
                _ = pause.resumed(), if pause.is_paused() => {}
                _ = conn.meta.close.notified() => {
                    let _ = rustix::net::shutdown(stream.as_fd(), rustix::net::Shutdown::Both);
                    break;
                }
            }
        }
        tokio::select! {
            biased;
            _ = &mut past_deadline, if !late => break,
            _ = &mut retired, if !retiring => {
                retiring = true;
                let _ = rustix::net::shutdown(stream.as_fd(), rustix::net::Shutdown::Read);
            }
            _ = conn.meta.close.notified() => {
                // Asked by the control socket: what the socket holds is read, then EOF.
                let _ = rustix::net::shutdown(stream.as_fd(), rustix::net::Shutdown::Both);
            }
            r = stream.readable() => if r.is_err() { break },
        }
        let state = SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            if scratch.len() < buf_size {
                scratch.resize(buf_size, 0);
            }
            with_decoder(codec, |dec| loop {
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
            if src.sender.send(b).await.is_err() {
                return;
            }
        }
        if matches!(state, Read::Eof) {
            break;
        }
    }
    with_decoder(codec, |dec| conn.finish(&ctx, dec));
    if let Some(b) = conn.take_batch(&shared.counters) {
        let _ = src.sender.send(b).await;
    }
}
