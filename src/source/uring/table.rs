//! The worker's copy of the source table (part of the `uring` module; no `unsafe` here).
//!
//! A source added by `reload` gets its accept armed on the next wake-up. A removed (retired)
//! source stops accepting: its accept is cancelled, the clients already queued on its listener
//! are taken in, and every connection of it is shut down for reading, so what its clients sent
//! is read and delivered and then they see EOF. The worker lets go of the source once its accept
//! has completed and none of its connections is left; the last holder closes the listener and
//! ends the source's lane.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use super::{ud, Worker, K_ACCEPT};
use crate::source::SourceRt;

impl Worker {
    /// A source this worker holds (it accepts on it, or reads one of its connections).
    pub(super) fn src(&self, s: usize) -> &Arc<SourceRt> {
        self.sources[s]
            .as_ref()
            .expect("a source this worker uses is held")
    }

    fn hold(&mut self, rt: &Arc<SourceRt>) {
        let i = rt.index;
        if self.sources.len() <= i {
            self.sources.resize(i + 1, None);
            self.accepting.resize(i + 1, false);
            self.accept_armed.resize(i + 1, false);
            self.accept_retry_at.resize(i + 1, None);
            self.conns_of.resize(i + 1, 0);
        }
        if self.sources[i].is_none() {
            self.sources[i] = Some(Arc::clone(rt));
            if rt.is_retired() {
                self.retiring.push(i);
            }
        }
    }

    /// A connection another worker accepted and handed to this one.
    pub(super) fn open_handed(&mut self, src: Arc<SourceRt>, fd: OwnedFd) {
        self.hold(&src);
        self.open_conn(src.index, fd);
    }

    /// Look at the source table again if it changed: arm accepts on new sources, retire the
    /// ones taken out.
    pub(super) fn sync_sources(&mut self) {
        let v = self.args.sources.version();
        if v == self.table_version {
            return;
        }
        self.table_version = v;
        // (File and WebSocket sources are in the table too; others read them.)
        for rt in self.args.sources.snapshot().into_iter().flatten() {
            if !rt.listener().is_some_and(|l| l.is_stream()) {
                continue;
            }
            self.hold(&rt);
            let i = rt.index;
            if !self.accepting[i] && !self.core.stopping() && !rt.is_retired() {
                self.accepting[i] = true;
                self.arm_accept(i);
            }
        }
        for i in 0..self.sources.len() {
            let newly = self.sources[i]
                .as_ref()
                .is_some_and(|rt| rt.is_retired() && self.accepting[i]);
            if newly {
                self.accepting[i] = false;
                if !self.retiring.contains(&i) {
                    self.retiring.push(i);
                }
                self.retire(i);
            }
        }
    }

    /// Stop accepting on source `i` and end the reading of its connections (after what they
    /// sent so far).
    fn retire(&mut self, i: usize) {
        if self.accept_armed[i] {
            self.cancel(ud(K_ACCEPT, 0, i as u32));
        }
        self.accept_retry_at[i] = None;
        if !self.core.stopping() {
            self.drain_queue(i);
        }
        for link in self.links.iter().flatten().filter(|l| l.source == i) {
            let _ = rustix::net::shutdown(&link.fd, rustix::net::Shutdown::Read);
        }
    }

    /// Let go of retired sources with nothing left on this worker.
    pub(super) fn release_retired(&mut self) {
        if self.retiring.is_empty() {
            return;
        }
        let mut i = 0;
        while i < self.retiring.len() {
            let s = self.retiring[i];
            if self.accept_armed[s] || self.accept_retry_at[s].is_some() || self.conns_of[s] > 0 {
                i += 1;
            } else {
                self.retiring.swap_remove(i);
                self.sources[s] = None;
            }
        }
    }
}
