//! Capped exponential backoff with full jitter.

use std::time::Duration;

/// Capped exponential backoff with full jitter: attempt `n` (1 = the first retry) waits a
/// uniformly random time in `[0, min(max, base * 2^(n-1)))`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(20),
        }
    }
}

impl Backoff {
    /// The cap for retry `n` before jitter.
    pub fn cap(&self, n: u32) -> Duration {
        let factor = 2u32.checked_pow(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.base
            .checked_mul(factor)
            .map_or(self.max, |d| d.min(self.max))
    }

    /// The delay before retry `n` for a random `r` in `[0, 1)`.
    pub fn delay_with(&self, n: u32, r: f64) -> Duration {
        let r = if r.is_nan() { 0.0 } else { r.clamp(0.0, 1.0) };
        self.cap(n).mul_f64(r)
    }

    pub fn delay(&self, n: u32) -> Duration {
        self.delay_with(n, fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn backoff_is_capped_exponential_with_full_jitter() {
        let b = Backoff {
            base: ms(100),
            max: ms(1000),
        };
        let caps: Vec<u64> = (1..=7).map(|n| b.cap(n).as_millis() as u64).collect();
        assert_eq!(caps, vec![100, 200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(b.cap(u32::MAX), ms(1000));
        assert_eq!(b.delay_with(3, 0.0), Duration::ZERO);
        assert_eq!(b.delay_with(3, 0.5), ms(200));
        assert_eq!(b.delay_with(3, f64::NAN), Duration::ZERO);
        for _ in 0..100 {
            assert!(b.delay(4) < ms(800));
        }
    }
}
