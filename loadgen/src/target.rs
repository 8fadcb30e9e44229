//! Where loadgen connects: `unix:PATH`, `tcp:HOST:PORT`, or `ws://HOST:PORT/PATH` and
//! `wss://…` (a WebSocket: TLS (rustls) and the upgrade are done at connect, blocking; then each
//! write of K events goes out as one text message, see `engine`).

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use anyhow::{bail, Context as _};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Unix(PathBuf),
    Tcp(String),
    /// `ws://` or `wss://` URL: (host:port, path, TLS?).
    Ws(String, String, bool),
}

/// A connected socket, with its TLS session for `wss://`.
pub struct Connected {
    pub fd: OwnedFd,
    pub tls: Option<Box<rustls::ClientConnection>>,
}

impl std::str::FromStr for Target {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Target> {
        if let Some(p) = s.strip_prefix("unix:") {
            if p.is_empty() {
                bail!("unix: needs a socket path, e.g. unix:/run/ringway.sock");
            }
            return Ok(Target::Unix(p.into()));
        }
        if let Some(a) = s.strip_prefix("tcp:") {
            if a.rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
            {
                bail!("tcp: needs HOST:PORT, e.g. tcp:127.0.0.1:4242");
            }
            return Ok(Target::Tcp(a.to_string()));
        }
        let ws = s
            .strip_prefix("ws://")
            .map(|r| (r, false))
            .or_else(|| s.strip_prefix("wss://").map(|r| (r, true)));
        if let Some((rest, tls)) = ws {
            let (authority, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            };
            if authority
                .rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
            {
                bail!("ws:// and wss:// need HOST:PORT, e.g. ws://127.0.0.1:4242/");
            }
            return Ok(Target::Ws(authority.to_string(), path.to_string(), tls));
        }
        bail!("target {s:?}: expected unix:PATH, tcp:HOST:PORT, ws://HOST:PORT/ or wss://…")
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Unix(p) => write!(f, "unix:{}", p.display()),
            Target::Tcp(a) => write!(f, "tcp:{a}"),
            Target::Ws(a, p, false) => write!(f, "ws://{a}{p}"),
            Target::Ws(a, p, true) => write!(f, "wss://{a}{p}"),
        }
    }
}

impl Target {
    /// A connected, non-blocking socket (`cafile`: the CA to trust for `wss://`, else the
    /// system's roots).
    pub fn connect(&self, cafile: Option<&std::path::Path>) -> anyhow::Result<Connected> {
        let mut tls = None;
        let fd: OwnedFd = match self {
            Target::Unix(p) => std::os::unix::net::UnixStream::connect(p)
                .with_context(|| format!("cannot connect to {self} (is the gateway running?)"))?
                .into(),
            Target::Tcp(a) => {
                let s = std::net::TcpStream::connect(a).with_context(|| {
                    format!("cannot connect to {self} (is the gateway running?)")
                })?;
                s.set_nodelay(true)?;
                s.into()
            }
            Target::Ws(a, path, secure) => {
                let mut s = std::net::TcpStream::connect(a).with_context(|| {
                    format!("cannot connect to {self} (is the gateway running?)")
                })?;
                s.set_nodelay(true)?;
                s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
                if *secure {
                    let host = a.rsplit_once(':').map_or(a.as_str(), |(h, _)| h);
                    let mut conn = tls_session(host, cafile)?;
                    while conn.is_handshaking() {
                        conn.complete_io(&mut s)
                            .with_context(|| format!("{self}: TLS handshake"))?;
                    }
                    let mut io = rustls::Stream::new(&mut conn, &mut s);
                    upgrade(&mut io, a, path)
                        .with_context(|| format!("{self}: WebSocket upgrade"))?;
                    tls = Some(Box::new(conn));
                } else {
                    upgrade(&mut s, a, path)
                        .with_context(|| format!("{self}: WebSocket upgrade"))?;
                }
                s.set_read_timeout(None)?;
                s.into()
            }
        };
        rustix::io::ioctl_fionbio(&fd, true)?;
        Ok(Connected { fd, tls })
    }
}

/// A TLS session for `host`, trusting `cafile` (else the system's roots).
fn tls_session(
    host: &str,
    cafile: Option<&std::path::Path>,
) -> anyhow::Result<rustls::ClientConnection> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    match cafile {
        Some(ca) => {
            let what = || format!("--cafile {}", ca.display());
            for c in CertificateDer::pem_file_iter(ca).with_context(what)? {
                roots.add(c.with_context(what)?)?;
            }
        }
        None => {
            // The system's roots, found as the gateway's ws_client finds them.
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                anyhow::bail!(
                    "no system root certificate could be loaded ({:?}); give --cafile",
                    found.errors
                );
            }
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_string())
        .with_context(|| format!("{host:?} is not a name TLS can check"))?;
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name)?;
    // Room for a few writes' worth of plaintext while the socket is full.
    conn.set_buffer_limit(Some(4 << 20));
    Ok(conn)
}

/// The client side of the WebSocket upgrade, on a blocking stream: the request, and the
/// response's head (read a byte at a time, so nothing after it is taken).
fn upgrade(
    s: &mut (impl std::io::Read + std::io::Write),
    host: &str,
    path: &str,
) -> anyhow::Result<()> {
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: bG9hZGdlbi1yaW5nd2F5IQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            bail!("the server closed the connection during the upgrade");
        }
        head.push(byte[0]);
        if head.len() > 16 * 1024 {
            bail!("the upgrade response is too long");
        }
    }
    let status = String::from_utf8_lossy(&head);
    let first = status.lines().next().unwrap_or("");
    if !first.contains(" 101") {
        bail!("the server answered {first:?}, not 101 Switching Protocols");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_or_explain() {
        assert_eq!(
            "unix:/a/b".parse::<Target>().unwrap(),
            Target::Unix("/a/b".into())
        );
        assert_eq!(
            "tcp:h:1".parse::<Target>().unwrap(),
            Target::Tcp("h:1".into())
        );
        assert_eq!(
            "ws://h:1".parse::<Target>().unwrap(),
            Target::Ws("h:1".into(), "/".into(), false)
        );
        assert_eq!(
            "wss://h:1/in".parse::<Target>().unwrap(),
            Target::Ws("h:1".into(), "/in".into(), true)
        );
        for (bad, says) in [
            ("unix:", "socket path"),
            ("tcp:h", "HOST:PORT"),
            ("tcp:h:99999", "HOST:PORT"),
            ("ws://x", "HOST:PORT"),
            ("/a/b", "expected unix:PATH"),
        ] {
            let e = bad.parse::<Target>().unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
