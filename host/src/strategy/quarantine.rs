//! Fault accounting per loaded strategy: quarantine of a module that faults too often, and a
//! rate limit on fault log lines so a faulting module cannot flood the log.
//!
//! The hot path pays one relaxed atomic load while a strategy is healthy; everything else runs
//! only when a fault happens.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::Fault;
use crate::config::QuarantineConfig;

/// At most one fault log line per strategy per this interval; the others are counted.
const LOG_INTERVAL_MS: u64 = 1000;

/// Milliseconds since the process started (never 0, so 0 can mean "unset").
fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX) + 1
}

/// Fault state of one loaded strategy.
#[derive(Debug)]
pub(super) struct FaultTracker {
    config: QuarantineConfig,
    /// When quarantine ends ([`now_ms`] time); 0 while not quarantined.
    quarantined_until: AtomicU64,
    /// Faults since load.
    total: AtomicU64,
    /// When the last fault log line was written, and faults not logged since.
    last_log_ms: AtomicU64,
    suppressed: AtomicU64,
    window: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    started_ms: u64,
    /// The strategy's calls before the one whose fault started the window.
    calls_before: u64,
    faults: u64,
    last_fault: Option<LastFault>,
    quarantines: u64,
    quarantine_reason: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
struct LastFault {
    kind: &'static str,
    message: String,
    at_unix: u64,
}

/// What the admin status shows about a strategy's faults.
#[derive(Clone, Debug, Serialize)]
pub struct FaultStatus {
    /// Faults since the strategy was loaded.
    pub faults_total: u64,
    /// Whether traffic is on the fallback because of too many faults.
    pub quarantined: bool,
    /// Why it was quarantined (last time).
    pub quarantine_reason: Option<String>,
    /// Seconds until the strategy is tried again.
    pub quarantine_remaining_s: Option<f64>,
    /// How often it has been quarantined since load.
    pub quarantines: u64,
    /// The most recent fault.
    pub last_fault: Option<serde_json::Value>,
}

impl FaultTracker {
    /// A tracker with no faults.
    pub(super) fn new(config: QuarantineConfig) -> Self {
        FaultTracker {
            config,
            quarantined_until: AtomicU64::new(0),
            total: AtomicU64::new(0),
            last_log_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
            window: Mutex::new(Window::default()),
        }
    }

    /// Whether the strategy is out of the request path now. After the cool-down it is tried
    /// again; a fault then quarantines it again only by the same rule.
    pub(super) fn is_quarantined(&self) -> bool {
        let until = self.quarantined_until.load(Ordering::Relaxed);
        if until == 0 {
            return false;
        }
        if now_ms() < until {
            return true;
        }
        // Cool-down over: back in the request path with a fresh window.
        if self
            .quarantined_until
            .compare_exchange(until, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            let mut w = self.lock();
            w.started_ms = 0;
            tracing::warn!("strategy quarantine over; trying the strategy again");
        }
        false
    }

    /// Records a fault of `strategy`, which has had `calls` calls so far, the faulting one
    /// included. Returns whether this fault put it in quarantine.
    pub(super) fn record(&self, strategy: &str, calls: u64, fault: &Fault) -> bool {
        self.total.fetch_add(1, Ordering::Relaxed);
        let now = now_ms();
        self.log(strategy, now, fault);
        let mut w = self.lock();
        let window_ms = u64::try_from(self.config.window.as_millis()).unwrap_or(u64::MAX);
        if w.started_ms == 0 || now.saturating_sub(w.started_ms) > window_ms {
            w.started_ms = now;
            w.calls_before = calls.saturating_sub(1);
            w.faults = 0;
        }
        w.faults += 1;
        w.last_fault = Some(LastFault {
            kind: fault.kind(),
            message: fault.to_string(),
            at_unix: unix_now(),
        });
        let calls = calls.saturating_sub(w.calls_before).max(1);
        let ratio = w.faults as f64 / calls as f64;
        let trip =
            w.faults >= u64::from(self.config.min_faults) && ratio >= self.config.fault_ratio;
        if !trip || self.quarantined_until.load(Ordering::Relaxed) != 0 {
            return false;
        }
        let cooldown = u64::try_from(self.config.cooldown.as_millis()).unwrap_or(u64::MAX);
        self.quarantined_until
            .store(now.saturating_add(cooldown).max(1), Ordering::Relaxed);
        w.quarantines += 1;
        let reason = format!(
            "{} faults in {} calls within {:?} (last: {fault})",
            w.faults, calls, self.config.window
        );
        tracing::error!(
            strategy,
            reason = %reason,
            cooldown = ?self.config.cooldown,
            "strategy quarantined: all traffic on the fallback until the cool-down ends or a new file replaces it"
        );
        w.quarantine_reason = Some(reason);
        w.started_ms = 0;
        true
    }

    /// The fault status for the admin API.
    pub(super) fn status(&self) -> FaultStatus {
        let until = self.quarantined_until.load(Ordering::Relaxed);
        let now = now_ms();
        let quarantined = until != 0 && now < until;
        let w = self.lock();
        FaultStatus {
            faults_total: self.total.load(Ordering::Relaxed),
            quarantined,
            quarantine_reason: w.quarantine_reason.clone(),
            quarantine_remaining_s: quarantined
                .then(|| Duration::from_millis(until - now).as_secs_f64()),
            quarantines: w.quarantines,
            last_fault: w
                .last_fault
                .as_ref()
                .and_then(|f| serde_json::to_value(f).ok()),
        }
    }

    /// Logs the fault unless one was logged within the last second (then it is counted and the
    /// next line says how many were not shown).
    fn log(&self, strategy: &str, now: u64, fault: &Fault) {
        let last = self.last_log_ms.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < LOG_INTERVAL_MS {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self
            .last_log_ms
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
        tracing::warn!(
            strategy,
            kind = fault.kind(),
            %fault,
            suppressed,
            "strategy fault; request served by the fallback"
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_strategy_faulting_on_every_call_is_quarantined_counting_each_call() {
        let tracker = FaultTracker::new(QuarantineConfig::default());
        let quarantined: Vec<bool> = (1..=5)
            .map(|call| tracker.record("s", call, &Fault::BadAnswer(9)))
            .collect();
        assert_eq!(quarantined, [false, false, false, false, true]);
        let reason = tracker.status().quarantine_reason.unwrap_or_default();
        assert!(reason.starts_with("5 faults in 5 calls "), "{reason}");
    }

    #[test]
    fn the_ratio_counts_the_call_that_started_the_window() {
        let tracker = FaultTracker::new(QuarantineConfig::default());
        // 5 faults in calls 1 to 26: 0.19, under the 0.2 ratio.
        for call in [1, 8, 15, 22, 26] {
            assert!(!tracker.record("s", call, &Fault::Timeout));
        }
        // A sixth in 27 calls is over it.
        assert!(tracker.record("s", 27, &Fault::Timeout));
        let reason = tracker.status().quarantine_reason.unwrap_or_default();
        assert!(reason.starts_with("6 faults in 27 calls "), "{reason}");
    }
}
