//! The retry policy: how many attempts a segment gets and how far apart they are (capped
//! exponential backoff with full jitter); a small rule of its own, tuned apart from what each
//! failure means.

use std::time::Duration;

/// How often and how far apart failed Cal.com calls are tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts (that count, see [`FailureClass::consumes_attempt`]) before a segment is
    /// flagged for review.
    pub max_attempts: u32,
    /// The backoff ceiling after the first failure; it doubles with each attempt.
    pub base_delay: Duration,
    /// The backoff ceiling never grows beyond this.
    pub max_delay: Duration,
    /// Full jitter may pick zero; this floor keeps a failing segment from spinning.
    pub min_delay: Duration,
}

impl Default for RetryPolicy {
    /// 8 attempts; the jitter ceilings between them are 45 s, 90 s, 3 min, 6 min, 12 min,
    /// 15 min, 15 min: at most ~53 minutes from the first failure to the review flag.
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay: Duration::from_secs(45),
            max_delay: Duration::from_secs(15 * 60),
            min_delay: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    /// The backoff ceiling after `attempts` failed attempts (1 = after the first).
    pub fn ceiling(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(30);
        let grown = self
            .base_delay
            .checked_mul(1u32 << doublings)
            .unwrap_or(self.max_delay);
        grown.min(self.max_delay)
    }

    /// The delay before the next attempt with full jitter: uniform in `[0, ceiling]` for a
    /// `jitter` fraction in `[0, 1]`, raised to `min_delay` but never above `max_delay`.
    pub fn backoff(&self, attempts: u32, jitter: f64) -> Duration {
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            1.0
        };
        let picked = self.ceiling(attempts).mul_f64(jitter);
        picked.max(self.min_delay).min(self.max_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy::default();
        assert_eq!(p.ceiling(1), Duration::from_secs(45));
        assert_eq!(p.ceiling(2), Duration::from_secs(90));
        assert_eq!(p.ceiling(6), Duration::from_secs(900));
        assert_eq!(p.ceiling(60), Duration::from_secs(900));
        assert_eq!(p.backoff(1, 0.0), Duration::from_secs(1));
        assert_eq!(p.backoff(3, 0.5), Duration::from_secs(90));
        let total: Duration = (1..p.max_attempts).map(|n| p.ceiling(n)).sum();
        assert!(total <= Duration::from_secs(3600), "{total:?}");
        assert!(total >= Duration::from_secs(40 * 60), "{total:?}");
    }

    proptest! {
        #[test]
        fn backoff_never_exceeds_the_cap(
            attempts in 0u32..200,
            jitter in proptest::num::f64::ANY,
            base_ms in 1u64..120_000,
            cap_ms in 1u64..3_600_000,
        ) {
            let p = RetryPolicy {
                max_attempts: 8,
                base_delay: Duration::from_millis(base_ms),
                max_delay: Duration::from_millis(cap_ms),
                min_delay: Duration::from_millis(10),
            };
            let d = p.backoff(attempts, jitter);
            prop_assert!(d <= p.max_delay);
            prop_assert!(d <= p.ceiling(attempts).max(p.min_delay));
        }
    }
}
