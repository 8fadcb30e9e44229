//! What a client sink's connection to its peer must do, whatever the peer is: the [`Link`]
//! trait, and the [`Outbox`] of batches it writes from.
//!
//! The client core (`client`) owns the spool, the retry schedule, the circuit, the counters and
//! shutdown; a link only connects one way (UNIX socket: `unix_link`; WebSocket: `ws_link`),
//! writes, reads the peer's replies into their event stream, and closes. A new target (e.g. NATS)
//! is one more implementation. What it does not do: retry, count, or decide what is delivered.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::Arc;
use std::time::Duration;

use super::Delivery;

/// A batch waiting for the peer: the delivery, and its bytes if the format is not raw.
pub struct Item {
    pub(super) d: Arc<Delivery>,
    pub(super) encoded: Option<Vec<u8>>,
}

impl Item {
    /// Per event: did it come in a binary WebSocket message? (Empty: none did.)
    pub(super) fn binary_flags(&self) -> &[bool] {
        &self.d.batch.binary
    }

    pub(super) fn bytes(&self) -> &[u8] {
        self.encoded.as_deref().unwrap_or(&self.d.batch.data)
    }

    fn events(&self) -> u64 {
        self.d.batch.events() as u64
    }
}

/// Batches taken from the spool and not yet written, in order. Dropping an item counts it
/// delivered (see [`Delivery`]); [`Outbox::fail_all`] counts the rest lost.
#[derive(Default)]
pub struct Outbox {
    pub(super) items: VecDeque<Item>,
    /// Bytes of the front item already written on this connection.
    front_off: usize,
    /// The link cannot tell how much of the outbox the peer read: all of it may have been.
    all_exposed: bool,
}

impl Outbox {
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The bytes still to write, the front item's from where its last write stopped.
    pub fn slices(&self) -> Vec<IoSlice<'_>> {
        self.items
            .iter()
            .enumerate()
            .map(|(i, it)| IoSlice::new(&it.bytes()[if i == 0 { self.front_off } else { 0 }..]))
            .collect()
    }

    /// `n` more bytes were written: whole items leave (delivered).
    pub fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let left = self.items[0].bytes().len() - self.front_off;
            if n >= left {
                n -= left;
                self.items.pop_front();
                self.front_off = 0;
            } else {
                self.front_off += n;
                n = 0;
            }
        }
    }

    /// Every item was sent (delivered).
    pub fn all_sent(&mut self) {
        self.items.clear();
        self.front_off = 0;
    }

    /// The connection broke at a point the link cannot place: every item goes again, and all
    /// may have reached the peer.
    pub fn all_exposed(&mut self) {
        self.all_exposed = true;
    }

    /// The connection is gone: how many events of the outbox the peer may already have read
    /// (they go again, whole, on the next connection: the possible duplicates).
    pub fn take_exposed(&mut self) -> u64 {
        let n = if self.all_exposed {
            self.items.iter().map(Item::events).sum()
        } else if self.front_off > 0 {
            self.items.front().map_or(0, Item::events)
        } else {
            0
        };
        self.front_off = 0;
        self.all_exposed = false;
        n
    }

    /// Gave up at shutdown: what is left is lost, and counted.
    pub fn fail_all(&mut self) {
        for item in self.items.drain(..) {
            item.d.fail();
        }
        self.front_off = 0;
    }
}

/// One live connection to a client sink's peer.
pub trait Link: Send {
    /// How long the core may wait on an empty spool before looking at this link again (a link
    /// that reads its replies on the writing thread wants this short).
    fn idle_wait(&self) -> Duration;

    /// The peer's replies ended with an error, or the peer closed: the connection is broken.
    /// None while it is fine (a peer's EOF alone is not a break: it may read on). Cheap.
    fn read_failed(&mut self) -> Option<std::io::Error>;

    /// Write the outbox; written items leave it (delivered). Returns with items left only once
    /// `give_up` says so. Err: the connection is broken (what the peer may have read is marked
    /// in the outbox).
    fn write(&mut self, out: &mut Outbox, give_up: &dyn Fn() -> bool) -> std::io::Result<()>;

    /// Everything is written: tell the peer, and read its last replies until it closes or
    /// `give_up`.
    fn finish(self: Box<Self>, give_up: &dyn Fn() -> bool);

    /// Drop the connection now.
    fn close(self: Box<Self>);
}

/// Whether an I/O error is a timeout the link waits out (then looks at the shutdown clock).
pub fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Batch, ConnMeta, SourceMeta};
    use crate::telemetry::Counters;

    fn item(text: &[u8], counters: &Arc<Counters>) -> Item {
        let source = Arc::new(SourceMeta::plain("t", 0));
        let mut b = Batch::new(Arc::new(ConnMeta::new(source, 1)), 64);
        for line in text.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
            b.push(line);
        }
        Item {
            d: Delivery::new(b, counters),
            encoded: None,
        }
    }

    #[test]
    fn a_cut_front_item_is_the_only_one_exposed() {
        let c = Arc::new(Counters::default());
        let mut out = Outbox::default();
        out.items.push_back(item(b"a\nb\n", &c));
        out.items.push_back(item(b"c\n", &c));
        assert_eq!(out.take_exposed(), 0);
        out.advance(1);
        assert_eq!(out.slices()[0].len(), 3);
        assert_eq!(out.take_exposed(), 2, "the front batch went in part");
        assert_eq!(out.slices()[0].len(), 4, "it goes again whole");
        out.advance(4);
        assert_eq!(out.items.len(), 1);
        out.all_exposed();
        assert_eq!(out.take_exposed(), 1);
        out.all_sent();
        assert!(out.is_empty());
    }
}
