//! Where the store and the conductor get the time from.
//!
//! Every time that is written (an instance's launch, health and end times, an
//! event's time, a version's creation and outcome) comes from a [`Clock`]
//! handed in at construction, never from the system clock directly, so that
//! tests can run the whole conductor on a clock they control (tokio's paused
//! time plus a wall-clock source that advances with it).

use std::time::SystemTime;

/// A source of wall-clock time, in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Now, in milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The system's real-time clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        crate::to_ms(SystemTime::now())
    }
}
