//! The vocabulary every stage shares: what an event batch is, who sent it, why a line was
//! rejected, and the two signals every read loop obeys (shutdown and pause).
//!
//! Stage: under all the others. In: nothing. Out: types. Sources build [`Batch`]es for a
//! connection ([`ConnMeta`], of a [`SourceMeta`]); the channel carries them; sinks write them and
//! reply through the connection's [`ReplyTarget`]. This module imports nothing else of the crate,
//! so every stage can be read and tested with it alone. What it does not do: any I/O.

mod batch;
mod meta;
mod signal;

pub use batch::{
    mono_ns, Batch, DeadLetter, DeadLetterKind, Delivered, DeliveryTarget, DEAD_LETTER_RAW_MAX,
    NO_STAMP,
};
pub use meta::{
    Codec, ConnCounters, ConnMeta, ReplyTarget, SourceCounters, SourceKind, SourceMeta,
};
pub use signal::{Guard, Pause, Shutdown, Tracker};
