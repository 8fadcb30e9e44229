//! Stopping an io_uring worker (part of the `uring` module): no new connections, the ones
//! queued on the listener taken in, reading to EOF or the deadline, and finishing only when
//! nothing is in flight. The connections' side of it (reading to EOF, the deadline, the
//! wake-up read) is the machine's: this is the accepts' side, and the deadline's warning.

use std::os::fd::BorrowedFd;
use std::time::Instant;

use super::machine::{Input, Park, Recv, State};
use super::{ud, Worker, ACCEPT_BACKOFF, K_ACCEPT};
use crate::config::SourceKind;
use crate::telemetry::Counters;

impl Worker {
    /// The shutdown signal arrived: close the inbox, cancel the accepts, take in the queue.
    pub(super) fn begin_stop(&mut self) {
        if self.core.stopping() {
            return;
        }
        self.step(Input::Shutdown);
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
                    if !self.core.past_deadline() {
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
        let idle = self.core.is_idle()
            && (self.core.past_deadline() || self.accept_retry_at.iter().all(Option::is_none))
            && !self.accept_armed.iter().any(|a| *a);
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

    /// Once the shutdown deadline has passed: say which connections are still open, and let
    /// the machine end their reading (each recv then completes with EOF and takes the normal
    /// path) and send parked batches, waiting if need be.
    pub(super) fn on_deadline(&mut self, now: Instant) {
        if !self.core.stopping()
            || self.core.past_deadline()
            || self.args.shutdown.deadline().is_none_or(|d| d > now)
        {
            return;
        }
        if self.core.live() > 0 {
            let open: Vec<String> = self
                .core
                .conns()
                .map(|(id, state, recv, backlog)| {
                    let meta = &self.link(id).conn.meta;
                    format!(
                        "{}:{}{}{}",
                        meta.id,
                        match recv {
                            Recv::Armed { .. } => "Armed",
                            Recv::Cancelling => "Cancelling",
                            Recv::Idle | Recv::NoBufs => "Idle",
                        },
                        match state {
                            State::Reading => "",
                            State::Parked {
                                why: Park::Channel, ..
                            } => ",parked",
                            State::Parked {
                                why: Park::Reply, ..
                            } => ",reply-parked",
                            State::Ended { refused: Some(_) } => ",parked,done",
                            State::Ended { refused: None } => ",done",
                        },
                        if backlog { ",backlog" } else { "" }
                    )
                })
                .collect();
            tracing::warn!(
                worker = self.args.index,
                "shutdown_timeout reached with {} connections still open; ending them: {}{}",
                open.len(),
                open[..open.len().min(20)].join(" "),
                if open.len() > 20 { " …" } else { "" }
            );
        }
        self.step(Input::Deadline);
    }
}
