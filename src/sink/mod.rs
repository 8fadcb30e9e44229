//! Sinks: where events go. One thread runs them all, in the order batches arrive.
//!
//! In: batches from the channel. Out: bytes in files, on stdout, or nowhere (`null`); dead-letter
//! records to the `[dead_letter]` sink. Every sink gets every event. A sink that writes raw
//! events (the default format) writes them straight from the batches with `writev`, so the bytes
//! copied out of the receive buffer are not copied again; other formats encode into a buffer. A write error is logged
//! (rate-limited), counted and retried with backoff, in order; nothing is dropped, so while a sink
//! cannot write, the channel fills and the sources feel backpressure. Only after shutdown has
//! been requested and its grace has run out twice over does a sink give up, and the events it
//! could not write are counted as `lost_at_shutdown`. What it does not do: decide what is valid.

pub mod encode;
mod output;

use std::io::IoSlice;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::channel::{Batch, Receiver};
use crate::config::{Config, SinkConfig};
use crate::source::Shutdown;
use crate::telemetry::{Counters, RateLimit};
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

struct Sink {
    cfg: SinkConfig,
    out: Output,
    /// Raw events, `\n`-separated: written straight from the batches (`writev`), no copy.
    passthrough: bool,
    /// Encoded bytes, for sinks that are not passthrough.
    buf: Vec<u8>,
    /// Past the shutdown give-up point and still failing: this sink stops retrying.
    gave_up: bool,
}

/// Open every sink (so a bad path fails at start, not at the first event) and start the thread.
pub fn start(
    cfg: &Config,
    rx: Receiver,
    counters: Arc<Counters>,
    shutdown: Arc<Shutdown>,
) -> Result<JoinHandle<()>, Error> {
    let codecs: Vec<_> = cfg.sources.iter().map(|s| s.codec()).collect();
    let open = |c: &SinkConfig, name: String, dead: bool| -> Result<Sink, Error> {
        Ok(Sink {
            out: Output::open(c, &name)?,
            passthrough: !dead && codecs.iter().all(|&k| encode::is_passthrough(&c.format, k)),
            cfg: c.clone(),
            buf: Vec::new(),
            gave_up: false,
        })
    };
    let sinks = cfg
        .sinks
        .iter()
        .enumerate()
        .map(|(i, c)| open(c, format!("sinks[{i}]"), false))
        .collect::<Result<Vec<_>, _>>()?;
    let dead = open(&cfg.dead_letter, "dead_letter".into(), true)?;
    Ok(std::thread::Builder::new()
        .name("ringway-sink".into())
        .spawn(move || run(sinks, dead, rx, counters, shutdown))
        .expect("spawning the sink thread"))
}

fn run(
    mut sinks: Vec<Sink>,
    mut dead: Sink,
    mut rx: Receiver,
    counters: Arc<Counters>,
    shutdown: Arc<Shutdown>,
) {
    let mut ctx = WriteCtx {
        counters: &counters,
        shutdown: &shutdown,
        warn: RateLimit::new(2),
    };
    // Batches received and not yet written by the passthrough sinks.
    let mut pending: Vec<Batch> = Vec::with_capacity(MAX_IOV);
    let mut pending_bytes = 0usize;
    loop {
        let batch = rx.blocking_recv();
        let closed = batch.is_none();
        if let Some(b) = batch {
            for s in sinks.iter_mut().filter(|s| !s.passthrough) {
                s.encode(&b);
            }
            if !b.dead.is_empty() {
                dead.encode_dead(&b);
            }
            pending_bytes += b.data.len();
            pending.push(b);
        }
        let idle = closed || rx.is_empty();
        if idle
            || pending_bytes >= FLUSH_AT
            || pending.len() >= MAX_IOV
            || sinks.iter().chain([&dead]).any(|s| s.buf.len() >= FLUSH_AT)
        {
            let events: u64 = pending.iter().map(|b| b.events() as u64).sum();
            let mut complete = true;
            for s in sinks.iter_mut() {
                complete &= s.flush(&pending, &mut ctx);
            }
            dead.flush(&[], &mut ctx);
            // events_out: written by every sink; lost_at_shutdown: missed by at least one.
            if complete {
                record_latencies(&counters, &pending);
                Counters::add(&counters.events_out, events);
            } else {
                Counters::add(&counters.lost_at_shutdown, events);
            }
            pending.clear();
            pending_bytes = 0;
        }
        if closed {
            break;
        }
    }
    for s in sinks.iter_mut().chain(std::iter::once(&mut dead)) {
        if let Err(e) = s.out.sync() {
            tracing::warn!(sink = %s.out.name(), error = %e, "fsync failed at shutdown");
        }
    }
}

/// The batches just written: their ingest-to-sink latency, sizes and event stamps.
fn record_latencies(counters: &Counters, written: &[Batch]) {
    let now = crate::telemetry::mono_ns();
    let mut h = counters
        .histograms
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for b in written {
        h.record_batch(now, b.born, b.events() as u64, &b.stamps);
    }
}

struct WriteCtx<'a> {
    counters: &'a Counters,
    shutdown: &'a Shutdown,
    warn: RateLimit,
}

impl Sink {
    fn encode(&mut self, batch: &Batch) {
        if !self.out.is_null() {
            encode::batch(&mut self.buf, &self.cfg.format, batch);
        }
    }

    fn encode_dead(&mut self, batch: &Batch) {
        for d in &batch.dead {
            if self.out.is_log() {
                self.out.log_dead_letter(&batch.conn, d);
            } else if !self.out.is_null() {
                encode::dead_letter(&mut self.buf, &batch.conn, d);
            }
        }
    }

    /// Write what is waiting (the pending batches if passthrough, else the buffer), retrying
    /// with backoff. False if it gave up (the shutdown grace ran out).
    fn flush(&mut self, pending: &[Batch], ctx: &mut WriteCtx<'_>) -> bool {
        if self.out.is_null() {
            return true;
        }
        let complete = if self.passthrough {
            let mut slices: Vec<IoSlice<'_>> = pending
                .iter()
                .filter(|b| !b.data.is_empty())
                .map(|b| IoSlice::new(&b.data))
                .collect();
            write_all(&mut self.out, &mut slices, &mut self.gave_up, ctx)
        } else {
            let buf = std::mem::take(&mut self.buf);
            let ok = write_all(
                &mut self.out,
                &mut [IoSlice::new(&buf)],
                &mut self.gave_up,
                ctx,
            );
            self.buf = buf;
            self.buf.clear();
            ok
        };
        complete
    }
}

fn write_all(
    out: &mut Output,
    mut slices: &mut [IoSlice<'_>],
    gave_up: &mut bool,
    ctx: &mut WriteCtx<'_>,
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
                if ctx
                    .shutdown
                    .sink_give_up()
                    .is_some_and(|t| Instant::now() >= t)
                {
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
