//! Stopping an io_uring worker (part of the `uring` module): no new connections, the ones
//! queued on the listener taken in, reading to EOF or the deadline, and finishing only when
//! nothing is in flight.

use std::os::fd::BorrowedFd;
use std::time::Instant;

use super::{ud, Worker, ACCEPT_BACKOFF, K_ACCEPT};
use crate::config::SourceKind;
use crate::telemetry::Counters;

impl Worker {
    /// The shutdown signal arrived: close the inbox, cancel the accepts, take in the queue.
    pub(super) fn begin_stop(&mut self) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        // No more hand-overs to a stopping worker; what is already here is read like the rest.
        for (src, fd) in self.args.balance.close_inbox(self.args.index) {
            self.open_handed(src, fd);
        }
        for s in 0..self.accept_armed.len() {
            if self.accept_armed[s] {
                self.cancel(ud(K_ACCEPT, 0, s as u32));
            }
            // (A retired source's queue was taken in when it was retired.)
            if self.sources[s].as_ref().is_some_and(|rt| !rt.is_retired()) {
                self.drain_queue(s);
            }
        }
    }

    /// While stopping: the socket path is gone, so no client can join the listener's queue any
    /// more; take in the ones already in it (the listener is non-blocking) to read what they
    /// wrote. Out of descriptors (EMFILE), try again after a backoff, until the deadline.
    pub(super) fn drain_queue(&mut self, s: usize) {
        // SAFETY: the listener is owned by the source's `SourceRt`, which this worker holds
        // (`self.sources[s]`) for as long as it accepts on it or reads its connections; nothing
        // here lets go of it.
        let listener = unsafe { BorrowedFd::borrow_raw(self.src(s).listener_fd(self.args.index)) };
        loop {
            match rustix::net::accept_with(listener, rustix::net::SocketFlags::CLOEXEC) {
                Ok(fd) => {
                    self.args.balance.keep(self.args.index);
                    self.open_conn(s, fd);
                }
                Err(rustix::io::Errno::AGAIN) => {
                    // A TCP listener stops listening now: new clients are refused at once
                    // instead of being queued and reset when the gateway exits. (A UNIX
                    // socket's path is gone already.)
                    if self.src(s).meta.kind == SourceKind::TcpServer {
                        let _ = rustix::net::shutdown(listener, rustix::net::Shutdown::Read);
                    }
                    return;
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    Counters::add(&self.args.counters.accept_errors, 1);
                    if !self.past_deadline {
                        tracing::warn!(source = %self.src(s).meta.name, error = %e,
                            "accepting queued connections at shutdown failed; retrying");
                        self.accept_retry_at[s] = Some(Instant::now() + ACCEPT_BACKOFF);
                    }
                    return;
                }
            }
        }
    }

    /// Done when no connection is left and nothing is in flight. (The inbox was closed when
    /// stopping began; a connection handed over just before that is taken in and read first.)
    pub(super) fn try_finish(&mut self) -> bool {
        let idle = self.slots.iter().all(Option::is_none)
            && (self.past_deadline || self.accept_retry_at.iter().all(Option::is_none))
            && !self.accept_armed.iter().any(|a| *a)
            && !self.wake_armed;
        if !idle {
            return false;
        }
        let late = self.args.balance.take_inbox(self.args.index);
        if late.is_empty() {
            return true;
        }
        for (src, fd) in late {
            self.open_handed(src, fd);
        }
        false
    }

    /// Once the shutdown deadline has passed: end every connection's reading (its recv then
    /// completes with EOF and takes the normal path) and send parked batches, waiting if need be.
    pub(super) fn on_deadline(&mut self, now: Instant) {
        if !self.stopping
            || self.past_deadline
            || self.args.shutdown.deadline().is_none_or(|d| d > now)
        {
            return;
        }
        self.past_deadline = true;
        let open: Vec<String> = self
            .slots
            .iter()
            .flatten()
            .map(|s| {
                format!(
                    "{}:{:?}{}{}{}",
                    s.conn.meta.id,
                    s.recv,
                    if s.parked.is_some() { ",parked" } else { "" },
                    if s.done { ",done" } else { "" },
                    if s.backlog.is_empty() { "" } else { ",backlog" }
                )
            })
            .collect();
        if !open.is_empty() {
            tracing::warn!(
                worker = self.args.index,
                "shutdown_timeout reached with {} connections still open; ending them: {}{}",
                open.len(),
                open[..open.len().min(20)].join(" "),
                if open.len() > 20 { " …" } else { "" }
            );
        }
        for slot in self.slots.iter().flatten() {
            // Reading ends with EOF; the normal path flushes and closes.
            let _ = rustix::net::shutdown(&slot.fd, rustix::net::Shutdown::Read);
        }
        self.retry_parked();
        self.retry_reply_parked();
    }
}
