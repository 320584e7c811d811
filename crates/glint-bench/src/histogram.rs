//! A log-bucketed latency histogram (HDR-like, no dependencies).
//!
//! Values are microseconds. Values below 128 µs have a bucket each; above,
//! every power of two is split into 64 equal sub-buckets, so a recorded value
//! is known within 1/64 (about 1.6 %) of itself. Buckets are allocated only
//! up to the largest value seen, so an idle histogram costs nothing and a
//! typical one (latencies below a few seconds) under 10 KiB.

/// Sub-buckets per power of two, as a power of two.
const SUB_BITS: u32 = 6;
/// Values below this have a bucket of their own.
const LINEAR: u64 = 1 << (SUB_BITS + 1);

/// A histogram of durations in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

/// The bucket a value falls in.
fn index(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let top = 63 - v.leading_zeros(); // ≥ SUB_BITS + 1
    let shift = top - SUB_BITS;
    let sub = (v >> shift) as usize; // in [64, 128)
    ((shift as usize) << SUB_BITS) + sub
}

/// The smallest and largest value of a bucket.
fn bounds(i: usize) -> (u64, u64) {
    if (i as u64) < LINEAR {
        return (i as u64, i as u64);
    }
    let shift = (i >> SUB_BITS) as u32 - 1;
    let sub = ((i & ((1 << SUB_BITS) - 1)) as u64) | (1 << SUB_BITS);
    let low = sub << shift;
    (low, low + ((1u64 << shift) - 1))
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Histogram {
        Histogram::default()
    }

    /// Records one value (microseconds).
    pub fn record(&mut self, micros: u64) {
        let i = index(micros);
        if i >= self.counts.len() {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] += 1;
        if self.count == 0 || micros < self.min {
            self.min = micros;
        }
        self.max = self.max.max(micros);
        self.count += 1;
        self.sum += u128::from(micros);
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        if other.count == 0 {
            return;
        }
        if other.counts.len() > self.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        if self.count == 0 || other.min < self.min {
            self.min = other.min;
        }
        self.max = self.max.max(other.max);
        self.count += other.count;
        self.sum += other.sum;
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The smallest value, exact (0 when empty).
    pub fn min(&self) -> u64 {
        self.min
    }

    /// The largest value, exact (0 when empty).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The mean, exact (0 when empty).
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }

    /// The value at quantile `q` (0.0 ..= 1.0): the middle of the bucket that
    /// holds the value of rank ⌈q·n⌉, clamped to the exact minimum and maximum.
    /// 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (low, high) = bounds(i);
                return (low + (high - low) / 2).clamp(self.min, self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_contain_their_values() {
        let mut expected_next = 0u64;
        for i in 0..index(u64::MAX) + 1 {
            let (low, high) = bounds(i);
            assert_eq!(
                low,
                expected_next,
                "bucket {i} starts where {} ended",
                i.wrapping_sub(1)
            );
            assert!(high >= low);
            assert_eq!(index(low), i);
            assert_eq!(index(high), i);
            expected_next = high.wrapping_add(1);
        }
        assert_eq!(expected_next, 0, "the last bucket ends at u64::MAX");
    }

    #[test]
    fn relative_error_is_below_two_percent() {
        for v in [
            1u64,
            100,
            127,
            128,
            129,
            1_000,
            12_345,
            999_999,
            30_000_000,
            u64::MAX / 3,
        ] {
            let (low, high) = bounds(index(v));
            let width = (high - low) as f64;
            assert!(
                width / (v as f64) < 1.0 / 64.0 + 1e-9,
                "{v}: bucket {low}..={high}"
            );
        }
    }

    #[test]
    fn quantiles_of_a_uniform_range() {
        let mut h = Histogram::new();
        for v in 1..=10_000u64 {
            h.record(v);
        }
        assert_eq!(h.count(), 10_000);
        assert_eq!(h.min(), 1);
        assert_eq!(h.max(), 10_000);
        assert!((h.mean() - 5_000.5).abs() < 1e-9);
        for (q, want) in [(0.5, 5_000.0), (0.9, 9_000.0), (0.99, 9_900.0)] {
            let got = h.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.02, "q{q}: {got} vs {want}");
        }
        assert_eq!(h.quantile(1.0), 10_000);
        assert_eq!(h.quantile(0.0), 1);
    }

    #[test]
    fn merge_equals_recording_everything_in_one() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        let mut all = Histogram::new();
        for v in 0..5_000u64 {
            let x = v * v % 7_919 * 13;
            if v % 3 == 0 {
                a.record(x)
            } else {
                b.record(x)
            }
            all.record(x);
        }
        let mut merged = Histogram::new();
        merged.merge(&a);
        merged.merge(&b);
        assert_eq!(merged, all);
    }

    #[test]
    fn empty_histogram_reports_zeros() {
        let h = Histogram::new();
        assert_eq!(
            (h.count(), h.min(), h.max(), h.quantile(0.99)),
            (0, 0, 0, 0)
        );
        assert_eq!(h.mean(), 0.0);
    }
}
