//! Durations and sizes as the IR stores them.
//!
//! Both are plain integers in the serialised form (milliseconds and bytes), so
//! the compiled environment's JSON, and therefore its hash, never depends on how
//! a value was written in the source (`60s` and `1m` compile to the same IR).

use serde::{Deserialize, Serialize};
use std::fmt;

/// A duration in whole milliseconds, the resolution of every time value in Glint.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Millis(pub u64);

impl Millis {
    /// Zero milliseconds.
    pub const ZERO: Millis = Millis(0);

    /// A duration of `s` seconds.
    pub const fn from_secs(s: u64) -> Millis {
        Millis(s.saturating_mul(1000))
    }

    /// The same duration as a [`std::time::Duration`].
    pub const fn as_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0)
    }
}

impl From<std::time::Duration> for Millis {
    fn from(d: std::time::Duration) -> Self {
        Millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

impl fmt::Display for Millis {
    /// Writes the duration in the largest unit that divides it exactly,
    /// the way a user would write it in a `.glint` file (`1h`, `90s`, `250ms`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        const UNITS: [(u64, &str); 5] = [
            (86_400_000, "d"),
            (3_600_000, "h"),
            (60_000, "m"),
            (1000, "s"),
            (1, "ms"),
        ];
        if ms == 0 {
            return write!(f, "0s");
        }
        for (size, unit) in UNITS {
            if ms.is_multiple_of(size) {
                return write!(f, "{}{}", ms / size, unit);
            }
        }
        write!(f, "{ms}ms")
    }
}

/// A size in bytes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    /// Writes the size in the largest binary unit that divides it exactly
    /// (`512KiB`, `2GiB`, `100B`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 4] = [
            (1 << 40, "TiB"),
            (1 << 30, "GiB"),
            (1 << 20, "MiB"),
            (1 << 10, "KiB"),
        ];
        let b = self.0;
        if b != 0 {
            for (size, unit) in UNITS {
                if b.is_multiple_of(size) {
                    return write!(f, "{}{}", b / size, unit);
                }
            }
        }
        write!(f, "{b}B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_in_the_largest_exact_unit() {
        assert_eq!(Millis(0).to_string(), "0s");
        assert_eq!(Millis(250).to_string(), "250ms");
        assert_eq!(Millis(1500).to_string(), "1500ms");
        assert_eq!(Millis(90_000).to_string(), "90s");
        assert_eq!(Millis(3_600_000).to_string(), "1h");
        assert_eq!(Millis(7 * 86_400_000).to_string(), "7d");
    }

    #[test]
    fn sizes_print_in_the_largest_exact_unit() {
        assert_eq!(Bytes(0).to_string(), "0B");
        assert_eq!(Bytes(100).to_string(), "100B");
        assert_eq!(Bytes(512 * 1024).to_string(), "512KiB");
        assert_eq!(Bytes(256 << 20).to_string(), "256MiB");
        assert_eq!(Bytes(2 << 30).to_string(), "2GiB");
    }
}
