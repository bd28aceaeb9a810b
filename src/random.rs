//! Just enough randomness for what the server picks at random: the epoch of a run (so
//! positions from an earlier run are told apart) and the delay each client is told to wait
//! before coming back after a shutdown (so thousands do not return in one wave). Quality is
//! irrelevant here, spread is all; nothing here is used for security.

use std::sync::atomic::{AtomicU64, Ordering};

/// A xorshift64 generator.
#[derive(Debug)]
pub struct Random {
    /// Never 0, which xorshift cannot leave.
    state: u64,
}

impl Random {
    /// A generator seeded from the wall clock's nanoseconds, the process id and a
    /// per-process counter, so two servers in one process (tests) differ too.
    pub fn from_clock() -> Random {
        static STARTED: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let count = STARTED.fetch_add(1, Ordering::Relaxed);
        let mixed = nanos
            ^ (u64::from(std::process::id()) << 32)
            ^ count.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        Random { state: mixed | 1 }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }

    /// A number in `range` (the modulo's slight bias does not matter here).
    pub fn in_range(&mut self, range: std::ops::RangeInclusive<u64>) -> u64 {
        range.start() + self.next_u64() % (range.end() - range.start() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_in_range_and_spreads() {
        let mut random = Random::from_clock();
        let draws: Vec<u64> = (0..1000).map(|_| random.in_range(500..=5000)).collect();
        assert!(draws.iter().all(|d| (500..=5000).contains(d)));
        let distinct: std::collections::HashSet<_> = draws.iter().collect();
        assert!(distinct.len() > 500, "spread out, not one wave");
        assert_ne!(
            Random::from_clock().next_u64(),
            Random::from_clock().next_u64()
        );
    }
}
