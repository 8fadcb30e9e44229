//! The sending engine: connections spread over threads, each thread an epoll loop over
//! non-blocking sockets.
//!
//! **Open loop** (`--rate R`): every connection has a constant schedule of writes (R/N events a
//! second, `K` events a write, connections phase-shifted evenly). A write's *intended* time is
//! fixed by the schedule, whatever happens; its events are stamped with it and every latency is
//! measured from it. When the gateway stalls, the writes that fall due are still charged from
//! their intended times, so a stall counts against every event it delayed (no coordinated
//! omission, as in wrk2). **Closed loop** (`--rate max`): each connection writes the next `K`
//! events as soon as the socket takes the previous ones; intended time = the time of writing.
//!
//! Latency, two ways: `send_lag` (intended time → the socket accepted the last byte: shows
//! backpressure) always, and `roundtrip` (intended time → the reply line came back on the same
//! connection; replies are matched in order) with `--roundtrip`. A stamp field for the gateway's
//! own histogram is written by [`crate::payload`].

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use ringway::telemetry::hist::latency_histogram;
use ringway::telemetry::mono_ns;
use rustix::event::epoll;
use rustix::io::Errno;
use rustix::net::{RecvFlags, SendFlags};

use crate::payload::Payload;

#[derive(Debug, Clone, Copy)]
pub enum Limit {
    Duration(Duration),
    Count(u64),
}

#[derive(Debug, Clone)]
pub struct Plan {
    /// Events a second over all connections; `None` = closed loop, as fast as possible.
    pub rate: Option<f64>,
    pub limit: Limit,
    pub warmup: Duration,
    pub lines_per_write: usize,
    pub roundtrip: bool,
    pub drain_timeout: Duration,
    /// Open loop: the sender sleeps in whole ticks (0: wakes for every write).
    pub tick: Duration,
    /// Fail the run when bytes wait to be sent and the target takes none for this long.
    pub stall_timeout: Option<Duration>,
    /// A WebSocket target: each write goes out as one (masked, text) message.
    pub websocket: bool,
}

/// Counters the progress line reads while the run goes on.
#[derive(Debug, Default)]
pub struct Live {
    pub sent: AtomicU64,
    pub bytes: AtomicU64,
    pub errors: AtomicU64,
    pub replies: AtomicU64,
    /// Set to stop early (Ctrl-C): threads stop scheduling and drain what they have.
    pub stop: AtomicBool,
}

/// What one thread (and, merged, the whole run) did.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Events whose bytes the socket accepted.
    pub sent: u64,
    pub bytes: u64,
    /// Of those, the ones intended after the warm-up (they make the throughput and latencies).
    pub measured: u64,
    pub measured_bytes: u64,
    /// When the last measured event was accepted (ns, CLOCK_MONOTONIC).
    pub last_sent_at: u64,
    /// Events that were due but never fully sent (their connection broke).
    pub failed: u64,
    pub replies: u64,
    /// When a socket last took or gave bytes (ns).
    pub last_progress: u64,
    /// Reply lines beyond the events sent.
    pub unexpected_replies: u64,
    /// Events sent whose reply never came (roundtrip only).
    pub missing_replies: u64,
    pub errors: Vec<String>,
    pub send_lag: Histogram<u64>,
    pub roundtrip: Histogram<u64>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            sent: 0,
            bytes: 0,
            measured: 0,
            measured_bytes: 0,
            last_sent_at: 0,
            last_progress: 0,
            failed: 0,
            replies: 0,
            unexpected_replies: 0,
            missing_replies: 0,
            errors: Vec::new(),
            send_lag: latency_histogram(),
            roundtrip: latency_histogram(),
        }
    }

    pub fn merge(mut self, o: Tally) -> Tally {
        self.sent += o.sent;
        self.bytes += o.bytes;
        self.measured += o.measured;
        self.measured_bytes += o.measured_bytes;
        self.last_sent_at = self.last_sent_at.max(o.last_sent_at);
        self.failed += o.failed;
        self.replies += o.replies;
        self.unexpected_replies += o.unexpected_replies;
        self.missing_replies += o.missing_replies;
        self.errors.extend(o.errors);
        self.send_lag.add(&o.send_lag).expect("same bounds");
        self.roundtrip.add(&o.roundtrip).expect("same bounds");
        self
    }
}

/// One write waiting to be accepted by the socket: where it ends in the stream, its intended
/// time and its events.
struct Pending {
    end: u64,
    intended: u64,
    events: u32,
}

struct Conn {
    fd: OwnedFd,
    /// `wss://`: the TLS session the bytes go through.
    tls: Option<Box<rustls::ClientConnection>>,
    /// Global index (0..connections): in every event as `conn`.
    id: u32,
    /// Open loop: this connection's offset in the schedule.
    phase: u64,
    /// Writes generated so far (the next one's index).
    writes: u64,
    /// Events to send in all (count limit), else `u64::MAX`.
    quota: u64,
    /// Next event's sequence number (= events generated so far).
    seq: u64,
    out: Vec<u8>,
    pos: usize,
    /// Bytes generated / accepted by the socket since the start.
    generated: u64,
    accepted: u64,
    /// Where the last fully accepted write ended.
    done_end: u64,
    pending: VecDeque<Pending>,
    /// Roundtrip: (intended time, replies still due) per write, oldest first.
    awaiting: VecDeque<(u64, u32)>,
    blocked: bool,
    dead: bool,
}

/// Shared, read-only parameters of a run.
pub struct Ctx {
    pub plan: Plan,
    pub payload: Arc<Payload>,
    pub live: Arc<Live>,
    /// Start of the schedule (ns).
    pub t0: u64,
    pub connections: usize,
}

impl Ctx {
    fn warmup_end(&self) -> u64 {
        self.t0 + self.plan.warmup.as_nanos() as u64
    }

    /// No write is intended at or after this time (duration limit), else `u64::MAX`.
    fn end(&self) -> u64 {
        match self.plan.limit {
            Limit::Duration(d) => self.warmup_end() + d.as_nanos() as u64,
            Limit::Count(_) => u64::MAX,
        }
    }

    /// Open loop: ns between two writes of one connection.
    fn interval(&self) -> Option<f64> {
        self.plan
            .rate
            .map(|r| self.plan.lines_per_write as f64 * self.connections as f64 / r * 1e9)
    }
}

/// Run one thread's connections (`(global index, socket)`) to the end of the plan.
pub fn run_thread(ctx: &Ctx, socks: Vec<(u32, crate::target::Connected)>) -> Tally {
    let mut tally = Tally::new();
    let ep = epoll::create(epoll::CreateFlags::CLOEXEC).expect("epoll_create");
    let interval = ctx.interval();
    let n = ctx.connections as u64;
    let mut conns: Vec<Conn> = socks
        .into_iter()
        .enumerate()
        .map(|(slot, (id, crate::target::Connected { fd, tls }))| {
            let flags = epoll::EventFlags::IN | epoll::EventFlags::OUT | epoll::EventFlags::ET;
            epoll::add(&ep, &fd, epoll::EventData::new_u64(slot as u64), flags).expect("epoll_ctl");
            let quota = match ctx.plan.limit {
                Limit::Count(c) => c / n + u64::from(u64::from(id) < c % n),
                Limit::Duration(_) => u64::MAX,
            };
            let phase = interval.map_or(0, |i| (i * f64::from(id) / n as f64) as u64);
            Conn {
                fd,
                tls,
                id,
                phase,
                writes: 0,
                quota,
                seq: 0,
                out: Vec::with_capacity(64 * 1024),
                pos: 0,
                generated: 0,
                accepted: 0,
                done_end: 0,
                pending: VecDeque::new(),
                awaiting: VecDeque::new(),
                blocked: false,
                dead: false,
            }
        })
        .collect();
    // Timer slack decides how late an epoll timeout may fire: keep it at 1 µs.
    let _ = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1));
    let mut events = Vec::with_capacity(256);
    let mut rbuf = vec![0u8; 64 * 1024];
    let (warm, end) = (ctx.warmup_end(), ctx.end());
    let mut drain_deadline = None;
    while mono_ns() < ctx.t0 {
        std::thread::sleep(Duration::from_micros(200));
    }
    tally.last_progress = ctx.t0;
    loop {
        let now = mono_ns();
        let stopping = ctx.live.stop.load(Relaxed);
        if stopping {
            // Ctrl-C: nothing more is generated; the drain below finishes the run.
            for c in &mut conns {
                c.quota = c.seq;
            }
        }
        let stalled = ctx.plan.stall_timeout.is_some_and(|st| {
            now.saturating_sub(tally.last_progress) > st.as_nanos() as u64
                && conns.iter().any(|c| !c.dead && c.unsent())
        });
        if stalled {
            let st = ctx.plan.stall_timeout.unwrap_or_default();
            for c in conns.iter_mut().filter(|c| !c.dead) {
                let unsent = c.drop_unsent() + c.not_generated(ctx);
                c.quota = c.seq;
                tally.failed += unsent;
                if unsent > 0 && tally.errors.len() < 20 {
                    tally.errors.push(format!(
                        "connection {}: the target took nothing for {st:?} (--stall-timeout); {unsent} events not sent",
                        c.id
                    ));
                    Live::add(&ctx.live.errors, 1);
                }
            }
        }
        let mut wake = u64::MAX;
        for c in conns.iter_mut().filter(|c| !c.dead) {
            match interval {
                Some(iv) => {
                    // Generate what is due, up to 1 MiB ahead of the socket; the rest waits
                    // with its intended times intact (they are computed, not queued).
                    let mut capped = false;
                    while c.seq < c.quota {
                        if c.out.len() - c.pos >= 1 << 20 {
                            capped = true;
                            break;
                        }
                        let due = c.intended(ctx, iv);
                        if due >= end || stopping {
                            c.quota = c.seq;
                            break;
                        }
                        if due > now {
                            wake = wake.min(due);
                            break;
                        }
                        c.generate(ctx, due, ctx.plan.roundtrip);
                    }
                    if !c.blocked && c.unsent() {
                        c.send(ctx, warm, &mut tally);
                    }
                    // Held back by the cap and the socket still takes more: come straight back.
                    if capped && !c.blocked && !c.dead {
                        wake = now;
                    }
                }
                None => {
                    // As fast as the socket takes them, one write of K events at a time, at
                    // most 16 writes per turn so that every connection gets its share.
                    for _ in 0..16 {
                        if c.blocked || c.dead {
                            break;
                        }
                        if !c.unsent() {
                            if now >= end || stopping {
                                c.quota = c.seq;
                            }
                            if c.seq >= c.quota {
                                break;
                            }
                            c.generate(ctx, mono_ns(), ctx.plan.roundtrip);
                        }
                        c.send(ctx, warm, &mut tally);
                    }
                    if !c.blocked && !c.dead && c.seq < c.quota {
                        wake = now;
                    }
                }
            }
        }
        // Once nothing more will be generated (the plan is done, or Ctrl-C), what is still
        // unsent or unanswered gets `--drain-timeout`; then the run ends whatever is left.
        let generating = conns.iter().any(|c| !c.dead && c.seq < c.quota);
        if !generating {
            let unsent = conns.iter().any(|c| !c.dead && c.unsent());
            let awaiting =
                ctx.plan.roundtrip && conns.iter().any(|c| !c.dead && !c.awaiting.is_empty());
            if !unsent && !awaiting {
                break;
            }
            let deadline = *drain_deadline
                .get_or_insert_with(|| mono_ns() + ctx.plan.drain_timeout.as_nanos() as u64);
            if mono_ns() >= deadline {
                break;
            }
            wake = wake.min(deadline);
        }
        // Sleep until the next write falls due, in whole ticks: what falls due within a tick
        // goes out together (still charged from its intended time), which saves the sender and
        // the target a wake-up per write.
        let timeout_ns = if wake == u64::MAX {
            100_000_000
        } else {
            let t = wake.saturating_sub(mono_ns()).min(100_000_000);
            let tick = ctx.plan.tick.as_nanos() as u64;
            if tick > 0 {
                (t.div_ceil(tick) * tick).min(100_000_000)
            } else {
                t
            }
        };
        let ts = rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: timeout_ns as _,
        };
        events.clear();
        match epoll::wait(&ep, rustix::buffer::spare_capacity(&mut events), Some(&ts)) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => panic!("epoll_wait: {e}"),
        }
        let now = mono_ns();
        for ev in &events {
            let (flags, data) = (ev.flags, ev.data);
            let c = &mut conns[data.u64() as usize];
            if c.dead {
                continue;
            }
            if flags.contains(epoll::EventFlags::OUT) {
                c.blocked = false;
            }
            if flags
                .intersects(epoll::EventFlags::IN | epoll::EventFlags::HUP | epoll::EventFlags::ERR)
            {
                c.read(ctx, now, warm, &mut rbuf, &mut tally);
            }
        }
    }
    for c in &mut conns {
        if !c.dead {
            // Generated, never taken by the socket before the drain deadline: not sent.
            let unsent = c.drop_unsent();
            tally.failed += unsent;
            if unsent > 0 && tally.errors.len() < 20 {
                tally.errors.push(format!(
                    "connection {}: {unsent} events still unsent when the drain timeout ran out (the target stopped reading)",
                    c.id
                ));
            }
        }
        tally.missing_replies += c.awaiting.iter().map(|&(_, n)| u64::from(n)).sum::<u64>();
    }
    close_gracefully(&conns, ctx.plan.drain_timeout.min(Duration::from_secs(5)));
    tally
}

/// End every connection without costing the target what it has not read yet: shut down our
/// writing side (the target reads on to EOF), then read and drop what it still sends until it
/// closes, all connections at once, for up to `limit`. (Closing a socket whose receive queue
/// holds unread bytes sends a RST, and a RST makes the target's kernel discard what it had
/// received for that connection and not yet read: events sent would be lost in flight.)
/// (wss://: the TLS session ends without a close_notify, as a plain close always did.)
fn close_gracefully(conns: &[Conn], limit: Duration) {
    use rustix::event::{poll, PollFd, PollFlags};
    let until = std::time::Instant::now() + limit;
    for c in conns {
        let _ = rustix::net::shutdown(&c.fd, rustix::net::Shutdown::Write);
    }
    let mut open: Vec<&Conn> = conns.iter().collect();
    let mut buf = [0u8; 16384];
    while !open.is_empty() {
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return;
        }
        let ts = rustix::time::Timespec {
            tv_sec: left.as_secs() as _,
            tv_nsec: left.subsec_nanos() as _,
        };
        let mut fds: Vec<PollFd<'_>> = open
            .iter()
            .map(|c| PollFd::new(&c.fd, PollFlags::IN))
            .collect();
        match poll(&mut fds, Some(&ts)) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(_) => return,
        }
        let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        let mut k = 0;
        open.retain(|c| {
            let was_ready = ready[k];
            k += 1;
            if !was_ready {
                return true;
            }
            loop {
                match rustix::net::recv(&c.fd, &mut buf, RecvFlags::DONTWAIT) {
                    Ok((0, _)) => return false, // the target closed: all it had is read
                    Ok(_) | Err(Errno::INTR) => {}
                    Err(Errno::AGAIN) => return true,
                    Err(_) => return false,
                }
            }
        });
    }
}

impl Conn {
    /// Open loop: the intended time of this connection's write number `self.writes`.
    fn intended(&self, ctx: &Ctx, iv: f64) -> u64 {
        ctx.t0
            .saturating_add(self.phase)
            .saturating_add((self.writes as f64 * iv) as u64)
    }

    /// Events of the plan this connection has not generated yet (0 when it runs until
    /// stopped).
    fn not_generated(&self, ctx: &Ctx) -> u64 {
        match ctx.interval() {
            _ if self.quota != u64::MAX => self.quota - self.seq,
            // Open loop for a duration: the writes still scheduled before the end.
            Some(iv) if ctx.end() != u64::MAX => {
                let span = ctx.end().saturating_sub(ctx.t0 + self.phase) as f64;
                let total = (span / iv).ceil() as u64;
                total.saturating_sub(self.writes) * ctx.plan.lines_per_write as u64
            }
            _ => 0,
        }
    }

    /// Forget the writes the socket never took; their replies are not awaited either.
    /// Returns their events.
    fn drop_unsent(&mut self) -> u64 {
        let mut unsent = 0u64;
        while let Some(p) = self.pending.pop_back() {
            unsent += u64::from(p.events);
            if matches!(self.awaiting.back(), Some(&(t, _)) if t == p.intended) {
                self.awaiting.pop_back();
            }
        }
        self.out.clear();
        self.pos = 0;
        unsent
    }

    /// Append the next write (up to K events) intended at `intended`.
    fn generate(&mut self, ctx: &Ctx, intended: u64, roundtrip: bool) {
        let k = (ctx.plan.lines_per_write as u64).min(self.quota - self.seq);
        let before = self.out.len();
        for _ in 0..k {
            let stamp = (intended >= ctx.warmup_end()).then_some(intended);
            ctx.payload.write(&mut self.out, self.id, self.seq, stamp);
            self.seq += 1;
        }
        if ctx.plan.websocket {
            let payload = self.out.split_off(before);
            ws_frame_header(&mut self.out, payload.len());
            self.out.extend_from_slice(&payload);
        }
        self.generated += (self.out.len() - before) as u64;
        self.writes += 1;
        self.pending.push_back(Pending {
            end: self.generated,
            intended,
            events: k as u32,
        });
        if roundtrip {
            self.awaiting.push_back((intended, k as u32));
        }
    }

    /// Bytes generated and not yet on the wire (in `out`, or in the TLS session's buffer).
    fn unsent(&self) -> bool {
        self.pos < self.out.len() || self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// `wss://`: hand what is waiting to the TLS session (counted accepted there), and write
    /// its records until the socket would block. False when the connection failed.
    fn send_tls(&mut self, ctx: &Ctx, t: &mut Tally) -> bool {
        use std::io::Write;
        let Some(tls) = &mut self.tls else {
            return true;
        };
        loop {
            if self.pos < self.out.len() {
                if let Ok(n) = tls.writer().write(&self.out[self.pos..]) {
                    self.pos += n;
                    self.accepted += n as u64;
                }
            }
            if !tls.wants_write() {
                if self.pos < self.out.len() {
                    continue;
                }
                return true;
            }
            let mut sock = FdIo(&self.fd);
            match tls.write_tls(&mut sock) {
                Ok(_) => t.last_progress = mono_ns(),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.blocked = true;
                    return true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(ctx, t, format!("connection {}: write failed: {e}", self.id));
                    return false;
                }
            }
        }
    }

    /// Write what is waiting until the socket would block.
    fn send(&mut self, ctx: &Ctx, warm: u64, t: &mut Tally) {
        if self.tls.is_some() && !self.send_tls(ctx, t) {
            return;
        }
        while self.tls.is_none() && self.pos < self.out.len() {
            match rustix::net::send(&self.fd, &self.out[self.pos..], SendFlags::NOSIGNAL) {
                Ok(n) => {
                    self.pos += n;
                    self.accepted += n as u64;
                    t.last_progress = mono_ns();
                }
                Err(Errno::AGAIN) => {
                    self.blocked = true;
                    break;
                }
                Err(Errno::INTR) => {}
                Err(e) => {
                    self.fail(ctx, t, format!("connection {}: write failed: {e}", self.id));
                    return;
                }
            }
        }
        let now = mono_ns();
        let (mut events, mut bytes) = (0u64, 0u64);
        while let Some(p) = self.pending.front() {
            if p.end > self.accepted {
                break;
            }
            let len = p.end - self.done_end;
            self.done_end = p.end;
            events += u64::from(p.events);
            bytes += len;
            if p.intended >= warm {
                t.measured += u64::from(p.events);
                t.measured_bytes += len;
                t.last_sent_at = now;
                t.send_lag.saturating_record_n(
                    now.saturating_sub(p.intended).max(1),
                    u64::from(p.events),
                );
            }
            self.pending.pop_front();
        }
        if self.pos == self.out.len() {
            self.out.clear();
            self.pos = 0;
        } else if self.pos > 1 << 20 {
            self.out.drain(..self.pos);
            self.pos = 0;
        }
        t.sent += events;
        t.bytes += bytes;
        Live::add(&ctx.live.sent, events);
        Live::add(&ctx.live.bytes, bytes);
    }

    /// Read replies until the socket would block; each line answers the oldest event.
    fn read(&mut self, ctx: &Ctx, now: u64, warm: u64, buf: &mut [u8], t: &mut Tally) {
        loop {
            match rustix::net::recv(&self.fd, &mut *buf, RecvFlags::DONTWAIT) {
                Ok((0, _)) => {
                    let owed = self.seq < self.quota || self.unsent() || !self.awaiting.is_empty();
                    if owed {
                        self.fail(
                            ctx,
                            t,
                            format!("connection {}: closed by the peer", self.id),
                        );
                    } else {
                        self.dead = true;
                    }
                    return;
                }
                Ok((n, _)) if self.tls.is_some() => {
                    // wss://: what the server sends (pings, its close) is read and ignored
                    // (--roundtrip is refused over WebSocket).
                    t.last_progress = now;
                    if let Err(e) = self.take_tls(&buf[..n]) {
                        self.fail(ctx, t, format!("connection {}: TLS: {e}", self.id));
                        return;
                    }
                }
                Ok((n, _)) => {
                    t.last_progress = now;
                    let lines = memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
                    t.replies += lines;
                    Live::add(&ctx.live.replies, lines);
                    for _ in 0..lines {
                        match self.awaiting.front_mut() {
                            Some((intended, left)) => {
                                if *intended >= warm {
                                    t.roundtrip
                                        .saturating_record(now.saturating_sub(*intended).max(1));
                                }
                                *left -= 1;
                                if *left == 0 {
                                    self.awaiting.pop_front();
                                }
                            }
                            None => t.unexpected_replies += 1,
                        }
                    }
                }
                Err(Errno::AGAIN) => return,
                Err(Errno::INTR) => {}
                Err(e) => {
                    self.fail(ctx, t, format!("connection {}: read failed: {e}", self.id));
                    return;
                }
            }
        }
    }

    /// Feed bytes read from the socket to the TLS session, and drop the plaintext.
    fn take_tls(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        use std::io::Read;
        let Some(tls) = &mut self.tls else {
            return Ok(());
        };
        while !data.is_empty() {
            tls.read_tls(&mut data)?;
            tls.process_new_packets().map_err(std::io::Error::other)?;
            let mut sink = [0u8; 4096];
            loop {
                match tls.reader().read(&mut sink) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// The connection is unusable: count what it will never send.
    fn fail(&mut self, ctx: &Ctx, t: &mut Tally, why: String) {
        self.dead = true;
        let unsent = self.drop_unsent();
        let never = self.not_generated(ctx);
        t.failed += unsent + never;
        Live::add(&ctx.live.errors, 1);
        if t.errors.len() < 20 {
            t.errors.push(why);
        }
    }
}

impl Live {
    fn add(c: &AtomicU64, n: u64) {
        if n > 0 {
            c.fetch_add(n, Relaxed);
        }
    }
}

/// A client's WebSocket frame head for a text message of `len` bytes: FIN, the shortest length
/// encoding, and a masking key of zeros (the payload goes as it is; a server unmasks it all the
/// same, so its cost is what it would be with any key).
fn ws_frame_header(out: &mut Vec<u8>, len: usize) {
    out.push(0x81);
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
}

/// A non-blocking socket as `io::Write` (what rustls writes its records to).
struct FdIo<'a>(&'a OwnedFd);

impl std::io::Write for FdIo<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(rustix::net::send(self.0, buf, SendFlags::NOSIGNAL)?)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
