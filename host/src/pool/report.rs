//! What real traffic tells the pool: every attempt asks the backend's circuit for admission,
//! and its outcome feeds passive ejection and the circuit breaker. State changes are logged,
//! counted in metrics, and end by themselves through timers (ejection over, cooldown over).

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::circuit::{Admission, Transition};
use super::{clock_ms, Backend, CircuitState, Pool};
use crate::config::{CircuitBreakerConfig, Config};
use crate::metrics::Metrics;

/// Why an attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No connection could be made (refused, unreachable, connect timeout).
    Connect,
    /// The connection broke, or the backend sent garbage, before a response head.
    Transport,
    /// No response head within `timeouts.response_header`.
    Timeout,
    /// The backend answered with this 5xx status.
    Status(u16),
}

/// How one attempt on a backend ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A response head below 500.
    Success,
    /// See [`Failure`].
    Failed(Failure),
}

impl Outcome {
    /// The outcome of a response with `status`.
    pub fn of_status(status: u16) -> Self {
        if status >= 500 {
            Outcome::Failed(Failure::Status(status))
        } else {
            Outcome::Success
        }
    }
}

/// Permission to send one attempt to a backend, from [`Pool::admit`]. Hand it back with the
/// outcome to [`Pool::report`]; dropped without an outcome (the client went away), a half-open
/// probe permission is given back.
#[derive(Debug)]
pub struct Admitted {
    probe: Option<ProbeGuard>,
}

impl Admitted {
    /// Whether this attempt is one of a half-open circuit's probes.
    pub fn is_probe(&self) -> bool {
        self.probe.is_some()
    }
}

#[derive(Debug)]
struct ProbeGuard {
    pool: Weak<Pool>,
    backend: Arc<Backend>,
    settled: bool,
}

impl Drop for ProbeGuard {
    fn drop(&mut self) {
        if !self.settled && self.backend.circuit().release_probe() {
            if let Some(pool) = self.pool.upgrade() {
                pool.refresh();
            }
        }
    }
}

/// What a timer does when it fires.
#[derive(Clone, Copy, Debug)]
enum Wake {
    /// An ejection ends.
    EjectionOver,
    /// An open circuit's cooldown ends: it turns half-open with this many probes.
    CooldownOver { probes: u32 },
}

impl Pool {
    /// Asks `backend`'s circuit whether an attempt may go there now. `None`: its circuit is
    /// open, or half-open with every probe out; choose another backend.
    pub fn admit(
        self: &Arc<Self>,
        backend: &Arc<Backend>,
        config: &CircuitBreakerConfig,
    ) -> Option<Admitted> {
        if !config.enabled {
            if backend.circuit().reset() {
                tracing::info!(backend = %backend.address, "circuit breaking is off: circuit closed");
                self.refresh();
            }
            return Some(Admitted { probe: None });
        }
        match backend.circuit().admit() {
            Admission::Normal => Some(Admitted { probe: None }),
            Admission::Probe { last } => {
                if last {
                    // No probe left: strategies must stop choosing it until the probes answer.
                    self.refresh();
                }
                Some(Admitted {
                    probe: Some(ProbeGuard {
                        pool: Arc::downgrade(self),
                        backend: Arc::clone(backend),
                        settled: false,
                    }),
                })
            }
            Admission::Refused => None,
        }
    }

    /// Records how an attempt on `backend` ended: passive ejection and circuit breaker.
    pub fn report(
        self: &Arc<Self>,
        backend: &Arc<Backend>,
        mut admitted: Admitted,
        outcome: Outcome,
        config: &Config,
        metrics: &Arc<Metrics>,
    ) {
        let now = clock_ms();
        let failed = outcome != Outcome::Success;
        let mut changed = false;
        if config.passive.enabled {
            if !failed {
                backend.passive().success();
            } else if let Some(run) = backend
                .passive()
                .failure(now, config.passive.consecutive_failures)
            {
                changed |= self.eject(backend, run, outcome, config, metrics, now);
            }
        }
        let probe = admitted.is_probe();
        if let Some(guard) = admitted.probe.as_mut() {
            guard.settled = true;
        }
        if config.circuit_breaker.enabled {
            let transition = backend
                .circuit()
                .record(!failed, probe, now, &config.circuit_breaker);
            if let Some(transition) = transition {
                self.circuit_moved(backend, transition, &config.circuit_breaker, metrics);
                changed = true;
            }
        }
        if changed {
            self.refresh();
        }
    }

    /// Takes `backend` down at once (a connection to it was refused while active health checks
    /// run; they bring it back after `healthy_threshold` successes).
    pub fn mark_down(&self, backend: &Backend, cause: &str, metrics: &Metrics) {
        if backend.set_up(false) {
            metrics
                .backend_up
                .with_label_values(&backend.metric_labels())
                .set(0);
            tracing::warn!(backend = %backend.address, %cause, "backend down: a request could not connect");
            self.refresh();
        }
    }

    /// Ejects `backend` after `run` failures in a row, unless that would eject more than
    /// `max_ejected_percent` of the pool. Returns whether it was ejected.
    fn eject(
        self: &Arc<Self>,
        backend: &Arc<Backend>,
        run: u32,
        outcome: Outcome,
        config: &Config,
        metrics: &Arc<Metrics>,
        now: u64,
    ) -> bool {
        let passive = &config.passive;
        let _serial = self
            .eject_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let set = self.load();
        let ejected = set
            .backends
            .iter()
            .filter(|b| b.passive().is_ejected(now))
            .count();
        let allowed = set.backends.len() * passive.max_ejected_percent as usize / 100;
        if ejected >= allowed {
            if run == passive.consecutive_failures {
                tracing::warn!(
                    backend = %backend.address,
                    failures = run,
                    ejected,
                    max_ejected_percent = passive.max_ejected_percent,
                    "not ejecting: max_ejected_percent of the pool is already ejected"
                );
            }
            return false;
        }
        let Some((length, streak)) = backend.passive().eject(now, passive) else {
            return false;
        };
        metrics
            .ejections
            .with_label_values(&backend.metric_labels())
            .inc();
        tracing::warn!(
            backend = %backend.address,
            failures = run,
            last = ?outcome,
            ejection_ms = length.as_millis() as u64,
            in_a_row = streak,
            "backend ejected"
        );
        self.wake_after(length, Arc::clone(backend), Wake::EjectionOver, metrics);
        true
    }

    fn circuit_moved(
        self: &Arc<Self>,
        backend: &Arc<Backend>,
        transition: Transition,
        config: &CircuitBreakerConfig,
        metrics: &Arc<Metrics>,
    ) {
        let state = backend.circuit().state();
        metrics
            .circuit_state
            .with_label_values(&backend.metric_labels())
            .set(state as i64);
        match transition {
            Transition::Opened { failures, total } => tracing::warn!(
                backend = %backend.address,
                failures,
                requests = total,
                cooldown_ms = config.cooldown.as_millis() as u64,
                "circuit open"
            ),
            Transition::Reopened => tracing::warn!(
                backend = %backend.address,
                cooldown_ms = config.cooldown.as_millis() as u64,
                "circuit open again: a probe failed"
            ),
            Transition::Closed => {
                tracing::info!(backend = %backend.address, "circuit closed: the probes succeeded")
            }
        }
        if state == CircuitState::Open {
            let wake = Wake::CooldownOver {
                probes: config.half_open_probes,
            };
            self.wake_after(config.cooldown, Arc::clone(backend), wake, metrics);
        }
    }

    /// Runs `wake` for `backend` after `delay`, then refreshes eligibility.
    fn wake_after(
        self: &Arc<Self>,
        delay: Duration,
        backend: Arc<Backend>,
        wake: Wake,
        metrics: &Arc<Metrics>,
    ) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!(backend = %backend.address, "no runtime for a failure-handling timer");
            return;
        };
        let pool = Arc::downgrade(self);
        let metrics = Arc::clone(metrics);
        runtime.spawn(async move {
            // One extra millisecond: the pool clock counts whole milliseconds.
            tokio::time::sleep(delay + Duration::from_millis(1)).await;
            let Some(pool) = pool.upgrade() else {
                return;
            };
            let now = clock_ms();
            let member = pool
                .load()
                .backends
                .iter()
                .any(|b| b.address == backend.address);
            match wake {
                Wake::EjectionOver => {
                    if member && !backend.passive().is_ejected(now) {
                        tracing::info!(backend = %backend.address, "ejection over: backend readmitted");
                    }
                }
                Wake::CooldownOver { probes } => {
                    if backend.circuit().try_half_open(now, probes) {
                        metrics
                            .circuit_state
                            .with_label_values(&backend.metric_labels())
                            .set(CircuitState::HalfOpen as i64);
                        if member {
                            tracing::info!(backend = %backend.address, probes, "circuit half-open");
                        }
                    }
                }
            }
            pool.refresh();
        });
    }
}
