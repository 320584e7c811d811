//! When to compile after edits: a pure debouncer.
//!
//! Every edit of an environment's file *touches* it; the environment is
//! due `delay` after its last touch (typing postpones the compile), but
//! never later than `max_wait` after the first touch since its last
//! compile (a user typing without pause still sees diagnostics). The
//! caller passes the time in, so the rules are tested without sleeping.
//!
//! ```text
//!   touch ──▶ pending(first, last) ──(now ≥ min(last+delay, first+max_wait))──▶ due
//!                 ▲   │ touch: last = now
//!                 └───┘
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Pending work per key.
#[derive(Debug, Clone)]
pub struct Debouncer<K: Ord + Clone> {
    delay: Duration,
    max_wait: Duration,
    /// First and last touch; `None` for work due at once.
    pending: BTreeMap<K, Option<(Instant, Instant)>>,
}

impl<K: Ord + Clone> Debouncer<K> {
    /// A debouncer waiting `delay` after the last touch, at most
    /// `max_wait` after the first.
    pub fn new(delay: Duration, max_wait: Duration) -> Debouncer<K> {
        Debouncer {
            delay,
            max_wait: max_wait.max(delay),
            pending: BTreeMap::new(),
        }
    }

    /// Records an edit of `key` at `now`.
    pub fn touch(&mut self, key: K, now: Instant) {
        self.pending
            .entry(key)
            .and_modify(|p| {
                if let Some((_, last)) = p {
                    *last = now;
                }
            })
            .or_insert(Some((now, now)));
    }

    /// Makes `key` due at once (a save, an open).
    pub fn now(&mut self, key: K) {
        self.pending.insert(key, None);
    }

    /// Forgets `key` (its work was done some other way).
    pub fn cancel(&mut self, key: &K) {
        self.pending.remove(key);
    }

    fn due_at(&self, p: &Option<(Instant, Instant)>, now: Instant) -> Instant {
        match p {
            Some((first, last)) => (*last + self.delay).min(*first + self.max_wait),
            None => now,
        }
    }

    /// When the next key is due, if any is pending.
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        self.pending.values().map(|p| self.due_at(p, now)).min()
    }

    /// The keys due at `now`, removed from the pending set.
    pub fn take_due(&mut self, now: Instant) -> Vec<K> {
        let due: Vec<K> = self
            .pending
            .iter()
            .filter(|(_, p)| self.due_at(p, now) <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &due {
            self.pending.remove(k);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn typing_postpones_until_a_pause() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(100 * MS, 1000 * MS);
        d.touch("env", t0);
        d.touch("env", t0 + 60 * MS);
        assert!(
            d.take_due(t0 + 120 * MS).is_empty(),
            "60 ms after the last edit"
        );
        assert_eq!(d.next_deadline(t0), Some(t0 + 160 * MS));
        assert_eq!(d.take_due(t0 + 160 * MS), vec!["env"]);
        assert_eq!(d.next_deadline(t0), None);
        assert!(d.take_due(t0 + 500 * MS).is_empty(), "done once");
    }

    #[test]
    fn continuous_typing_still_compiles_after_max_wait() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(100 * MS, 300 * MS);
        for i in 0..10 {
            d.touch(1, t0 + i * 50 * MS);
            let due = d.take_due(t0 + i * 50 * MS);
            if i * 50 >= 300 {
                assert_eq!(due, vec![1], "at {} ms", i * 50);
                return;
            }
            assert!(due.is_empty(), "at {} ms", i * 50);
        }
        panic!("never due");
    }

    #[test]
    fn keys_are_independent_and_now_is_immediate() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(100 * MS, 1000 * MS);
        d.touch("a", t0);
        d.now("b");
        assert_eq!(d.take_due(t0), vec!["b"]);
        d.cancel(&"a");
        assert_eq!(d.next_deadline(t0), None);
    }
}
