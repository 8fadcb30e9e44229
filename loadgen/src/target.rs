//! Where loadgen connects: `unix:PATH` or `tcp:HOST:PORT` (WebSocket targets arrive with the
//! WebSocket source).

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use anyhow::{bail, Context as _};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Unix(PathBuf),
    Tcp(String),
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
        if s.starts_with("ws://") || s.starts_with("wss://") {
            bail!("{s}: WebSocket targets are not supported yet (ringway has no WebSocket source yet)");
        }
        bail!("target {s:?}: expected unix:PATH or tcp:HOST:PORT")
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Unix(p) => write!(f, "unix:{}", p.display()),
            Target::Tcp(a) => write!(f, "tcp:{a}"),
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
        };
        rustix::io::ioctl_fionbio(&fd, true)?;
        Ok(fd)
    }
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
        for (bad, says) in [
            ("unix:", "socket path"),
            ("tcp:h", "HOST:PORT"),
            ("tcp:h:99999", "HOST:PORT"),
            ("ws://x", "not supported yet"),
            ("/a/b", "expected unix:PATH"),
        ] {
            let e = bad.parse::<Target>().unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
