//! One connection's ingest state, shared by the io_uring and the epoll loops.
//!
//! In: bytes as they were received, in order. Out: [`Batch`]es of validated events (and dead
//! letters) for the channel. It runs framing ([`Framer`]) and the codec ([`Decoder`]) and copies
//! each valid event once, from the receive buffer into the batch. What it does not do: read
//! sockets, or decide what happens when the channel is full (its caller does).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crate::codec::{Codec, Decoder};
use crate::config::ChannelConfig;
use crate::event::{Batch, ConnMeta, DeadLetter, DeadLetterKind, DEAD_LETTER_RAW_MAX};
use crate::framing::{Frame, Framer, FramingConfig};
use crate::telemetry::Counters;

pub struct Conn {
    pub meta: Arc<ConnMeta>,
    framer: Framer,
    batch: Option<Batch>,
    /// Counted into the shared counters when the batch is taken, not per event.
    events: u64,
    bytes: u64,
    dead: u64,
}

/// What a connection needs to know while it ingests; shared by all connections of a source.
pub struct IngestCtx<'a> {
    pub framing: &'a FramingConfig,
    pub channel: &'a ChannelConfig,
    pub counters: &'a Counters,
    /// `[telemetry] latency_field`, read from every event when set.
    pub latency_field: Option<&'a str>,
}

impl Conn {
    pub fn new(meta: Arc<ConnMeta>) -> Conn {
        Conn {
            meta,
            framer: Framer::new(),
            batch: None,
            events: 0,
            bytes: 0,
            dead: 0,
        }
    }

    /// The framer, and the sink its frames go to (this connection's batch and counts).
    #[inline]
    fn parts<'a>(
        &'a mut self,
        ctx: &IngestCtx<'a>,
        dec: &'a mut Decoder,
        hint: usize,
        flatten: bool,
    ) -> (&'a mut Framer, FrameSink<'a>) {
        let sink = FrameSink {
            meta: &self.meta,
            batch: &mut self.batch,
            dec,
            events: &mut self.events,
            dead: &mut self.dead,
            latency_field: ctx.latency_field,
            hint,
            flatten,
        };
        (&mut self.framer, sink)
    }

    /// How much a new batch reserves for `len` bytes received.
    fn hint(ctx: &IngestCtx<'_>, len: usize) -> usize {
        ctx.channel.batch_max_bytes.get().min(len.max(4096) * 2)
    }

    /// Frame and decode `data`. Returns true when the open batch has reached its bounds and
    /// should be sent before more is read.
    pub fn feed(&mut self, ctx: &IngestCtx<'_>, dec: &mut Decoder, data: &[u8]) -> bool {
        self.bytes += data.len() as u64;
        let flatten = flatten(ctx, dec);
        let (framer, mut sink) = self.parts(ctx, dec, Self::hint(ctx, data.len()), flatten);
        framer.feed(ctx.framing, data, &mut |frame| sink.frame(frame));
        self.batch_is_full(ctx)
    }

    /// One WebSocket message: split by the framing (`split`, a `separate` preprocessor; its
    /// last line needs no separator) or taken whole as one event (a JSON event's raw line breaks
    /// become spaces, as with other separators). Returns true when the batch is full.
    pub fn feed_message(
        &mut self,
        ctx: &IngestCtx<'_>,
        dec: &mut Decoder,
        data: &[u8],
        split: bool,
    ) -> bool {
        if split {
            self.feed(ctx, dec, data);
        } else {
            self.bytes += data.len() as u64;
        }
        let flatten = if split {
            flatten(ctx, dec)
        } else {
            dec.codec() == Codec::Json
        };
        let (framer, mut sink) = self.parts(ctx, dec, Self::hint(ctx, data.len()), flatten);
        if split {
            framer.end_message(ctx.framing, &mut |frame| sink.frame(frame));
        } else {
            framer.whole(ctx.framing, data, &mut |frame| sink.frame(frame));
        }
        self.batch_is_full(ctx)
    }

    /// The peer is gone (EOF, error, or shutdown): flush the unterminated last line.
    pub fn finish(&mut self, ctx: &IngestCtx<'_>, dec: &mut Decoder) {
        let flatten = flatten(ctx, dec);
        let (framer, mut sink) = self.parts(ctx, dec, 4096, flatten);
        framer.finish(ctx.framing, &mut |frame| sink.frame(frame));
    }

    fn batch_is_full(&self, ctx: &IngestCtx<'_>) -> bool {
        self.batch.as_ref().is_some_and(|b| {
            b.ends.len() >= ctx.channel.batch_max_events.get()
                || b.data.len() >= ctx.channel.batch_max_bytes.get()
        })
    }

    /// Events in the open batch so far.
    pub fn batch_events(&self) -> usize {
        self.batch.as_ref().map_or(0, |b| b.ends.len())
    }

    /// The events of the open batch from index `from` on came in a binary (or text) message.
    /// Costs nothing until a binary message is seen.
    pub fn mark_binary(&mut self, from: usize, binary: bool) {
        if let Some(b) = &mut self.batch {
            if binary || !b.binary.is_empty() {
                b.binary.resize(from, false);
                b.binary.resize(b.ends.len(), binary);
            }
        }
    }

    pub fn has_batch(&self) -> bool {
        self.batch.is_some()
    }

    /// Take the open batch (if it holds anything) and count what it holds.
    pub fn take_batch(&mut self, counters: &Counters) -> Option<Batch> {
        let events = std::mem::take(&mut self.events);
        let bytes = std::mem::take(&mut self.bytes);
        let dead = std::mem::take(&mut self.dead);
        Counters::add(&counters.events_in, events);
        Counters::add(&counters.bytes_in, bytes);
        Counters::add(&counters.dead_lettered, dead);
        let (src, conn) = (&self.meta.source.counters, &self.meta.counters);
        Counters::add(&src.events_in, events);
        Counters::add(&src.bytes_in, bytes);
        Counters::add(&src.dead_lettered, dead);
        Counters::add(&conn.events_in, events);
        Counters::add(&conn.bytes_in, bytes);
        self.batch.take().filter(|b| !b.is_empty())
    }
}

/// With a separator other than `\n`, a JSON event may span lines. Its raw `\n` and `\r` bytes
/// can only be whitespace between tokens (inside strings they must be escaped), so they are
/// turned into spaces: the event stays the same JSON and sinks' output stays one event a line.
fn flatten(ctx: &IngestCtx<'_>, dec: &Decoder) -> bool {
    ctx.framing.separator != b'\n' && dec.codec() == Codec::Json
}

struct FrameSink<'a> {
    meta: &'a Arc<ConnMeta>,
    batch: &'a mut Option<Batch>,
    dec: &'a mut Decoder,
    events: &'a mut u64,
    dead: &'a mut u64,
    latency_field: Option<&'a str>,
    hint: usize,
    flatten: bool,
}

impl FrameSink<'_> {
    #[inline]
    fn batch(&mut self) -> &mut Batch {
        let (meta, hint, events) = (self.meta, self.hint, *self.events);
        self.batch.get_or_insert_with(|| {
            let mut b = Batch::new(Arc::clone(meta), hint);
            // The connection's events counted so far (those of the batches already taken)
            // plus any of this one's not yet counted.
            b.first_event = meta.counters.events_in.load(Relaxed) + events;
            b
        })
    }

    #[inline]
    fn frame(&mut self, frame: Frame<'_>) {
        match frame {
            Frame::Line { bytes, line } | Frame::Truncated { bytes, line, .. } => {
                let checked = match self.latency_field {
                    None => self.dec.check(bytes).map(|()| None),
                    Some(f) => self.dec.check_stamped(bytes, f).map(Some),
                };
                match checked {
                    Ok(stamp) => {
                        let flatten = self.flatten;
                        let batch = self.batch();
                        let start = batch.data.len();
                        batch.push(bytes);
                        if let Some(s) = stamp {
                            batch.stamps.push(s);
                        }
                        if flatten {
                            let end = start + bytes.len();
                            for b in &mut batch.data[start..end] {
                                if *b == b'\n' || *b == b'\r' {
                                    *b = b' ';
                                }
                            }
                        }
                        *self.events += 1;
                    }
                    Err(e) => {
                        self.dead_letter(e.kind(), e.to_string(), line, bytes.len() as u64, bytes)
                    }
                }
            }
            Frame::Oversized { head, len, line } => self.dead_letter(
                DeadLetterKind::Oversized,
                format!("line of {len} bytes is longer than max_length; dropped"),
                line,
                len,
                head,
            ),
            Frame::Incomplete { bytes, line } => self.dead_letter(
                DeadLetterKind::Incomplete,
                "the connection ended in the middle of this line".to_string(),
                line,
                bytes.len() as u64,
                bytes,
            ),
        }
    }

    #[cold]
    fn dead_letter(
        &mut self,
        kind: DeadLetterKind,
        detail: String,
        line: u64,
        len: u64,
        raw: &[u8],
    ) {
        *self.dead += 1;
        let raw = raw[..raw.len().min(DEAD_LETTER_RAW_MAX)].to_vec();
        self.batch().dead.push(DeadLetter {
            kind,
            detail,
            line,
            len,
            raw,
        });
    }
}
