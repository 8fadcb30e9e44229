//! Where loadgen connects: `unix:PATH`, `tcp:HOST:PORT`, or `ws://HOST:PORT/PATH` (a WebSocket:
//! the upgrade is done at connect, then each write of K events goes out as one text message;
//! see `engine`). `wss://` is refused: loadgen would measure its own TLS more than the gateway.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use anyhow::{bail, Context as _};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Unix(PathBuf),
    Tcp(String),
    /// `ws://` URL: (host:port, path).
    Ws(String, String),
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
        if let Some(rest) = s.strip_prefix("ws://") {
            let (authority, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            };
            if authority
                .rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
            {
                bail!("ws:// needs HOST:PORT, e.g. ws://127.0.0.1:4242/");
            }
            return Ok(Target::Ws(authority.to_string(), path.to_string()));
        }
        if s.starts_with("wss://") {
            bail!("{s}: wss:// is not supported: loadgen would measure its own TLS; point it at a ws:// listener");
        }
        bail!("target {s:?}: expected unix:PATH, tcp:HOST:PORT or ws://HOST:PORT/")
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Unix(p) => write!(f, "unix:{}", p.display()),
            Target::Tcp(a) => write!(f, "tcp:{a}"),
            Target::Ws(a, p) => write!(f, "ws://{a}{p}"),
        }
    }
}

impl Target {
    /// A connected, non-blocking socket.
    pub fn connect(&self) -> anyhow::Result<OwnedFd> {
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
            Target::Ws(a, path) => {
                let s = std::net::TcpStream::connect(a).with_context(|| {
                    format!("cannot connect to {self} (is the gateway running?)")
                })?;
                s.set_nodelay(true)?;
                upgrade(&s, a, path).with_context(|| format!("{self}: WebSocket upgrade"))?;
                s.into()
            }
        };
        rustix::io::ioctl_fionbio(&fd, true)?;
        Ok(fd)
    }
}

/// The client side of the WebSocket upgrade, on a blocking socket: the request, and the
/// response's head (read a byte at a time, so nothing after it is taken).
fn upgrade(mut s: &std::net::TcpStream, host: &str, path: &str) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
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
    s.set_read_timeout(None)?;
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
            Target::Ws("h:1".into(), "/".into())
        );
        assert_eq!(
            "ws://h:1/in".parse::<Target>().unwrap(),
            Target::Ws("h:1".into(), "/in".into())
        );
        for (bad, says) in [
            ("unix:", "socket path"),
            ("tcp:h", "HOST:PORT"),
            ("tcp:h:99999", "HOST:PORT"),
            ("ws://x", "HOST:PORT"),
            ("wss://x:1/", "not supported"),
            ("/a/b", "expected unix:PATH"),
        ] {
            let e = bad.parse::<Target>().unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
