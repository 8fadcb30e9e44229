//! The `ws_server` source: WebSocket (`ws://`, or `wss://` with rustls) connections, on tokio.
//!
//! Stage: source. In: TCP connections on the source's listener. Out: batches on the source's
//! lane. One task accepts; each connection gets a task of its own, which does the TLS handshake
//! and the WebSocket upgrade under one deadline (`handshake_timeout`), so a client that stalls
//! mid-handshake holds only its own task, and a failed handshake ends only its connection.
//! Beyond `max_connections` the upgrade is answered with HTTP 503.
//!
//! Each text or binary message is framed by `separate` (its last line needs no separator) or,
//! without preprocessors, taken whole as one event; then decoded and batched as on every other
//! path. A batch is sent when it is full or when no further message is already buffered, and
//! sending waits for room in the lane: meanwhile nothing is read, so the TCP window closes on
//! the client (backpressure; nothing dropped under `when_full = "block"`). A message over
//! `max_message_size` ends the connection with close code 1009. Pings go out every
//! `ping_interval`; a client that sends nothing (not even a pong) for `ping_interval +
//! ping_timeout` is closed. At shutdown, or when the source is removed or the control socket
//! closes the connection, the client is sent a close frame (1001) and read until it answers
//! (or the shutdown deadline), so what it sent before is delivered.
//! With a `reply` sink that takes the source, each connection's task also writes its replies,
//! one message per event (text when it is UTF-8, else binary), from a bounded queue
//! ([`Outbox`]); while that queue is over `queue_bytes` the connection is not read.
//! What it does not do: the client side (`ws_client`).

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::rustls;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use super::readiness::{accept_failed, accepting_ends, stopped, with_decoder, ActiveGuard, Shared};
use super::{tcp, Listener, SourceRt};
use crate::config::{SourceConfig, TcpServerConfig, WsServerConfig};
use crate::ingest::{Conn, IngestCtx};
use crate::reply::Outbox;
use crate::telemetry::{Counters, RateLimit};

/// How long a client has to answer our close frame when no shutdown deadline applies.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// How long sending a ping or close frame may wait for a client that reads nothing.
const CONTROL_SEND: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Tcp(#[from] tcp::Error),
    #[error("source {name}: tls.{key} {path}: {err}")]
    Tls {
        name: String,
        key: &'static str,
        path: std::path::PathBuf,
        err: String,
    },
}

/// A `ws_server`'s bound listener and, for `wss://`, its TLS acceptor.
pub struct Bound {
    pub listener: std::net::TcpListener,
    pub addr: SocketAddr,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Bind the listener and load the certificate and key (so a bad file fails at start, or
/// refuses the reload that adds the source).
pub fn bind(cfg: &WsServerConfig) -> Result<Bound, Error> {
    let tls = cfg
        .tls
        .as_ref()
        .map(|t| acceptor(cfg, &t.cert, &t.key))
        .transpose()?;
    let as_tcp = TcpServerConfig {
        name: cfg.name.clone(),
        addr: cfg.addr,
        buf_size: std::num::NonZeroUsize::new(64 * 1024).unwrap(),
        backlog: cfg.backlog,
        no_delay: cfg.no_delay,
        codec: cfg.codec,
        framing: cfg.framing.clone(),
    };
    let (mut ls, addr) = tcp::bind(&as_tcp, 1)?;
    Ok(Bound {
        listener: ls.remove(0),
        addr,
        tls,
    })
}

fn acceptor(
    cfg: &WsServerConfig,
    cert: &Path,
    key: &Path,
) -> Result<tokio_rustls::TlsAcceptor, Error> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let fail = |k: &'static str, path: &Path, err: String| Error::Tls {
        name: cfg.name.clone(),
        key: k,
        path: path.to_path_buf(),
        err,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| fail("cert", cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| fail("cert", cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(fail("cert", cert, "no certificate in this PEM file".into()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| fail("key", key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail("cert", cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| fail("key", key, format!("does not fit the certificate: {e}")))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

fn config_of(src: &SourceRt) -> &WsServerConfig {
    match &src.cfg {
        SourceConfig::WsServer(w) => w,
        _ => unreachable!("ws::run is only given ws_server sources"),
    }
}

/// Accept until shutdown (or until `reload` removes the source); each connection runs in a task
/// tracked here, and this returns once they have all ended.
pub async fn run(src: Arc<SourceRt>, shared: Shared) -> io::Result<()> {
    let Some(Listener::Ws(bound)) = src.listener() else {
        unreachable!("a ws_server source has a WebSocket listener");
    };
    let std_listener = bound.listener.try_clone()?;
    std_listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(std_listener)?;
    let slots = Arc::new(Semaphore::new(config_of(&src).max_connections));
    let ended = accepting_ends(&src, &shared);
    tokio::pin!(ended);
    let mut warn = RateLimit::new(5);
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut ended => break,
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let permit = Arc::clone(&slots).try_acquire_owned().ok();
                    tasks.spawn(connection(Arc::clone(&src), stream, peer, permit, shared.clone()));
                }
                Err(e) => accept_failed(&src, &shared, &mut warn, e).await,
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    // Stop listening now: new clients are refused rather than queued unanswered.
    let _ = rustix::net::shutdown(&listener, rustix::net::Shutdown::Read);
    drop(listener);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// One TCP connection: TLS and the upgrade within `handshake_timeout`, then its messages.
async fn connection(
    src: Arc<SourceRt>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    permit: Option<OwnedSemaphorePermit>,
    shared: Shared,
) {
    let cfg = config_of(&src);
    if cfg.no_delay {
        let _ = stream.set_nodelay(true);
    }
    let deadline = tokio::time::Instant::now() + cfg.handshake_timeout;
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(cfg.max_message_size))
        .max_frame_size(Some(cfg.max_message_size));
    let full = permit.is_none();
    let Some(Listener::Ws(bound)) = src.listener() else {
        return;
    };
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        Counters::add(&shared.counters.ws_handshake_failures, 1);
        tracing::debug!(source = %src.meta.name, %peer, "{what}: {e}");
    };
    match &bound.tls {
        None => match tokio::time::timeout_at(deadline, upgrade(stream, ws_config, full)).await {
            Ok(Ok(ws)) => serve(ws, &src, peer, &shared).await,
            Ok(Err(e)) => failed("WebSocket handshake failed", &e),
            Err(_) => failed("WebSocket handshake", &"timed out"),
        },
        Some(acceptor) => {
            let tls = match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return failed("TLS handshake failed", &e),
                Err(_) => return failed("TLS handshake", &"timed out"),
            };
            match tokio::time::timeout_at(deadline, upgrade(tls, ws_config, full)).await {
                Ok(Ok(ws)) => serve(ws, &src, peer, &shared).await,
                Ok(Err(e)) => failed("WebSocket handshake failed", &e),
                Err(_) => failed("WebSocket handshake", &"timed out"),
            }
        }
    }
    drop(permit);
}

// The error type is tungstenite's (an HTTP response), returned once per refused upgrade.
#[allow(clippy::result_large_err)]
async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    config: WebSocketConfig,
    full: bool,
) -> Result<WebSocketStream<S>, tungstenite::Error> {
    let callback = move |_: &Request, response: Response| -> Result<Response, ErrorResponse> {
        if full {
            let mut refusal = ErrorResponse::new(Some(
                "too many connections (max_connections); try again later\n".into(),
            ));
            *refusal.status_mut() = tungstenite::http::StatusCode::SERVICE_UNAVAILABLE;
            return Err(refusal);
        }
        Ok(response)
    };
    tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)).await
}

/// What to do after a message.
enum Step {
    /// Go on; true when the batch is full.
    Go(bool),
    End,
    /// The client's close frame: tungstenite has queued the answer, which must be flushed.
    Closed,
    /// A message over `max_message_size`: close with 1009 and this reason.
    TooBig(String),
}

/// A connection's replies (with a `reply` sink that takes this source), written by its task.
struct Replies {
    outbox: Option<Outbox>,
    buf: Vec<u8>,
    ends: Vec<usize>,
}

impl Replies {
    /// Wait for replies (never, without an outbox or once it is done).
    async fn next(&mut self) -> bool {
        match &mut self.outbox {
            Some(o) => o.next(&mut self.buf, &mut self.ends).await,
            None => std::future::pending().await,
        }
    }

    /// Send what [`Replies::next`] took, one message per event (text when it is UTF-8), within
    /// `write_timeout`. False when the connection cannot take them (it is then to be closed;
    /// what was not sent is counted as dropped).
    async fn send<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        ws: &mut WebSocketStream<S>,
    ) -> bool {
        let Some(outbox) = &mut self.outbox else {
            return true;
        };
        let (buf, ends) = (&self.buf, &self.ends);
        let all = async {
            let mut start = 0;
            for &end in ends {
                let mut e = &buf[start..end];
                while let [rest @ .., b'\n' | b'\r'] = e {
                    e = rest;
                }
                let m = match std::str::from_utf8(e) {
                    Ok(t) => Message::text(t),
                    Err(_) => Message::binary(e.to_vec()),
                };
                ws.feed(m).await?;
                start = end;
            }
            ws.flush().await
        };
        match tokio::time::timeout(outbox.write_timeout, all).await {
            Ok(Ok(())) => {
                outbox.wrote(buf.len());
                true
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "replies cannot be sent: the WebSocket is gone");
                self.outbox = None;
                false
            }
            Err(_) => {
                outbox.timed_out();
                self.outbox = None;
                false
            }
        }
    }
}

/// Serve an upgraded connection: read it, and write its replies, until it ends. Replies are
/// written while the connection is open: those still to come when it closes (or when we close
/// it) are counted in `replies_dropped`.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: WebSocketStream<S>,
    src: &Arc<SourceRt>,
    peer: SocketAddr,
    shared: &Shared,
) {
    let (meta, outbox) = src.opened_ws(Some(peer));
    let mut replies = Replies {
        outbox,
        buf: Vec::new(),
        ends: Vec::new(),
    };
    shared.counters.connection_opened();
    let _active = ActiveGuard(&shared.counters, src, meta.id);
    read(&mut ws, src, meta, shared, &mut replies).await;
    drop(replies);
    // (A client that reads nothing cannot take even the close frame: do not wait for it.)
    let _ = tokio::time::timeout(CONTROL_SEND, ws.close(None)).await;
}

/// The reading side of [`serve`] (replies are sent in between).
async fn read<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    src: &Arc<SourceRt>,
    meta: Arc<crate::event::ConnMeta>,
    shared: &Shared,
    replies: &mut Replies,
) {
    let cfg = config_of(src);
    let mut conn = Conn::new(Arc::clone(&meta));
    let ctx = IngestCtx {
        framing: src.cfg.framing(),
        channel: &shared.channel,
        counters: &shared.counters,
        latency_field: src.meta.latency_field.as_deref(),
    };
    let (split, codec) = (cfg.split, cfg.codec);
    // Ends reading: shutdown, the source's removal, or `close` from the control socket.
    let ending = async {
        tokio::select! {
            _ = stopped(shared.stop.clone()) => "ringway is shutting down",
            _ = src.retired() => "this source was removed",
            _ = meta.close.notified() => "closed by the operator",
        }
    };
    tokio::pin!(ending);
    let mut closing_since: Option<Instant> = None;
    let mut ping = cfg.ping_interval.map(|d| {
        let mut i = tokio::time::interval_at(tokio::time::Instant::now() + d, d);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    });
    let mut heard = Instant::now();
    loop {
        let close_by = closing_since.map(|_| {
            shared
                .shutdown
                .deadline()
                .unwrap_or_else(|| Instant::now() + CLOSE_GRACE)
        });
        // A reply queue over its bound: read no more until the client takes its replies.
        // Or the source is paused (control socket): the client's sends block the same way.
        let pause = &conn.meta.source.pause;
        let backlogged = !conn.meta.should_read_closing(closing_since.is_some());
        let paused = pause.is_paused() && closing_since.is_none();
        let next = tokio::select! {
            biased;
            why = &mut ending, if closing_since.is_none() => {
                closing_since = Some(Instant::now());
                let frame = CloseFrame { code: CloseCode::Away, reason: why.into() };
                if !send_control(ws, Message::Close(Some(frame))).await {
                    break;
                }
                continue;
            }
            _ = sleep_until(close_by), if close_by.is_some() => break,
            _ = tick(&mut ping) => {
                let quiet = heard.elapsed();
                let limit = cfg.ping_interval.unwrap_or_default() + cfg.ping_timeout;
                if quiet >= limit {
                    tracing::debug!(conn = conn.meta.id, "no pong for {quiet:?}: closing");
                    let frame = CloseFrame { code: CloseCode::Policy, reason: "ping timeout".into() };
                    send_control(ws, Message::Close(Some(frame))).await;
                    break;
                }
                if !send_control(ws, Message::Ping(Default::default())).await {
                    break;
                }
                continue;
            }
            more = replies.next() => {
                if more && !replies.send(ws).await {
                    break;
                }
                continue;
            }
            _ = pause.resumed(), if paused => continue,
            m = ws.next(), if !backlogged => m,
        };
        let mut step = with_decoder(codec, |dec| on_message(&mut conn, &ctx, dec, split, next));
        // Take in what is already buffered, up to the batch's bounds, before sending.
        while let Step::Go(false) = step {
            match ws.next().now_or_never() {
                Some(m) => {
                    step = with_decoder(codec, |dec| on_message(&mut conn, &ctx, dec, split, m))
                }
                None => break,
            }
        }
        heard = Instant::now();
        if let Some(b) = conn.take_batch(&shared.counters) {
            if src.sender.send(b).await.is_err() {
                break;
            }
        }
        match step {
            Step::Go(_) => {}
            Step::Closed => {
                let _ = ws.flush().await;
            }
            Step::End => break,
            Step::TooBig(why) => {
                let reason = format!("{why} (max_message_size)");
                let frame = CloseFrame {
                    code: CloseCode::Size,
                    reason: reason.into(),
                };
                send_control(ws, Message::Close(Some(frame))).await;
                break;
            }
        }
    }
    if let Some(b) = conn.take_batch(&shared.counters) {
        let _ = src.sender.send(b).await;
    }
}

fn on_message(
    conn: &mut Conn,
    ctx: &IngestCtx<'_>,
    dec: &mut crate::codec::Decoder,
    split: bool,
    m: Option<Result<Message, tungstenite::Error>>,
) -> Step {
    match m {
        Some(Ok(Message::Text(t))) => {
            let from = conn.batch_events();
            let full = conn.feed_message(ctx, dec, t.as_bytes(), split);
            conn.mark_binary(from, false);
            Step::Go(full)
        }
        Some(Ok(Message::Binary(b))) => {
            let from = conn.batch_events();
            let full = conn.feed_message(ctx, dec, &b, split);
            conn.mark_binary(from, true);
            Step::Go(full)
        }
        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Step::Go(false),
        // Tungstenite answers the close (once flushed); the stream then ends.
        Some(Ok(Message::Close(_))) => Step::Closed,
        Some(Err(tungstenite::Error::Capacity(e))) => {
            Counters::add(&ctx.counters.ws_messages_too_big, 1);
            tracing::debug!(conn = conn.meta.id, "{e}: closing with 1009");
            Step::TooBig(e.to_string())
        }
        Some(Err(e)) => {
            tracing::debug!(conn = conn.meta.id, error = %e, "WebSocket connection ended");
            Step::End
        }
        None => Step::End,
    }
}

/// Send a ping or close frame, unless the client has not taken it within `CONTROL_SEND` (its
/// window is shut: then the connection is to be dropped). True if sent.
async fn send_control<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    m: Message,
) -> bool {
    matches!(
        tokio::time::timeout(CONTROL_SEND, ws.send(m)).await,
        Ok(Ok(()))
    )
}

async fn tick(i: &mut Option<tokio::time::Interval>) {
    match i {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
