//! Where the runtime's time comes from. Everything that waits, schedules or
//! stamps asks a [`Clock`], so tests drive whole journeys with a [`ManualClock`]
//! and never sleep, and a demonstration can run a day's journey in minutes with
//! a [`ScaledClock`].

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub trait Clock: Send + Sync {
    /// The current time in ms since the epoch.
    fn now_ms(&self) -> i64;
}

/// Wall-clock time: what real deployments run on.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to.
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock showing `now_ms`.
    pub fn new(now_ms: i64) -> Self {
        Self(AtomicI64::new(now_ms))
    }

    /// Moves the clock to `now_ms`.
    pub fn set(&self, now_ms: i64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }

    /// Moves the clock forward by `ms`.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Wall-clock time running `speed` times faster from the moment it was made:
/// `dripline up --clock-speed 3600` lives an hour per second, so the abandoned
/// checkout reminder of the README arrives in seconds, not half an hour.
pub struct ScaledClock {
    start_ms: i64,
    started: Instant,
    speed: f64,
}

impl ScaledClock {
    /// A clock starting at the wall-clock time, running `speed` times as fast.
    pub fn new(speed: f64) -> Self {
        Self {
            start_ms: SystemClock.now_ms(),
            started: Instant::now(),
            speed,
        }
    }
}

impl Clock for ScaledClock {
    fn now_ms(&self) -> i64 {
        let elapsed = self.started.elapsed().as_secs_f64() * 1000.0 * self.speed;
        self.start_ms.saturating_add(elapsed as i64)
    }
}
