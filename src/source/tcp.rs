//! The `tcp_server` listeners: one per worker on the same address, with SO_REUSEPORT, so the
//! kernel spreads new connections over the workers' accept queues.
//!
//! In: a [`TcpServerConfig`]. Out: listening, non-blocking sockets (port 0 is resolved by the
//! first bind and reused by the rest). What it does not do: accept or read (the io_uring and
//! epoll loops do, exactly as for UNIX sockets). At shutdown there is no path to remove: each
//! worker takes in what is queued on its listener and then the listeners are closed; a client
//! connecting after that is refused. SO_REUSEPORT would also let another process (a second
//! ringway, say) join the same port and take part of the traffic unnoticed, so the address is
//! first bound once without it: if anyone listens there already, start-up fails.

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
    let fail = |action, addr, err: rustix::io::Errno| Error {
        source_name: cfg.name.clone(),
        action,
        addr,
        err: err.into(),
    };
    if addr.port() != 0 {
        // Without SO_REUSEPORT this fails if anyone listens on the address (with SO_REUSEADDR,
        // connections left in TIME_WAIT by a previous run do not count).
        let probe = socket(addr).map_err(|e| fail("create a socket for", addr, e))?;
        sockopt::set_socket_reuseaddr(&probe, true).map_err(|e| fail("configure", addr, e))?;
        match rustix::net::bind(&probe, &addr) {
            Err(rustix::io::Errno::ADDRINUSE) => {
                return Err(Error {
                    source_name: cfg.name.clone(),
                    action: "bind",
                    addr,
                    err: std::io::Error::new(
                        std::io::ErrorKind::AddrInUse,
                        "address in use: another process is listening on it",
                    ),
                })
            }
            r => r.map_err(|e| fail("bind", addr, e))?,
        }
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let fail = |action, err| fail(action, addr, err);
        let fd = socket(addr).map_err(|e| fail("create a socket for", e))?;
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

fn socket(addr: SocketAddr) -> rustix::io::Result<std::os::fd::OwnedFd> {
    let family = if addr.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    rustix::net::socket_with(
        family,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )
}
