//! A connected UNIX or TCP socket registered with tokio: read by the readiness loop
//! (`source::readiness`), written by the reply writers (`reply`). What it does not do: accept.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

/// A connected UNIX or TCP socket, registered with tokio.
pub enum Stream {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

impl Stream {
    /// Register a connected socket; call inside the runtime.
    pub fn from_fd(fd: OwnedFd, tcp: bool) -> io::Result<Stream> {
        Ok(if tcp {
            let s = std::net::TcpStream::from(fd);
            s.set_nonblocking(true)?;
            Stream::Tcp(tokio::net::TcpStream::from_std(s)?)
        } else {
            let s = std::os::unix::net::UnixStream::from(fd);
            s.set_nonblocking(true)?;
            Stream::Unix(tokio::net::UnixStream::from_std(s)?)
        })
    }

    pub async fn readable(&self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.readable().await,
            Stream::Tcp(s) => s.readable().await,
        }
    }

    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.try_read(buf),
            Stream::Tcp(s) => s.try_read(buf),
        }
    }

    pub async fn writable(&self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.writable().await,
            Stream::Tcp(s) => s.writable().await,
        }
    }

    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.try_write(buf),
            Stream::Tcp(s) => s.try_write(buf),
        }
    }

    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Stream::Unix(s) => s.as_fd(),
            Stream::Tcp(s) => s.as_fd(),
        }
    }
}
