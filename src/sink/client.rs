//! The `unix_socket_client` sink: a connection to a peer's UNIX socket, kept up with retries,
//! fed from a bounded spool; what the peer sends back is an event stream of the sink's name.
//!
//! In: deliveries from the sink thread, through the [`Spool`] (bounded in bytes; full ⇒ the sink
//! thread holds the lanes that feed it ⇒ their sources feel backpressure). Out: the events,
//! encoded as configured, written in order with `writev`; and the peer's replies, framed and
//! decoded like any source's, on the channel lane of this sink's name.
//!
//! One thread per sink writes and (re)connects; one per connection reads the replies. When the
//! peer goes away (a write fails, or reading its replies fails) the events of the batch being
//! written when it went are written again on the next connection, from its first event, and
//! counted in `resent` (the peer may have read some of them: they are the possible duplicates).
//! The peer's EOF alone is not a broken connection: a peer may shut down its writing side and
//! read on (if it closed outright, the next write fails). A batch the kernel took whole counts
//! as delivered. Connecting follows `reconnect.retry`: attempt n waits
//! `interval_ms · growth_rateⁿ`, at most `max_interval_ms`, less up to `jitter` of it; the
//! counter starts again once a connection stays up for a second, and a connection that breaks
//! sooner counts as one more failed attempt (a peer that accepts and drops us at once is retried
//! on the schedule, not in a tight loop). A reply reader that cannot be spawned is a failed
//! connect. After `max_retries` failures in a row the circuit opens (logged, `circuits_open` in
//! the counters): events stay in the spool and the sources wait, and one attempt is made every
//! `max_interval_ms` until the peer is back. Nothing is dropped; at shutdown, what is left when
//! the grace has run out twice over counts as `lost_at_shutdown`.
//!
//! Shutdown: when every stream this sink takes has ended, the spool is sealed; the thread writes
//! what is left, shuts down its writing side (the peer reads EOF), and waits for the peer to
//! close, reading its last replies. What it does not do: acknowledge at the application level.

use std::collections::VecDeque;
use std::io::{IoSlice, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::ws_link::WsLink;
use super::Delivery;
use crate::channel::Sender;
use crate::config::{ChannelConfig, ClientConfig, ClientTarget, Retry, SinkConfig, SinkKind};
use crate::event::Shutdown;
use crate::event::{ConnMeta, SourceMeta};
use crate::ingest::Feeder;
use crate::telemetry::Counters;

/// How long a blocked write waits before looking at the shutdown clock again.
const WRITE_SLICE: Duration = Duration::from_millis(100);
/// A connection up this long resets the retry schedule.
const STABLE: Duration = Duration::from_secs(1);
/// At most this much is taken from the spool for one `writev`.
const TAKE_BYTES: usize = 1 << 20;
const TAKE_ITEMS: usize = 512;

/// A batch waiting for the peer: the delivery, and its bytes if the format is not raw.
pub struct Item {
    d: Arc<Delivery>,
    encoded: Option<Vec<u8>>,
}

impl Item {
    /// Per event: did it come in a binary WebSocket message? (Empty: none did.)
    pub(super) fn binary_flags(&self) -> &[bool] {
        &self.d.batch.binary
    }

    pub(super) fn bytes(&self) -> &[u8] {
        self.encoded.as_deref().unwrap_or(&self.d.batch.data)
    }
}

/// The bounded queue between the sink thread and a client's thread.
pub struct Spool {
    state: Mutex<SpoolState>,
    more: Condvar,
    /// The sink thread's wake-up when room appears.
    room: Arc<Notify>,
    bound: usize,
    /// The client's state, for `stats`.
    pub status: ClientStatus,
}

/// What `stats` shows of a client sink besides its spool.
#[derive(Debug, Default)]
pub struct ClientStatus {
    pub connected: AtomicBool,
    pub circuit_open: AtomicBool,
    pub reconnects: AtomicU64,
}

#[derive(Default)]
struct SpoolState {
    items: VecDeque<Item>,
    bytes: usize,
    sealed: bool,
    /// The client gave up (shutdown grace over): whatever comes now is lost, and counted.
    dead: bool,
}

impl Spool {
    pub fn new(bound: usize, room: Arc<Notify>) -> Spool {
        Spool {
            state: Mutex::new(SpoolState::default()),
            more: Condvar::new(),
            room,
            bound,
            status: ClientStatus::default(),
        }
    }

    /// (bytes held, bound), for `stats`.
    pub fn depth(&self) -> (usize, usize) {
        (self.state.lock().unwrap().bytes, self.bound)
    }

    /// May the sink thread add a batch? (It may then go over the bound by that batch.)
    pub fn has_room(&self) -> bool {
        self.state.lock().unwrap().bytes < self.bound
    }

    pub fn push(&self, d: Arc<Delivery>, encoded: Option<Vec<u8>>) {
        let item = Item { d, encoded };
        let mut st = self.state.lock().unwrap();
        if st.dead {
            item.d.fail();
            return;
        }
        st.bytes += item.bytes().len();
        st.items.push_back(item);
        drop(st);
        self.more.notify_one();
    }

    /// Nothing more will be pushed.
    pub fn seal(&self) {
        self.state.lock().unwrap().sealed = true;
        self.more.notify_one();
    }

    /// Take up to a writev's worth, waiting up to `wait` for something. `None`: sealed and empty.
    fn take(&self, out: &mut VecDeque<Item>, wait: Duration) -> Option<()> {
        let mut st = self.state.lock().unwrap();
        if st.items.is_empty() && !st.sealed {
            st = self.more.wait_timeout(st, wait).unwrap().0;
        }
        if st.items.is_empty() {
            return if st.sealed { None } else { Some(()) };
        }
        let mut bytes = 0;
        while bytes < TAKE_BYTES && out.len() < TAKE_ITEMS {
            let Some(item) = st.items.pop_front() else {
                break;
            };
            bytes += item.bytes().len();
            out.push_back(item);
        }
        st.bytes -= bytes;
        drop(st);
        self.room.notify_one();
        Some(())
    }

    fn is_sealed_and_empty(&self) -> bool {
        let st = self.state.lock().unwrap();
        st.sealed && st.items.is_empty()
    }

    /// At give-up: everything still here is lost.
    fn fail_all(&self) {
        let mut st = self.state.lock().unwrap();
        st.dead = true;
        for item in st.items.drain(..) {
            item.d.fail();
        }
        st.bytes = 0;
        drop(st);
        // The sink thread may be holding a batch for this spool: it is taken (and lost) now.
        self.room.notify_one();
    }
}

/// What a client's threads need.
pub struct Args {
    pub name: String,
    pub cfg: ClientConfig,
    pub spool: Arc<Spool>,
    pub counters: Arc<Counters>,
    pub shutdown: Arc<Shutdown>,
    /// For the replies: their lane, metadata and connection ids.
    pub sender: Sender,
    pub replies: Arc<SourceMeta>,
    pub ids: Arc<AtomicU64>,
    pub channel: ChannelConfig,
    /// Dropped when the client's thread ends (shutdown waits for it).
    pub done: crate::event::Guard,
}

/// The spool of sink `c` (a `unix_socket_client`), or None for other sinks.
pub fn spool_for(c: &SinkConfig, room: &Arc<Notify>) -> Option<Arc<Spool>> {
    match &c.kind {
        SinkKind::Client(u) => Some(Arc::new(Spool::new(u.spool_bytes.get(), Arc::clone(room)))),
        _ => None,
    }
}

pub fn start(args: Args) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(format!("ringway-client-{}", args.name))
        .spawn(move || Client::new(args).run())
        .expect("spawning a client sink thread")
}

struct Conn {
    link: Link,
    since: Instant,
}

enum Link {
    Unix {
        stream: UnixStream,
        /// None once it has ended at the peer's EOF (the peer may still read: we write on).
        reader: Option<JoinHandle<ReadEnd>>,
    },
    /// (Replies are read on this thread, between writes.)
    Ws(Box<WsLink>),
}

/// How a reply reader ended.
enum ReadEnd {
    /// The peer shut down its writing side (or closed: then the next write fails), or the
    /// replies' lane is gone (shutdown). Not by itself a broken connection.
    Eof,
    /// Reading failed (ECONNRESET: the peer closed with our bytes unread): the connection is
    /// broken.
    Failed(std::io::Error),
}

impl Conn {
    /// The reader's error, if it has ended with one. Cheap while it runs (no syscall).
    fn read_failed(&mut self) -> Option<std::io::Error> {
        let reader = match &mut self.link {
            Link::Unix { reader, .. } => reader,
            Link::Ws(w) => {
                return match w.poll_replies() {
                    Ok(true) => None,
                    Ok(false) => Some(std::io::Error::other("the peer closed the WebSocket")),
                    Err(e) => Some(e),
                }
            }
        };
        if !reader.as_ref()?.is_finished() {
            return None;
        }
        match reader.take()?.join() {
            Ok(ReadEnd::Eof) => None,
            Ok(ReadEnd::Failed(e)) => Some(e),
            Err(_) => Some(std::io::Error::other("the reply reader panicked")),
        }
    }

    /// Close both ways and wait for the reader.
    fn close(self) {
        match self.link {
            Link::Unix { stream, reader } => {
                let _ = stream.shutdown(std::net::Shutdown::Both);
                if let Some(r) = reader {
                    let _ = r.join();
                }
            }
            Link::Ws(mut w) => w.end(),
        }
    }
}

struct Client {
    a: Args,
    /// Taken from the spool, not yet fully written (the front one perhaps in part).
    outbox: VecDeque<Item>,
    /// Bytes of the front item already written on this connection.
    front_off: usize,
    /// Failed attempts in a row.
    failures: u64,
    circuit_open: bool,
    next_attempt: Instant,
    rng: u64,
    ever_connected: bool,
}

impl Client {
    fn new(a: Args) -> Client {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            ^ (std::process::id() as u64) << 32;
        Client {
            a,
            outbox: VecDeque::new(),
            front_off: 0,
            failures: 0,
            circuit_open: false,
            next_attempt: Instant::now(),
            rng: seed | 1,
            ever_connected: false,
        }
    }

    fn give_up_passed(&self) -> bool {
        self.a
            .shutdown
            .sink_give_up()
            .is_some_and(|t| Instant::now() >= t)
    }

    fn run(mut self) {
        let mut conn: Option<Conn> = None;
        loop {
            if self.give_up_passed() {
                break;
            }
            let Some(c) = conn.as_mut() else {
                if self.outbox.is_empty() && self.a.spool.is_sealed_and_empty() {
                    break; // nothing more to send, and no connection to wait on
                }
                conn = self.connect();
                continue;
            };
            if let Some(e) = c.read_failed() {
                let why = format!("reading replies: {e}");
                self.broken(conn.take().unwrap(), &why);
                continue;
            }
            if self.outbox.is_empty() {
                // (Over WebSocket, replies are read between these waits: keep them short.)
                let wait = match c.link {
                    Link::Unix { .. } => WRITE_SLICE,
                    Link::Ws(_) => Duration::from_millis(10),
                };
                match self.a.spool.take(&mut self.outbox, wait) {
                    Some(()) => {}
                    None => {
                        // Everything is written: tell the peer, then read its last replies.
                        self.finish(conn.take().unwrap());
                        return;
                    }
                }
                // (The reader ending at EOF is not a broken connection: a peer may shut down
                // its writing side and go on reading. A peer that is gone fails the next write.)
                if self.outbox.is_empty() {
                    continue;
                }
            }
            let written = match &mut c.link {
                Link::Unix { stream, .. } => self.write(stream),
                Link::Ws(w) => self.write_ws(w),
            };
            if let Err(e) = written {
                self.broken(conn.take().unwrap(), &e.to_string());
            }
        }
        // Gave up at shutdown: what could not be written is lost, and counted.
        for item in self.outbox.drain(..) {
            item.d.fail();
        }
        self.a.spool.fail_all();
        if let Some(c) = conn {
            c.close();
        }
    }

    /// Write from the outbox until it is empty. Err: the connection is broken.
    fn write(&mut self, stream: &mut UnixStream) -> std::io::Result<()> {
        while !self.outbox.is_empty() {
            let mut slices: Vec<IoSlice<'_>> = self
                .outbox
                .iter()
                .enumerate()
                .map(|(i, it)| IoSlice::new(&it.bytes()[if i == 0 { self.front_off } else { 0 }..]))
                .collect();
            match stream.write_vectored(&slices) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(mut n) => {
                    slices.clear();
                    // Whole items written are delivered (dropping them counts them out).
                    while n > 0 {
                        let left = self.outbox[0].bytes().len() - self.front_off;
                        if n >= left {
                            n -= left;
                            self.outbox.pop_front();
                            self.front_off = 0;
                        } else {
                            self.front_off += n;
                            n = 0;
                        }
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) =>
                {
                    if self.give_up_passed() {
                        return Ok(()); // the run loop sees it and gives up
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Send the outbox over WebSocket. On failure every batch of it goes again on the next
    /// connection (the peer may have read some of them: counted in `resent`).
    fn write_ws(&mut self, w: &mut WsLink) -> std::io::Result<()> {
        let shutdown = Arc::clone(&self.a.shutdown);
        let give_up = move || shutdown.sink_give_up().is_some_and(|t| Instant::now() >= t);
        match w.write(self.outbox.iter(), give_up) {
            Ok(true) => {
                // Sent: dropping them counts them delivered.
                self.outbox.clear();
                Ok(())
            }
            Ok(false) => Ok(()), // the run loop sees the give-up point
            Err(e) => {
                let events: usize = self.outbox.iter().map(|i| i.d.batch.events()).sum();
                Counters::add(&self.a.counters.resent, events as u64);
                Err(e)
            }
        }
    }

    /// The connection is gone: the batch cut in the middle goes again, whole, on the next one.
    fn broken(&mut self, c: Conn, why: &str) {
        self.a
            .spool
            .status
            .connected
            .store(false, Ordering::Relaxed);
        let lived = c.since.elapsed();
        c.close();
        if self.front_off > 0 {
            if let Some(front) = self.outbox.front() {
                Counters::add(&self.a.counters.resent, front.d.batch.events() as u64);
            }
            self.front_off = 0;
        }
        tracing::warn!(sink = %self.a.name, target = %self.a.cfg.target.describe(),
            "connection lost ({why}); reconnecting (events wait in the spool)");
        if lived >= STABLE {
            self.failures = 0;
            self.next_attempt = Instant::now();
        } else {
            // A peer that accepts and drops us at once is retried on the schedule, not in a
            // tight loop: the attempt counter goes on growing (up to the circuit).
            self.back_off(&format!("connection lost within {STABLE:?}: {why}"));
        }
    }

    /// One connection attempt when it is due (else wait for it). Some on success.
    fn connect(&mut self) -> Option<Conn> {
        let now = Instant::now();
        if now < self.next_attempt {
            // Sleep in slices, so that the shutdown clock is looked at.
            let wait = (self.next_attempt - now).min(WRITE_SLICE);
            std::thread::sleep(wait);
            return None;
        }
        let link = match &self.a.cfg.target {
            ClientTarget::Unix(path) => UnixStream::connect(path).and_then(|stream| {
                let _ = stream.set_write_timeout(Some(WRITE_SLICE));
                let reader = self.spawn_reader(stream.try_clone()?)?;
                Ok(Link::Unix {
                    stream,
                    reader: Some(reader),
                })
            }),
            ClientTarget::Ws(t) => {
                WsLink::connect(t, WRITE_SLICE, self.reply_feeder()).map(|w| Link::Ws(Box::new(w)))
            }
        };
        match link {
            Ok(link) => {
                let status = &self.a.spool.status;
                if self.ever_connected {
                    Counters::add(&self.a.counters.reconnects, 1);
                    Counters::add(&status.reconnects, 1);
                }
                status.connected.store(true, Ordering::Relaxed);
                if self.circuit_open {
                    self.circuit_open = false;
                    status.circuit_open.store(false, Ordering::Relaxed);
                    self.a.counters.circuit_closed();
                    tracing::warn!(sink = %self.a.name, "circuit closed: the peer is back");
                }
                tracing::info!(sink = %self.a.name, target = %self.a.cfg.target.describe(),
                    attempt = self.failures + 1, "connected");
                self.ever_connected = true;
                Some(Conn {
                    link,
                    since: Instant::now(),
                })
            }
            Err(e) => {
                self.failed(&e);
                None
            }
        }
    }

    /// A failed connect (including a reply reader that could not be spawned).
    fn failed(&mut self, e: &std::io::Error) {
        Counters::add(&self.a.counters.connect_failures, 1);
        self.back_off(&format!("connect failed: {e}"));
    }

    /// Another failed attempt in a row: wait as the retry schedule says (or open the circuit).
    fn back_off(&mut self, why: &str) {
        let retry = &self.a.cfg.retry;
        let n = self.failures;
        self.failures += 1;
        self.a
            .spool
            .status
            .connected
            .store(false, Ordering::Relaxed);
        if !self.circuit_open && retry.max_retries.is_some_and(|m| self.failures > m) {
            self.circuit_open = true;
            self.a
                .spool
                .status
                .circuit_open
                .store(true, Ordering::Relaxed);
            self.a.counters.circuit_opened();
            tracing::warn!(sink = %self.a.name, target = %self.a.cfg.target.describe(),
                "circuit open after {} failed attempts: events wait in the spool and the sources \
                 feel backpressure; trying again every {:?}", self.failures, retry.max_interval);
        }
        let delay = if self.circuit_open {
            retry.max_interval
        } else {
            jittered(retry, retry.delay(n), &mut self.rng)
        };
        tracing::info!(sink = %self.a.name, target = %self.a.cfg.target.describe(),
            attempt = n + 1, retry_in_ms = delay.as_millis() as u64, "{why}");
        self.next_attempt = Instant::now() + delay;
    }

    /// The replies' way into the channel, for one connection (its own id and line numbers).
    fn reply_feeder(&self) -> Feeder {
        let id = self
            .a
            .ids
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let meta = Arc::new(ConnMeta::new(Arc::clone(&self.a.replies), id));
        Feeder::new(
            meta,
            self.a.cfg.framing.clone(),
            self.a.channel.clone(),
            Arc::clone(&self.a.counters),
            self.a.sender.clone(),
        )
    }

    /// Err (thread spawn failed: out of threads or memory) is a failed connect, not a panic.
    fn spawn_reader(&self, stream: UnixStream) -> std::io::Result<JoinHandle<ReadEnd>> {
        let feeder = self.reply_feeder();
        let buf_size = self.a.cfg.buf_size.get();
        std::thread::Builder::new()
            .name(format!("ringway-replies-{}", self.a.name))
            .spawn(move || read_replies(stream, feeder, buf_size))
    }

    /// The spool is sealed and empty: shut down our writing side and wait for the peer to close
    /// (its last replies are read meanwhile), until the give-up point.
    ///
    /// A peer that has already shut down its writing side cannot show us its close (its EOF has
    /// been read): what we wrote is in its socket, so we close at once and it reads on.
    fn finish(&mut self, c: Conn) {
        match c.link {
            Link::Unix { stream, reader } => {
                let _ = stream.shutdown(std::net::Shutdown::Write);
                while reader.as_ref().is_some_and(|r| !r.is_finished()) && !self.give_up_passed() {
                    // The spool is sealed, so it has nothing to wait on: sleep a slice.
                    std::thread::sleep(Duration::from_millis(10));
                }
                Conn {
                    link: Link::Unix { stream, reader },
                    since: c.since,
                }
                .close();
            }
            // Close (1000), and read the last replies until the peer answers.
            Link::Ws(mut w) => w.finish(|| self.give_up_passed()),
        }
    }
}

fn jittered(retry: &Retry, d: Duration, rng: &mut u64) -> Duration {
    if retry.jitter == 0.0 {
        return d;
    }
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    let r = (*rng >> 11) as f64 / (1u64 << 53) as f64;
    d.mul_f64(1.0 - retry.jitter * r)
}

/// Read the peer's replies until EOF or an error; the writer thread looks at how it ended.
fn read_replies(mut stream: UnixStream, mut feeder: Feeder, buf_size: usize) -> ReadEnd {
    use std::io::Read;
    let mut buf = vec![0u8; buf_size];
    let end = loop {
        match stream.read(&mut buf) {
            Ok(0) => break ReadEnd::Eof,
            Ok(n) => {
                if !feeder.feed(&buf[..n]) || !feeder.flush() {
                    return ReadEnd::Eof; // the lane is gone: shutdown
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => break ReadEnd::Failed(e),
        }
    };
    feeder.finish();
    end
}
