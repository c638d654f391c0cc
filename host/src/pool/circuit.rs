//! The circuit breaker of one backend: closed → open when the failure ratio over a sliding
//! window crosses the threshold, half-open after a cooldown (a few probe requests let
//! through), closed again when every probe succeeds, open again on a probe's failure.
//!
//! Lock-free: the window is a ring of ten buckets of atomic counters, so a count lost in a race
//! at a bucket's rollover is possible; a circuit decision does not need exact counts.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

use crate::config::CircuitBreakerConfig;

/// Buckets in the sliding window.
const BUCKETS: usize = 10;

/// A circuit's state; the numbers are those of the `lbhost_backend_circuit_state` gauge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CircuitState {
    /// Requests flow; outcomes are counted.
    Closed = 0,
    /// The backend is ineligible until the cooldown ends.
    Open = 1,
    /// A few probe requests are let through to decide.
    HalfOpen = 2,
}

impl CircuitState {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => CircuitState::Open,
            2 => CircuitState::HalfOpen,
            _ => CircuitState::Closed,
        }
    }

    /// A word for logs and the status page.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half-open",
        }
    }
}

/// What an outcome did to the circuit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Transition {
    /// Closed → open: `failures` of `total` requests in the window failed.
    Opened { failures: u32, total: u32 },
    /// Half-open → open: a probe failed.
    Reopened,
    /// Half-open → closed: every probe succeeded.
    Closed,
}

/// Live circuit state of one backend, shared across reloads. Times are milliseconds on the pool
/// clock.
#[derive(Debug, Default)]
pub(super) struct Circuit {
    state: AtomicU8,
    /// When an open circuit may turn half-open.
    open_until: AtomicU64,
    /// Probe requests a half-open circuit may still let through.
    probes_left: AtomicU32,
    /// Probes that succeeded since the circuit turned half-open.
    probe_successes: AtomicU32,
    window: Window,
}

/// May a request go to this backend, and is it a probe?
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Admission {
    /// Closed: a normal request.
    Normal,
    /// Half-open: one of the probes. `last` when no probe is left after it.
    Probe { last: bool },
    /// Open, or half-open with every probe out.
    Refused,
}

impl Circuit {
    /// The state now.
    pub(super) fn state(&self) -> CircuitState {
        CircuitState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Whether a strategy may be offered this backend: closed, or half-open with a probe left.
    pub(super) fn lets_through(&self) -> bool {
        match self.state() {
            CircuitState::Closed => true,
            CircuitState::Open => false,
            CircuitState::HalfOpen => self.probes_left.load(Ordering::Acquire) > 0,
        }
    }

    /// Takes permission for one request.
    pub(super) fn admit(&self) -> Admission {
        match self.state() {
            CircuitState::Closed => Admission::Normal,
            CircuitState::Open => Admission::Refused,
            CircuitState::HalfOpen => {
                match self
                    .probes_left
                    .try_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                {
                    Ok(before) => Admission::Probe { last: before == 1 },
                    Err(_) => Admission::Refused,
                }
            }
        }
    }

    /// Gives back a probe permission whose request ended without an outcome (the client left).
    /// Returns whether the circuit lets requests through again because of it.
    pub(super) fn release_probe(&self) -> bool {
        self.state() == CircuitState::HalfOpen
            && self.probes_left.fetch_add(1, Ordering::AcqRel) == 0
    }

    /// Records one outcome at `now`. In half-open only probes' outcomes count; in open none do
    /// (they belong to requests sent before it opened).
    pub(super) fn record(
        &self,
        ok: bool,
        probe: bool,
        now: u64,
        config: &CircuitBreakerConfig,
    ) -> Option<Transition> {
        match self.state() {
            CircuitState::Closed => {
                let width = bucket_width(config);
                self.window.add(ok, now, width);
                if ok {
                    return None;
                }
                let (total, failures) = self.window.sum(now, width);
                let tripped = total >= config.min_requests
                    && f64::from(failures) >= config.failure_ratio * f64::from(total);
                (tripped && self.open(CircuitState::Closed, now, config))
                    .then_some(Transition::Opened { failures, total })
            }
            CircuitState::Open => None,
            CircuitState::HalfOpen if !probe => None,
            CircuitState::HalfOpen if !ok => self
                .open(CircuitState::HalfOpen, now, config)
                .then_some(Transition::Reopened),
            CircuitState::HalfOpen => {
                let successes = self.probe_successes.fetch_add(1, Ordering::AcqRel) + 1;
                if successes < config.half_open_probes {
                    return None;
                }
                self.window.clear();
                self.state
                    .compare_exchange(
                        CircuitState::HalfOpen as u8,
                        CircuitState::Closed as u8,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    )
                    .is_ok()
                    .then_some(Transition::Closed)
            }
        }
    }

    /// Open → half-open once the cooldown is over; returns whether it turned.
    pub(super) fn try_half_open(&self, now: u64, probes: u32) -> bool {
        if self.state() != CircuitState::Open || now < self.open_until.load(Ordering::Acquire) {
            return false;
        }
        // Set up the probes before anyone can see the half-open state.
        self.probes_left.store(probes, Ordering::Release);
        self.probe_successes.store(0, Ordering::Release);
        self.state
            .compare_exchange(
                CircuitState::Open as u8,
                CircuitState::HalfOpen as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Closes the circuit and forgets the window (circuit breaking turned off). Returns whether
    /// it was not closed.
    pub(super) fn reset(&self) -> bool {
        self.window.clear();
        self.state
            .swap(CircuitState::Closed as u8, Ordering::AcqRel)
            != CircuitState::Closed as u8
    }

    fn open(&self, from: CircuitState, now: u64, config: &CircuitBreakerConfig) -> bool {
        let cooldown = u64::try_from(config.cooldown.as_millis()).unwrap_or(u64::MAX);
        // The deadline first: whoever sees the open state sees its end too.
        self.open_until
            .store(now.saturating_add(cooldown), Ordering::Release);
        self.state
            .compare_exchange(
                from as u8,
                CircuitState::Open as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }
}

/// Milliseconds per bucket: a tenth of the window, at least 1.
fn bucket_width(config: &CircuitBreakerConfig) -> u64 {
    (u64::try_from(config.window.as_millis()).unwrap_or(u64::MAX) / BUCKETS as u64).max(1)
}

/// Outcomes over the last `BUCKETS` buckets.
#[derive(Debug, Default)]
struct Window {
    /// The bucket width the stamps were computed with; a new width starts the window over.
    width: AtomicU64,
    buckets: [Bucket; BUCKETS],
}

#[derive(Debug, Default)]
struct Bucket {
    /// Which bucket number (`now / width`) the counts belong to.
    stamp: AtomicU64,
    total: AtomicU32,
    failures: AtomicU32,
}

impl Window {
    fn add(&self, ok: bool, now: u64, width: u64) {
        if self.width.load(Ordering::Acquire) != width
            && self.width.swap(width, Ordering::AcqRel) != width
        {
            self.clear();
        }
        let number = now / width;
        let bucket = &self.buckets[(number % BUCKETS as u64) as usize];
        let stamp = bucket.stamp.load(Ordering::Acquire);
        if stamp != number
            && bucket
                .stamp
                .compare_exchange(stamp, number, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            bucket.total.store(0, Ordering::Release);
            bucket.failures.store(0, Ordering::Release);
        }
        bucket.total.fetch_add(1, Ordering::AcqRel);
        if !ok {
            bucket.failures.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// `(total, failures)` within the window ending at `now`.
    fn sum(&self, now: u64, width: u64) -> (u32, u32) {
        let current = now / width;
        self.buckets
            .iter()
            .filter(|b| {
                let stamp = b.stamp.load(Ordering::Acquire);
                stamp <= current && current - stamp < BUCKETS as u64
            })
            .fold((0u32, 0u32), |(t, f), b| {
                (
                    t.saturating_add(b.total.load(Ordering::Acquire)),
                    f.saturating_add(b.failures.load(Ordering::Acquire)),
                )
            })
    }

    fn clear(&self) {
        for b in &self.buckets {
            b.total.store(0, Ordering::Release);
            b.failures.store(0, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn config() -> CircuitBreakerConfig {
        CircuitBreakerConfig {
            failure_ratio: 0.5,
            min_requests: 4,
            window: Duration::from_millis(1000),
            cooldown: Duration::from_millis(500),
            half_open_probes: 2,
            ..CircuitBreakerConfig::default()
        }
    }

    #[test]
    fn opens_only_with_enough_requests_and_failures_in_the_window() {
        let (c, cfg) = (Circuit::default(), config());
        assert_eq!(c.record(false, false, 10, &cfg), None, "1 of 1: too few");
        assert_eq!(c.record(true, false, 20, &cfg), None);
        assert_eq!(c.record(true, false, 30, &cfg), None);
        assert_eq!(
            c.record(false, false, 40, &cfg),
            Some(Transition::Opened {
                failures: 2,
                total: 4
            })
        );
        assert_eq!(c.state(), CircuitState::Open);
        assert_eq!(c.admit(), Admission::Refused);
    }

    #[test]
    fn old_outcomes_leave_the_window() {
        let (c, cfg) = (Circuit::default(), config());
        for t in 0..3 {
            c.record(false, false, t, &cfg);
        }
        // 1.5 s later the three failures are gone: 1 failure of 1 is below min_requests.
        assert_eq!(c.record(false, false, 1500, &cfg), None);
        assert_eq!(c.state(), CircuitState::Closed);
    }

    #[test]
    fn half_open_lets_probes_through_and_closes_when_all_succeed() {
        let (c, cfg) = (Circuit::default(), config());
        for t in 0..4 {
            c.record(false, false, t, &cfg);
        }
        assert!(!c.try_half_open(400, 2), "cooldown not over");
        assert!(c.try_half_open(503, 2));
        assert!(c.lets_through());
        assert_eq!(c.admit(), Admission::Probe { last: false });
        assert_eq!(c.admit(), Admission::Probe { last: true });
        assert_eq!(c.admit(), Admission::Refused);
        assert!(!c.lets_through());
        assert_eq!(c.record(true, false, 510, &cfg), None, "not a probe");
        assert_eq!(c.record(true, true, 520, &cfg), None);
        assert_eq!(c.record(true, true, 530, &cfg), Some(Transition::Closed));
        assert_eq!(c.admit(), Admission::Normal);
    }

    #[test]
    fn a_failed_probe_reopens_and_a_released_probe_is_given_back() {
        let (c, cfg) = (Circuit::default(), config());
        for t in 0..4 {
            c.record(false, false, t, &cfg);
        }
        assert!(c.try_half_open(600, 1));
        assert_eq!(c.admit(), Admission::Probe { last: true });
        assert!(c.release_probe(), "lets through again");
        assert_eq!(c.admit(), Admission::Probe { last: true });
        assert_eq!(c.record(false, true, 610, &cfg), Some(Transition::Reopened));
        assert!(!c.try_half_open(1000, 1), "a new cooldown started at 610");
        assert!(c.try_half_open(1110, 1));
    }
}
