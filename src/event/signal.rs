//! The two signals every read loop obeys: [`Shutdown`] (requested once, with a deadline) and a
//! source's [`Pause`] (`pause` / `resume` on the control socket); and the [`Tracker`] shutdown
//! waits on until every thread it started has ended.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// The shutdown signal every worker watches: requested once, with a deadline for reading.
///
/// The rule every read loop follows: once requested, accept no more connections; read each open
/// one to its EOF; once [`Shutdown::past_deadline`], take in only what the kernel already holds
/// for a connection (one more read that does not wait), then treat it as ended.
#[derive(Default)]
pub struct Shutdown {
    requested: AtomicBool,
    deadline: OnceLock<Instant>,
    grace: OnceLock<Duration>,
}

impl Shutdown {
    pub fn request(&self, grace: Duration) {
        let _ = self.grace.set(grace);
        let _ = self.deadline.set(Instant::now() + grace);
        self.requested.store(true, Ordering::Release);
    }

    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline.get().copied()
    }

    /// The reading deadline has passed: read only what is already there, then stop.
    pub fn past_deadline(&self) -> bool {
        self.deadline().is_some_and(|d| Instant::now() >= d)
    }

    /// When a failing sink stops retrying: one more grace period after the reading deadline.
    pub fn sink_give_up(&self) -> Option<Instant> {
        let d = self.deadline()?;
        Some(d + self.grace.get().copied().unwrap_or_default())
    }

    /// The sinks' give-up point has passed: a sink still failing stops retrying.
    pub fn past_sink_give_up(&self) -> bool {
        self.sink_give_up().is_some_and(|t| Instant::now() >= t)
    }
}

/// A source's `pause` / `resume` switch, read by its connections before they read.
#[derive(Debug, Default)]
pub struct Pause {
    paused: AtomicBool,
    resumed: Notify,
}

impl Pause {
    #[inline]
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// Set the switch; true if that changed it.
    pub fn set(&self, paused: bool) -> bool {
        let was = self.paused.swap(paused, Ordering::AcqRel);
        if was && !paused {
            self.resumed.notify_waiters();
        }
        was != paused
    }

    /// Resolves once the source is not paused.
    pub async fn resumed(&self) {
        loop {
            let notified = self.resumed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.is_paused() {
                return;
            }
            notified.await;
        }
    }
}

/// The threads shutdown waits for. Each holds a [`Guard`] (moved into the thread, dropped when
/// it ends); [`Tracker::wait_until`] returns once every guard is gone, or at the deadline. No
/// polling: the last guard to go wakes the waiter (the blocking form of mini-redis's
/// "shutdown complete" channel).
#[derive(Debug, Default)]
pub struct Tracker {
    live: Mutex<usize>,
    ended: Condvar,
}

/// Held by one tracked thread for as long as it runs.
#[derive(Debug)]
pub struct Guard(Arc<Tracker>);

impl Tracker {
    /// A guard for one more thread.
    pub fn guard(self: &Arc<Self>) -> Guard {
        *self.live.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        Guard(Arc::clone(self))
    }

    /// Wait until every guard is dropped (true) or `deadline` passes (false).
    pub fn wait_until(&self, deadline: Instant) -> bool {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        while *live > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            live = match self.ended.wait_timeout(live, left) {
                Ok((l, _)) => l,
                Err(e) => e.into_inner().0,
            };
        }
        true
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut live = self.0.live.lock().unwrap_or_else(|e| e.into_inner());
        *live -= 1;
        if *live == 0 {
            self.0.ended.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tracker_waits_for_every_guard() {
        let t = Arc::new(Tracker::default());
        assert!(t.wait_until(Instant::now()), "nothing to wait for");
        let (a, b) = (t.guard(), t.guard());
        let far = Instant::now() + Duration::from_secs(30);
        let th = std::thread::spawn(move || {
            drop(a);
            std::thread::sleep(Duration::from_millis(20));
            drop(b);
        });
        assert!(t.wait_until(far));
        th.join().unwrap();
        let _held = t.guard();
        assert!(!t.wait_until(Instant::now() + Duration::from_millis(20)));
    }
}
