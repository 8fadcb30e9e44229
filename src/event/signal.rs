//! The two signals every read loop obeys: [`Shutdown`] (requested once, with a deadline) and a
//! source's [`Pause`] (`pause` / `resume` on the control socket).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
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
