//! The `tcp_server` listeners: one per worker on the same address, with SO_REUSEPORT, so the
//! kernel spreads new connections over the workers' accept queues.
//!
//! In: a [`TcpServerConfig`]. Out: listening, non-blocking sockets (port 0 is resolved by the
//! first bind and reused by the rest). What it does not do: accept or read (the io_uring and
//! epoll loops do, exactly as for UNIX sockets). At shutdown there is no path to remove: each
//! worker takes in what is queued on its listener and then the listeners are closed; a client
//! connecting after that is refused.

use std::net::{SocketAddr, TcpListener};

use rustix::net::{sockopt, AddressFamily, SocketFlags, SocketType};

use crate::config::TcpServerConfig;

#[derive(Debug, thiserror::Error)]
#[error("source {source_name}: cannot {action} tcp:{addr}: {err}")]
pub struct Error {
    source_name: String,
    action: &'static str,
    addr: SocketAddr,
    err: std::io::Error,
}

/// Bind `count` listeners to the configured address. Returns them and the bound address.
pub fn bind(cfg: &TcpServerConfig, count: usize) -> Result<(Vec<TcpListener>, SocketAddr), Error> {
    let mut addr = cfg.addr;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let fail = |action, err: rustix::io::Errno| Error {
            source_name: cfg.name.clone(),
            action,
            addr,
            err: err.into(),
        };
        let family = if addr.is_ipv4() {
            AddressFamily::INET
        } else {
            AddressFamily::INET6
        };
        let fd = rustix::net::socket_with(
            family,
            SocketType::STREAM,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| fail("create a socket for", e))?;
        sockopt::set_socket_reuseaddr(&fd, true).map_err(|e| fail("configure", e))?;
        sockopt::set_socket_reuseport(&fd, true).map_err(|e| fail("configure", e))?;
        rustix::net::bind(&fd, &addr).map_err(|e| fail("bind", e))?;
        rustix::net::listen(&fd, cfg.backlog.min(i32::MAX as u32) as i32)
            .map_err(|e| fail("listen on", e))?;
        let listener = TcpListener::from(fd);
        if addr.port() == 0 {
            addr = listener.local_addr().map_err(|err| Error {
                source_name: cfg.name.clone(),
                action: "read the port of",
                addr,
                err,
            })?;
        }
        out.push(listener);
    }
    Ok((out, addr))
}
