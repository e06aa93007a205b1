//! A circuit breaker per KMS config: when a KMS keeps failing as unreachable or timing out,
//! calls fail fast with `503 kms_unreachable` and `Retry-After` instead of each waiting for
//! its own timeout and piling up.
//!
//! Closed: calls pass; `threshold` consecutive unreachable/timeout failures open it.
//! Open: calls fail at once until `cool_down` has passed. Half-open: one probe call passes;
//! its success closes the breaker, its failure opens it for another `cool_down`. Denials
//! and other KMS answers are not failures here: the KMS is up and answering.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Breaker settings.
#[derive(Clone, Copy, Debug)]
pub struct BreakerPolicy {
    /// Consecutive unreachable/timeout failures that open the breaker.
    pub threshold: u32,
    /// How long it stays open before one probe is let through.
    pub cool_down: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            threshold: 5,
            cool_down: Duration::from_secs(5),
        }
    }
}

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// One breaker.
#[derive(Debug)]
pub struct Breaker {
    policy: BreakerPolicy,
    state: Mutex<State>,
}

/// Why a call was not let through: the breaker is open for about this long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Open {
    /// Time until a probe is allowed.
    pub retry_after: Duration,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(policy: BreakerPolicy) -> Self {
        Self {
            policy,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    /// Asks to make a call. `Ok` means go ahead, and report the result with
    /// [`Breaker::record`].
    pub fn admit(&self, now: Instant) -> Result<(), Open> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match *s {
            State::Closed { .. } => Ok(()),
            State::Open { until } if now < until => Err(Open {
                retry_after: until - now,
            }),
            State::Open { .. } => {
                *s = State::HalfOpen { probing: true };
                Ok(())
            }
            State::HalfOpen { probing: true } => Err(Open {
                retry_after: self.policy.cool_down,
            }),
            State::HalfOpen { probing: false } => {
                *s = State::HalfOpen { probing: true };
                Ok(())
            }
        }
    }

    /// Reports an admitted call's result: `unavailable` is true for unreachable/timeout.
    pub fn record(&self, now: Instant, unavailable: bool) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        *s = match (&*s, unavailable) {
            (_, false) => State::Closed { failures: 0 },
            (State::Closed { failures }, true) if failures + 1 < self.policy.threshold => {
                State::Closed {
                    failures: failures + 1,
                }
            }
            (_, true) => State::Open {
                until: now + self.policy.cool_down,
            },
        };
    }

    /// Whether the breaker currently refuses calls (for metrics).
    pub fn is_open(&self, now: Instant) -> bool {
        matches!(*self.state.lock().unwrap_or_else(|p| p.into_inner()),
            State::Open { until } if now < until)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn opens_after_threshold_and_probes_once_after_cool_down() {
        let b = Breaker::new(BreakerPolicy {
            threshold: 3,
            cool_down: Duration::from_secs(10),
        });
        let t0 = Instant::now();
        for _ in 0..2 {
            b.admit(t0).unwrap();
            b.record(t0, true);
        }
        b.admit(t0).unwrap();
        b.record(t0, false); // a success resets the count
        for _ in 0..3 {
            b.admit(t0).unwrap();
            b.record(t0, true);
        }
        let open = b.admit(t0 + Duration::from_secs(4)).unwrap_err();
        assert_eq!(open.retry_after, Duration::from_secs(6));
        assert!(b.is_open(t0));
        // After the cool-down: one probe, the next caller waits.
        let t1 = t0 + Duration::from_secs(10);
        b.admit(t1).unwrap();
        assert!(b.admit(t1).is_err());
        // The probe fails: open again for a full cool-down.
        b.record(t1, true);
        assert!(b.admit(t1 + Duration::from_secs(9)).is_err());
        let t2 = t1 + Duration::from_secs(10);
        b.admit(t2).unwrap();
        b.record(t2, false);
        b.admit(t2).unwrap();
        b.admit(t2).unwrap();
    }

    #[test]
    fn denials_do_not_count() {
        let b = Breaker::new(BreakerPolicy {
            threshold: 1,
            cool_down: Duration::from_secs(1),
        });
        let t = Instant::now();
        for _ in 0..10 {
            b.admit(t).unwrap();
            b.record(t, false);
        }
        assert!(!b.is_open(t));
    }
}
