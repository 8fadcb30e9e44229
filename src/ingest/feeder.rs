//! Ingest for sources read by a thread of their own with blocking reads (a `file` source, the
//! replies of a `unix_socket_client`): the same [`Conn`] as the socket loops, sending each batch
//! with a blocking send, so a full lane simply stops the reads.
//!
//! In: byte chunks as read. Out: batches on the channel. What it does not do: read.

use std::sync::Arc;

use super::conn::{Conn, IngestCtx};
use crate::channel::Sender;
use crate::codec::Decoder;
use crate::config::ChannelConfig;
use crate::event::ConnMeta;
use crate::framing::FramingConfig;
use crate::telemetry::Counters;

pub struct Feeder {
    conn: Conn,
    dec: Decoder,
    framing: FramingConfig,
    channel: ChannelConfig,
    counters: Arc<Counters>,
    sender: Sender,
    latency_field: Option<String>,
}

impl Feeder {
    pub fn new(
        meta: Arc<ConnMeta>,
        framing: FramingConfig,
        channel: ChannelConfig,
        counters: Arc<Counters>,
        sender: Sender,
    ) -> Feeder {
        counters.connection_opened();
        Feeder {
            dec: Decoder::new(meta.source.codec),
            latency_field: meta.source.latency_field.clone(),
            conn: Conn::new(meta),
            framing,
            channel,
            counters,
            sender,
        }
    }

    /// Frame and decode `data`; send the batch once it is at its bounds. False if the sink
    /// thread is gone.
    pub fn feed(&mut self, data: &[u8]) -> bool {
        let ctx = IngestCtx {
            framing: &self.framing,
            channel: &self.channel,
            counters: &self.counters,
            latency_field: self.latency_field.as_deref(),
        };
        if self.conn.feed(&ctx, &mut self.dec, data) {
            return self.flush();
        }
        true
    }

    /// One whole message (WebSocket): split by the framing (`split`) or taken as one event.
    pub fn feed_message(&mut self, data: &[u8], split: bool) -> bool {
        let ctx = IngestCtx {
            framing: &self.framing,
            channel: &self.channel,
            counters: &self.counters,
            latency_field: self.latency_field.as_deref(),
        };
        if self.conn.feed_message(&ctx, &mut self.dec, data, split) {
            return self.flush();
        }
        true
    }

    /// Send what the open batch holds (call when a read found nothing more for now).
    pub fn flush(&mut self) -> bool {
        match self.conn.take_batch(&self.counters) {
            Some(b) => self.sender.send_blocking(b).is_ok(),
            None => true,
        }
    }

    /// The stream ended: the unterminated last line as framing says, then the last batch.
    pub fn finish(mut self) -> bool {
        let ctx = IngestCtx {
            framing: &self.framing,
            channel: &self.channel,
            counters: &self.counters,
            latency_field: self.latency_field.as_deref(),
        };
        self.conn.finish(&ctx, &mut self.dec);
        self.flush()
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.counters.connection_closed();
    }
}
