//! Sinks: where events go. One thread takes batches from every lane of the channel and hands
//! each to the sinks whose `inputs` name its stream.
//!
//! In: batches from the channel's lanes (one per event stream). Out: bytes in files, on stdout,
//! nowhere (`null`), back to the connection they came from (`reply`), or to a peer socket
//! (`unix_socket_client`, through its spool and thread); dead-letter records to `[dead_letter]`.
//!
//! - File, stdout, null and reply are written by this thread. Raw events (the default format)
//!   go straight from the batches with `writev`, so the bytes copied out of the receive buffer are
//!   not copied again; other formats encode into a buffer. A write error is logged
//!   (rate-limited), counted and retried with backoff, in order: nothing is dropped, so while such
//!   a sink cannot write, the lanes fill and the sources feel backpressure.
//! - A client sink has a bounded spool and a thread of its own. When its spool is full, the
//!   batches of the streams it takes wait in their lanes (and their sources feel backpressure)
//!   while every other stream goes on, so a client that waits for its own peer's replies never
//!   waits on itself.
//! - An event counts in `events_out` once every sink it was for has written it (each batch is a
//!   [`Delivery`], counted when its last holder lets go). Only after shutdown has been requested
//!   and its grace has run out twice over does a sink give up; what it could not write is then
//!   counted as `lost_at_shutdown`.
//!
//! What it does not do: decide what is valid.

pub mod client;
pub mod encode;
mod output;

mod link;
mod schedule;
mod spool;
mod unix_link;
mod ws_link;

use std::io::IoSlice;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::Notify;

use crate::channel::Receiver;
use crate::config::{Config, SinkConfig, SinkKind};
use crate::event::Shutdown;
use crate::event::{Batch, Delivered};
use crate::telemetry::{Counters, RateLimit, SinkCounters};
use output::Output;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("sink {name}: cannot open {path}: {err}")]
    Open {
        name: String,
        path: std::path::PathBuf,
        err: std::io::Error,
    },
}

/// Flush once this much is waiting.
const FLUSH_AT: usize = 256 * 1024;
/// At most this many batches in one `writev`.
const MAX_IOV: usize = 512;
/// Batches taken from one lane before looking at the next.
const LANE_TURN: usize = 64;

/// A batch on its way through the sinks. When the last sink lets go of it, its events count as
/// written (`events_out`, and the latency histograms), or as `lost_at_shutdown` if a sink that
/// had it gave up; and its connection's delivery target is told (the per-batch report).
pub struct Delivery {
    pub batch: Batch,
    failed: AtomicBool,
    counters: Arc<Counters>,
}

impl Delivery {
    pub fn new(batch: Batch, counters: &Arc<Counters>) -> Arc<Delivery> {
        Arc::new(Delivery {
            batch,
            failed: AtomicBool::new(false),
            counters: Arc::clone(counters),
        })
    }

    /// A sink that had this batch gave up on it.
    pub fn fail(&self) {
        self.failed.store(true, Ordering::Relaxed);
    }

    pub fn stream(&self) -> usize {
        self.batch.stream()
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        let b = &self.batch;
        let n = b.events() as u64;
        if self.failed.load(Ordering::Relaxed) {
            b.report(Delivered::Lost);
            Counters::add(&self.counters.lost_at_shutdown, n);
            return;
        }
        b.report(Delivered::Written);
        Counters::add(&self.counters.events_out, n);
        if n > 0 {
            let now = crate::telemetry::mono_ns();
            let mut h = self
                .counters
                .histograms
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            h.record_batch(now, b.born, n, &b.stamps);
        }
    }
}

/// What the sink side needs from the gateway.
pub struct Wiring {
    pub lanes: Vec<Receiver>,
    pub counters: Arc<Counters>,
    pub shutdown: Arc<Shutdown>,
    /// The spools of the client sinks, by sink index (started by [`client::start`]).
    pub spools: Vec<Option<Arc<client::Spool>>>,
    /// Woken when a spool has room again.
    pub room: Arc<Notify>,
    /// The reply sink's connections, for `route_field`.
    pub reply_hub: Option<Arc<crate::reply::ReplyHub>>,
    /// Live changes (`reload`).
    pub reconfig: Arc<Reconfig>,
    /// Each sink's counters, by sink index.
    pub sink_counters: Vec<Arc<SinkCounters>>,
    /// Dropped when the sink thread ends (shutdown waits for it).
    pub done: crate::event::Guard,
}

/// Open every sink this thread writes (so a bad path fails at start, not at the first event)
/// and start the thread.
pub fn start(cfg: &Config, w: Wiring) -> Result<JoinHandle<()>, Error> {
    let streams = cfg.streams.len();
    let mut sinks = Vec::with_capacity(cfg.sinks.len());
    for (i, c) in cfg.sinks.iter().enumerate() {
        let mut wants = vec![false; streams];
        for &k in &c.inputs {
            wants[k] = true;
        }
        let passthrough = c
            .inputs
            .iter()
            .all(|&k| encode::is_passthrough(&c.format, cfg.stream_codec(k)));
        let target = match &c.kind {
            SinkKind::Client(_) => {
                Target::Spool(Arc::clone(w.spools[i].as_ref().expect("client spool")))
            }
            SinkKind::Reply(r) => Target::Reply(r.route_field.as_ref().and_then(|f| {
                Some(Router {
                    hub: Arc::clone(w.reply_hub.as_ref()?),
                    field: f.clone(),
                    dec: crate::codec::Decoder::new(crate::codec::Codec::Json),
                })
            })),
            _ => Target::Out(Output::open(c, &format!("sinks[{i}]"))?),
        };
        sinks.push(Sink {
            counters: Arc::clone(&w.sink_counters[i]),
            cfg: c.clone(),
            wants,
            target,
            passthrough,
            buf: Vec::new(),
            ends: Vec::new(),
            gave_up: false,
        });
    }
    let dead = Sink {
        target: Target::Out(Output::open(&cfg.dead_letter, "dead_letter")?),
        cfg: cfg.dead_letter.clone(),
        wants: Vec::new(),
        counters: Default::default(),
        passthrough: false,
        buf: Vec::new(),
        ends: Vec::new(),
        gave_up: false,
    };
    Ok(std::thread::Builder::new()
        .name("ringway-sink".into())
        .spawn(move || run(sinks, dead, w))
        .expect("spawning the sink thread"))
}

struct Lane {
    rx: Receiver,
    open: bool,
    /// A batch taken from this lane that a full spool could not take yet.
    held: Option<Arc<Delivery>>,
}

enum Target {
    Out(Output),
    /// Back to the connection each event came from, or (with a router) to the one it names.
    Reply(Option<Router>),
    Spool(Arc<client::Spool>),
}

/// `route_field`: the connection id is read from each event.
struct Router {
    hub: Arc<crate::reply::ReplyHub>,
    field: String,
    dec: crate::codec::Decoder,
}

struct Sink {
    cfg: SinkConfig,
    /// Events and bytes handed to this sink (written, or queued in its spool or reply queues).
    counters: Arc<SinkCounters>,
    /// By stream index: does this sink take that stream?
    wants: Vec<bool>,
    target: Target,
    /// Raw events, `\n`-separated: written straight from the batches (`writev`), no copy.
    passthrough: bool,
    /// Encoded bytes, for sinks that are not passthrough.
    buf: Vec<u8>,
    /// Where each event ends in `buf` (for the reply queues).
    ends: Vec<usize>,
    /// Past the shutdown give-up point and still failing: this sink stops retrying.
    gave_up: bool,
}

impl Sink {
    /// Does this sink take stream `k`?
    fn takes(&self, k: usize) -> bool {
        self.wants.get(k) == Some(&true)
    }
}

struct Loop {
    sinks: Vec<Sink>,
    dead: Sink,
    /// Batches handed to the sinks this thread writes, not yet flushed.
    pending: Vec<Arc<Delivery>>,
    pending_bytes: usize,
    ctx: WriteCtx,
}

fn run(sinks: Vec<Sink>, dead: Sink, w: Wiring) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("the sink thread's waiting runtime");
    let mut lanes: Vec<Lane> = w
        .lanes
        .into_iter()
        .map(|rx| Lane {
            rx,
            open: true,
            held: None,
        })
        .collect();
    let mut l = Loop {
        sinks,
        dead,
        pending: Vec::with_capacity(MAX_IOV),
        pending_bytes: 0,
        ctx: WriteCtx {
            counters: Arc::clone(&w.counters),
            shutdown: Arc::clone(&w.shutdown),
            warn: RateLimit::new(2),
        },
    };
    let mut sealed = vec![false; l.sinks.len()];
    let mut start = 0usize;
    loop {
        if w.reconfig.asked.load(std::sync::atomic::Ordering::Acquire) {
            l.reconfigure(&w.reconfig, &mut lanes);
        }
        let mut progressed = false;
        // Batches a full spool refused: offered again first, in their lanes' order.
        for lane in lanes.iter_mut() {
            if let Some(d) = lane.held.take() {
                if l.has_room(&d) {
                    l.dispatch(d);
                    progressed = true;
                } else {
                    lane.held = Some(d);
                }
            }
        }
        let n = lanes.len();
        for k in 0..n {
            let lane = &mut lanes[(start + k) % n];
            let mut taken = 0;
            while lane.open && lane.held.is_none() && taken < LANE_TURN {
                match lane.rx.try_recv() {
                    Ok(b) => {
                        taken += 1;
                        progressed = true;
                        l.take(lane, b);
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => lane.open = false,
                }
            }
            if l.pending_bytes >= FLUSH_AT || l.pending.len() >= MAX_IOV {
                l.flush();
            }
        }
        start = start.wrapping_add(1);
        // A spool whose streams have all ended gets no more: its thread sends the rest and ends.
        for (i, s) in l.sinks.iter().enumerate() {
            if let Target::Spool(sp) = &s.target {
                if !sealed[i]
                    && lanes
                        .iter()
                        .enumerate()
                        .all(|(k, lane)| !s.takes(k) || (!lane.open && lane.held.is_none()))
                {
                    sealed[i] = true;
                    sp.seal();
                }
            }
        }
        if lanes.iter().all(|x| !x.open && x.held.is_none()) {
            break;
        }
        if progressed {
            continue;
        }
        // Nothing to take right now: write what is waiting, then sleep until a lane has a
        // batch, or a spool has room for a held one.
        l.flush();
        if let Some((k, got)) = rt.block_on(wait(&mut lanes, &w.room, &w.reconfig.poke)) {
            match got {
                Some(b) => l.take(&mut lanes[k], b),
                None => lanes[k].open = false,
            }
        }
    }
    l.flush();
    for s in l.sinks.iter_mut().chain(std::iter::once(&mut l.dead)) {
        if let Target::Spool(sp) = &s.target {
            sp.seal();
        }
        if let Target::Out(out) = &mut s.target {
            if let Err(e) = out.sync() {
                tracing::warn!(sink = %out.name(), error = %e, "fsync failed at shutdown");
            }
        }
    }
}

/// Wait for the first lane with something (a batch, or its end), or for room in a spool.
async fn wait(lanes: &mut [Lane], room: &Notify, poke: &Notify) -> Option<(usize, Option<Batch>)> {
    let notified = room.notified();
    tokio::pin!(notified);
    let poked = poke.notified();
    tokio::pin!(poked);
    let any_held = lanes.iter().any(|l| l.held.is_some());
    std::future::poll_fn(|cx| {
        for (k, lane) in lanes.iter_mut().enumerate() {
            if lane.open && lane.held.is_none() {
                if let std::task::Poll::Ready(got) = lane.rx.poll_recv(cx) {
                    return std::task::Poll::Ready(Some((k, got)));
                }
            }
        }
        if any_held && notified.as_mut().poll(cx).is_ready() {
            return std::task::Poll::Ready(None);
        }
        if poked.as_mut().poll(cx).is_ready() {
            return std::task::Poll::Ready(None);
        }
        std::task::Poll::Pending
    })
    .await
}

use std::future::Future;

/// Live changes for the sink thread (`reload`).
#[derive(Default)]
pub struct Reconfig {
    asked: std::sync::atomic::AtomicBool,
    request: std::sync::Mutex<Option<(Change, Done)>>,
    poke: Notify,
}

type Done = tokio::sync::oneshot::Sender<Result<(), String>>;

/// What changes for the sink thread, all at once between two batches.
#[derive(Default)]
pub struct Change {
    /// `sinks[i]` writes where its new config says (a file, stdout or null) from now on.
    pub retarget: Vec<(usize, SinkConfig)>,
    /// The lanes of sources added: (stream index, receiving end).
    pub lanes: Vec<(usize, Receiver)>,
    /// When not empty, each sink's streams from now on and whether it writes them as they are
    /// (passthrough), by sink index.
    pub inputs: Vec<(Vec<usize>, bool)>,
}

impl Reconfig {
    /// Ask the sink thread to apply `change` before its next batch: everything before goes to
    /// the old outputs, nothing twice. If any new output cannot be opened, nothing changes
    /// (and the new lanes are dropped).
    pub async fn apply(&self, change: Change) -> Result<(), String> {
        let (done, answer) = tokio::sync::oneshot::channel();
        *self.request.lock().unwrap() = Some((change, done));
        self.asked.store(true, std::sync::atomic::Ordering::Release);
        self.poke.notify_one();
        answer
            .await
            .map_err(|_| "the sink thread has stopped".to_string())?
    }
}

impl Loop {
    fn reconfigure(&mut self, r: &Reconfig, lanes: &mut Vec<Lane>) {
        r.asked.store(false, std::sync::atomic::Ordering::Release);
        let Some((req, done)) = r.request.lock().unwrap().take() else {
            return;
        };
        let mut opened = Vec::with_capacity(req.retarget.len());
        for (i, cfg) in &req.retarget {
            match Output::open(cfg, &format!("sinks[{i}]")) {
                Ok(o) => opened.push(o),
                Err(e) => {
                    let _ = done.send(Err(e.to_string()));
                    return;
                }
            }
        }
        // What the old outputs have waiting is theirs.
        self.flush();
        for (k, rx) in req.lanes {
            while lanes.len() < k {
                // (A lane whose receiver never came: closed.)
                let (_, rx) = tokio::sync::mpsc::channel(1);
                lanes.push(Lane {
                    rx,
                    open: false,
                    held: None,
                });
            }
            debug_assert_eq!(lanes.len(), k, "a new lane has the next stream index");
            lanes.push(Lane {
                rx,
                open: true,
                held: None,
            });
        }
        for (s, (streams, passthrough)) in self.sinks.iter_mut().zip(req.inputs) {
            s.wants = vec![false; lanes.len()];
            for k in streams {
                if let Some(w) = s.wants.get_mut(k) {
                    *w = true;
                }
            }
            s.passthrough = passthrough;
        }
        for ((i, cfg), out) in req.retarget.into_iter().zip(opened) {
            let s = &mut self.sinks[i];
            if let Target::Out(old) = &mut s.target {
                let _ = old.sync();
            }
            tracing::info!(sink = %cfg.name, "now writing to {}", out.name());
            s.target = Target::Out(out);
            s.cfg = cfg;
        }
        let _ = done.send(Ok(()));
    }

    /// A batch from `lane`: its dead letters go to the dead-letter sink at once; its events to
    /// the sinks, unless a spool that takes them is full (then the lane holds it).
    fn take(&mut self, lane: &mut Lane, b: Batch) {
        if !b.dead.is_empty() {
            self.dead.encode_dead(&b);
        }
        let d = Delivery::new(b, &self.ctx.counters);
        if self.has_room(&d) {
            self.dispatch(d);
        } else {
            lane.held = Some(d);
        }
    }

    fn has_room(&self, d: &Delivery) -> bool {
        let k = d.stream();
        self.sinks.iter().all(|s| match &s.target {
            Target::Spool(sp) if s.takes(k) => sp.has_room(),
            _ => true,
        })
    }

    fn dispatch(&mut self, d: Arc<Delivery>) {
        let k = d.stream();
        if d.batch.events() == 0 {
            return; // dead letters only: already with the dead-letter sink
        }
        let mut local = false;
        for s in self.sinks.iter_mut() {
            if !s.takes(k) {
                continue;
            }
            Counters::add(&s.counters.events_out, d.batch.events() as u64);
            Counters::add(&s.counters.bytes_out, d.batch.data.len() as u64);
            match &s.target {
                Target::Spool(sp) => {
                    let encoded = (!s.passthrough).then(|| {
                        let mut v = Vec::new();
                        encode::batch(&mut v, &s.cfg.format, &d.batch);
                        v
                    });
                    sp.push(Arc::clone(&d), encoded);
                }
                Target::Out(out) if out.is_null() => {}
                Target::Out(_) => {
                    local = true;
                    if !s.passthrough {
                        encode::batch(&mut s.buf, &s.cfg.format, &d.batch);
                    }
                }
                // Encoded per connection (or per event) when flushed.
                Target::Reply(_) => local = true,
            }
        }
        if local {
            self.pending_bytes += d.batch.data.len();
            self.pending.push(d);
        }
    }

    /// Write what the sinks of this thread have waiting.
    fn flush(&mut self) {
        if self.pending.is_empty() && self.dead.buf.is_empty() {
            return;
        }
        for s in self.sinks.iter_mut() {
            if !s.flush(&self.pending, &mut self.ctx) {
                for d in self.pending.iter().filter(|d| s.takes(d.stream())) {
                    d.fail();
                }
            }
        }
        self.dead.flush(&[], &mut self.ctx);
        self.pending.clear();
        self.pending_bytes = 0;
    }
}

struct WriteCtx {
    counters: Arc<Counters>,
    shutdown: Arc<Shutdown>,
    warn: RateLimit,
}

impl Sink {
    fn encode_dead(&mut self, batch: &Batch) {
        let Target::Out(out) = &mut self.target else {
            return;
        };
        for d in &batch.dead {
            if out.is_log() {
                out.log_dead_letter(&batch.conn, d);
            } else if !out.is_null() {
                encode::dead_letter(&mut self.buf, &batch.conn, d);
            }
        }
    }

    /// Write what is waiting (the pending batches if passthrough, else the buffer), retrying
    /// with backoff. False if it gave up (the shutdown grace ran out).
    fn flush(&mut self, pending: &[Arc<Delivery>], ctx: &mut WriteCtx) -> bool {
        match &mut self.target {
            Target::Spool(_) => true,
            Target::Reply(_) => {
                self.reply(pending, &ctx.counters);
                true
            }
            Target::Out(out) if out.is_null() => true,
            Target::Out(out) => {
                if self.passthrough {
                    let mut slices: Vec<IoSlice<'_>> = pending
                        .iter()
                        .filter(|d| self.wants.get(d.stream()) == Some(&true))
                        .filter(|d| !d.batch.data.is_empty())
                        .map(|d| IoSlice::new(&d.batch.data))
                        .collect();
                    write_all(out, &mut slices, &mut self.gave_up, ctx)
                } else {
                    let buf = std::mem::take(&mut self.buf);
                    let ok = write_all(out, &mut [IoSlice::new(&buf)], &mut self.gave_up, ctx);
                    self.buf = buf;
                    self.buf.clear();
                    ok
                }
            }
        }
    }

    /// Each batch's events go to the reply queue of the connection they came from, or, with
    /// `route_field`, each event to the connection it names. Events for no (live) connection
    /// are counted in `replies_dropped`.
    fn reply(&mut self, pending: &[Arc<Delivery>], counters: &Counters) {
        let mut scratch = std::mem::take(&mut self.buf);
        for d in pending
            .iter()
            .filter(|d| self.wants.get(d.stream()) == Some(&true))
        {
            let b = &d.batch;
            let events = b.events() as u64;
            if let Target::Reply(Some(r)) = &mut self.target {
                for e in b.iter() {
                    let to = r.dec.check_stamped(e, &r.field).ok();
                    match to
                        .filter(|&id| id != crate::telemetry::hist::NO_STAMP)
                        .and_then(|id| r.hub.find(id))
                    {
                        Some(q) => {
                            scratch.clear();
                            encode::event(&mut scratch, &self.cfg.format, &b.conn, e);
                            q.push(&scratch, counters);
                        }
                        None => Counters::add(&counters.replies_dropped, 1),
                    }
                }
                continue;
            }
            let Some(q) = &b.conn.reply else {
                Counters::add(&counters.replies_dropped, events);
                continue;
            };
            if self.passthrough {
                // Each event ends after its newline.
                let mut ends = b.ends.iter().map(|&e| e as usize + 1);
                Counters::add(&counters.replies_dropped, q.push(&b.data, &mut ends));
            } else {
                scratch.clear();
                self.ends.clear();
                for e in b.iter() {
                    encode::event(&mut scratch, &self.cfg.format, &b.conn, e);
                    self.ends.push(scratch.len());
                }
                let dropped = q.push(&scratch, &mut self.ends.iter().copied());
                Counters::add(&counters.replies_dropped, dropped);
            }
        }
        scratch.clear();
        self.buf = scratch;
    }
}

fn write_all(
    out: &mut Output,
    mut slices: &mut [IoSlice<'_>],
    gave_up: &mut bool,
    ctx: &mut WriteCtx,
) -> bool {
    let mut backoff = Duration::from_millis(10);
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        if *gave_up {
            return false;
        }
        match out.write_vectored(slices) {
            Ok(n) => {
                IoSlice::advance_slices(&mut slices, n);
                backoff = Duration::from_millis(10);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                Counters::add(&ctx.counters.sink_write_errors, 1);
                if let Some(suppressed) = ctx.warn.allow() {
                    tracing::warn!(sink = %out.name(), error = %e, suppressed,
                        "write failed; retrying in {backoff:?} (nothing is dropped; sources wait)");
                }
                if ctx.shutdown.past_sink_give_up() {
                    tracing::error!(sink = %out.name(),
                        "giving up: the shutdown grace is over and the sink still fails");
                    *gave_up = true;
                    return false;
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    true
}
