//! One backoff policy for every retry the conductor makes — launches of a
//! crash-looping or failing service, a retirement whose termination failed,
//! an endpoint that cannot bind, a provider that cannot be reached.
//!
//! ```text
//!  failure n:   1     2     3      4      5     …   ≥ 12
//!  wait:        0     0   200ms  400ms  800ms   …   60s (cap)
//! ```
//!
//! The first [`Policy::free`] failures of a streak are retried at once (a
//! single crash is healed in milliseconds); after that the wait doubles up
//! to [`Policy::max`]. A success ends the streak. The state of every key
//! lives in the store ([`glint_store::Backoffs`]), so a conductor restarted
//! in the middle of a crash loop continues its backoff instead of starting
//! over; [`Tracker`] keeps a copy in memory and writes through.

use glint_store::BackoffRecord;
use glint_store::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The backoff policy. See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Failures in a row that are retried at once.
    pub free: u32,
    /// The first wait after the free ones.
    pub first: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Policy {
    /// The policy every retry uses.
    pub const DEFAULT: Policy = Policy {
        free: 2,
        first: Duration::from_millis(200),
        max: Duration::from_secs(60),
    };

    /// How long to wait after the `failures`-th failure in a row.
    pub fn delay(&self, failures: u32) -> Duration {
        if failures <= self.free {
            return Duration::ZERO;
        }
        let exp = (failures - self.free - 1).min(20);
        self.first.saturating_mul(1 << exp).min(self.max)
    }
}

/// `delay` with jitter: a duration in `[delay / 2, delay]` chosen by
/// `seed` (the same seed, the same duration — retries of many messages
/// that failed together spread out, and a test can predict them).
pub fn jittered(delay: Duration, seed: u64) -> Duration {
    let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
    let half = ms / 2;
    // splitmix64: a well-spread function of the seed.
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    Duration::from_millis(half + z % (ms - half + 1))
}

/// What [`Tracker::failed`] concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    /// Failures in a row now.
    pub failures: u32,
    /// How long the key now waits (zero: retried at once).
    pub delay: Duration,
    /// Whether this failure started the waiting (the first non-free one):
    /// the moment to record one incident rather than one per failure.
    pub started_waiting: bool,
}

/// Every key's backoff, in memory and in the store.
#[derive(Debug)]
pub struct Tracker {
    policy: Policy,
    store: Arc<dyn Store>,
    keys: BTreeMap<String, BackoffRecord>,
}

impl Tracker {
    /// Loads the keys the store holds.
    pub fn load(store: Arc<dyn Store>, policy: Policy) -> Tracker {
        let keys = match store.backoffs() {
            Ok(list) => list.into_iter().map(|b| (b.key.clone(), b)).collect(),
            Err(e) => {
                tracing::warn!("cannot read backoffs: {e}");
                BTreeMap::new()
            }
        };
        Tracker {
            policy,
            store,
            keys,
        }
    }

    /// The policy.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// The record of `key`, if it is in a streak.
    pub fn get(&self, key: &str) -> Option<&BackoffRecord> {
        self.keys.get(key)
    }

    /// Whether `key` must wait at `now`: the time it may be tried again.
    pub fn blocked(&self, key: &str, now: i64) -> Option<i64> {
        self.keys
            .get(key)
            .filter(|b| b.until_ms > now)
            .map(|b| b.until_ms)
    }

    /// Records a failure of `key`.
    pub fn failed(&mut self, key: &str, cause: &str, now: i64) -> Failed {
        self.failed_at_least(key, cause, now, Duration::ZERO)
    }

    /// Records a failure of `key` that waits at least `min` (for things
    /// never retried at once, such as a provider connection).
    pub fn failed_at_least(&mut self, key: &str, cause: &str, now: i64, min: Duration) -> Failed {
        let rec = self
            .keys
            .entry(key.to_owned())
            .or_insert_with(|| BackoffRecord {
                key: key.to_owned(),
                failures: 0,
                until_ms: now,
                cause: String::new(),
                first_at: now,
                last_at: now,
            });
        rec.failures = rec.failures.saturating_add(1);
        rec.cause = cause.to_owned();
        rec.last_at = now;
        let delay = self.policy.delay(rec.failures).max(min);
        rec.until_ms = now.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
        let out = Failed {
            failures: rec.failures,
            delay,
            started_waiting: rec.failures == self.policy.free + 1,
        };
        if let Err(e) = self.store.put_backoff(rec) {
            tracing::warn!("cannot record the backoff of {key}: {e}");
        }
        out
    }

    /// Ends the streak of `key`; returns how many failures it had.
    pub fn succeeded(&mut self, key: &str) -> Option<u32> {
        let rec = self.keys.remove(key)?;
        if let Err(e) = self.store.clear_backoff(key) {
            tracing::warn!("cannot clear the backoff of {key}: {e}");
        }
        Some(rec.failures)
    }

    /// Keys starting with `prefix`.
    pub fn with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = &'a BackoffRecord> + 'a {
        self.keys
            .range(prefix.to_owned()..)
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v)
    }

    /// The earliest time a waiting key may be tried again.
    pub fn next_wake(&self, now: i64) -> Option<i64> {
        self.keys
            .values()
            .map(|b| b.until_ms)
            .filter(|u| *u > now)
            .min()
    }

    /// Every key in a streak.
    pub fn all(&self) -> impl Iterator<Item = &BackoffRecord> {
        self.keys.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_failures_are_free_then_the_wait_doubles_to_the_cap() {
        let p = Policy::DEFAULT;
        let waits: Vec<u128> = (1..=14).map(|n| p.delay(n).as_millis()).collect();
        assert_eq!(
            waits,
            [
                0, 0, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200, 60000, 60000, 60000
            ]
        );
    }

    #[test]
    fn a_streak_is_stored_and_ends_with_a_success() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(glint_store::SqliteStore::open(dir.path()).unwrap());
        let mut t = Tracker::load(store.clone(), Policy::DEFAULT);
        assert!(!t.failed("k", "boom", 0).started_waiting);
        assert!(!t.failed("k", "boom", 10).started_waiting);
        let third = t.failed("k", "boom", 20);
        assert!(third.started_waiting);
        assert_eq!(t.blocked("k", 21), Some(220));
        assert_eq!(t.blocked("k", 220), None);
        // A new tracker over the same store continues the streak.
        let mut again = Tracker::load(store.clone(), Policy::DEFAULT);
        assert_eq!(again.get("k").map(|b| b.failures), Some(3));
        assert_eq!(again.failed("k", "boom", 300).delay.as_millis(), 400);
        assert_eq!(again.succeeded("k"), Some(4));
        assert!(Tracker::load(store, Policy::DEFAULT).get("k").is_none());
    }
}
