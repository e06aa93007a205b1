//! A monotonic clock that tests can drive by hand. Lease lifetimes are measured on it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Monotonic time since an arbitrary origin.
pub trait Clock: Send + Sync + 'static {
    /// Time elapsed since the clock's origin.
    fn now(&self) -> Duration;

    /// Wall-clock time as Unix seconds (timestamps of signed requests, token expiry).
    fn unix_now(&self) -> i64 {
        crate::util::unix_now()
    }
}

/// The process's monotonic clock.
pub struct SystemClock(Instant);

impl Default for SystemClock {
    fn default() -> Self {
        Self(Instant::now())
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// A clock that moves only when told to (tests). Its wall-clock time starts at the real
/// time of its creation and moves with it.
pub struct ManualClock(Mutex<Duration>, i64);

impl Default for ManualClock {
    fn default() -> Self {
        Self(Mutex::new(Duration::ZERO), crate::util::unix_now())
    }
}

impl ManualClock {
    /// Moves the clock forward.
    pub fn advance(&self, d: Duration) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) += d;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn unix_now(&self) -> i64 {
        let secs = i64::try_from(self.now().as_secs()).unwrap_or(i64::MAX);
        self.1.saturating_add(secs)
    }
}
