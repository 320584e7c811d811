//! How long the store's writes take, for the conductor's `/metrics`.
//!
//! Every write transaction ([`crate::SqliteStore`]'s one write path) is
//! timed, from asking for the write lock to the commit, into a fixed set of
//! buckets held in atomics: recording costs a few relaxed additions and
//! never allocates. Durations are measured with the monotonic clock; they
//! are never written anywhere, so this does not break "every written time
//! comes from the store's clock".

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds (Prometheus `le`).
pub const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A snapshot of the write-latency histogram.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteLatency {
    /// Per bucket of [`BUCKETS`], the writes that took at most that long
    /// (not cumulative).
    pub buckets: Vec<u64>,
    /// Writes slower than the last bucket.
    pub over: u64,
    /// Every write.
    pub count: u64,
    /// Their total duration, in seconds.
    pub sum_s: f64,
}

/// Write statistics of a store.
pub trait WriteStats {
    /// The write-latency histogram so far (empty for stores that do not
    /// measure).
    fn write_latency(&self) -> WriteLatency {
        WriteLatency::default()
    }
}

/// The live histogram.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    buckets: [AtomicU64; BUCKETS.len()],
    over: AtomicU64,
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Recorder {
    pub(crate) fn record(&self, d: Duration) {
        let s = d.as_secs_f64();
        match BUCKETS.iter().position(|b| s <= *b) {
            Some(i) => self.buckets[i].fetch_add(1, Ordering::Relaxed),
            None => self.over.fetch_add(1, Ordering::Relaxed),
        };
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    pub(crate) fn snapshot(&self) -> WriteLatency {
        WriteLatency {
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            over: self.over.load(Ordering::Relaxed),
            count: self.count.load(Ordering::Relaxed),
            sum_s: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_their_bucket() {
        let r = Recorder::default();
        r.record(Duration::from_micros(300));
        r.record(Duration::from_millis(3));
        r.record(Duration::from_secs(9));
        let s = r.snapshot();
        assert_eq!(s.buckets[0], 1, "300µs ≤ 0.5ms");
        assert_eq!(s.buckets[3], 1, "3ms ≤ 5ms");
        assert_eq!(s.over, 1);
        assert_eq!(s.count, 3);
        assert!((s.sum_s - 9.0033).abs() < 1e-6, "{}", s.sum_s);
    }
}
