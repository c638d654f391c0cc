//! One entry's bookkeeping: its last good answer and failures, and when to look it up next.

use std::time::{Duration, Instant};

use super::Discovered;
use crate::config::{BackendConfig, DnsConfig};

/// What one entry's lookups last gave.
#[derive(Debug, Default)]
pub(super) struct EntryState {
    /// The last good answer (empty until the first lookup succeeds).
    pub(crate) answer: Vec<BackendConfig>,
    /// When a lookup last succeeded.
    pub(crate) answered_at: Option<Instant>,
    /// When the answer last changed.
    pub(crate) changed_at: Option<Instant>,
    /// The TTL of the last good answer.
    pub(crate) ttl: Option<Duration>,
    /// The last failure and when it happened (kept after a success, for a look back).
    pub(crate) last_error: Option<(String, Instant)>,
    /// Lookups failed since the last success.
    pub(crate) failures_in_a_row: u32,
}

/// How a good answer differs from the one before.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Change {
    pub(crate) added: usize,
    pub(crate) removed: usize,
}

impl EntryState {
    /// Takes a good answer; returns how it changed the entry's backends, `None` if it did not
    /// (a weight or label change counts, with nothing added or removed).
    pub(crate) fn answered(&mut self, found: Discovered, now: Instant) -> Option<Change> {
        self.failures_in_a_row = 0;
        self.answered_at = Some(now);
        self.ttl = Some(found.ttl);
        if self.answer == found.backends {
            return None;
        }
        let change = Change {
            added: count_missing(&found.backends, &self.answer),
            removed: count_missing(&self.answer, &found.backends),
        };
        self.answer = found.backends;
        self.changed_at = Some(now);
        Some(change)
    }

    /// Records a failed lookup; the answer stays. Returns whether it is worth a warning: the
    /// first of a streak, or a reason other than the last one.
    pub(crate) fn failed(&mut self, reason: String, now: Instant) -> bool {
        self.failures_in_a_row += 1;
        let new_reason = self.last_error.as_ref().is_none_or(|(r, _)| *r != reason);
        self.last_error = Some((reason, now));
        self.failures_in_a_row == 1 || new_reason
    }
}

/// When to look an entry up again: after a good answer its TTL within `min_refresh` ..
/// `max_refresh`; after a failure `min_refresh`, doubling with each failure in a row up to
/// `max_refresh`.
#[derive(Debug)]
pub(super) struct Schedule {
    min: Duration,
    max: Duration,
    /// The wait after the next failure.
    backoff: Duration,
}

impl Schedule {
    pub(crate) fn new(settings: &DnsConfig) -> Self {
        Schedule {
            min: settings.min_refresh,
            max: settings.max_refresh,
            backoff: settings.min_refresh,
        }
    }

    pub(crate) fn after_success(&mut self, ttl: Duration) -> Duration {
        self.backoff = self.min;
        ttl.clamp(self.min, self.max)
    }

    pub(crate) fn after_failure(&mut self) -> Duration {
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(self.max);
        wait
    }
}

/// How many addresses of `a` are not in `b`.
fn count_missing(a: &[BackendConfig], b: &[BackendConfig]) -> usize {
    a.iter()
        .filter(|x| !b.iter().any(|y| y.address == x.address))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(addresses: &[&str], ttl_s: u64) -> Discovered {
        Discovered {
            backends: addresses
                .iter()
                .map(|a| BackendConfig {
                    address: (*a).into(),
                    weight: 1,
                    labels: Vec::new(),
                    tls: None,
                    protocol: Default::default(),
                })
                .collect(),
            ttl: Duration::from_secs(ttl_s),
        }
    }

    #[test]
    fn failures_keep_the_answer_and_warn_once_per_streak_and_reason() {
        let now = Instant::now();
        let mut s = EntryState::default();
        assert_eq!(
            s.answered(found(&["a:1", "b:1"], 5), now),
            Some(Change {
                added: 2,
                removed: 0
            })
        );
        assert_eq!(s.answered(found(&["a:1", "b:1"], 5), now), None);
        assert!(s.failed("no answer in time".into(), now));
        assert!(!s.failed("no answer in time".into(), now));
        assert!(s.failed("no such name (NXDOMAIN)".into(), now));
        assert_eq!((s.answer.len(), s.failures_in_a_row), (2, 3));
        assert_eq!(
            s.answered(found(&["b:1", "c:1"], 5), now),
            Some(Change {
                added: 1,
                removed: 1
            })
        );
        assert_eq!(s.failures_in_a_row, 0);
        assert!(
            s.last_error.is_some(),
            "the last error stays for a look back"
        );
        assert!(
            s.failed("no answer in time".into(), now),
            "a new streak warns again"
        );
    }

    #[test]
    fn schedule_clamps_the_ttl_and_backs_off_after_failures() {
        let settings = DnsConfig {
            min_refresh: Duration::from_secs(1),
            max_refresh: Duration::from_secs(5),
            ..DnsConfig::default()
        };
        let mut schedule = Schedule::new(&settings);
        let secs = Duration::from_secs;
        assert_eq!(schedule.after_success(secs(0)), secs(1));
        assert_eq!(schedule.after_success(secs(3)), secs(3));
        assert_eq!(schedule.after_success(secs(300)), secs(5));
        let waits: Vec<_> = (0..5).map(|_| schedule.after_failure()).collect();
        assert_eq!(waits, [secs(1), secs(2), secs(4), secs(5), secs(5)]);
        assert_eq!(schedule.after_success(secs(2)), secs(2));
        assert_eq!(
            schedule.after_failure(),
            secs(1),
            "a success resets the backoff"
        );
    }
}
