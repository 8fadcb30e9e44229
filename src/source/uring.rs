//! The io_uring read loop: the only module with `unsafe` code (the crate denies it elsewhere).
//!
//! Stage: source. In: listening sockets (one per source, shared by all workers). Out: batches on
//! the channel. One ring per worker thread, created on that thread (SINGLE_ISSUER, DEFER_TASKRUN
//! and COOP_TASKRUN where the kernel has them). Each worker arms a multishot accept on every
//! listener and a multishot recv on every connection it accepted; recv picks its buffer from the
//! worker's provided-buffer ring, so an idle connection costs no read buffer at all. The bytes of a
//! completion are framed and decoded at once, copied into the connection's open batch (the one
//! copy: see `channel`), and the buffer goes straight back to the ring.
//!
//! The worker is two halves. [`machine`] holds the decisions as a sans-IO state machine with no
//! `unsafe`: each connection's state (reading, parked on the channel or on replies, ended),
//! its recv's lifecycle, backpressure and its retries, re-arming, cancelling, the stall sweep,
//! stopping and the deadline; it is property-tested against a model without a kernel. This file
//! is the shell: it turns completions into the machine's `Input`s and carries out its `Action`s
//! on the ring, the buffer ring and the sockets, and answers its questions about framing and the
//! channel (`Ingesting`). Accepts, the source table (`table`) and the start of stopping (`stop`)
//! stay in the shell.
//!
//! Backpressure: when the channel refuses a batch (`when_full = "block"`), the connection is
//! parked: its recv is cancelled, completions already in flight are kept in its backlog (their
//! buffers are held, not recycled), and nothing more is read from it, so its kernel socket buffer
//! fills and the writer blocks. A connection whose reply queue is over its bound, or whose source
//! is paused (control socket), is parked the same way, and looked at again when the worker is
//! woken (its eventfd: the reply writer as the queue drains, or a `resume`). See `machine` for
//! the rules.
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
//! What it does not do: parse or frame (see `ingest::Conn`), or write anywhere but the channel.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

mod bufring;
mod machine;
mod stop;
mod table;

use super::balance::Balance;
use super::{SourceRt, SourceTable};
use crate::channel::{Offer, Sender};
use crate::codec::{Decoder, Decoders};
use crate::config::ChannelConfig;
use crate::event::Shutdown;
use crate::ingest::{Conn, IngestCtx};
use crate::reply::RoomHook;
use crate::telemetry::{Counters, RateLimit};
use bufring::BufRing;
use machine::{Action, Count, Fed, Got, Id, Ingest, Input, Machine};

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
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

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

/// The shell's half of a connection (the core's half is its state): the socket, its source,
/// its ingest state, and a batch the channel refused (or that is waiting to be offered).
struct Link {
    fd: OwnedFd,
    source: usize,
    conn: Conn,
    aside: Option<crate::event::Batch>,
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
    /// The decisions: connection states, retries, stopping (see `machine`).
    core: Machine,
    /// The core's actions of one step (reused).
    out: Vec<Action>,
    /// Connections whose peek found a missed wake-up (answered to the core after the step).
    stalled: Vec<Id>,
    /// The shell's half of each connection, under the core's `Id::idx`.
    links: Vec<Option<Link>>,
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
    decoders: Decoders,
    pending_sqes: Vec<squeue::Entry>,
    room_hook: RoomHook,
    accept_armed: Vec<bool>,
    accept_retry_at: Vec<Option<Instant>>,
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
        core: Machine::new(RING_BUFFERS as usize),
        out: Vec::with_capacity(64),
        stalled: Vec::new(),
        links: Vec::new(),
        sources: Vec::new(),
        table_version: u64::MAX,
        accepting: Vec::new(),
        retiring: Vec::new(),
        conns_of: Vec::new(),
        ring,
        bufs,
        wake_buf: Box::new([0; 8]),
        decoders: Decoders::default(),
        pending_sqes: Vec::new(),
        room_hook: {
            let (balance, index) = (Arc::clone(&args.balance), args.index);
            Arc::new(move || balance.wake(index))
        },
        accept_armed: Vec::new(),
        accept_retry_at: Vec::new(),
        warn_limit: RateLimit::new(5),
        args,
    };
    let mut out = std::mem::take(&mut w.out);
    w.core.start(&mut out);
    w.execute(&mut out);
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
            if self.core.stopping() && self.try_finish() {
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
        let now = Instant::now();
        let mut t = self.core.timeout(now);
        let mut min = |d: Duration| t = Some(t.map_or(d, |x: Duration| x.min(d)));
        for at in self.accept_retry_at.iter().flatten() {
            min(at.saturating_duration_since(now));
        }
        if self.core.stopping() && !self.core.past_deadline() {
            if let Some(d) = self.args.shutdown.deadline() {
                min(d
                    .saturating_duration_since(now)
                    .max(Duration::from_millis(1)));
            }
        }
        t
    }

    /// Give the core one input and carry out what it decides (then answer its peeks).
    fn step(&mut self, input: Input) {
        let mut out = std::mem::take(&mut self.out);
        let mut next = Some(input);
        while let Some(input) = next
            .take()
            .or_else(|| self.stalled.pop().map(Input::Stalled))
        {
            let mut ingest = Ingesting {
                links: &mut self.links,
                sources: &self.sources,
                bufs: &self.bufs,
                decoders: &mut self.decoders,
                channel: &self.args.channel,
                counters: &self.args.counters,
            };
            self.core.step(input, &mut ingest, &mut out);
            self.execute(&mut out);
        }
        self.out = out;
    }

    /// Carry out the core's actions, in order (and empty `out`).
    fn execute(&mut self, out: &mut Vec<Action>) {
        for a in out.drain(..) {
            match a {
                Action::ArmRecv(id) => {
                    let fd = self.link(id).fd.as_raw_fd();
                    let e = opcode::RecvMulti::new(types::Fd(fd), BUF_GROUP)
                        .build()
                        .user_data(ud(K_RECV, id.gen, id.idx));
                    self.push_sqe(e);
                }
                Action::CancelRecv(id) => self.cancel(ud(K_RECV, id.gen, id.idx)),
                Action::ArmWake => self.arm_wake(),
                Action::CancelWake => self.cancel(ud(K_WAKE, 0, 0)),
                Action::ReturnBuf(bid) => self.bufs.push(bid),
                Action::ShutdownRead(id) => {
                    let _ = rustix::net::shutdown(&self.link(id).fd, rustix::net::Shutdown::Read);
                }
                Action::Peek(id) => {
                    let mut byte = [0u8; 1];
                    let flags = rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT;
                    if rustix::net::recv(&self.link(id).fd, &mut byte[..], flags).is_ok() {
                        self.stalled.push(id);
                    }
                }
                Action::Close(id) => self.close(id),
                Action::Count(c) => {
                    let counters = &self.args.counters;
                    let counter = match c {
                        Count::Parked => &counters.parked,
                        Count::OutOfBuffers => &counters.recv_out_of_buffers,
                        Count::StallRecovered => &counters.recv_stalls_recovered,
                    };
                    Counters::add(counter, 1);
                }
            }
        }
    }

    fn link(&self, id: Id) -> &Link {
        self.links[id.idx as usize]
            .as_ref()
            .expect("the core acts only on open connections")
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
            K_RECV => self.on_recv(Id { idx, gen }, res, flags),
            K_WAKE => {
                self.sync_sources();
                for (src, fd) in self.args.balance.take_inbox(self.args.index) {
                    self.open_handed(src, fd);
                }
                for id in self.args.balance.take_closes(self.args.index) {
                    // Asked by the control socket: reading and writing end; the recv then
                    // completes with EOF and the connection ends through the normal path.
                    if let Some(l) = self.links.iter().flatten().find(|l| l.conn.meta.id == id) {
                        let _ = rustix::net::shutdown(&l.fd, rustix::net::Shutdown::Both);
                    }
                }
                if self.args.shutdown.is_requested() {
                    self.begin_stop();
                }
                self.step(Input::Woken {
                    cancelled: res == -libc::ECANCELED,
                });
            }
            _ => {}
        }
    }

    fn on_accept(&mut self, s: usize, res: i32, flags: u32) {
        let more = cqueue::more(flags);
        if !more {
            self.accept_armed[s] = false;
        }
        let stopping = self.core.stopping();
        if res >= 0 {
            // SAFETY: a successful accept completion hands us a new fd that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(res as RawFd) };
            // Even while stopping: the client connected before the path was removed.
            if stopping {
                self.args.balance.keep(self.args.index);
                self.open_conn(s, fd);
            } else if let Some(fd) = self.args.balance.place(self.args.index, self.src(s), fd) {
                self.open_conn(s, fd);
            }
        } else if res != -libc::ECANCELED && !stopping {
            // (While stopping, a TCP listener that was shut down ends its accept with an error.)
            Counters::add(&self.args.counters.accept_errors, 1);
            let err = io::Error::from_raw_os_error(-res);
            if self.warn_limit.allow().is_some() {
                tracing::warn!(source = %self.src(s).meta.name, error = %err,
                    "accept failed; backing off {ACCEPT_BACKOFF:?} and listening on");
            }
            if !more && !self.src(s).is_retired() {
                self.accept_retry_at[s] = Some(Instant::now() + ACCEPT_BACKOFF);
            }
            return;
        }
        if !more && !self.core.stopping() && !self.src(s).is_retired() {
            self.arm_accept(s);
        }
    }

    fn open_conn(&mut self, s: usize, fd: OwnedFd) {
        let src = self.src(s);
        let meta = src.accepted(fd.as_fd(), Some((self.args.index, &self.room_hook)));
        // Its source was removed: read what is there, then end. (Past the deadline, the core
        // does the same: the queue was drained late.)
        let retired = src.is_retired();
        self.conns_of[s] += 1;
        self.args.counters.connection_opened();
        let mut out = std::mem::take(&mut self.out);
        let id = self.core.open(retired, &mut out);
        let idx = id.idx as usize;
        if self.links.len() <= idx {
            self.links.resize_with(idx + 1, || None);
        }
        self.links[idx] = Some(Link {
            fd,
            source: s,
            conn: Conn::new(meta),
            aside: None,
        });
        self.execute(&mut out);
        self.out = out;
    }

    fn on_recv(&mut self, id: Id, res: i32, flags: u32) {
        let got = match res {
            1.. => Got::Data(res as u32),
            0 => Got::Eof,
            _ if res == -libc::ENOBUFS => Got::NoBufs,
            _ if res == -libc::ECANCELED => Got::Cancelled,
            _ => {
                if self.core.is_live(id) {
                    // ECONNRESET and friends: the peer is gone; what was read is kept.
                    tracing::debug!(conn = self.link(id).conn.meta.id,
                        error = %io::Error::from_raw_os_error(-res), "recv ended");
                }
                Got::Failed
            }
        };
        self.step(Input::Recv {
            id,
            got,
            buf: cqueue::buffer_select(flags),
            more: cqueue::more(flags),
            nonempty: cqueue::sock_nonempty(flags),
        });
    }

    /// The core closed the connection: send what is left, let go of the socket.
    fn close(&mut self, id: Id) {
        let Some(mut link) = self.links[id.idx as usize].take() else {
            return;
        };
        // Whatever is still open was counted by take_batch already or is empty.
        let src = Arc::clone(self.src(link.source));
        self.conns_of[link.source] -= 1;
        for b in link
            .aside
            .take()
            .into_iter()
            .chain(link.conn.take_batch(&self.args.counters))
        {
            let _ = src.sender.send_blocking(b);
        }
        self.args.counters.connection_closed();
        src.closed(link.conn.meta.id);
        self.args.balance.closed(self.args.index);
        drop(link.fd);
    }

    fn after_completions(&mut self) {
        // Accepts that backed off.
        let now = Instant::now();
        for s in 0..self.accept_retry_at.len() {
            if self.accept_retry_at[s].is_some_and(|at| at <= now) {
                self.accept_retry_at[s] = None;
                if self.core.stopping() || self.src(s).is_retired() {
                    if !self.core.past_deadline() {
                        self.drain_queue(s);
                    }
                } else if !self.accept_armed[s] {
                    self.arm_accept(s);
                }
            }
        }
        self.on_deadline(now);
        self.step(Input::Turn { now });
        self.release_retired();
    }
}

/// What the core asks while it works through a connection's backlog: framing and the channel.
struct Ingesting<'a> {
    links: &'a mut [Option<Link>],
    sources: &'a [Option<Arc<SourceRt>>],
    bufs: &'a BufRing,
    decoders: &'a mut Decoders,
    channel: &'a ChannelConfig,
    counters: &'a Counters,
}

impl<'a> Ingesting<'a> {
    fn link(&mut self, id: Id) -> (&mut Link, &'a Arc<SourceRt>) {
        link_of(self.links, self.sources, id)
    }

    /// Run `f` on a connection with its ingest context and decoder; then set aside the batch
    /// it filled (taken when `f` says so).
    fn ingest(&mut self, id: Id, f: impl FnOnce(&mut Conn, &IngestCtx<'_>, &mut Decoder) -> bool) {
        let (channel, counters) = (self.channel, self.counters);
        let (link, src) = link_of(self.links, self.sources, id);
        let ctx = IngestCtx {
            framing: src.cfg.framing(),
            channel,
            counters,
            latency_field: src.meta.latency_field.as_deref(),
        };
        let dec = self.decoders.get(src.cfg.codec());
        if f(&mut link.conn, &ctx, dec) {
            link.aside = link.conn.take_batch(counters);
        }
    }
}

/// A connection's link and its source (a function, so that the other fields stay borrowable).
fn link_of<'l, 's>(
    links: &'l mut [Option<Link>],
    sources: &'s [Option<Arc<SourceRt>>],
    id: Id,
) -> (&'l mut Link, &'s Arc<SourceRt>) {
    let link = links[id.idx as usize]
        .as_mut()
        .expect("the machine asks only about open connections");
    let src = sources[link.source]
        .as_ref()
        .expect("a connection's source is held");
    (link, src)
}

impl Ingest for Ingesting<'_> {
    fn feed(&mut self, id: Id, buf: u16, len: u32) -> Fed {
        let bytes = self.bufs.get(buf, len as usize);
        let mut full = false;
        self.ingest(id, |conn, ctx, dec| {
            full = conn.feed(ctx, dec, bytes);
            full
        });
        if full {
            Fed::Full
        } else if self.link(id).0.conn.has_batch() {
            Fed::Open
        } else {
            Fed::Empty
        }
    }

    fn finish(&mut self, id: Id) {
        self.ingest(id, |conn, ctx, dec| {
            conn.finish(ctx, dec);
            true
        });
    }

    fn offer(&mut self, id: Id, blocking: bool) -> bool {
        let (link, src) = self.link(id);
        match link.aside.take() {
            None => true,
            Some(b) => {
                link.aside = offer(&src.sender, b, blocking);
                link.aside.is_none()
            }
        }
    }

    fn flush(&mut self, id: Id, blocking: bool) -> bool {
        let counters = self.counters;
        let (link, src) = self.link(id);
        match link.conn.take_batch(counters) {
            None => true,
            Some(b) => {
                link.aside = offer(&src.sender, b, blocking);
                link.aside.is_none()
            }
        }
    }

    fn should_read(&mut self, id: Id) -> bool {
        self.link(id).0.conn.meta.should_read()
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
