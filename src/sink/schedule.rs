//! When a client sink tries its peer again: the retry schedule and the circuit, as a pure state
//! machine (time and randomness come in; no I/O, no logging).
//!
//! In: what happened to an attempt or a connection ([`Attempt`]) and the time. Out: what the
//! client does next ([`Step`]): wait, and whether the circuit opened or closed. Attempt n (from
//! 0) waits `interval · growth_rateⁿ`, at most `max_interval`, less up to `jitter` of it. A
//! connection that stays up for [`STABLE`] resets the count; one that breaks sooner counts as one
//! more failed attempt (a peer that accepts and drops us at once is retried on the schedule, not
//! in a tight loop). After `max_retries` failures in a row the circuit opens: one attempt every
//! `max_interval` until one succeeds. What it does not do: connect, count or log (see `client`).

use std::time::{Duration, Instant};

use crate::config::Retry;

/// A connection up this long resets the retry schedule.
pub const STABLE: Duration = Duration::from_secs(1);

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// A connect failed.
    Failed,
    /// A connect succeeded.
    Connected,
    /// A connection broke after being up for `lived`.
    Lost { lived: Duration },
}

/// What to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Wait this long before the next attempt (None: try again at once).
    pub wait: Option<Duration>,
    /// The attempt this was, counted from 1 since the last stable connection.
    pub attempt: u64,
    /// The circuit opened with this step.
    pub opened: bool,
    /// The circuit closed with this step (the peer is back).
    pub closed: bool,
}

/// The schedule's state.
#[derive(Debug, Clone)]
pub struct Schedule {
    retry: Retry,
    /// Failed attempts in a row.
    failures: u64,
    circuit_open: bool,
    next_attempt: Instant,
    rng: u64,
}

impl Schedule {
    /// A schedule whose first attempt is due at `now`; `seed` drives the jitter.
    pub fn new(retry: Retry, seed: u64, now: Instant) -> Schedule {
        Schedule {
            retry,
            failures: 0,
            circuit_open: false,
            next_attempt: now,
            rng: seed | 1,
        }
    }

    /// How long until the next attempt is due (zero: now).
    pub fn due_in(&self, now: Instant) -> Duration {
        self.next_attempt.saturating_duration_since(now)
    }

    #[cfg(test)]
    fn is_open(&self) -> bool {
        self.circuit_open
    }

    /// Take in what happened at `now`.
    pub fn step(&mut self, what: Attempt, now: Instant) -> Step {
        match what {
            Attempt::Connected => {
                let closed = std::mem::take(&mut self.circuit_open);
                Step {
                    wait: None,
                    attempt: self.failures + 1,
                    opened: false,
                    closed,
                }
            }
            Attempt::Lost { lived } if lived >= STABLE => {
                self.failures = 0;
                self.next_attempt = now;
                Step {
                    wait: None,
                    attempt: 1,
                    opened: false,
                    closed: false,
                }
            }
            Attempt::Failed | Attempt::Lost { .. } => self.failed(now),
        }
    }

    /// Another failed attempt in a row: wait as the schedule says, or open the circuit.
    fn failed(&mut self, now: Instant) -> Step {
        let n = self.failures;
        self.failures += 1;
        let opened =
            !self.circuit_open && self.retry.max_retries.is_some_and(|m| self.failures > m);
        self.circuit_open |= opened;
        let wait = if self.circuit_open {
            self.retry.max_interval
        } else {
            self.jittered(self.retry.delay(n))
        };
        self.next_attempt = now + wait;
        Step {
            wait: Some(wait),
            attempt: n + 1,
            opened,
            closed: false,
        }
    }

    /// `d`, shortened by up to `jitter` of itself (xorshift: cheap, and enough to spread peers).
    fn jittered(&mut self, d: Duration) -> Duration {
        if self.retry.jitter == 0.0 {
            return d;
        }
        let r = &mut self.rng;
        *r ^= *r << 13;
        *r ^= *r >> 7;
        *r ^= *r << 17;
        let unit = (*r >> 11) as f64 / (1u64 << 53) as f64;
        d.mul_f64(1.0 - self.retry.jitter * unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry(max_retries: Option<u64>, jitter: f64) -> Retry {
        Retry {
            interval: Duration::from_millis(100),
            growth_rate: 2.0,
            max_interval: Duration::from_millis(1000),
            max_retries,
            jitter,
        }
    }

    fn waits(s: &mut Schedule, n: usize, now: Instant) -> Vec<u128> {
        (0..n)
            .map(|_| s.step(Attempt::Failed, now).wait.unwrap().as_millis())
            .collect()
    }

    #[test]
    fn waits_grow_to_the_bound() {
        let now = Instant::now();
        let mut s = Schedule::new(retry(None, 0.0), 7, now);
        assert_eq!(
            s.due_in(now),
            Duration::ZERO,
            "the first attempt is due at once"
        );
        assert_eq!(waits(&mut s, 6, now), [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(s.due_in(now), Duration::from_millis(1000));
        assert!(!s.is_open(), "no max_retries: the circuit never opens");
    }

    #[test]
    fn jitter_only_shortens_and_stays_within_its_share() {
        let now = Instant::now();
        let mut s = Schedule::new(retry(None, 0.5), 12345, now);
        for _ in 0..200 {
            let n = s.failures;
            let full = s.retry.delay(n);
            let w = s.step(Attempt::Failed, now).wait.unwrap();
            assert!(w <= full && w >= full.mul_f64(0.5), "{w:?} of {full:?}");
        }
    }

    #[test]
    fn the_circuit_opens_after_max_retries_and_closes_on_connect() {
        let now = Instant::now();
        let mut s = Schedule::new(retry(Some(3), 0.0), 1, now);
        let steps: Vec<Step> = (0..5).map(|_| s.step(Attempt::Failed, now)).collect();
        assert_eq!(
            steps.iter().map(|s| s.opened).collect::<Vec<_>>(),
            [false, false, false, true, false],
            "opened once, by the 4th failure in a row"
        );
        assert_eq!(steps[3].wait, Some(Duration::from_millis(1000)));
        assert_eq!(
            steps[4].wait,
            Some(Duration::from_millis(1000)),
            "open: max_interval"
        );
        let c = s.step(Attempt::Connected, now);
        assert!(c.closed && !s.is_open());
        assert!(!s.step(Attempt::Connected, now).closed, "closed once");
    }

    #[test]
    fn a_stable_connection_resets_and_a_short_one_counts_as_a_failure() {
        let now = Instant::now();
        let mut s = Schedule::new(retry(Some(10), 0.0), 1, now);
        waits(&mut s, 3, now);
        s.step(Attempt::Connected, now);
        let short = s.step(
            Attempt::Lost {
                lived: Duration::from_millis(10),
            },
            now,
        );
        assert_eq!(short.attempt, 4);
        assert_eq!(short.wait, Some(Duration::from_millis(800)));
        s.step(Attempt::Connected, now);
        let stable = s.step(Attempt::Lost { lived: STABLE }, now);
        assert_eq!(stable.wait, None);
        assert_eq!(s.due_in(now), Duration::ZERO);
        assert_eq!(waits(&mut s, 1, now), [100], "the schedule starts again");
    }
}
