//! The AIMD token bucket: one for writes, one for reads.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Without a throttle for this long, a bucket grows by a tenth of its ceiling.
pub const QUIET_PERIOD: Duration = Duration::from_secs(1);
/// At most one halving per this period: the throttles of one burst are one signal.
pub const DECREASE_GAP: Duration = Duration::from_secs(1);
/// How long a halving is watched before it is judged (see [`RateLimiter::throttled_at`]).
pub const PROBE_PERIOD: Duration = Duration::from_secs(2);
/// After a halving that only cost throughput, throttles do not halve the rate for this long.
pub const HOLD_PERIOD: Duration = Duration::from_secs(30);
/// A window counts as saturated (calls waited for the bucket) when its calls reached this
/// share of the rate.
const SATURATED: f64 = 0.8;
/// A halving "cost throughput" when the successful calls per second fell below this share
/// of what they were before it.
const KEPT_THROUGHPUT: f64 = 0.75;
/// While holding, a window whose share of throttles exceeds the probe's by more than this is
/// not quiet.
const SHARE_MARGIN: f64 = 0.05;

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
    /// The current one-second window of calls and throttles, and the one before it.
    window: Window,
    previous: Option<Window>,
    /// A halving being watched: did it keep the throughput (a limit on our rate) or halve
    /// it (throttling that does not depend on our rate)?
    probe: Option<Probe>,
    /// Until then, throttles do not halve the rate (the last probe showed they are not about
    /// it), and a window counts as quiet when its share of throttles is at most
    /// `tolerated_share` (the share the probe saw) plus a margin.
    hold_until: Option<Instant>,
    tolerated_share: f64,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    rate: f64,
    calls: u32,
    throttles: u32,
}

impl Window {
    fn new(start: Instant, rate: f64) -> Self {
        Window {
            start,
            rate,
            calls: 0,
            throttles: 0,
        }
    }

    /// Throttles per call (0 without calls).
    fn share(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            f64::from(self.throttles) / f64::from(self.calls)
        }
    }

    /// Successful calls per second over `secs`, if the calls waited for the bucket (else
    /// the rate was not what limited them and the number says nothing about it).
    fn saturated_ok_rate(&self, rate: f64, secs: f64) -> Option<f64> {
        let calls = f64::from(self.calls);
        (secs > 0.0 && calls >= SATURATED * rate * secs)
            .then(|| f64::from(self.calls.saturating_sub(self.throttles)) / secs)
    }
}

#[derive(Debug, Clone, Copy)]
struct Probe {
    rate_before: f64,
    ok_rate_before: f64,
    /// Calls and throttles since the halving (its `start` is the halving's time).
    since: Window,
}

impl State {
    fn new(rate: f64) -> Self {
        State {
            rate,
            tat: None,
            last_decrease: None,
            quiet_since: None,
            window: Window::new(Instant::now(), rate),
            previous: None,
            probe: None,
            hold_until: None,
            tolerated_share: 0.0,
        }
    }

    /// Move the windows on to `now`.
    fn roll(&mut self, now: Instant, floor: f64) {
        let elapsed = now.saturating_duration_since(self.window.start);
        if elapsed >= WINDOW {
            let excess = self.window.share() - self.tolerated_share;
            if self.holding(now) && excess > SHARE_MARGIN {
                // More throttles than the probe saw: these follow our rate. Down to the rate
                // whose calls would have gone through, no growth for now.
                self.rate = (self.rate * (1.0 - excess.min(0.5))).max(floor);
                self.quiet_since = Some(now);
            }
            self.previous = if elapsed >= WINDOW * 2 {
                None // a window without calls in between: nothing to compare with
            } else {
                Some(self.window)
            };
            self.window = Window::new(now, self.rate);
        }
    }

    /// A call (`throttle` false, counted when its token is taken) or a throttling answer.
    fn count(&mut self, throttle: bool) {
        let probe = self.probe.as_mut().map(|p| &mut p.since);
        for w in std::iter::once(&mut self.window).chain(probe) {
            if throttle {
                w.throttles = w.throttles.saturating_add(1);
            } else {
                w.calls = w.calls.saturating_add(1);
            }
        }
    }

    /// Judge a halving once it has been watched for [`PROBE_PERIOD`]: when the calls waited
    /// for the bucket and yet fewer got through per second than before, the throttling did
    /// not depend on our rate (halving it only halved the work done): undo the halving and
    /// stop halving for [`HOLD_PERIOD`]. Otherwise (the same work with fewer throttles, or
    /// too few calls to tell) the halving stands.
    fn judge_probe(&mut self, now: Instant) {
        let Some(p) = self.probe else { return };
        let watched = now.saturating_duration_since(p.since.start);
        if watched < PROBE_PERIOD {
            return;
        }
        self.probe = None;
        let Some(ok_after) = p
            .since
            .saturated_ok_rate(p.since.rate, watched.as_secs_f64())
        else {
            return;
        };
        if ok_after < KEPT_THROUGHPUT * p.ok_rate_before {
            // Back to a rate that gets the old throughput through at the share of throttles
            // the halved rate still met: the old rate when that share stayed (throttles
            // whatever the rate), about the old throughput when it fell to nothing (a limit
            // near the old throughput, overshot by the halving).
            let share = p.since.share().min(0.95);
            let undo = p.rate_before.min(p.ok_rate_before / (1.0 - share));
            self.rate = self.rate.max(undo).min(p.rate_before);
            self.hold_until = Some(now + HOLD_PERIOD);
            self.tolerated_share = share;
        }
    }

    fn holding(&self, now: Instant) -> bool {
        self.hold_until.is_some_and(|h| now < h)
    }
}

/// The window in which calls and throttles are counted.
const WINDOW: Duration = Duration::from_secs(1);

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
            state: Mutex::new(State::new(20.0)),
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
            state: Mutex::new(State::new(rate_per_sec)),
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
        self.advance(&mut s, now);
        s.rate
    }

    /// Bring the state to `now`: windows, a pending probe, additive recovery.
    fn advance(&self, s: &mut State, now: Instant) {
        s.roll(now, self.floor);
        s.judge_probe(now);
        self.recover(s, now);
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
        self.advance(&mut s, now);
        s.count(false);
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
    ///
    /// A halving is watched ([`PROBE_PERIOD`]) when the calls before it waited for the
    /// bucket: IAM's limits are on the rate, so a halving that answers a real limit keeps
    /// the successful calls per second; one that halves them shows throttling that does not
    /// follow our rate (a shared limit spent by someone else, injected faults), and is
    /// undone, with no halving for [`HOLD_PERIOD`] (the rate grows back meanwhile). Without
    /// this, throttles at a steady share of calls would hold the rate at its floor for good.
    pub fn throttled_at(&self, now: Instant) -> f64 {
        let mut s = self.lock();
        self.advance(&mut s, now);
        s.count(true);
        if s.holding(now) {
            return s.rate; // quiet is judged per window meanwhile (see `State::roll`)
        }
        s.hold_until = None;
        let may_decrease = s.probe.is_none()
            && s.last_decrease
                .is_none_or(|d| now.saturating_duration_since(d) >= DECREASE_GAP);
        if may_decrease {
            let before = s.rate;
            s.rate = (s.rate / 2.0).max(self.floor);
            s.last_decrease = Some(now);
            // Calls already scheduled at the old rate keep their slots; the next ones are
            // spaced at the new rate from the end of that schedule.
            let ok_rate_before = s.previous.and_then(|w| w.saturated_ok_rate(w.rate, 1.0));
            if let Some(ok_rate_before) = ok_rate_before.filter(|_| s.rate < before) {
                s.probe = Some(Probe {
                    rate_before: before,
                    ok_rate_before,
                    since: Window::new(now, s.rate),
                });
            }
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

    /// A client that always has work (each call reserved as soon as the previous one went)
    /// against `server`, which answers call `i` at `t` with a throttle (true) or not.
    /// Returns, over the last `tail` seconds: successful calls per second, the share of
    /// calls throttled, and the rate at the end.
    fn simulate(
        r: &RateLimiter,
        secs: u64,
        tail: u64,
        mut server: impl FnMut(Instant, u64) -> bool,
    ) -> (f64, f64, f64) {
        let t0 = Instant::now();
        let (end, tail_from) = (
            t0 + Duration::from_secs(secs),
            t0 + Duration::from_secs(secs - tail),
        );
        let (mut t, mut ok, mut throttled) = (t0, 0u32, 0u32);
        for i in 0.. {
            t = r.reserve_at(t).max(t);
            if t >= end {
                break;
            }
            let refused = server(t, i);
            if refused {
                r.throttled_at(t);
            }
            if t >= tail_from {
                ok += u32::from(!refused);
                throttled += u32::from(refused);
            }
        }
        let calls = f64::from(ok + throttled).max(1.0);
        (
            f64::from(ok) / tail as f64,
            f64::from(throttled) / calls,
            r.rate_at(end),
        )
    }

    #[test]
    fn throttling_at_a_steady_share_whatever_the_rate_does_not_hold_the_rate_at_the_floor() {
        // 3 calls in 10 refused at any rate (as the fault proxy does): halving only halves
        // the work done, so the halving is undone and the rate stays near its ceiling.
        let r = RateLimiter::new(20.0, 1).unwrap();
        let (ok, share, rate) = simulate(&r, 120, 60, |_, i| i % 10 < 3);
        eprintln!("steady share: ok {ok:.2}/s, share {share:.2}, rate {rate:.2}");
        assert!(ok >= 0.7 * 20.0 * 0.6, "{ok} successful calls/s");
        assert!(rate >= 10.0, "rate {rate}");
    }

    #[test]
    fn a_limit_on_the_rate_is_found_and_kept() {
        // IAM-like: the server lets 5 calls/s through (burst 5) and throttles the rest.
        let server_rate = 5.0;
        let interval = Duration::from_secs_f64(1.0 / server_rate);
        let mut tat: Option<Instant> = None;
        let server = move |t: Instant, _| {
            let next = tat.map_or(t, |x| x.max(t));
            if next.saturating_duration_since(t) > interval * 4 {
                return true;
            }
            tat = Some(next + interval);
            false
        };
        let r = RateLimiter::new(20.0, 1).unwrap();
        let (ok, share, rate) = simulate(&r, 120, 60, server);
        eprintln!("server limit 5/s: ok {ok:.2}/s, share {share:.2}, rate {rate:.2}");
        assert!(ok >= 0.9 * server_rate, "{ok} successful calls/s");
        assert!(share <= 0.25, "{share} of the calls throttled");
        assert!(rate <= 12.0, "rate {rate}");
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
