//! Retry policy and full-jitter exponential backoff.
//!
//! The delay before retry `n` (n ≥ 1) is drawn uniformly from
//! `[0, min(initial · 2^(n−1), max_delay)]` ("full jitter"), so clients that failed
//! together do not retry together.

use std::time::Duration;

use crate::error::Error;

/// How many times, and how far apart, a call is attempted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (1 = never retry).
    pub max_attempts: u32,
    /// The cap of the first retry's delay; each later cap doubles.
    pub initial_delay: Duration,
    /// The largest cap.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, caps from 50 ms doubling to 2 s: enough to ride out a leader
    /// election (0.3–0.6 s with the node's defaults) inside the default 30 s
    /// deadline.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// Never retry.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// Refuses a policy that cannot work: zero attempts (no call would be made). Delays
    /// may be zero (retry at once); a first delay above the largest is capped by it.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the setting.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |setting, reason| Err(Error::InvalidConfig { setting, reason });
        if self.max_attempts == 0 {
            return invalid("retry.max_attempts", "must be at least 1 (1: never retry)");
        }
        Ok(())
    }

    /// The upper bound of the delay before retry `retry` (1-based).
    pub fn cap(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(32);
        self.initial_delay
            .saturating_mul(1u32 << doublings.min(31))
            .min(self.max_delay)
    }
}

/// Draws backoff delays for one policy from a seeded generator.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RetryPolicy,
    rng: SplitMix64,
}

impl Backoff {
    /// `seed` fixes the sequence of delays (tests); use [`Backoff::from_entropy`] otherwise.
    pub fn new(policy: RetryPolicy, seed: u64) -> Self {
        Backoff {
            policy,
            rng: SplitMix64(seed),
        }
    }

    /// Seeded from the clock and the process's hash randomness.
    pub fn from_entropy(policy: RetryPolicy) -> Self {
        Self::new(policy, entropy())
    }

    /// The delay before retry `retry` (1-based): uniform in `[0, cap(retry)]`.
    pub fn delay(&mut self, retry: u32) -> Duration {
        let cap = self.policy.cap(retry);
        let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.rng.next() % (nanos + 1))
    }
}

/// A small, fast, seedable generator (Steele et al.'s SplitMix64): plenty for jitter.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// A seed that differs between processes and calls.
pub(crate) fn entropy() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 10,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        }
    }

    #[test]
    fn caps_double_from_the_initial_delay_up_to_the_maximum() {
        let p = policy();
        let caps: Vec<u64> = (1..=6).map(|n| p.cap(n).as_millis() as u64).collect();
        assert_eq!(caps, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.cap(10_000), Duration::from_secs(1), "no overflow");
    }

    #[test]
    fn every_delay_lies_within_zero_and_its_cap() {
        for seed in 0..50 {
            let mut backoff = Backoff::new(policy(), seed);
            for retry in 1..=9 {
                let delay = backoff.delay(retry);
                assert!(
                    delay <= policy().cap(retry),
                    "seed {seed} retry {retry}: {delay:?}"
                );
            }
        }
    }

    #[test]
    fn delays_are_spread_over_the_whole_range_and_fixed_by_the_seed() {
        let mut backoff = Backoff::new(policy(), 7);
        let delays: Vec<Duration> = (0..1000).map(|_| backoff.delay(5)).collect();
        let cap = policy().cap(5);
        assert!(delays.iter().any(|d| *d < cap / 10), "some near zero");
        assert!(
            delays.iter().any(|d| *d > cap * 9 / 10),
            "some near the cap"
        );
        let mean = delays.iter().sum::<Duration>() / 1000;
        assert!(
            mean > cap * 4 / 10 && mean < cap * 6 / 10,
            "uniform: mean {mean:?}"
        );
        let mut again = Backoff::new(policy(), 7);
        assert_eq!(again.delay(5), delays[0], "the same seed, the same delays");
    }

    #[test]
    fn a_zero_initial_delay_never_sleeps() {
        let mut backoff = Backoff::new(
            RetryPolicy {
                initial_delay: Duration::ZERO,
                ..policy()
            },
            1,
        );
        assert_eq!(backoff.delay(3), Duration::ZERO);
    }
}
