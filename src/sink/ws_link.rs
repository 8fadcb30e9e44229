//! The WebSocket connection of a `ws_client` sink (a [`Link`] of `sink::client`): connect (TCP,
//! TLS with rustls, upgrade), send events as messages, and read what the peer sends back.
//!
//! Async (tokio-tungstenite, as the `ws_server` source), driven from two plain threads through
//! the gateway's runtime [`Handle`] (`Handle::block_on`): the socket is registered with the
//! runtime's reactor, and no runtime of its own is made per connection (only its reply reader
//! thread, below). The stream is
//! split in two. The writer half stays on the client sink's thread, which connects, and sends
//! under a timeout of one slice at a time, so that the shutdown clock is looked at while the
//! peer is not taking them. The read half goes to a reply reader thread of the connection's
//! own (as the UNIX link's), which waits on the socket and feeds each message to the replies'
//! [`Feeder`] *outside* `block_on` (its sends block on the channel: not on a runtime thread,
//! and not inside the runtime's context). The reader stops at the peer's close or an error (the
//! writer sees it in [`Link::read_failed`]), or when the link tells it to (a oneshot, selected
//! against the read): closing never waits on a socket timeout.
//!
//! Trusted roots: `tls.cafile`, else the system's (`rustls-native-certs`: the OS store, or
//! `SSL_CERT_FILE` / `SSL_CERT_DIR`). What it does not do: retry or count (see `client`).

use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio_rustls::rustls;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use super::link::{Item, Link, Outbox};
use crate::config::{ClientTls, WsClientTarget};
use crate::ingest::Feeder;

/// How long each step of a connect (TCP, TLS, upgrade) may take.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// TCP, or TLS over TCP: one type for both, so that the link is not generic.
trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

type Ws = WebSocketStream<Box<dyn Transport>>;

pub struct WsLink {
    rt: Handle,
    tx: SplitSink<Ws, Message>,
    /// None once it has been joined.
    reader: Option<JoinHandle<ReadEnd>>,
    /// Sent (or dropped): the reader stops.
    stop: Option<oneshot::Sender<()>>,
    /// Resolves when the reader has ended (the reader drops its sender).
    ended: Option<oneshot::Receiver<()>>,
    write_slice: Duration,
    binary: bool,
}

/// How a reply reader ended.
enum ReadEnd {
    /// The link told it to.
    Stopped,
    /// The peer closed the WebSocket (or the connection, after the closing handshake).
    Closed,
    /// Reading failed: the connection is broken.
    Failed(io::Error),
}

/// What one wait of the reader found.
enum Next {
    Stop,
    /// Nothing more has come for now.
    Idle,
    Got(Option<Result<Message, tungstenite::Error>>),
}

fn io_err(e: tungstenite::Error) -> io::Error {
    match e {
        tungstenite::Error::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

/// The trusted roots: `cafile`'s, else the system's.
fn roots(tls: &ClientTls) -> io::Result<rustls::RootCertStore> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = &tls.cafile {
        let bad = |e: &dyn std::fmt::Display| {
            io::Error::other(format!("tls.cafile {}: {e}", ca.display()))
        };
        for c in CertificateDer::pem_file_iter(ca).map_err(|e| bad(&e))? {
            roots.add(c.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
        }
        return Ok(roots);
    }
    let found = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
        return Err(io::Error::other(format!(
            "no trusted roots: tls.cafile is not set and no system root certificate could be \
             loaded ({}); set tls.cafile to a PEM bundle, or SSL_CERT_FILE",
            if why.is_empty() {
                "none found".into()
            } else {
                why.join("; ")
            }
        )));
    }
    Ok(roots)
}

/// The TLS settings: the trusted roots, and the client certificate if any.
fn tls_config(tls: &ClientTls) -> io::Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
        io::Error::other(format!("tls.{what} {}: {e}", path.display()))
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots(tls)?);
    let config = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| bad("cert", cert, &e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad("cert", cert, &e))?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("key", key, &e))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| bad("key", key, &e))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// One step of a connect, under [`HANDSHAKE`]; its error names the step.
async fn step<T, E: std::fmt::Display>(
    what: &str,
    work: impl Future<Output = Result<T, E>>,
) -> io::Result<T> {
    match tokio::time::timeout(HANDSHAKE, work).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(io::Error::other(format!("{what} failed: {e}"))),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{what} timed out after {HANDSHAKE:?}"),
        )),
    }
}

/// TCP, TLS (with `tls`'s config), then the upgrade.
async fn handshake(t: &WsClientTarget, tls: Option<Arc<rustls::ClientConfig>>) -> io::Result<Ws> {
    let what = format!("TCP connect to {}:{}", t.host, t.port);
    let tcp = step(&what, TcpStream::connect((t.host.as_str(), t.port))).await?;
    let _ = tcp.set_nodelay(t.no_delay);
    let stream: Box<dyn Transport> = match (tls, &t.tls) {
        (Some(config), Some(settings)) => {
            let name = settings.domain.clone().unwrap_or_else(|| t.host.clone());
            let server_name = rustls::pki_types::ServerName::try_from(name.clone())
                .map_err(|e| io::Error::other(format!("tls.domain {name:?}: {e}")))?;
            let connector = tokio_rustls::TlsConnector::from(config);
            let what = format!("TLS handshake with {name}");
            Box::new(step(&what, connector.connect(server_name, tcp)).await?)
        }
        _ => Box::new(tcp),
    };
    let request = t
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| io::Error::other(format!("{}: {e}", t.url)))?;
    let upgrade = tokio_tungstenite::client_async_with_config(request, stream, None);
    let (ws, _) = step("WebSocket upgrade", upgrade).await?;
    Ok(ws)
}

/// Run `work` on the runtime, looking at the give-up clock every `slice`. None: gave up.
fn drive<T>(
    rt: &Handle,
    slice: Duration,
    work: impl Future<Output = T>,
    give_up: &dyn Fn() -> bool,
) -> Option<T> {
    rt.block_on(async {
        tokio::pin!(work);
        loop {
            match tokio::time::timeout(slice, &mut work).await {
                Ok(v) => return Some(v),
                Err(_) if give_up() => return None,
                Err(_) => {}
            }
        }
    })
}

/// One event as a message: binary when `binary`, or when it is not UTF-8; else text.
fn message(event: &[u8], binary: bool) -> Message {
    if !binary {
        if let Ok(t) = std::str::from_utf8(event) {
            return Message::text(t);
        }
    }
    Message::binary(event.to_vec())
}

/// Send every item, one message per event (events end at newlines), and flush.
async fn send_items<'a>(
    tx: &mut SplitSink<Ws, Message>,
    items: impl Iterator<Item = &'a Item>,
    binary: bool,
) -> Result<(), tungstenite::Error> {
    for item in items {
        let flags = item.binary_flags();
        let events = item
            .bytes()
            .split(|&b| b == b'\n')
            .filter(|e| !e.is_empty());
        for (i, e) in events.enumerate() {
            // Binary when configured, or when the event came in a binary message (a ws_server
            // source's).
            tx.feed(message(e, binary || flags.get(i) == Some(&true)))
                .await?;
        }
    }
    tx.flush().await
}

impl WsLink {
    /// Connect, handshake (TLS, then the upgrade), and start the reply reader (`name` names
    /// its thread); `replies` takes what the peer sends back. The error says which step
    /// failed. A reader that cannot be spawned is a failed connect, not a panic.
    pub fn connect(
        t: &WsClientTarget,
        rt: Handle,
        write_slice: Duration,
        replies: Feeder,
        name: &str,
    ) -> io::Result<WsLink> {
        let tls = t.tls.as_ref().map(tls_config).transpose()?;
        let ws = rt.block_on(handshake(t, tls))?;
        let (tx, rx) = ws.split();
        let (stop, stop_rx) = oneshot::channel();
        let (ended_tx, ended) = oneshot::channel::<()>();
        let reader_rt = rt.clone();
        let split = t.split;
        let reader = std::thread::Builder::new()
            .name(format!("ringway-replies-{name}"))
            .spawn(move || {
                let _ended = ended_tx; // dropped when the reader returns
                read_replies(&reader_rt, rx, stop_rx, replies, split)
            })?;
        Ok(WsLink {
            rt,
            tx,
            reader: Some(reader),
            stop: Some(stop),
            ended: Some(ended),
            write_slice,
            binary: t.binary,
        })
    }
}

impl Link for WsLink {
    /// Replies are read by a thread of their own: the core may wait as long as it likes.
    fn idle_wait(&self) -> Duration {
        self.write_slice
    }

    fn read_failed(&mut self) -> Option<io::Error> {
        if !self.reader.as_ref()?.is_finished() {
            return None;
        }
        match self.reader.take()?.join() {
            Ok(ReadEnd::Stopped) => None,
            Ok(ReadEnd::Closed) => Some(io::Error::other("the peer closed the WebSocket")),
            Ok(ReadEnd::Failed(e)) => Some(e),
            Err(_) => Some(io::Error::other("the reply reader panicked")),
        }
    }

    /// On failure every batch of the outbox goes again on the next connection (the peer may
    /// have read some of them).
    fn write(&mut self, out: &mut Outbox, give_up: &dyn Fn() -> bool) -> io::Result<()> {
        let work = send_items(&mut self.tx, out.items.iter(), self.binary);
        match drive(&self.rt, self.write_slice, work, give_up) {
            Some(Ok(())) => {
                out.all_sent();
                Ok(())
            }
            None => Ok(()), // the core sees the give-up point
            Some(Err(e)) => {
                out.all_exposed();
                Err(io_err(e))
            }
        }
    }

    /// Close (1000), and let the reader take the peer's last replies until the peer answers
    /// (and closes), or `give_up`.
    fn finish(mut self: Box<Self>, give_up: &dyn Fn() -> bool) {
        let close = Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }));
        let sent = drive(&self.rt, self.write_slice, self.tx.send(close), give_up);
        if let (Some(Ok(())), Some(ended)) = (sent, self.ended.take()) {
            let _ = drive(&self.rt, self.write_slice, ended, give_up);
        }
        self.close();
    }

    /// Stop the reader (it sends its last replies' batch) and drop the connection.
    fn close(mut self: Box<Self>) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// Read the peer's replies until it closes, reading fails, or `stop`; the writer looks at how
/// it ended. The open batch is sent once no more replies are waiting.
fn read_replies(
    rt: &Handle,
    mut rx: SplitStream<Ws>,
    mut stop: oneshot::Receiver<()>,
    replies: Feeder,
    split: bool,
) -> ReadEnd {
    let mut feeder = Some(replies);
    // The open batch may hold replies not yet sent.
    let mut held = false;
    let end = loop {
        // (Waits inside `block_on`; feeds outside it: a full lane blocks this thread only.)
        let next = rt.block_on(async {
            tokio::select! {
                biased;
                _ = &mut stop => Next::Stop,
                m = rx.next() => Next::Got(m),
                () = std::future::ready(()), if held => Next::Idle,
            }
        });
        let m = match next {
            Next::Stop => break ReadEnd::Stopped,
            Next::Idle => {
                held = false;
                if feeder.as_mut().is_some_and(|f| !f.flush()) {
                    feeder = None; // the lane is gone: shutdown (read on, and drop them)
                }
                continue;
            }
            Next::Got(None) => break ReadEnd::Closed,
            Next::Got(Some(Err(e))) => break ReadEnd::Failed(io_err(e)),
            Next::Got(Some(Ok(m))) => m,
        };
        let data: &[u8] = match &m {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b,
            _ => continue, // (pings are answered by tungstenite; a Close is followed by None)
        };
        if let Some(f) = &mut feeder {
            held = true;
            if !f.feed_message(data, split) {
                feeder = None;
            }
        }
    };
    if let Some(f) = feeder {
        f.finish();
    }
    end
}
