//! The WebSocket connection of a `ws_client` sink (a [`Link`] of `sink::client`): connect (TCP,
//! TLS with rustls, upgrade), send events as messages, and read what the peer sends back.
//!
//! Blocking, on the client sink's own thread, like the UNIX connection: writes wait at most a
//! slice (the socket's write timeout) before the shutdown clock is looked at again; replies are
//! read between writes with a short read timeout, so one thread serves both ways (a WebSocket
//! cannot be split between threads). What it does not do: retry (see `client`).

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::rustls;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message, WebSocket};

use super::link::{is_timeout, Item, Link, Outbox};
use crate::config::{ClientTls, WsClientTarget};
use crate::ingest::Feeder;

/// How long a connect and the TLS and WebSocket handshakes may take.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// How long a look for replies waits when there are none.
const READ_SLICE: Duration = Duration::from_millis(1);

/// TCP, or TLS over TCP.
pub enum Transport {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Transport {
    fn tcp(&self) -> &TcpStream {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(t) => &t.sock,
        }
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(buf),
            Transport::Tls(t) => t.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush(),
            Transport::Tls(t) => t.flush(),
        }
    }
}

pub struct WsLink {
    ws: WebSocket<Transport>,
    binary: bool,
    split: bool,
    replies: Option<Feeder>,
    /// Our close frame is sent.
    closing: bool,
}

fn io_err(e: tungstenite::Error) -> io::Error {
    match e {
        tungstenite::Error::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

/// The TLS settings: trusted roots from `cafile` (else the system's bundle), the name to check.
fn tls_config(tls: &ClientTls) -> io::Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
        io::Error::other(format!("tls.{what} {}: {e}", path.display()))
    };
    let ca = tls
        .cafile
        .clone()
        .unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".into());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&ca).map_err(|e| bad("cafile", &ca, &e))? {
        let c = c.map_err(|e| bad("cafile", &ca, &e))?;
        roots.add(c).map_err(|e| bad("cafile", &ca, &e))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots);
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

impl WsLink {
    /// Connect, handshake (TLS, then the upgrade), and be ready to send. `replies` takes what
    /// the peer sends back. The error says which step failed.
    pub fn connect(
        t: &WsClientTarget,
        write_slice: Duration,
        replies: Feeder,
    ) -> io::Result<WsLink> {
        let addr = (t.host.as_str(), t.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::other(format!("{} resolves to no address", t.host)))?;
        let tcp = TcpStream::connect_timeout(&addr, HANDSHAKE)?;
        let _ = tcp.set_nodelay(t.no_delay);
        tcp.set_read_timeout(Some(HANDSHAKE))?;
        tcp.set_write_timeout(Some(HANDSHAKE))?;
        let transport = match &t.tls {
            None => Transport::Plain(tcp),
            Some(tls) => {
                let config = tls_config(tls)?;
                let name = tls.domain.clone().unwrap_or_else(|| t.host.clone());
                let server_name = rustls::pki_types::ServerName::try_from(name.clone())
                    .map_err(|e| io::Error::other(format!("tls.domain {name:?}: {e}")))?;
                let mut conn =
                    rustls::ClientConnection::new(config, server_name).map_err(io::Error::other)?;
                let mut tcp = tcp;
                while conn.is_handshaking() {
                    conn.complete_io(&mut tcp).map_err(|e| {
                        io::Error::other(format!("TLS handshake with {name} failed: {e}"))
                    })?;
                }
                Transport::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
            }
        };
        let request = t
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| io::Error::other(format!("{}: {e}", t.url)))?;
        let (ws, _) = tungstenite::client::client_with_config(request, transport, None)
            .map_err(|e| io::Error::other(format!("WebSocket upgrade failed: {e}")))?;
        ws.get_ref().tcp().set_write_timeout(Some(write_slice))?;
        ws.get_ref().tcp().set_read_timeout(Some(READ_SLICE))?;
        Ok(WsLink {
            ws,
            binary: t.binary,
            split: t.split,
            replies: Some(replies),
            closing: false,
        })
    }

    /// Send every item, one message per event (events end at newlines), and flush. Ok(false):
    /// the shutdown give-up point passed while the peer was not taking them.
    fn send<'a>(
        &mut self,
        items: impl Iterator<Item = &'a Item>,
        give_up: &dyn Fn() -> bool,
    ) -> io::Result<bool> {
        for item in items {
            let flags = item.binary_flags();
            let events = item
                .bytes()
                .split(|&b| b == b'\n')
                .filter(|e| !e.is_empty());
            for (i, e) in events.enumerate() {
                // Binary when configured, when the event came in a binary message (a ws_server
                // source's), or when it is not UTF-8.
                let m = if self.binary || flags.get(i) == Some(&true) {
                    Message::binary(e.to_vec())
                } else {
                    match std::str::from_utf8(e) {
                        Ok(t) => Message::text(t),
                        Err(_) => Message::binary(e.to_vec()),
                    }
                };
                match self.ws.write(m) {
                    Ok(()) => {}
                    // Past its write buffer's size tungstenite writes to the socket; a timeout
                    // there leaves the frame in its buffer, sent by the flush below.
                    Err(tungstenite::Error::Io(e)) if is_timeout(&e) => {}
                    Err(e) => return Err(io_err(e)),
                }
            }
        }
        loop {
            match self.ws.flush() {
                Ok(()) => return Ok(true),
                Err(tungstenite::Error::Io(e)) if is_timeout(&e) => {
                    if give_up() {
                        return Ok(false);
                    }
                    // Replies may be what the peer waits to send: take them meanwhile.
                    self.poll_replies()?;
                }
                Err(e) => return Err(io_err(e)),
            }
        }
    }

    /// Read what the peer has sent (without waiting more than a moment). Err: the connection
    /// is broken. Ok(false): the peer closed it.
    fn poll_replies(&mut self) -> io::Result<bool> {
        loop {
            match self.ws.read() {
                Ok(Message::Text(t)) => self.reply(t.as_bytes()),
                Ok(Message::Binary(b)) => self.reply(&b),
                Ok(Message::Close(_)) => {
                    let _ = self.ws.flush();
                    return Ok(false);
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if is_timeout(&e) => {
                    if let Some(f) = &mut self.replies {
                        f.flush();
                    }
                    return Ok(true);
                }
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return Ok(false)
                }
                Err(e) => return Err(io_err(e)),
            }
        }
    }

    fn reply(&mut self, data: &[u8]) {
        let split = self.split;
        if let Some(f) = &mut self.replies {
            if !f.feed_message(data, split) {
                self.replies = None; // the lane is gone: shutdown
            }
        }
    }

    /// Everything is sent: close (1000) and read the peer's last replies until it answers,
    /// or `give_up`.
    fn close_and_drain(&mut self, give_up: &dyn Fn() -> bool) {
        if !self.closing {
            self.closing = true;
            let _ = self.ws.close(None);
        }
        while !give_up() {
            match self.poll_replies() {
                Ok(true) => {
                    let _ = self.ws.flush();
                }
                _ => break,
            }
        }
        self.end();
    }

    /// Drop the connection now (its last replies' batch is sent first).
    fn end(&mut self) {
        let _ = self.ws.get_ref().tcp().shutdown(std::net::Shutdown::Both);
        if let Some(f) = self.replies.take() {
            f.finish();
        }
    }
}

impl Link for WsLink {
    /// Replies are read on the writing thread, between these waits: keep them short.
    fn idle_wait(&self) -> Duration {
        Duration::from_millis(10)
    }

    fn read_failed(&mut self) -> Option<io::Error> {
        match self.poll_replies() {
            Ok(true) => None,
            Ok(false) => Some(io::Error::other("the peer closed the WebSocket")),
            Err(e) => Some(e),
        }
    }

    /// On failure every batch of the outbox goes again on the next connection (the peer may
    /// have read some of them).
    fn write(&mut self, out: &mut Outbox, give_up: &dyn Fn() -> bool) -> io::Result<()> {
        match self.send(out.items.iter(), give_up) {
            Ok(true) => {
                out.all_sent();
                Ok(())
            }
            Ok(false) => Ok(()), // the core sees the give-up point
            Err(e) => {
                out.all_exposed();
                Err(e)
            }
        }
    }

    fn finish(mut self: Box<Self>, give_up: &dyn Fn() -> bool) {
        self.close_and_drain(give_up);
    }

    fn close(mut self: Box<Self>) {
        self.end();
    }
}
