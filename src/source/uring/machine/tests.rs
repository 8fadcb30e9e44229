//! The machine against a model of the kernel and of ingest, with no ring: random sequences of
//! completions, backpressure, wake-ups, timer turns, shutdown and the deadline, and after each
//! step the rules of `machine` checked (see `World::apply` and `Machine::check`).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

const BUFFERS: u16 = 8;

#[derive(Clone, Copy, Debug)]
enum What {
    Data { more: bool, nonempty: bool },
    Eof,
    Failed,
    NoBufs,
    Cancelled,
}

#[derive(Clone, Copy, Debug)]
enum Ev {
    Open { shut: bool },
    Complete { pick: usize, what: What },
    ChannelFull(bool),
    Paused(bool),
    ReplyBacklog { pick: usize, on: bool },
    FullBatches(bool),
    PeeksFind(bool),
    Wake,
    Turn { ms: u64 },
    Shutdown,
    Deadline,
}

fn what() -> impl Strategy<Value = What> {
    prop_oneof![
        6 => (any::<bool>(), any::<bool>()).prop_map(|(more, nonempty)| What::Data { more, nonempty }),
        1 => Just(What::Eof),
        1 => Just(What::Failed),
        1 => Just(What::NoBufs),
        3 => Just(What::Cancelled),
    ]
}

fn ev() -> impl Strategy<Value = Ev> {
    prop_oneof![
        3 => Just(Ev::Open { shut: false }),
        1 => Just(Ev::Open { shut: true }),
        12 => (any::<usize>(), what()).prop_map(|(pick, what)| Ev::Complete { pick, what }),
        2 => any::<bool>().prop_map(Ev::ChannelFull),
        1 => any::<bool>().prop_map(Ev::Paused),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(pick, on)| Ev::ReplyBacklog { pick, on }),
        1 => any::<bool>().prop_map(Ev::FullBatches),
        1 => any::<bool>().prop_map(Ev::PeeksFind),
        1 => Just(Ev::Wake),
        4 => (0u64..250).prop_map(|ms| Ev::Turn { ms }),
        1 => Just(Ev::Shutdown),
        1 => Just(Ev::Deadline),
    ]
}

/// The model's view of one connection.
#[derive(Default)]
struct ModelConn {
    /// Data completions delivered to the machine, and how many of them were fed (in order).
    received: u32,
    fed: u32,
    /// EOF (or an error) delivered / flushed by `finish`.
    eof_delivered: bool,
    finished: bool,
    /// A batch is open / taken aside (refused by the channel, or waiting to be offered).
    open: bool,
    aside: bool,
    closed: bool,
}

/// The kernel (ops in flight, buffers, shut sockets) and ingest (framing, channel, replies).
struct World {
    ops: HashMap<Id, bool>, // armed recvs: cancel requested?
    shut: HashSet<Id>,
    free: Vec<u16>,
    out_bufs: HashMap<u16, (Id, u32)>, // buffer → (connection, sequence number)
    wake: Option<bool>,                // the wake-up read: cancel requested?
    conns: HashMap<Id, ModelConn>,
    opened: Vec<Id>,
    channel_full: bool,
    paused: bool,
    backlogged: HashSet<Id>,
    full_batches: bool,
    peeks_find: bool,
    stalled: Vec<Id>,
}

impl World {
    fn new() -> World {
        World {
            ops: HashMap::new(),
            shut: HashSet::new(),
            free: (0..BUFFERS).collect(),
            out_bufs: HashMap::new(),
            wake: None,
            conns: HashMap::new(),
            opened: Vec::new(),
            channel_full: false,
            paused: false,
            backlogged: HashSet::new(),
            full_batches: false,
            peeks_find: false,
            stalled: Vec::new(),
        }
    }

    fn conn(&mut self, id: Id) -> &mut ModelConn {
        let c = self
            .conns
            .get_mut(&id)
            .expect("a connection the machine opened");
        assert!(!c.closed, "{id:?} used after it was closed");
        c
    }

    /// Carry out the machine's actions, checking each against the model.
    fn apply(&mut self, m: &Machine, out: &mut Vec<Action>) {
        for a in out.drain(..) {
            match a {
                Action::ArmRecv(id) => {
                    let c = self.conn(id);
                    assert!(!c.eof_delivered, "{id:?} re-armed after its EOF");
                    assert!(!self.ops.contains_key(&id), "{id:?}: a second recv armed");
                    self.ops.insert(id, false);
                }
                Action::CancelRecv(id) => {
                    assert_eq!(
                        self.ops.get(&id),
                        Some(&false),
                        "{id:?}: cancel of no armed op"
                    );
                    self.ops.insert(id, true);
                }
                Action::ArmWake => {
                    assert_eq!(self.wake, None, "a second wake-up read");
                    self.wake = Some(false);
                }
                Action::CancelWake => {
                    assert_eq!(self.wake, Some(false), "cancel of no wake-up read");
                    self.wake = Some(true);
                }
                Action::ReturnBuf(b) => {
                    assert!(
                        self.out_bufs.remove(&b).is_some(),
                        "buffer {b} returned twice"
                    );
                    self.free.push(b);
                }
                Action::ShutdownRead(id) => {
                    self.conn(id);
                    self.shut.insert(id);
                }
                Action::Peek(id) => {
                    assert!(self.ops.contains_key(&id), "{id:?}: peek without a recv");
                    if self.peeks_find {
                        self.stalled.push(id);
                    }
                }
                Action::Close(id) => {
                    assert!(
                        !self.ops.contains_key(&id),
                        "{id:?} closed with a recv in flight"
                    );
                    let c = self.conn(id);
                    assert!(c.finished, "{id:?} closed before its EOF was read");
                    assert_eq!(c.fed, c.received, "{id:?} closed with data unread");
                    assert!(!c.aside, "{id:?} closed with a refused batch");
                    c.closed = true;
                    assert!(!m.is_live(id));
                }
                Action::Count(_) => {}
            }
        }
    }

    fn check(&self, m: &Machine) {
        m.check();
        assert_eq!(m.held, self.out_bufs.len(), "buffers held");
        for (id, state, recv, _) in m.conns() {
            let op = self.ops.get(&id).copied();
            match recv {
                Recv::Armed { .. } => assert_eq!(op, Some(false), "{id:?} {state:?}"),
                Recv::Cancelling => assert_eq!(op, Some(true), "{id:?} {state:?}"),
                Recv::Idle | Recv::NoBufs => assert_eq!(op, None, "{id:?} {state:?}"),
            }
            let c = &self.conns[&id];
            let channel_parked = matches!(
                state,
                State::Parked {
                    why: Park::Channel,
                    ..
                } | State::Ended { refused: Some(_) }
            );
            assert_eq!(c.aside, channel_parked, "{id:?} {state:?}: aside batch");
        }
        for id in self.ops.keys() {
            assert!(
                m.is_live(*id),
                "{id:?}: a recv in flight for a closed connection"
            );
        }
    }
}

impl Ingest for World {
    fn feed(&mut self, id: Id, buf: u16, _len: u32) -> Fed {
        let full = self.full_batches;
        let (owner, seq) = *self.out_bufs.get(&buf).expect("a buffer the kernel filled");
        assert_eq!(owner, id, "buffer {buf} fed to the wrong connection");
        let c = self.conn(id);
        assert!(!c.aside, "{id:?} fed with a refused batch aside");
        assert!(!c.finished, "{id:?} fed after EOF");
        assert_eq!(seq, c.fed, "{id:?}: data out of order");
        c.fed += 1;
        if full {
            c.open = false;
            c.aside = true;
            Fed::Full
        } else {
            c.open = true;
            Fed::Open
        }
    }

    fn finish(&mut self, id: Id) {
        let c = self.conn(id);
        assert!(
            !c.finished && c.eof_delivered,
            "{id:?}: finish twice or before EOF"
        );
        assert!(!c.aside, "{id:?} finished with a refused batch aside");
        assert_eq!(c.fed, c.received, "{id:?} finished with data unread");
        c.finished = true;
        c.aside = std::mem::take(&mut c.open);
    }

    fn offer(&mut self, id: Id, blocking: bool) -> bool {
        let room = blocking || !self.channel_full;
        let c = self.conn(id);
        if c.aside && room {
            c.aside = false;
        }
        !c.aside
    }

    fn flush(&mut self, id: Id, blocking: bool) -> bool {
        let room = blocking || !self.channel_full;
        let c = self.conn(id);
        assert!(!c.aside, "{id:?} flushed with a refused batch aside");
        if std::mem::take(&mut c.open) && !room {
            c.aside = true;
        }
        !c.aside
    }

    fn should_read(&mut self, id: Id) -> bool {
        !self.paused && !self.backlogged.contains(&id)
    }
}

/// Drives a machine and a world through events.
struct Run {
    m: Machine,
    w: World,
    out: Vec<Action>,
    now: Instant,
}

impl Run {
    fn new() -> Run {
        let mut r = Run {
            m: Machine::new(BUFFERS as usize),
            w: World::new(),
            out: Vec::new(),
            now: Instant::now(),
        };
        r.m.start(&mut r.out);
        r.w.apply(&r.m, &mut r.out);
        r
    }

    fn step(&mut self, input: Input) {
        self.m.step(input, &mut self.w, &mut self.out);
        self.w.apply(&self.m, &mut self.out);
        while let Some(id) = self.w.stalled.pop() {
            self.m.step(Input::Stalled(id), &mut self.w, &mut self.out);
            self.w.apply(&self.m, &mut self.out);
        }
        self.w.check(&self.m);
    }

    /// Complete the recv of connection `id` (which must be in flight) with `what`.
    fn complete(&mut self, id: Id, what: What) {
        let cancel = self.w.ops[&id];
        let (got, more, nonempty) = match what {
            What::Cancelled if cancel => (Got::Cancelled, false, false),
            What::Cancelled | What::NoBufs => (Got::NoBufs, false, false),
            What::Data { .. } if self.w.free.is_empty() => (Got::NoBufs, false, false),
            What::Data { more, nonempty } => (Got::Data(100), more, nonempty),
            What::Eof => (Got::Eof, false, false),
            What::Failed => (Got::Failed, false, false),
        };
        let mut buf = None;
        let c = self.w.conns.get_mut(&id).unwrap();
        match got {
            Got::Data(_) => {
                let b = self.w.free.pop().unwrap();
                self.w.out_bufs.insert(b, (id, c.received));
                c.received += 1;
                buf = Some(b);
            }
            Got::Eof | Got::Failed => c.eof_delivered = true,
            _ => {}
        }
        if !more {
            self.w.ops.remove(&id);
        }
        self.step(Input::Recv {
            id,
            got,
            buf,
            more,
            nonempty,
        });
    }

    fn event(&mut self, ev: Ev) {
        match ev {
            Ev::Open { shut } => {
                if self.m.live() < 6 {
                    let id = self.m.open(shut, &mut self.out);
                    self.w.conns.insert(id, ModelConn::default());
                    self.w.opened.push(id);
                    self.w.apply(&self.m, &mut self.out);
                    self.w.check(&self.m);
                }
            }
            Ev::Complete { pick, what } => {
                let mut ops: Vec<Id> = self.w.ops.keys().copied().collect();
                ops.sort_by_key(|id| (id.idx, id.gen));
                if !ops.is_empty() {
                    self.complete(ops[pick % ops.len()], what);
                }
            }
            Ev::ChannelFull(on) => self.w.channel_full = on,
            Ev::Paused(on) => self.w.paused = on,
            Ev::ReplyBacklog { pick, on } => {
                if !self.w.opened.is_empty() {
                    let id = self.w.opened[pick % self.w.opened.len()];
                    if on {
                        self.w.backlogged.insert(id);
                    } else {
                        self.w.backlogged.remove(&id);
                    }
                }
            }
            Ev::FullBatches(on) => self.w.full_batches = on,
            Ev::PeeksFind(on) => self.w.peeks_find = on,
            Ev::Wake => {
                if let Some(cancelled) = self.w.wake.take() {
                    self.step(Input::Woken { cancelled });
                }
            }
            Ev::Turn { ms } => {
                self.now += Duration::from_millis(ms);
                let now = self.now;
                self.step(Input::Turn { now });
            }
            Ev::Shutdown => self.step(Input::Shutdown),
            Ev::Deadline => self.step(Input::Deadline),
        }
    }

    /// Shutdown, the deadline, and every completion the kernel still owes (the channel may be
    /// full, the source paused, replies backlogged: past the deadline nothing waits): the
    /// machine must end idle, with every buffer back and every connection closed once.
    fn finish(&mut self) {
        self.step(Input::Shutdown);
        self.step(Input::Deadline);
        for _ in 0..100 {
            if self.m.is_idle() && self.w.ops.is_empty() {
                break;
            }
            let mut ops: Vec<(Id, bool)> = self.w.ops.iter().map(|(k, v)| (*k, *v)).collect();
            ops.sort_by_key(|(id, _)| (id.idx, id.gen));
            for (id, cancel) in ops {
                // Shut for reading: the recv ends with EOF (or with the cancel asked for).
                assert!(cancel || self.w.shut.contains(&id), "{id:?} was never shut");
                self.complete(id, if cancel { What::Cancelled } else { What::Eof });
            }
            if self.w.wake == Some(true) {
                self.event(Ev::Wake);
            }
            self.event(Ev::Turn { ms: 1 });
        }
        assert!(
            self.m.is_idle(),
            "not idle after shutdown, the deadline and all completions"
        );
        assert!(self.w.ops.is_empty() && self.w.wake.is_none());
        assert!(self.w.out_bufs.is_empty(), "buffers not returned");
        assert_eq!(self.w.free.len(), BUFFERS as usize);
        for id in &self.w.opened {
            assert!(self.w.conns[id].closed, "{id:?} never closed");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn machine_keeps_its_rules(events in prop::collection::vec(ev(), 1..300)) {
        let mut r = Run::new();
        for ev in events {
            r.event(ev);
        }
        r.finish();
    }
}

/// A parked connection is not read until the channel has room, and its backlog comes through
/// in order after.
#[test]
fn parked_on_the_channel_then_resumed() {
    let mut r = Run::new();
    r.event(Ev::Open { shut: false });
    let id = r.w.opened[0];
    r.w.full_batches = true;
    r.w.channel_full = true;
    r.complete(
        id,
        What::Data {
            more: true,
            nonempty: false,
        },
    );
    assert!(matches!(
        r.m.conns().next(),
        Some((
            _,
            State::Parked {
                why: Park::Channel,
                ..
            },
            Recv::Cancelling,
            false
        ))
    ));
    r.complete(
        id,
        What::Data {
            more: true,
            nonempty: false,
        },
    );
    r.complete(id, What::Cancelled);
    assert_eq!(r.m.held, 1);
    r.event(Ev::Turn { ms: 1 });
    assert_eq!(r.m.held, 1, "still parked");
    r.w.channel_full = false;
    r.w.full_batches = false;
    r.event(Ev::Turn { ms: 1 });
    assert_eq!(r.m.held, 0);
    assert!(matches!(
        r.m.conns().next(),
        Some((_, State::Reading, Recv::Armed { .. }, false))
    ));
    r.finish();
}

/// ENOBUFS: the recv waits until fewer than half the buffers are held, then is re-armed.
#[test]
fn out_of_buffers_rearms_once_buffers_are_back() {
    let mut r = Run::new();
    r.event(Ev::Open { shut: false });
    let id = r.w.opened[0];
    r.complete(id, What::NoBufs);
    assert!(r.w.ops.is_empty());
    r.event(Ev::Turn { ms: 1 });
    assert!(r.w.ops.contains_key(&id));
    r.finish();
}

/// A connection parked on its reply queue is looked at again on the next wake-up, without
/// waiting for `REPLY_RETRY`.
#[test]
fn reply_parked_resumes_on_a_wake_up() {
    let mut r = Run::new();
    r.event(Ev::Open { shut: false });
    let id = r.w.opened[0];
    r.w.backlogged.insert(id);
    r.complete(
        id,
        What::Data {
            more: true,
            nonempty: false,
        },
    );
    r.complete(id, What::Cancelled);
    assert!(matches!(
        r.m.conns().next(),
        Some((
            _,
            State::Parked {
                why: Park::Reply,
                ..
            },
            Recv::Idle,
            true
        ))
    ));
    r.w.backlogged.clear();
    r.event(Ev::Turn { ms: 0 });
    assert!(
        matches!(r.m.conns().next(), Some((_, State::Parked { .. }, _, _))),
        "no wake-up yet"
    );
    r.event(Ev::Wake);
    r.event(Ev::Turn { ms: 0 });
    assert!(matches!(
        r.m.conns().next(),
        Some((_, State::Reading, Recv::Armed { .. }, false))
    ));
    r.finish();
}
