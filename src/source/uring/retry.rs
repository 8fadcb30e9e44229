//! Looking again: connections parked on a full channel or a full reply queue, and recvs that
//! may have missed their wake-up. (Part of the io_uring worker; no `unsafe` here.)

use super::{ud, Recv, Worker, K_RECV};
use crate::telemetry::Counters;

impl Worker {
    /// Offer every parked connection's batch again (those still refused park again).
    pub(super) fn retry_parked(&mut self) {
        for idx in std::mem::take(&mut self.parked) {
            if let Some(slot) = self.slots[idx as usize].as_mut() {
                slot.listed_parked = false;
            }
            self.drain(idx);
        }
    }

    /// Look again at the connections waiting for reply room (those still over park again).
    pub(super) fn retry_reply_parked(&mut self) {
        self.room_woken = false;
        self.reply_retry_at = None;
        for idx in std::mem::take(&mut self.reply_parked) {
            if let Some(slot) = self.slots[idx as usize].as_mut() {
                slot.listed_reply = false;
            }
            self.drain(idx);
        }
    }

    /// Recover from a missed wake-up. Some kernels lose the EOF (and possibly the data) wake-up
    /// of a multishot recv on an AF_UNIX socket (liburing issue #1549, fixed upstream in 2026),
    /// which would leave a closed connection open, and its last line unread, forever. Every
    /// `STALL_SWEEP`, each armed recv that posted nothing since the last sweep is checked with a
    /// non-blocking `MSG_PEEK` of one byte: EOF or data waiting means the recv missed it, so it
    /// is cancelled and re-armed, and the new recv sees what is there. An idle connection costs
    /// one syscall per sweep.
    pub(super) fn sweep(&mut self) {
        let mut stalled = Vec::new();
        for (idx, slot) in self.slots.iter_mut().enumerate() {
            let Some(slot) = slot else { continue };
            let quiet = !std::mem::replace(&mut slot.seen, false);
            // Whatever happens next, a batch left open must not wait past this sweep.
            slot.more_pending = false;
            if quiet && slot.recv == Recv::Armed && slot.parked.is_none() {
                let mut byte = [0u8; 1];
                let flags = rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT;
                if rustix::net::recv(&slot.fd, &mut byte[..], flags).is_ok() {
                    slot.recv = Recv::Cancelling;
                    stalled.push(ud(K_RECV, slot.gen, idx as u32));
                }
            }
        }
        for target in stalled {
            Counters::add(&self.args.counters.recv_stalls_recovered, 1);
            self.cancel(target);
        }
    }
}
