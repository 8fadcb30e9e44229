//! The io_uring worker's decisions, without the ring: a sans-IO state machine (part of `uring`).
//!
//! Stage: source (io_uring). In: [`Input`]s (recv completions, wake-ups, the loop's turn after
//! each batch of completions, a stalled recv found by a peek, shutdown, the deadline) and the
//! answers of [`Ingest`] (how framing filled the batch, whether the channel took it, whether the
//! connection may read). Out: [`Action`]s, in order, for the shell (`uring.rs`) to carry out: arm
//! or cancel a recv, give a buffer back, shut a socket for reading, peek, close, count.
//!
//! The rules it keeps (the property tests in `machine/tests.rs` hold it to them):
//! - A connection has at most one recv in flight, and none is armed while it is parked or
//!   ended. Parking cancels an armed recv; what its completions still bring is kept in the
//!   backlog (the buffers are held, not recycled) and read, in order, once it is unparked.
//! - Parking has three causes ([`Park`]): the channel refused a batch (retried every
//!   `PARK_RETRY`), or the connection's reply queue is over its bound or its source is paused
//!   (retried on a wake-up, or after `REPLY_RETRY` at the latest). Past the shutdown deadline
//!   nothing waits: batches are sent blocking.
//! - A multishot recv that ends without `MORE` is re-armed unless the connection is parked or
//!   ended; one that ended on ENOBUFS waits until fewer than half the ring's buffers are held.
//! - A cancel is issued only for an armed recv (parking, or a stall found by the sweep).
//! - A connection is closed once it read EOF (or an error), its last batch went through, and
//!   its recv has completed; then nothing of it is in flight and its backlog is empty.
//! - Every `STALL_SWEEP`, each armed recv that posted nothing since the last sweep is peeked
//!   (the shell answers with [`Input::Stalled`]): a missed wake-up is recovered by cancelling
//!   and re-arming it.
//! - Stopping: the wake-up read is cancelled once no connection is left; the machine is idle
//!   once nothing is in flight.
//!
//! What it does not do: touch the ring, a socket, a buffer or the clock (times come in
//! [`Input`]s), frame or decode bytes (`ingest::Conn`, behind [`Ingest`]), or accept
//! connections and follow the source table (the shell does).
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[cfg(test)]
mod tests;

/// How often connections parked on a full channel (or recvs out of buffers) are looked at.
pub const PARK_RETRY: Duration = Duration::from_millis(1);
/// The longest a connection parked on its reply queue or a paused source waits for a wake-up.
pub const REPLY_RETRY: Duration = Duration::from_millis(50);
/// How often armed recvs that posted nothing are checked for a missed wake-up.
pub const STALL_SWEEP: Duration = Duration::from_millis(200);

/// A connection: its slot and the generation that tells it from the slot's earlier tenants.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct Id {
    pub idx: u32,
    pub gen: u32,
}

/// What a recv completion brought.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Got {
    /// `len` bytes in the completion's buffer.
    Data(u32),
    Eof,
    /// ENOBUFS: the provided-buffer ring was empty.
    NoBufs,
    /// ECANCELED: the end of a recv we cancelled.
    Cancelled,
    /// Any other error (ECONNRESET and friends): the peer is gone, like EOF.
    Failed,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Input {
    /// A recv completion. `buf`: the buffer the kernel picked (given back whatever `got` is);
    /// `more`: the multishot goes on; `nonempty`: the socket holds more data (SOCK_NONEMPTY).
    Recv {
        id: Id,
        got: Got,
        buf: Option<u16>,
        more: bool,
        nonempty: bool,
    },
    /// The wake-up read completed (`cancelled`: with ECANCELED): reply room, a resume, a
    /// hand-over or shutdown; the shell has looked at the inbox already.
    Woken { cancelled: bool },
    /// A peek asked for by [`Action::Peek`] found data or EOF waiting.
    Stalled(Id),
    /// The end of one round of completions: retries, the sweep, sending open batches.
    Turn { now: Instant },
    /// Shutdown began: read every connection to EOF.
    Shutdown,
    /// The shutdown deadline passed: end every connection's reading; send blocking.
    Deadline,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Action {
    ArmRecv(Id),
    CancelRecv(Id),
    ArmWake,
    CancelWake,
    /// Give the buffer back to the provided-buffer ring.
    ReturnBuf(u16),
    /// Shut the socket for reading (its recv then ends with EOF and takes the normal path).
    ShutdownRead(Id),
    /// Peek one byte without waiting; answer [`Input::Stalled`] if something is there.
    Peek(Id),
    /// Nothing of the connection is in flight any more: send what is left, close the socket.
    Close(Id),
    Count(Count),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Count {
    Parked,
    OutOfBuffers,
    StallRecovered,
}

/// How a chunk left the connection's open batch.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fed {
    /// No batch is open (nothing complete was read yet).
    Empty,
    /// A batch is open and has room.
    Open,
    /// The batch reached its bounds: it was taken aside, to be offered before more is fed.
    Full,
}

/// The ingest side, asked while a connection's backlog is worked through: framing and the
/// channel (`ingest::Conn` and `channel::Sender` in the shell; a model in the tests).
pub trait Ingest {
    /// Frame and decode the `len` bytes in buffer `buf` (given back after this returns).
    fn feed(&mut self, id: Id, buf: u16, len: u32) -> Fed;
    /// EOF: flush the unterminated last line and take the batch aside.
    fn finish(&mut self, id: Id);
    /// Offer the batch taken aside, if any (waiting when `blocking`); false: refused, kept.
    fn offer(&mut self, id: Id, blocking: bool) -> bool;
    /// Take the open batch and offer it; false: refused, kept aside.
    fn flush(&mut self, id: Id, blocking: bool) -> bool;
    /// Neither the connection's reply queue is over its bound nor its source paused.
    fn should_read(&mut self, id: Id) -> bool;
}

/// Why a connection reads no more for now.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Park {
    /// The channel refused its batch (kept aside): offered again every `PARK_RETRY`.
    Channel,
    /// Its reply queue is over its bound, or its source is paused: looked at again on a
    /// wake-up or after `REPLY_RETRY`.
    Reply,
}

/// A connection's state. `ticket` names its entry on the retry list of its park (an entry
/// whose ticket no longer matches is stale and skipped).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum State {
    /// Reading; [`Recv`] says how.
    Reading,
    /// Not reading until `why` clears; completions still in flight go to the backlog.
    Parked { why: Park, ticket: u32 },
    /// EOF (or an error) read and the last line flushed. Closed once the last batch went
    /// through (`refused`: it is parked on the channel) and the recv has completed.
    Ended { refused: Option<u32> },
}

/// The connection's multishot recv.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Recv {
    /// Nothing in flight.
    Idle,
    /// In flight. `posted`: it completed since the last sweep (or was armed since); `more`: its
    /// last completion said the socket holds more, so the next one is coming and the open
    /// batch keeps filling.
    Armed { posted: bool, more: bool },
    /// Cancel issued; its last completion is still to come.
    Cancelling,
    /// Ended on ENOBUFS; re-armed once buffers are back. Nothing in flight.
    NoBufs,
}

impl Recv {
    fn in_flight(self) -> bool {
        matches!(self, Recv::Armed { .. } | Recv::Cancelling)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Chunk {
    Data(u16, u32),
    Eof,
}

struct Slot {
    gen: u32,
    state: State,
    recv: Recv,
    /// Completions not yet fed (the connection was parked); their buffers are held.
    backlog: VecDeque<Chunk>,
    /// On the flush list: an open batch to send at the end of the turn.
    flush_listed: bool,
}

impl State {
    /// The retry list this state is on, and under which ticket.
    fn listed(self) -> Option<(Park, u32)> {
        match self {
            State::Reading | State::Ended { refused: None } => None,
            State::Parked { why, ticket } => Some((why, ticket)),
            State::Ended { refused: Some(t) } => Some((Park::Channel, t)),
        }
    }
}

/// The worker's phase.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Phase {
    Running,
    /// Shutdown began: reading to EOF.
    Stopping,
    /// Past the shutdown deadline: every connection was shut for reading; sends block.
    PastDeadline,
}

/// The wake-up read on the worker's eventfd.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Wake {
    Idle,
    Armed,
    Cancelling,
}

/// The worker's connections and what it waits for.
pub struct Machine {
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    next_gen: u32,
    live: usize,
    /// Buffers in backlogs (handed to us by completions, not yet given back).
    held: usize,
    ring_buffers: usize,
    next_ticket: u32,
    /// Retry lists: parked on the channel, parked on replies (by ticket), out of buffers.
    parked: Vec<(Id, u32)>,
    reply_parked: Vec<(Id, u32)>,
    nobufs: Vec<Id>,
    /// Connections with an open batch to send at the end of the turn.
    flush: Vec<Id>,
    spare_ticketed: Vec<(Id, u32)>,
    spare_ids: Vec<Id>,
    wake: Wake,
    room_woken: bool,
    reply_retry_at: Option<Instant>,
    next_sweep: Option<Instant>,
    phase: Phase,
}

impl Machine {
    /// `ring_buffers`: how many buffers the provided-buffer ring has.
    pub fn new(ring_buffers: usize) -> Machine {
        Machine {
            slots: Vec::new(),
            free: Vec::new(),
            next_gen: 1,
            live: 0,
            held: 0,
            ring_buffers,
            next_ticket: 0,
            parked: Vec::new(),
            reply_parked: Vec::new(),
            nobufs: Vec::new(),
            flush: Vec::new(),
            spare_ticketed: Vec::new(),
            spare_ids: Vec::new(),
            wake: Wake::Idle,
            room_woken: false,
            reply_retry_at: None,
            next_sweep: None,
            phase: Phase::Running,
        }
    }

    /// Arm the wake-up read (once, at start).
    pub fn start(&mut self, out: &mut Vec<Action>) {
        if self.wake == Wake::Idle && self.phase == Phase::Running {
            self.wake = Wake::Armed;
            out.push(Action::ArmWake);
        }
    }

    /// A new connection: take a slot and arm its recv (shut for reading first when
    /// `read_to_eof`, or when past the deadline). The shell keeps its socket under `Id::idx`.
    pub fn open(&mut self, read_to_eof: bool, out: &mut Vec<Action>) -> Id {
        let idx = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            (self.slots.len() - 1) as u32
        });
        let id = Id {
            idx,
            gen: self.next_gen,
        };
        self.next_gen = (self.next_gen + 1) & 0xff_ffff;
        self.slots[idx as usize] = Some(Slot {
            gen: id.gen,
            state: State::Reading,
            recv: Recv::Idle,
            backlog: VecDeque::new(),
            flush_listed: false,
        });
        self.live += 1;
        if read_to_eof || self.phase == Phase::PastDeadline {
            out.push(Action::ShutdownRead(id));
        }
        self.arm(id, out);
        id
    }

    pub fn step(&mut self, input: Input, ing: &mut impl Ingest, out: &mut Vec<Action>) {
        match input {
            Input::Recv {
                id,
                got,
                buf,
                more,
                nonempty,
            } => self.on_recv(id, got, buf, more, nonempty, ing, out),
            Input::Woken { cancelled } => {
                let was = std::mem::replace(&mut self.wake, Wake::Idle);
                self.room_woken = true;
                if !cancelled && was == Wake::Armed {
                    self.wake = Wake::Armed;
                    out.push(Action::ArmWake);
                }
            }
            Input::Stalled(id) => {
                if let Some(slot) = self.slot_mut(id) {
                    if matches!(slot.recv, Recv::Armed { .. }) && slot.state == State::Reading {
                        slot.recv = Recv::Cancelling;
                        out.push(Action::Count(Count::StallRecovered));
                        out.push(Action::CancelRecv(id));
                    }
                }
            }
            Input::Turn { now } => self.turn(now, ing, out),
            Input::Shutdown => {
                if self.phase == Phase::Running {
                    self.phase = Phase::Stopping;
                }
            }
            Input::Deadline => {
                if self.phase != Phase::Stopping {
                    return;
                }
                self.phase = Phase::PastDeadline;
                for (idx, slot) in self.slots.iter().enumerate() {
                    if let Some(slot) = slot {
                        let id = Id {
                            idx: idx as u32,
                            gen: slot.gen,
                        };
                        out.push(Action::ShutdownRead(id));
                    }
                }
                self.retry(Park::Channel, ing, out);
                self.retry(Park::Reply, ing, out);
            }
        }
    }

    /// Stopping (or past the deadline).
    pub fn stopping(&self) -> bool {
        self.phase != Phase::Running
    }

    pub fn past_deadline(&self) -> bool {
        self.phase == Phase::PastDeadline
    }

    pub fn is_live(&self, id: Id) -> bool {
        self.slot(id).is_some()
    }

    /// Open connections.
    pub fn live(&self) -> usize {
        self.live
    }

    /// No connection left and nothing of ours in flight (the wake-up read included).
    pub fn is_idle(&self) -> bool {
        self.live == 0 && self.wake == Wake::Idle
    }

    /// Every open connection, with its state, its recv and whether it has a backlog.
    pub fn conns(&self) -> impl Iterator<Item = (Id, State, Recv, bool)> + '_ {
        self.slots.iter().enumerate().filter_map(|(idx, s)| {
            let s = s.as_ref()?;
            let id = Id {
                idx: idx as u32,
                gen: s.gen,
            };
            Some((id, s.state, s.recv, !s.backlog.is_empty()))
        })
    }

    /// How long the loop may wait for completions before a retry or the sweep is due.
    pub fn timeout(&self, now: Instant) -> Option<Duration> {
        let mut t: Option<Duration> = None;
        let mut min = |d: Duration| t = Some(t.map_or(d, |x| x.min(d)));
        if !self.parked.is_empty() || !self.nobufs.is_empty() {
            min(PARK_RETRY);
        }
        if let Some(at) = self.reply_retry_at {
            min(at.saturating_duration_since(now));
        }
        if let (true, Some(at)) = (self.live > 0, self.next_sweep) {
            min(at.saturating_duration_since(now));
        }
        t
    }

    fn slot(&self, id: Id) -> Option<&Slot> {
        self.slots
            .get(id.idx as usize)?
            .as_ref()
            .filter(|s| s.gen == id.gen)
    }

    fn slot_mut(&mut self, id: Id) -> Option<&mut Slot> {
        live_mut(&mut self.slots, id)
    }

    fn arm(&mut self, id: Id, out: &mut Vec<Action>) {
        if let Some(slot) = self.slot_mut(id) {
            debug_assert!(slot.state == State::Reading && !slot.recv.in_flight());
            slot.recv = Recv::Armed {
                posted: true,
                more: false,
            };
            out.push(Action::ArmRecv(id));
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_recv(
        &mut self,
        id: Id,
        got: Got,
        buf: Option<u16>,
        more: bool,
        nonempty: bool,
        ing: &mut impl Ingest,
        out: &mut Vec<Action>,
    ) {
        let data = matches!(got, Got::Data(_));
        let Some(slot) = live_mut(&mut self.slots, id) else {
            // A completion for a connection that is gone: give its buffer back.
            out.extend(buf.map(Action::ReturnBuf));
            return;
        };
        if !data {
            // No data, but a kernel may still have picked a buffer: give it back.
            out.extend(buf.map(Action::ReturnBuf));
        }
        if more {
            if let Recv::Armed { posted, more: m } = &mut slot.recv {
                *posted = true;
                *m = data && nonempty;
            }
        } else {
            slot.recv = if got == Got::NoBufs {
                Recv::NoBufs
            } else {
                Recv::Idle
            };
        }
        match got {
            Got::Data(len) => {
                let buf = buf.expect("a recv with buffer select completed without a buffer");
                slot.backlog.push_back(Chunk::Data(buf, len));
                self.held += 1;
            }
            Got::Eof | Got::Failed => slot.backlog.push_back(Chunk::Eof),
            Got::NoBufs => {
                out.push(Action::Count(Count::OutOfBuffers));
                if slot.recv == Recv::NoBufs {
                    self.nobufs.push(id);
                }
            }
            Got::Cancelled => {}
        }
        self.drain(id, false, ing, out);
    }

    /// Offer the batch aside (`aside`: one more than the state says), then work through the
    /// backlog until it is empty or the connection parks; then park, close or re-arm.
    fn drain(&mut self, id: Id, mut aside: bool, ing: &mut impl Ingest, out: &mut Vec<Action>) {
        let blocking = self.phase == Phase::PastDeadline;
        let Some(slot) = live_mut(&mut self.slots, id) else {
            return;
        };
        let before = slot.state;
        let mut ended = matches!(before, State::Ended { .. });
        aside |= before.listed().is_some_and(|(why, _)| why == Park::Channel);
        let mut reply_wait = false;
        loop {
            if aside {
                if !ing.offer(id, blocking) {
                    break;
                }
                aside = false;
            }
            // A reply sink holds too much for this connection, or its source is paused: read
            // no more until it drains or resumes.
            if !ended && !blocking && !slot.backlog.is_empty() && !ing.should_read(id) {
                reply_wait = true;
                break;
            }
            match slot.backlog.pop_front() {
                None => break,
                Some(Chunk::Data(buf, len)) => {
                    let fed = ing.feed(id, buf, len);
                    out.push(Action::ReturnBuf(buf));
                    self.held -= 1;
                    match fed {
                        Fed::Full => aside = true,
                        Fed::Open if !slot.flush_listed => {
                            slot.flush_listed = true;
                            self.flush.push(id);
                        }
                        Fed::Open | Fed::Empty => {}
                    }
                }
                Some(Chunk::Eof) => {
                    ing.finish(id);
                    aside = true;
                    ended = true;
                    // (Nothing follows an EOF; should anything, its buffer goes back.)
                    for chunk in slot.backlog.drain(..) {
                        if let Chunk::Data(buf, _) = chunk {
                            out.push(Action::ReturnBuf(buf));
                            self.held -= 1;
                        }
                    }
                }
            }
        }
        let park = match (aside, reply_wait) {
            (true, _) => Some(Park::Channel),
            (false, true) => Some(Park::Reply),
            (false, false) => None,
        };
        let ticket = park.map(|why| match before.listed() {
            Some((was, t)) if was == why => t,
            _ => {
                self.next_ticket = self.next_ticket.wrapping_add(1);
                let t = self.next_ticket;
                match why {
                    Park::Channel => self.parked.push((id, t)),
                    Park::Reply => self.reply_parked.push((id, t)),
                }
                t
            }
        });
        slot.state = match (ended, park, ticket) {
            (true, _, refused) => State::Ended { refused },
            (false, Some(why), Some(ticket)) => State::Parked { why, ticket },
            (false, _, _) => State::Reading,
        };
        if park.is_some() {
            if before.listed().is_none() {
                out.push(Action::Count(Count::Parked));
            }
            if matches!(slot.recv, Recv::Armed { .. }) {
                slot.recv = Recv::Cancelling;
                out.push(Action::CancelRecv(id));
            }
        } else if ended {
            // While the recv's last completion is still to come, on_recv drains (and closes)
            // again.
            if !slot.recv.in_flight() {
                self.close(id, out);
            }
        } else if slot.recv == Recv::Idle {
            self.arm(id, out);
        }
    }

    fn close(&mut self, id: Id, out: &mut Vec<Action>) {
        if self.slot(id).is_some() {
            self.slots[id.idx as usize] = None;
            self.free.push(id.idx);
            self.live -= 1;
            out.push(Action::Close(id));
        }
    }

    /// Look again at every connection on `why`'s retry list (those still parked stay on it).
    fn retry(&mut self, why: Park, ing: &mut impl Ingest, out: &mut Vec<Action>) {
        let mut list = std::mem::take(&mut self.spare_ticketed);
        match why {
            Park::Channel => std::mem::swap(&mut list, &mut self.parked),
            Park::Reply => {
                self.room_woken = false;
                self.reply_retry_at = None;
                std::mem::swap(&mut list, &mut self.reply_parked);
            }
        }
        for &(id, t) in &list {
            let current = |m: &Machine| m.slot(id).and_then(|s| s.state.listed());
            if current(self) != Some((why, t)) {
                continue; // stale: it left that park (and may be on another list now)
            }
            self.drain(id, false, ing, out);
            if current(self) == Some((why, t)) {
                // Still parked for the same reason: back on the list under the same ticket.
                match why {
                    Park::Channel => self.parked.push((id, t)),
                    Park::Reply => self.reply_parked.push((id, t)),
                }
            }
        }
        list.clear();
        self.spare_ticketed = list;
    }

    /// After a round of completions: retries, buffers back, the sweep, open batches sent, and
    /// (stopping, no connection left) the wake-up read cancelled.
    fn turn(&mut self, now: Instant, ing: &mut impl Ingest, out: &mut Vec<Action>) {
        self.retry(Park::Channel, ing, out);
        if self.room_woken || self.reply_retry_at.is_some_and(|at| at <= now) {
            self.retry(Park::Reply, ing, out);
        }
        // Re-arm recvs that ran out of buffers, once buffers are back.
        if !self.nobufs.is_empty() && self.held < self.ring_buffers / 2 {
            let mut list = std::mem::replace(&mut self.nobufs, std::mem::take(&mut self.spare_ids));
            for &id in &list {
                if let Some(slot) = self.slot_mut(id) {
                    if slot.recv == Recv::NoBufs {
                        slot.recv = Recv::Idle;
                        self.drain(id, false, ing, out);
                    }
                }
            }
            list.clear();
            self.spare_ids = list;
        }
        match self.next_sweep {
            Some(at) if at > now => {}
            Some(_) => {
                self.next_sweep = Some(now + STALL_SWEEP);
                self.sweep(out);
            }
            None => self.next_sweep = Some(now + STALL_SWEEP),
        }
        self.send_open(ing, out);
        if !self.reply_parked.is_empty() && self.reply_retry_at.is_none() {
            self.reply_retry_at = Some(now + REPLY_RETRY);
        }
        if self.phase != Phase::Running && self.wake == Wake::Armed && self.live == 0 {
            self.wake = Wake::Cancelling;
            out.push(Action::CancelWake);
        }
    }

    /// Ask for a peek at every armed recv that posted nothing since the last sweep (see
    /// `Input::Stalled`). Whatever happens next, a batch left open must not wait past this
    /// sweep.
    fn sweep(&mut self, out: &mut Vec<Action>) {
        for (idx, slot) in self.slots.iter_mut().enumerate() {
            let Some(slot) = slot else { continue };
            if let Recv::Armed { posted, more } = &mut slot.recv {
                let quiet = !std::mem::replace(posted, false);
                *more = false;
                if quiet && slot.state == State::Reading {
                    out.push(Action::Peek(Id {
                        idx: idx as u32,
                        gen: slot.gen,
                    }));
                }
            }
        }
    }

    /// Send what this round of completions produced: one channel send per connection, except
    /// for connections whose socket holds more (their next completion is already coming; the
    /// sweep sends theirs if it does not). Parking one cancels its recv and touches no backlog,
    /// so this adds nothing to the flush list.
    fn send_open(&mut self, ing: &mut impl Ingest, out: &mut Vec<Action>) {
        let blocking = self.phase == Phase::PastDeadline;
        let stopping = self.phase != Phase::Running;
        let mut list = std::mem::replace(&mut self.flush, std::mem::take(&mut self.spare_ids));
        for &id in &list {
            let Some(slot) = self.slot_mut(id) else {
                continue;
            };
            if matches!(slot.recv, Recv::Armed { more: true, .. }) && !stopping {
                self.flush.push(id);
                continue;
            }
            slot.flush_listed = false;
            if slot
                .state
                .listed()
                .is_some_and(|(why, _)| why == Park::Channel)
            {
                continue;
            }
            if !ing.flush(id, blocking) {
                self.drain(id, true, ing, out); // parks it (cancels its recv)
            }
        }
        list.clear();
        self.spare_ids = list;
    }
}

#[cfg(test)]
impl Machine {
    /// The machine's own bookkeeping is consistent (the tests call this after every step).
    fn check(&self) {
        let mut held = 0;
        let count =
            |list: &[(Id, u32)], id: Id, t: u32| list.iter().filter(|e| **e == (id, t)).count();
        for (id, state, recv, _) in self.conns() {
            let slot = self.slot(id).unwrap();
            held += slot
                .backlog
                .iter()
                .filter(|c| matches!(c, Chunk::Data(..)))
                .count();
            match state {
                State::Reading => assert!(slot.backlog.is_empty(), "{id:?}: unread backlog"),
                State::Parked { .. } => {}
                State::Ended { .. } => {
                    assert!(slot.backlog.is_empty(), "{id:?}: backlog after EOF")
                }
            }
            if matches!(recv, Recv::Armed { .. }) {
                assert_eq!(
                    state,
                    State::Reading,
                    "{id:?}: a recv armed while not reading"
                );
            }
            match state.listed() {
                Some((Park::Channel, t)) => assert_eq!(count(&self.parked, id, t), 1, "{id:?}"),
                Some((Park::Reply, t)) => assert_eq!(count(&self.reply_parked, id, t), 1, "{id:?}"),
                None => {}
            }
            if recv == Recv::NoBufs {
                assert_eq!(
                    self.nobufs.iter().filter(|e| **e == id).count(),
                    1,
                    "{id:?}"
                );
            }
            let flush = self.flush.iter().filter(|e| **e == id).count();
            assert_eq!(flush, usize::from(slot.flush_listed), "{id:?}: flush list");
        }
        assert_eq!(held, self.held, "held buffers");
        assert_eq!(self.live, self.slots.iter().flatten().count());
    }
}

/// The slot of a live connection (a function, so that other fields stay borrowable).
fn live_mut(slots: &mut [Option<Slot>], id: Id) -> Option<&mut Slot> {
    slots
        .get_mut(id.idx as usize)?
        .as_mut()
        .filter(|s| s.gen == id.gen)
}
