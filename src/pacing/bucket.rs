//! The AIMD token bucket: one for writes, one for reads.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Without a throttle for this long, a bucket grows by a tenth of its ceiling.
pub const QUIET_PERIOD: Duration = Duration::from_secs(1);
/// At most one halving per this period: the throttles of one burst are one signal.
pub const DECREASE_GAP: Duration = Duration::from_secs(1);

/// Why a [`RateLimiter`] could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RateLimitError {
    /// The rate is not a positive number.
    #[error("rate limit of {0} per second is invalid: use a positive number such as 20")]
    Rate(f64),
    /// The burst is zero.
    #[error("rate limit burst of 0 is invalid: use at least 1 (e.g. 10)")]
    Burst,
}

#[derive(Debug)]
struct State {
    rate: f64,
    /// Theoretical arrival time of the next call (GCRA).
    tat: Option<Instant>,
    last_decrease: Option<Instant>,
    /// Start of the current quiet period (no throttle since).
    quiet_since: Option<Instant>,
}

/// An AIMD token bucket (implemented as GCRA): `burst` calls pass at once, then the current
/// rate per second. The rate starts at the ceiling, halves on [`RateLimiter::throttled`],
/// recovers additively, and stays within `floor..=ceiling`.
#[derive(Debug)]
pub struct RateLimiter {
    ceiling: f64,
    floor: f64,
    burst: u32,
    state: Mutex<State>,
}

impl Default for RateLimiter {
    /// 20 per second, burst 10, floor 0.5: the default limit on IAM writes.
    fn default() -> Self {
        Self {
            ceiling: 20.0,
            floor: 0.5,
            burst: 10,
            state: Mutex::new(State {
                rate: 20.0,
                tat: None,
                last_decrease: None,
                quiet_since: None,
            }),
        }
    }
}

fn valid_rate(r: f64) -> bool {
    r.is_finite() && r > 0.0
}

impl RateLimiter {
    /// A bucket letting `burst` calls through at once and then `rate_per_sec` per second
    /// (the ceiling); the floor is the smaller of 0.5/s and the ceiling.
    pub fn new(rate_per_sec: f64, burst: u32) -> Result<Self, RateLimitError> {
        if !valid_rate(rate_per_sec) || Duration::try_from_secs_f64(1.0 / rate_per_sec).is_err() {
            return Err(RateLimitError::Rate(rate_per_sec));
        }
        if burst == 0 {
            return Err(RateLimitError::Burst);
        }
        Ok(Self {
            ceiling: rate_per_sec,
            floor: rate_per_sec.min(0.5),
            burst,
            state: Mutex::new(State {
                rate: rate_per_sec,
                tat: None,
                last_decrease: None,
                quiet_since: None,
            }),
        })
    }

    /// The same with another floor (clamped to the ceiling).
    pub fn with_floor(mut self, floor: f64) -> Result<Self, RateLimitError> {
        if !valid_rate(floor) {
            return Err(RateLimitError::Rate(floor));
        }
        self.floor = floor.min(self.ceiling);
        Ok(self)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere; the numbers are still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The highest rate (the configured one).
    pub fn ceiling(&self) -> f64 {
        self.ceiling
    }

    pub fn floor(&self) -> f64 {
        self.floor
    }

    /// Calls allowed at once.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// The current rate (calls per second).
    pub fn rate_per_sec(&self) -> f64 {
        self.rate_at(Instant::now())
    }

    pub fn rate_at(&self, now: Instant) -> f64 {
        let mut s = self.lock();
        self.recover(&mut s, now);
        s.rate
    }

    fn recover(&self, s: &mut State, now: Instant) {
        let Some(since) = s.quiet_since else {
            return;
        };
        let quiet = now.saturating_duration_since(since);
        let steps = (quiet.as_secs_f64() / QUIET_PERIOD.as_secs_f64()).floor();
        if steps >= 1.0 {
            s.rate = (s.rate + steps * self.ceiling / 10.0).min(self.ceiling);
            s.quiet_since = if s.rate >= self.ceiling {
                None
            } else {
                Some(since + QUIET_PERIOD.mul_f64(steps))
            };
        }
    }

    /// Take a token for a call arriving at `now`; returns when it may go.
    pub fn reserve_at(&self, now: Instant) -> Instant {
        let mut s = self.lock();
        self.recover(&mut s, now);
        let interval = Duration::try_from_secs_f64(1.0 / s.rate)
            .unwrap_or(Duration::from_secs(3600))
            .max(Duration::from_nanos(1));
        let tolerance = interval.saturating_mul(self.burst - 1);
        let t = s.tat.map_or(now, |t| t.max(now));
        let allowed_at = t.checked_sub(tolerance).map_or(now, |a| a.max(now));
        s.tat = Some(t + interval);
        allowed_at
    }

    /// Take a token; how long to wait before the call.
    pub fn reserve(&self) -> Duration {
        let now = Instant::now();
        self.reserve_at(now).saturating_duration_since(now)
    }

    /// Wait for a token.
    pub async fn acquire(&self) {
        let at = self.reserve_at(Instant::now());
        tokio::time::sleep_until(at).await;
    }

    /// A throttling answer at `now`: halve the rate (once per [`DECREASE_GAP`]) and restart
    /// the quiet period. Returns the new rate.
    pub fn throttled_at(&self, now: Instant) -> f64 {
        let mut s = self.lock();
        self.recover(&mut s, now);
        let may_decrease = s
            .last_decrease
            .is_none_or(|d| now.saturating_duration_since(d) >= DECREASE_GAP);
        if may_decrease {
            s.rate = (s.rate / 2.0).max(self.floor);
            s.last_decrease = Some(now);
            // Calls already scheduled at the old rate keep their slots; the next ones are
            // spaced at the new rate from the end of that schedule.
        }
        s.quiet_since = Some(now);
        s.rate
    }

    pub fn throttled(&self) -> f64 {
        self.throttled_at(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn rate_limiter_rejects_bad_settings() {
        assert_eq!(
            RateLimiter::new(0.0, 10).unwrap_err(),
            RateLimitError::Rate(0.0)
        );
        assert!(RateLimiter::new(-1.0, 10).is_err());
        assert!(RateLimiter::new(f64::NAN, 10).is_err());
        assert!(RateLimiter::new(f64::INFINITY, 10).is_err());
        assert_eq!(RateLimiter::new(5.0, 0).unwrap_err(), RateLimitError::Burst);
        assert!(RateLimitError::Burst.to_string().contains("at least 1"));
        assert!(RateLimiter::new(5.0, 1).unwrap().with_floor(0.0).is_err());
        let r = RateLimiter::new(5.0, 10).unwrap();
        assert_eq!((r.ceiling(), r.burst(), r.floor()), (5.0, 10, 0.5));
        let d = RateLimiter::default();
        assert_eq!((d.ceiling(), d.burst(), d.floor()), (20.0, 10, 0.5));
        assert_eq!(RateLimiter::new(0.2, 1).unwrap().floor(), 0.2);
    }

    #[test]
    fn burst_then_rate_on_synthetic_time() {
        let r = RateLimiter::new(10.0, 3).unwrap(); // 100 ms per token after the burst
        let t0 = Instant::now();
        let got: Vec<Duration> = (0..6).map(|_| r.reserve_at(t0) - t0).collect();
        assert_eq!(got, vec![ms(0), ms(0), ms(0), ms(100), ms(200), ms(300)]);
        // idle for a minute: the burst is available again, no more
        let later = t0 + Duration::from_secs(60);
        let allowed_now = (0..5).filter(|_| r.reserve_at(later) == later).count();
        assert_eq!(allowed_now, 3);
    }

    #[test]
    fn throttling_halves_once_per_gap_down_to_the_floor() {
        let r = RateLimiter::new(20.0, 1).unwrap().with_floor(2.0).unwrap();
        let t0 = Instant::now();
        assert_eq!(r.throttled_at(t0), 10.0);
        // the rest of the same burst of throttles is the same signal
        assert_eq!(r.throttled_at(t0 + ms(10)), 10.0);
        assert_eq!(r.throttled_at(t0 + ms(500)), 10.0);
        // throttles every half second: one halving per second, never a quiet second
        let mut got = Vec::new();
        for i in 2..=8 {
            got.push(r.throttled_at(t0 + ms(500 * i)));
        }
        assert_eq!(
            got,
            vec![5.0, 5.0, 2.5, 2.5, 2.0, 2.0, 2.0],
            "never below the floor"
        );
    }

    #[test]
    fn recovery_is_additive_after_quiet_periods_up_to_the_ceiling() {
        let r = RateLimiter::new(20.0, 1).unwrap();
        let t0 = Instant::now();
        r.throttled_at(t0);
        r.throttled_at(t0 + ms(600));
        r.throttled_at(t0 + ms(1200)); // 5/s, quiet since t0+1.2s
        assert_eq!(r.rate_at(t0 + ms(2199)), 5.0, "not quiet long enough");
        assert_eq!(
            r.rate_at(t0 + ms(2200)),
            7.0,
            "+ceiling/10 per quiet period"
        );
        assert_eq!(r.rate_at(t0 + ms(4700)), 11.0);
        // a throttle restarts the quiet period
        assert_eq!(r.throttled_at(t0 + ms(4800)), 5.5);
        assert_eq!(r.rate_at(t0 + ms(5700)), 5.5);
        assert_eq!(r.rate_at(t0 + ms(5800)), 7.5);
        assert_eq!(r.rate_at(t0 + Duration::from_secs(600)), 20.0, "capped");
    }

    #[test]
    fn a_halved_bucket_spaces_calls_further_apart() {
        let r = RateLimiter::new(10.0, 1).unwrap();
        let t0 = Instant::now();
        assert_eq!(r.reserve_at(t0), t0);
        assert_eq!(r.reserve_at(t0) - t0, ms(100));
        r.throttled_at(t0); // 5/s
        assert_eq!(
            r.reserve_at(t0) - t0,
            ms(200),
            "the next slot after the old one"
        );
        assert_eq!(r.reserve_at(t0) - t0, ms(400));
    }

    #[tokio::test]
    async fn acquire_waits_for_the_token() {
        let r = RateLimiter::new(50.0, 3).unwrap(); // 20 ms per token after the burst
        let start = Instant::now();
        for _ in 0..3 {
            tokio::time::timeout(Duration::from_secs(5), r.acquire())
                .await
                .unwrap();
        }
        for i in 1..=3u32 {
            tokio::time::timeout(Duration::from_secs(5), r.acquire())
                .await
                .unwrap();
            assert!(start.elapsed() >= ms(20) * i);
        }
    }
}
