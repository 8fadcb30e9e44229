//! The io_uring read loop: the only module with `unsafe` code.
//!
//! Stage: source. In: listening sockets (one per source, shared by all workers). Out: batches on
//! the channel. One ring per worker thread, created on that thread (SINGLE_ISSUER, DEFER_TASKRUN
//! and COOP_TASKRUN where the kernel has them). Each worker arms a multishot accept on every
//! listener and a multishot recv on every connection it accepted; recv picks its buffer from the
//! worker's provided-buffer ring, so an idle connection costs no read buffer at all. The bytes of a
//! completion are framed and decoded at once, copied into the connection's open batch (the one
//! copy: see `channel`), and the buffer goes straight back to the ring.
//!
//! Backpressure: when the channel refuses a batch (`when_full = "block"`), the connection is
//! parked: its recv is cancelled, completions already in flight are kept in its backlog (their
//! buffers are held, not recycled), and nothing more is read from it, so its kernel socket buffer
//! fills and the writer blocks. Parked connections are retried every millisecond; when the batch
//! goes through, the backlog is processed and the recv re-armed. A connection whose reply queue
//! is over its bound, or whose source is paused (control socket), is parked the same way, and
//! retried when the worker is woken (its eventfd: the reply writer as the queue drains, or a
//! `resume`), or after `REPLY_RETRY` at the latest. A multishot that ends without `MORE`
//! (ENOBUFS included) is re-armed unless the connection is parked or finished.
//!
//! Sources come from the shared [`SourceTable`]; each worker keeps its own copy and looks again
//! when the table changes (`reload`, which wakes every worker): a new source gets its accept
//! armed, a removed one is retired (see `table`).
//!
//! Shutdown: the accepts are cancelled; connections are read to EOF; at the deadline the rest are
//! shut down for reading (their recv then ends with EOF and takes the normal path) and batches are
//! sent blocking. The loop returns once nothing is in flight, so no buffer is freed while the
//! kernel may still write to it.
//!
//! What it does not do: parse or frame (see `conn`), or write anywhere but the channel.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

mod bufring;
mod retry;
mod stop;
mod table;

use super::balance::Balance;
use super::{SourceRt, SourceTable};
use crate::channel::{Offer, Sender};
use crate::codec::Decoders;
use crate::config::ChannelConfig;
use crate::event::Shutdown;
use crate::ingest::{Conn, IngestCtx};
use crate::reply::RoomHook;
use crate::telemetry::{Counters, RateLimit};
use bufring::BufRing;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("io_uring is not available ({0}); set io_mode = \"epoll\" or \"auto\"")]
    Unavailable(io::Error),
    #[error("io_uring worker {worker}: {what}: {err}")]
    Ring {
        worker: usize,
        what: &'static str,
        err: io::Error,
    },
}

/// Buffers per worker's provided-buffer ring (a power of two).
const RING_BUFFERS: u16 = 128;
const BUF_GROUP: u16 = 0;
const PARK_RETRY: Duration = Duration::from_millis(1);
const REPLY_RETRY: Duration = Duration::from_millis(50);
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How often armed recvs that posted nothing are checked for a missed wake-up (see `sweep`).
const STALL_SWEEP: Duration = Duration::from_millis(200);

// user_data: [kind:8][generation:24][index:32]
const K_ACCEPT: u64 = 1;
const K_RECV: u64 = 2;
const K_WAKE: u64 = 3;
const K_CANCEL: u64 = 4;

fn ud(kind: u64, gen: u32, index: u32) -> u64 {
    (kind << 56) | ((gen as u64 & 0xff_ffff) << 32) | index as u64
}
fn ud_parts(u: u64) -> (u64, u32, u32) {
    (u >> 56, ((u >> 32) & 0xff_ffff) as u32, u as u32)
}

/// Can this process use io_uring as this loop needs it (ring, buffer ring, ext_arg)? Run once at
/// start; `auto` falls back to epoll on `Err`.
pub fn probe() -> Result<(), Error> {
    let ring = build_ring().map_err(Error::Unavailable)?;
    if !ring.params().is_feature_ext_arg() {
        return Err(Error::Unavailable(io::Error::other(
            "the kernel lacks IORING_FEAT_EXT_ARG (Linux 5.11+ needed, 6.0+ for multishot recv)",
        )));
    }
    let bufs = BufRing::new(&ring, 8, 4096).map_err(Error::Unavailable)?;
    // The ring (which unregisters the buffer group) goes before the buffers.
    drop(ring);
    drop(bufs);
    Ok(())
}

fn build_ring() -> io::Result<IoUring> {
    type Setup = fn(&mut io_uring::Builder);
    let attempts: [(&str, Setup); 3] = [
        ("SINGLE_ISSUER|DEFER_TASKRUN", |b| {
            b.setup_single_issuer().setup_defer_taskrun();
        }),
        ("COOP_TASKRUN", |b| {
            b.setup_coop_taskrun();
        }),
        ("no setup flags", |_| {}),
    ];
    let mut last = None;
    for (name, f) in attempts {
        let mut b = IoUring::builder();
        b.setup_cqsize(8192);
        f(&mut b);
        match b.build(1024) {
            Ok(r) => {
                tracing::debug!("io_uring ring set up with {name}");
                return Ok(r);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap())
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Recv {
    Armed,
    Cancelling,
    Idle,
}

enum Chunk {
    Data(u16, u32),
    Eof,
}

struct Slot {
    fd: OwnedFd,
    gen: u32,
    source: usize,
    conn: Conn,
    recv: Recv,
    backlog: VecDeque<Chunk>,
    parked: Option<crate::event::Batch>,
    /// EOF processed: close once nothing is parked.
    done: bool,
    dirty: bool,
    /// A recv completion arrived since the last stall sweep.
    seen: bool,
    /// On the worker's `parked` / `reply_parked` / `nobufs` list (each holds a slot once).
    listed_parked: bool,
    listed_reply: bool,
    listed_nobufs: bool,
    /// Parked and counted in `parked` (once per parking, not per retry).
    park_counted: bool,
    /// The last completion said more data is waiting in the socket (SOCK_NONEMPTY): another
    /// completion is coming, so the open batch keeps filling instead of being sent now.
    more_pending: bool,
}

pub struct WorkerArgs {
    pub index: usize,
    /// The running sources; looked at again when its version changes (`reload`).
    pub sources: Arc<SourceTable>,
    /// The size of each receive buffer: the largest `buf_size` of the listening sources
    /// configured at start (sources added later read into buffers of this size too).
    pub buf_size: usize,
    pub counters: Arc<Counters>,
    pub channel: ChannelConfig,
    pub shutdown: Arc<Shutdown>,
    /// Shared by all workers: who gets a new connection, and each worker's wake-up eventfd.
    pub balance: Arc<Balance>,
}

struct Worker {
    // Field order is drop order: the ring (which unregisters the buffer group) before the buffers.
    ring: IoUring,
    bufs: BufRing,
    args: WorkerArgs,
    /// This worker's copy of the source table, by index: a source stays here while this worker
    /// accepts on it or reads one of its connections.
    sources: Vec<Option<Arc<SourceRt>>>,
    table_version: u64,
    /// This worker has set up its accept on the source (once; never again after it is retired).
    accepting: Vec<bool>,
    /// Retired sources this worker still holds (their accept or connections are not done yet).
    retiring: Vec<usize>,
    /// Open connections of each source on this worker.
    conns_of: Vec<usize>,
    wake_buf: Box<[u8; 8]>,
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    next_gen: u32,
    decoders: Decoders,
    pending_sqes: Vec<squeue::Entry>,
    parked: Vec<u32>,
    /// Waiting for room in their reply queue; retried when a reply writer wakes the worker.
    reply_parked: Vec<u32>,
    reply_retry_at: Option<Instant>,
    room_woken: bool,
    room_hook: RoomHook,
    dirty: Vec<u32>,
    nobufs: Vec<u32>,
    accept_armed: Vec<bool>,
    accept_retry_at: Vec<Option<Instant>>,
    wake_armed: bool,
    wake_cancelled: bool,
    next_sweep: Instant,
    stopping: bool,
    past_deadline: bool,
    warn_limit: RateLimit,
}

/// Run one worker until shutdown has finished on it. Call on the worker's own thread.
pub fn run_worker(args: WorkerArgs) -> Result<(), Error> {
    let worker = args.index;
    let ring_err = |what, err| Error::Ring { worker, what, err };
    let ring = build_ring().map_err(|e| ring_err("setting up the ring", e))?;
    let bufs = BufRing::new(&ring, RING_BUFFERS, args.buf_size)
        .map_err(|e| ring_err("registering the provided-buffer ring", e))?;
    let mut w = Worker {
        sources: Vec::new(),
        table_version: u64::MAX,
        accepting: Vec::new(),
        retiring: Vec::new(),
        conns_of: Vec::new(),
        ring,
        bufs,
        wake_buf: Box::new([0; 8]),
        slots: Vec::new(),
        free: Vec::new(),
        next_gen: 1,
        decoders: Decoders::default(),
        pending_sqes: Vec::new(),
        parked: Vec::new(),
        reply_parked: Vec::new(),
        reply_retry_at: None,
        room_woken: false,
        room_hook: {
            let (balance, index) = (Arc::clone(&args.balance), args.index);
            Arc::new(move || balance.wake(index))
        },
        dirty: Vec::new(),
        nobufs: Vec::new(),
        accept_armed: Vec::new(),
        accept_retry_at: Vec::new(),
        wake_armed: false,
        wake_cancelled: false,
        next_sweep: Instant::now() + STALL_SWEEP,
        stopping: false,
        past_deadline: false,
        warn_limit: RateLimit::new(5),
        args,
    };
    w.arm_wake();
    w.sync_sources();
    w.args.balance.open_inbox(worker);
    match w.run() {
        Ok(()) => Ok(()),
        Err(e) => {
            let orphans = w.args.balance.close_inbox(worker);
            if !w.args.balance.rehome(worker, orphans) {
                tracing::error!(
                    worker,
                    "connections handed to this worker are closed unread"
                );
            }
            // Operations may still be in flight, and ring teardown is asynchronous: the kernel
            // could write into the buffers after they were freed. Leak them instead.
            let Worker { ring, bufs, .. } = w;
            drop(ring);
            std::mem::forget(bufs);
            Err(ring_err("waiting for completions", e))
        }
    }
}

impl Worker {
    fn run(&mut self) -> io::Result<()> {
        let mut cqes: Vec<(u64, i32, u32)> = Vec::with_capacity(1024);
        loop {
            self.flush_sqes()?;
            if self.stopping && self.try_finish() {
                return Ok(());
            }
            let timeout = self.wait_timeout();
            let res = match timeout {
                None => self.ring.submit_and_wait(1),
                Some(t) => {
                    let ts = types::Timespec::new()
                        .sec(t.as_secs())
                        .nsec(t.subsec_nanos());
                    let args = types::SubmitArgs::new().timespec(&ts);
                    self.ring.submitter().submit_with_args(1, &args)
                }
            };
            match res {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                    ) => {}
                Err(e) => return Err(e),
            }
            cqes.clear();
            cqes.extend(
                self.ring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            for &(u, res, flags) in &cqes {
                self.complete(u, res, flags);
            }
            self.after_completions();
            // Buffers given back while unparking or flushing are the kernel's again before we wait.
            self.bufs.publish();
        }
    }

    fn wait_timeout(&self) -> Option<Duration> {
        let mut t: Option<Duration> = None;
        let mut min = |d: Duration| t = Some(t.map_or(d, |x| x.min(d)));
        if !self.parked.is_empty() || !self.nobufs.is_empty() {
            min(PARK_RETRY);
        }
        let now = Instant::now();
        if let Some(at) = self.reply_retry_at {
            min(at.saturating_duration_since(now));
        }
        for at in self.accept_retry_at.iter().flatten() {
            min(at.saturating_duration_since(now));
        }
        if self.slots.iter().any(Option::is_some) {
            min(self.next_sweep.saturating_duration_since(now));
        }
        if self.stopping && !self.past_deadline {
            if let Some(d) = self.args.shutdown.deadline() {
                min(d
                    .saturating_duration_since(now)
                    .max(Duration::from_millis(1)));
            }
        }
        t
    }

    fn push_sqe(&mut self, e: squeue::Entry) {
        self.pending_sqes.push(e);
    }

    fn flush_sqes(&mut self) -> io::Result<()> {
        let mut i = 0;
        while i < self.pending_sqes.len() {
            {
                let mut sq = self.ring.submission();
                while i < self.pending_sqes.len() {
                    // SAFETY: every entry's pointers (wake_buf, buffer ring) outlive the ring,
                    // and fds stay open until their operations have completed.
                    if unsafe { sq.push(&self.pending_sqes[i]) }.is_err() {
                        break;
                    }
                    i += 1;
                }
            }
            if i < self.pending_sqes.len() {
                self.ring.submit()?;
            }
        }
        self.pending_sqes.clear();
        Ok(())
    }

    fn arm_wake(&mut self) {
        let e = opcode::Read::new(
            types::Fd(self.args.balance.wake_fd(self.args.index).as_raw_fd()),
            self.wake_buf.as_mut_ptr(),
            8,
        )
        .build()
        .user_data(ud(K_WAKE, 0, 0));
        self.wake_armed = true;
        self.push_sqe(e);
    }

    fn arm_accept(&mut self, s: usize) {
        let fd = self.src(s).listener_fd(self.args.index);
        let e = opcode::AcceptMulti::new(types::Fd(fd))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(ud(K_ACCEPT, 0, s as u32));
        self.accept_armed[s] = true;
        self.push_sqe(e);
    }

    fn arm_recv(&mut self, idx: u32) {
        let Some(slot) = self.slots[idx as usize].as_mut() else {
            return;
        };
        slot.recv = Recv::Armed;
        let e = opcode::RecvMulti::new(types::Fd(slot.fd.as_raw_fd()), BUF_GROUP)
            .build()
            .user_data(ud(K_RECV, slot.gen, idx));
        self.push_sqe(e);
    }

    fn cancel(&mut self, target: u64) {
        let e = opcode::AsyncCancel::new(target)
            .build()
            .user_data(ud(K_CANCEL, 0, 0));
        self.push_sqe(e);
    }

    fn complete(&mut self, u: u64, res: i32, flags: u32) {
        let (kind, gen, idx) = ud_parts(u);
        match kind {
            K_ACCEPT => self.on_accept(idx as usize, res, flags),
            K_RECV => self.on_recv(idx, gen, res, flags),
            K_WAKE => {
                self.wake_armed = false;
                self.room_woken = true;
                self.sync_sources();
                for (src, fd) in self.args.balance.take_inbox(self.args.index) {
                    self.open_handed(src, fd);
                }
                for id in self.args.balance.take_closes(self.args.index) {
                    // Asked by the control socket: reading and writing end; the recv then
                    // completes with EOF and the connection ends through the normal path.
                    if let Some(slot) = self.slots.iter().flatten().find(|s| s.conn.meta.id == id) {
                        let _ = rustix::net::shutdown(&slot.fd, rustix::net::Shutdown::Both);
                    }
                }
                if self.args.shutdown.is_requested() {
                    self.begin_stop();
                }
                if res != -libc::ECANCELED && !self.wake_cancelled {
                    self.arm_wake();
                }
            }
            _ => {}
        }
    }

    fn on_accept(&mut self, s: usize, res: i32, flags: u32) {
        let more = cqueue::more(flags);
        if !more {
            self.accept_armed[s] = false;
        }
        if res >= 0 {
            // SAFETY: a successful accept completion hands us a new fd that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(res as RawFd) };
            // Even while stopping: the client connected before the path was removed.
            if self.stopping {
                self.args.balance.keep(self.args.index);
                self.open_conn(s, fd);
            } else if let Some(fd) = self.args.balance.place(self.args.index, self.src(s), fd) {
                self.open_conn(s, fd);
            }
        } else if res != -libc::ECANCELED && !self.stopping {
            // (While stopping, a TCP listener that was shut down ends its accept with an error.)
            Counters::add(&self.args.counters.accept_errors, 1);
            let err = io::Error::from_raw_os_error(-res);
            if self.warn_limit.allow().is_some() {
                tracing::warn!(source = %self.src(s).meta.name, error = %err,
                    "accept failed; backing off {ACCEPT_BACKOFF:?} and listening on");
            }
            if !more && !self.stopping && !self.src(s).is_retired() {
                self.accept_retry_at[s] = Some(Instant::now() + ACCEPT_BACKOFF);
            }
            return;
        }
        if !more && !self.stopping && !self.src(s).is_retired() {
            self.arm_accept(s);
        }
    }

    fn open_conn(&mut self, s: usize, fd: OwnedFd) {
        let src = self.src(s);
        let meta = src.accepted(fd.as_fd(), Some((self.args.index, &self.room_hook)));
        let retired = src.is_retired();
        self.conns_of[s] += 1;
        self.args.counters.connection_opened();
        let idx = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            (self.slots.len() - 1) as u32
        });
        let gen = self.next_gen;
        self.next_gen = (self.next_gen + 1) & 0xff_ffff;
        self.slots[idx as usize] = Some(Slot {
            fd,
            gen,
            source: s,
            conn: Conn::new(meta),
            recv: Recv::Idle,
            backlog: VecDeque::new(),
            parked: None,
            done: false,
            dirty: false,
            seen: true,
            listed_parked: false,
            listed_reply: false,
            listed_nobufs: false,
            park_counted: false,
            more_pending: false,
        });
        if self.past_deadline || retired {
            // Late (the queue was drained after the deadline), or its source was removed:
            // read what is there, then end.
            if let Some(slot) = self.slots[idx as usize].as_ref() {
                let _ = rustix::net::shutdown(&slot.fd, rustix::net::Shutdown::Read);
            }
        }
        self.arm_recv(idx);
    }

    fn on_recv(&mut self, idx: u32, gen: u32, res: i32, flags: u32) {
        let bid = cqueue::buffer_select(flags);
        let live = matches!(self.slots.get(idx as usize), Some(Some(s)) if s.gen == gen);
        if !live {
            // A completion for a connection that is gone: give its buffer back.
            if let Some(bid) = bid {
                self.bufs.push(bid);
            }
            return;
        }
        if res <= 0 {
            // No data, but a kernel may still have picked a buffer: give it back.
            if let Some(bid) = bid {
                self.bufs.push(bid);
            }
        }
        let more = cqueue::more(flags);
        let slot = self.slots[idx as usize].as_mut().unwrap();
        slot.seen = true;
        slot.more_pending = more && res > 0 && cqueue::sock_nonempty(flags);
        if !more {
            slot.recv = Recv::Idle;
        }
        if res > 0 {
            let bid = bid.expect("a recv with buffer select completed without a buffer");
            self.bufs.held += 1;
            slot.backlog.push_back(Chunk::Data(bid, res as u32));
        } else if res == 0 {
            slot.backlog.push_back(Chunk::Eof);
        } else if res == -libc::ENOBUFS {
            Counters::add(&self.args.counters.recv_out_of_buffers, 1);
            if !slot.listed_nobufs {
                slot.listed_nobufs = true;
                self.nobufs.push(idx);
            }
        } else if res != -libc::ECANCELED {
            // ECONNRESET and friends: the peer is gone; what was read is kept.
            tracing::debug!(conn = slot.conn.meta.id, error = %io::Error::from_raw_os_error(-res), "recv ended");
            slot.backlog.push_back(Chunk::Eof);
        }
        self.drain(idx);
    }

    /// Offer the parked batch, then work through the backlog until it is empty or the channel
    /// is full again; close or re-arm as the connection's state says.
    fn drain(&mut self, idx: u32) {
        let past_deadline = self.past_deadline;
        let Some(slot) = self.slots[idx as usize].as_mut() else {
            return;
        };
        let src = self.sources[slot.source]
            .as_ref()
            .expect("a connection's source is held");
        let ctx = IngestCtx {
            framing: src.cfg.framing(),
            channel: &self.args.channel,
            counters: &self.args.counters,
            latency_field: src.meta.latency_field.as_deref(),
        };
        let dec = self.decoders.get(src.cfg.codec());
        let mut reply_wait = false;
        loop {
            if let Some(b) = slot.parked.take() {
                match offer(&src.sender, b, past_deadline) {
                    Some(b) => {
                        slot.parked = Some(b);
                        break;
                    }
                    None => continue,
                }
            }
            // A reply sink holds too much for this connection, or its source is paused: read
            // no more until it drains or resumes.
            if !slot.done
                && !past_deadline
                && !slot.backlog.is_empty()
                && !slot.conn.meta.should_read()
            {
                reply_wait = true;
                break;
            }
            match slot.backlog.pop_front() {
                None => break,
                Some(Chunk::Data(bid, len)) => {
                    let full = slot.conn.feed(&ctx, dec, self.bufs.get(bid, len as usize));
                    self.bufs.push(bid);
                    if full {
                        slot.parked = slot.conn.take_batch(ctx.counters);
                    } else if slot.conn.has_batch() && !slot.dirty {
                        slot.dirty = true;
                        self.dirty.push(idx);
                    }
                }
                Some(Chunk::Eof) => {
                    slot.conn.finish(&ctx, dec);
                    slot.parked = slot.conn.take_batch(ctx.counters);
                    slot.done = true;
                    slot.backlog.clear();
                }
            }
        }
        let parked = slot.parked.is_some() || reply_wait;
        let cancel_recv = parked && slot.recv == Recv::Armed;
        if cancel_recv {
            slot.recv = Recv::Cancelling;
        }
        let list_parked = slot.parked.is_some() && !slot.listed_parked;
        slot.listed_parked |= list_parked;
        let list_reply = reply_wait && !slot.listed_reply;
        slot.listed_reply |= list_reply;
        let count = parked && !slot.park_counted;
        slot.park_counted = parked;
        let (gen, recv, done, waits_for_bufs) =
            (slot.gen, slot.recv, slot.done, slot.listed_nobufs);
        if parked {
            if cancel_recv {
                self.cancel(ud(K_RECV, gen, idx));
            }
            if count {
                Counters::add(&self.args.counters.parked, 1);
            }
            if list_parked {
                self.parked.push(idx);
            }
            if list_reply {
                self.reply_parked.push(idx);
                self.reply_retry_at
                    .get_or_insert_with(|| Instant::now() + REPLY_RETRY);
            }
        } else if done {
            // While the recv's last completion is still to come, on_recv drains (and closes) again.
            if recv == Recv::Idle {
                self.close(idx);
            }
        } else if recv == Recv::Idle && !waits_for_bufs {
            self.arm_recv(idx);
        }
    }

    fn close(&mut self, idx: u32) {
        if let Some(mut slot) = self.slots[idx as usize].take() {
            // Whatever is still open was counted by take_batch already or is empty.
            let src = Arc::clone(self.src(slot.source));
            self.conns_of[slot.source] -= 1;
            if let Some(b) = slot.conn.take_batch(&self.args.counters) {
                let _ = src.sender.send_blocking(b);
            }
            self.args.counters.connection_closed();
            src.closed(slot.conn.meta.id);
            self.args.balance.closed(self.args.index);
            drop(slot.fd);
            self.free.push(idx);
        }
    }

    fn after_completions(&mut self) {
        // Retry parked connections.
        self.retry_parked();
        if self.room_woken || self.reply_retry_at.is_some_and(|at| at <= Instant::now()) {
            self.retry_reply_parked();
        }
        // Re-arm recvs that ran out of buffers, once buffers are back.
        if !self.nobufs.is_empty() && self.bufs.held < RING_BUFFERS as usize / 2 {
            for idx in std::mem::take(&mut self.nobufs) {
                if let Some(slot) = self.slots[idx as usize].as_mut() {
                    slot.listed_nobufs = false;
                }
                self.drain(idx);
            }
        }
        // Accepts that backed off.
        let now = Instant::now();
        for s in 0..self.accept_retry_at.len() {
            if self.accept_retry_at[s].is_some_and(|at| at <= now) {
                self.accept_retry_at[s] = None;
                if self.stopping || self.src(s).is_retired() {
                    if !self.past_deadline {
                        self.drain_queue(s);
                    }
                } else if !self.accept_armed[s] {
                    self.arm_accept(s);
                }
            }
        }
        self.on_deadline(now);
        self.release_retired();
        if now >= self.next_sweep {
            self.next_sweep = now + STALL_SWEEP;
            self.sweep();
        }
        // Send what this round of completions produced: one channel send per connection, except
        // for connections whose socket holds more (their next completion is already coming; the
        // sweep sends theirs if it does not). Parking one cancels its recv and touches no backlog,
        // so this adds nothing to `dirty`.
        let mut still_filling = Vec::new();
        for idx in std::mem::take(&mut self.dirty) {
            let past_deadline = self.past_deadline;
            let Some(slot) = self.slots[idx as usize].as_mut() else {
                continue;
            };
            if slot.more_pending && slot.recv == Recv::Armed && !self.stopping {
                still_filling.push(idx);
                continue;
            }
            slot.dirty = false;
            if slot.parked.is_some() {
                continue;
            }
            if let Some(b) = slot.conn.take_batch(&self.args.counters) {
                let src = self.sources[slot.source].as_ref().expect("held");
                if let Some(b) = offer(&src.sender, b, past_deadline) {
                    slot.parked = Some(b);
                    self.drain(idx); // parks it (cancels its recv)
                }
            }
        }
        self.dirty = still_filling;

        if self.stopping
            && self.wake_armed
            && !self.wake_cancelled
            && self.slots.iter().all(Option::is_none)
        {
            self.wake_cancelled = true;
            self.cancel(ud(K_WAKE, 0, 0));
        }
    }
}

/// Offer without waiting; past the shutdown deadline, wait. `Some(batch)` means park.
fn offer(sender: &Sender, b: crate::event::Batch, blocking: bool) -> Option<crate::event::Batch> {
    if blocking {
        let _ = sender.send_blocking(b);
        return None;
    }
    match sender.offer(b) {
        Offer::Sent | Offer::Dropped => None,
        Offer::Full(b) => Some(b),
        Offer::Closed(_) => None, // the sink thread is gone; it reports what it could not write
    }
}
