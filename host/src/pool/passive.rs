//! Passive ejection state of one backend: failures in a row from real traffic, and the
//! ejection they led to (exponential in the number of ejections in a row, capped).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::config::PassiveConfig;

/// Live passive-health state of one backend, shared across reloads. Times are milliseconds on
/// the pool clock ([`super::clock_ms`]).
#[derive(Debug, Default)]
pub(super) struct Passive {
    /// Failures since the last success (not counted while ejected).
    consecutive: AtomicU32,
    /// End of the current or last ejection; 0: never ejected.
    ejected_until: AtomicU64,
    /// Length of the last ejection.
    last_ejection: AtomicU64,
    /// Ejections in a row (the `k` of `base × 2^(k-1)`).
    streak: AtomicU32,
}

impl Passive {
    /// Whether the backend is ejected at `now`.
    pub(super) fn is_ejected(&self, now: u64) -> bool {
        now < self.ejected_until.load(Ordering::Acquire)
    }

    /// Failures in a row so far.
    pub(super) fn consecutive_failures(&self) -> u32 {
        self.consecutive.load(Ordering::Relaxed)
    }

    /// A success ends the run of failures.
    pub(super) fn success(&self) {
        // A load first: the common case writes nothing, so the cache line stays shared.
        if self.consecutive.load(Ordering::Relaxed) != 0 {
            self.consecutive.store(0, Ordering::Relaxed);
        }
    }

    /// Counts a failure; returns the run length if it reached `threshold` (the caller decides
    /// whether to eject). Answers of requests sent before an ejection do not count.
    pub(super) fn failure(&self, now: u64, threshold: u32) -> Option<u32> {
        if self.is_ejected(now) {
            return None;
        }
        let run = self.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
        (run >= threshold).then_some(run)
    }

    /// Ejects the backend from `now`; returns for how long, or `None` if another thread
    /// ejected it first. The streak starts over when the backend stayed in for at least as long
    /// as its last ejection lasted.
    pub(super) fn eject(&self, now: u64, config: &PassiveConfig) -> Option<(Duration, u32)> {
        let until = self.ejected_until.load(Ordering::Acquire);
        if now < until {
            return None;
        }
        let last = self.last_ejection.load(Ordering::Relaxed);
        let streak = if until == 0 || now.saturating_sub(until) >= last {
            1
        } else {
            self.streak.load(Ordering::Relaxed).saturating_add(1)
        };
        let length = ejection_length(config, streak);
        let millis = u64::try_from(length.as_millis()).unwrap_or(u64::MAX).max(1);
        self.ejected_until
            .compare_exchange(
                until,
                now.saturating_add(millis),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .ok()?;
        self.streak.store(streak, Ordering::Relaxed);
        self.last_ejection.store(millis, Ordering::Relaxed);
        self.consecutive.store(0, Ordering::Relaxed);
        Some((length, streak))
    }
}

/// `base × 2^(streak-1)`, at most `max`.
pub(super) fn ejection_length(config: &PassiveConfig, streak: u32) -> Duration {
    let doublings = streak.saturating_sub(1).min(30);
    config
        .base_ejection
        .checked_mul(1 << doublings)
        .map_or(config.max_ejection, |d| d.min(config.max_ejection))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> PassiveConfig {
        PassiveConfig {
            consecutive_failures: 3,
            base_ejection: Duration::from_millis(100),
            max_ejection: Duration::from_millis(350),
            ..PassiveConfig::default()
        }
    }

    #[test]
    fn ejection_doubles_and_is_capped() {
        let c = config();
        let lengths: Vec<u128> = (1..=5)
            .map(|k| ejection_length(&c, k).as_millis())
            .collect();
        assert_eq!(lengths, [100, 200, 350, 350, 350]);
        assert_eq!(ejection_length(&c, u32::MAX), c.max_ejection);
    }

    #[test]
    fn failures_in_a_row_reach_the_threshold_and_a_success_resets_them() {
        let p = Passive::default();
        assert_eq!(p.failure(0, 3), None);
        assert_eq!(p.failure(0, 3), None);
        p.success();
        assert_eq!(p.failure(0, 3), None);
        assert_eq!(p.failure(0, 3), None);
        assert_eq!(p.failure(0, 3), Some(3));
    }

    #[test]
    fn streak_grows_while_failing_and_restarts_after_a_quiet_spell() {
        let c = config();
        let p = Passive::default();
        assert_eq!(p.eject(1000, &c), Some((Duration::from_millis(100), 1)));
        assert!(p.is_ejected(1099));
        assert_eq!(p.eject(1050, &c), None, "already ejected");
        assert_eq!(p.failure(1050, 1), None, "not counted while ejected");
        assert!(!p.is_ejected(1100));
        // Failing again right after readmission: twice as long.
        assert_eq!(p.eject(1110, &c), Some((Duration::from_millis(200), 2)));
        // In for longer than the last ejection (200 ms): back to the base.
        assert_eq!(
            p.eject(1310 + 200, &c),
            Some((Duration::from_millis(100), 1))
        );
    }
}
