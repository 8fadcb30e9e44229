//! The client sinks (`unix_socket_client`, `ws_client`): a connection to a peer, kept up with
//! retries, fed from a bounded spool; what the peer sends back is an event stream of the sink's
//! name.
//!
//! In: deliveries from the sink thread, through the [`Spool`] (bounded in bytes; full ⇒ the sink
//! thread holds the lanes that feed it ⇒ their sources feel backpressure). Out: the events,
//! encoded as configured, written in order with `writev`; and the peer's replies, framed and
//! decoded like any source's, on the channel lane of this sink's name.
//!
//! One thread per sink writes and (re)connects, the same for every target; what differs is a
//! `link::Link` (UNIX socket: `unix_link`; WebSocket: `ws_link`, async on the gateway's runtime,
//! driven from this thread; each with a thread per connection that reads the replies). When
//! the peer goes away (a write fails, or reading its replies fails) the events of the batch
//! being written when it went are written again on the next connection, from its first event, and
//! counted in `resent` (the peer may have read some of them: they are the possible duplicates).
//! The peer's EOF alone is not a broken connection: a peer may shut down its writing side and
//! read on (if it closed outright, the next write fails). A batch the kernel took whole counts
//! as delivered. Connecting follows `reconnect.retry`, as the pure `schedule::Schedule` decides
//! (growing waits with jitter; a connection that breaks within a second counts as a failed
//! attempt). A link that cannot be opened whole is a failed connect. After `max_retries`
//! failures in a row the circuit opens (logged, `circuits_open` in the counters): events stay in
//! the spool and the sources wait, and one attempt is made every `max_interval_ms` until the
//! peer is back. Nothing is dropped; at shutdown, what is left when
//! the grace has run out twice over counts as `lost_at_shutdown`.
//!
//! Shutdown: when every stream this sink takes has ended, the spool is sealed; the thread writes
//! what is left, tells the peer it is done (UNIX: shuts down its writing side, the peer reads
//! EOF; WebSocket: a close frame, 1000), and waits for the peer to close, reading its last
//! replies. What it does not do: acknowledge at the application level.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::link::{Link, Outbox};
use super::schedule::{Attempt, Schedule, Step, STABLE};
pub use super::spool::{ClientStatus, Spool};
use super::unix_link::UnixLink;
use super::ws_link::WsLink;
use crate::channel::Sender;
use crate::config::{ChannelConfig, ClientConfig, ClientTarget, SinkConfig, SinkKind};
use crate::event::Shutdown;
use crate::event::{ConnMeta, SourceMeta};
use crate::ingest::Feeder;
use crate::telemetry::Counters;

/// How long a blocked write waits before looking at the shutdown clock again.
const WRITE_SLICE: Duration = Duration::from_millis(100);

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
    /// The gateway's runtime, for links that are async (`ws_link`).
    pub runtime: tokio::runtime::Handle,
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
    link: Box<dyn Link>,
    since: Instant,
}

struct Client {
    a: Args,
    /// Taken from the spool, not yet fully written (the front one perhaps in part).
    outbox: Outbox,
    /// When to try the peer again, and the circuit.
    schedule: Schedule,
    ever_connected: bool,
}

impl Client {
    fn new(a: Args) -> Client {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            ^ (std::process::id() as u64) << 32;
        Client {
            schedule: Schedule::new(a.cfg.retry.clone(), seed, Instant::now()),
            a,
            outbox: Outbox::default(),
            ever_connected: false,
        }
    }

    fn give_up_passed(&self) -> bool {
        self.a.shutdown.past_sink_give_up()
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
            if let Some(e) = c.link.read_failed() {
                let why = format!("reading replies: {e}");
                self.broken(conn.take().unwrap(), &why);
                continue;
            }
            if self.outbox.is_empty() {
                match self
                    .a
                    .spool
                    .take(&mut self.outbox.items, c.link.idle_wait())
                {
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
            let give_up = self.give_up_clock();
            if let Err(e) = c.link.write(&mut self.outbox, &give_up) {
                self.broken(conn.take().unwrap(), &e.to_string());
            }
        }
        // Gave up at shutdown: what could not be written is lost, and counted.
        self.outbox.fail_all();
        self.a.spool.fail_all();
        if let Some(c) = conn {
            c.link.close();
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
        c.link.close();
        Counters::add(&self.a.counters.resent, self.outbox.take_exposed());
        tracing::warn!(sink = %self.a.name, target = %self.a.cfg.target.describe(),
            "connection lost ({why}); reconnecting (events wait in the spool)");
        // A peer that accepts and drops us at once is retried on the schedule, not in a tight
        // loop: the attempt counter goes on growing (up to the circuit).
        let step = self.schedule.step(Attempt::Lost { lived }, Instant::now());
        if step.wait.is_some() {
            self.back_off(step, &format!("connection lost within {STABLE:?}: {why}"));
        }
    }

    /// One connection attempt when it is due (else wait for it). Some on success.
    fn connect(&mut self) -> Option<Conn> {
        let due_in = self.schedule.due_in(Instant::now());
        if !due_in.is_zero() {
            // Sleep in slices, so that the shutdown clock is looked at.
            std::thread::sleep(due_in.min(WRITE_SLICE));
            return None;
        }
        match self.open_link() {
            Ok(link) => {
                let status = &self.a.spool.status;
                if self.ever_connected {
                    Counters::add(&self.a.counters.reconnects, 1);
                    Counters::add(&status.reconnects, 1);
                }
                status.connected.store(true, Ordering::Relaxed);
                let step = self.schedule.step(Attempt::Connected, Instant::now());
                if step.closed {
                    status.circuit_open.store(false, Ordering::Relaxed);
                    self.a.counters.circuit_closed();
                    tracing::warn!(sink = %self.a.name, "circuit closed: the peer is back");
                }
                tracing::info!(sink = %self.a.name, target = %self.a.cfg.target.describe(),
                    attempt = step.attempt, "connected");
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
        let step = self.schedule.step(Attempt::Failed, Instant::now());
        self.back_off(step, &format!("connect failed: {e}"));
    }

    /// Another failed attempt in a row (`step` says how long to wait, and whether the circuit
    /// opened): show it.
    fn back_off(&mut self, step: Step, why: &str) {
        let status = &self.a.spool.status;
        status.connected.store(false, Ordering::Relaxed);
        if step.opened {
            status.circuit_open.store(true, Ordering::Relaxed);
            self.a.counters.circuit_opened();
            tracing::warn!(sink = %self.a.name, target = %self.a.cfg.target.describe(),
                "circuit open after {} failed attempts: events wait in the spool and the sources \
                 feel backpressure; trying again every {:?}", step.attempt, self.a.cfg.retry.max_interval);
        }
        let wait = step.wait.unwrap_or_default();
        tracing::info!(sink = %self.a.name, target = %self.a.cfg.target.describe(),
            attempt = step.attempt, retry_in_ms = wait.as_millis() as u64, "{why}");
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

    /// The spool is sealed and empty: the link tells the peer and reads its last replies, until
    /// the give-up point.
    fn finish(&mut self, c: Conn) {
        let give_up = self.give_up_clock();
        c.link.finish(&give_up);
    }

    /// The one place the target's kind matters: which link to open. A link that cannot be
    /// opened whole (its reply reader not spawned, say) is a failed connect, not a panic.
    fn open_link(&self) -> std::io::Result<Box<dyn Link>> {
        let replies = self.reply_feeder();
        Ok(match &self.a.cfg.target {
            ClientTarget::Unix(path) => Box::new(UnixLink::connect(
                path,
                WRITE_SLICE,
                replies,
                self.a.cfg.buf_size.get(),
                &self.a.name,
            )?),
            ClientTarget::Ws(t) => Box::new(WsLink::connect(
                t,
                self.a.runtime.clone(),
                WRITE_SLICE,
                replies,
                &self.a.name,
            )?),
        })
    }

    /// "Has the shutdown give-up point passed?", for a link to ask while it waits.
    fn give_up_clock(&self) -> impl Fn() -> bool {
        let shutdown = Arc::clone(&self.a.shutdown);
        move || shutdown.past_sink_give_up()
    }
}
