//! Shutdown in order, without losing what was read.
//!
//! 1. [`Topology::begin_shutdown`]: no source is added or removed any more; paused sources read
//!    again; listeners stop accepting (UNIX paths go at once); every read loop is told the
//!    deadline (`shutdown_timeout`).
//! 2. [`Topology::finish_shutdown`]: the read loops read each connection to EOF or the deadline,
//!    send their last batches and end; the source table, the last holder of their lanes, lets
//!    go; the sink thread drains the lanes, flushes and ends, as do the client sinks (a failing
//!    one gives up one grace after the deadline); the reply queues are written.
//!
//! Every wait ends by the give-up point (the sinks' give-up plus a margin): past it something is
//! blocked for good (a write to a pipe nobody reads), and what was not written is counted lost.

use std::time::{Duration, Instant};

use super::Topology;
use crate::telemetry::Counters;

/// How far past the sinks' give-up point the gateway still waits for a blocked thread.
const MARGIN: Duration = Duration::from_secs(2);

impl Topology {
    /// Stop accepting, unpause, and tell every read loop the deadline.
    pub fn begin_shutdown(&self) {
        let grace = self.config.lock().unwrap().shutdown_timeout;
        // No source is added or removed from here on. Paused sources are read again: shutting
        // down reads every connection to its end.
        self.sources.freeze();
        for (m, _) in self.streams.lock().unwrap().iter() {
            m.pause.set(false);
        }
        self.registry.wake_all();
        tracing::info!(
            "shutting down: no new connections; reading open ones to EOF for up to {grace:?}"
        );
        for rt in self.sources.table.live() {
            if let Some(l) = rt.listener() {
                l.remove_path();
            }
        }
        self.shutdown.request(grace);
        self.sources.request_shutdown(grace);
        let _ = self.stop.send(true);
    }

    /// Wait for the read loops, then the sinks, in that order. True if something was still
    /// blocked at the give-up point (its events are counted `lost_at_shutdown`).
    pub fn finish_shutdown(&self, runtime: &tokio::runtime::Runtime) -> bool {
        let began = Instant::now();
        let give_up = self.shutdown.sink_give_up().unwrap_or(began) + MARGIN;
        let mut abandoned = !self.readers.wait_until(give_up);
        join(self.sources.take_threads(), abandoned);
        let tasks = self.sources.take_epoll_tasks();
        abandoned |= !runtime.block_on(async {
            tokio::time::timeout_at(give_up.into(), async {
                for t in tasks {
                    let _ = t.await;
                }
            })
            .await
            .is_ok()
        });
        // The table was the last holder of the sources the read loops are done with: their
        // lanes end. (Threads still blocked keep theirs, and with them their listeners, open.)
        self.sources.table.clear();
        let stuck = !self.writers.wait_until(give_up);
        join(
            std::mem::take(&mut *self.sink_threads.lock().unwrap()),
            stuck,
        );
        abandoned |= stuck;
        // The replies still queued for connections are written (or dropped and counted) by then.
        if let Some(hub) = &self.reply_hub {
            hub.wait_idle(give_up);
        }
        if abandoned {
            self.count_unwritten(began);
        }
        abandoned
    }

    /// Events neither written, dropped, nor already counted lost by a sink that gave up.
    fn count_unwritten(&self, began: Instant) {
        let c = self.counters.snapshot();
        let unwritten = c
            .events_in
            .saturating_sub(c.events_out + c.dropped + c.lost_at_shutdown);
        Counters::add(&self.counters.lost_at_shutdown, unwritten);
        tracing::error!(
            "a sink is still blocked {:?} after the shutdown began; exiting with {} events unwritten",
            began.elapsed(),
            unwritten + c.lost_at_shutdown
        );
    }
}

/// Join threads whose guards are gone (they are returning). If some are `stuck` (blocked for
/// good), join only those that have ended and leave the others to the exit.
fn join(threads: Vec<std::thread::JoinHandle<()>>, stuck: bool) {
    for t in threads {
        if !stuck || t.is_finished() {
            let _ = t.join();
        }
    }
}
