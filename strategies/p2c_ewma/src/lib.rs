//! P2C peak EWMA: power of two choices on latency × load, as Finagle and Linkerd balance.

mod clock;
mod peak;

use std::collections::BTreeMap;
use std::time::Duration;

use lbhost_sdk::{
    power_of_two_choices, BackendSet, Backends, Needs, Params, Request, SlowStart, Strategy,
    SLOW_START_PARAMS,
};

use clock::Clock;
use peak::PeakEwma;

/// Finagle's and Linkerd's default decay.
const DEFAULT_DECAY: Duration = Duration::from_secs(10);
/// A backend that failed without answering (refused, reset, timed out) counts as if it had
/// answered this slowly, so that failing fast does not attract traffic.
const FAILURE_LATENCY_US: f64 = 1_000_000.0;
/// The cost of a backend with requests in flight and no answer yet (Finagle's `Penalty`): it
/// gets one request at a time until it has answered once.
const UNMEASURED_PENALTY_US: f64 = 1e15;

/// Chooses the cheaper of two random candidates, where a backend's cost is its peak EWMA of
/// response time × (requests in flight + 1), divided by its weight (the division is lbhost's:
/// Finagle and Linkerd have no weights).
///
/// Peak EWMA (Finagle's `PeakEwma`, Linkerd's `PeakEwma`): a response slower than the estimate
/// raises it to that response at once; faster responses pull it down with weight
/// `1 - exp(-elapsed / decay)`, and an estimate decays toward zero while its backend gets no
/// traffic, so a backend that was slow is tried again after a while. Estimates come from this
/// strategy's own feedback (`on-response`), per worker; a backend that becomes eligible again
/// starts afresh. How time is measured without a clock: see `clock.rs`.
///
/// Parameters: `decay` (default `10s`); slow start (`slow_start_window`,
/// `slow_start_aggression`, `slow_start_min_weight_percent`, see [`SlowStart`]): a backend's
/// weight in the cost is scaled by its ramp factor.
pub struct P2cEwma {
    slow_start: Option<SlowStart>,
    /// `decay` in microseconds.
    decay_us: f64,
    clock: Clock,
    /// Estimates by backend index; `None` until a backend has answered.
    estimates: Vec<Option<PeakEwma>>,
    /// Backend keys by index, to carry estimates across backend-set changes.
    keys: Vec<u64>,
}

impl Strategy for P2cEwma {
    fn configure(params: &Params) -> Result<Self, String> {
        let mut known = vec!["decay"];
        known.extend(SLOW_START_PARAMS);
        params.allow_only(&known)?;
        let decay = params.duration_or("decay", DEFAULT_DECAY)?;
        if decay < Duration::from_millis(1) {
            return Err("strategy_config.decay: must be at least 1ms".into());
        }
        Ok(P2cEwma {
            slow_start: SlowStart::from_params(params)?,
            decay_us: decay.as_secs_f64() * 1e6,
            clock: Clock::default(),
            estimates: Vec::new(),
            keys: Vec::new(),
        })
    }

    fn needs(&self) -> Needs {
        Needs {
            in_flight: true,
            feedback: true,
            clock: self.slow_start.is_some(),
            ..Needs::default()
        }
    }

    fn backends_changed(&mut self, backends: &BackendSet) {
        // Keep the estimate of a backend that stays eligible, wherever its index moves; one that
        // was down starts afresh.
        let old: BTreeMap<u64, PeakEwma> = self
            .keys
            .iter()
            .zip(&self.estimates)
            .filter_map(|(&key, estimate)| Some((key, (*estimate)?)))
            .collect();
        self.estimates = backends
            .all()
            .iter()
            .map(|b| old.get(&b.key).copied().filter(|_| b.eligible))
            .collect();
        self.keys = backends.all().iter().map(|b| b.key).collect();
    }

    fn select(&mut self, backends: &Backends<'_>, _request: &Request<'_>) -> Option<usize> {
        let now = self
            .clock
            .tick(backends.sequence(), backends.total_in_flight());
        power_of_two_choices(backends, |i| self.cost(backends, i, now))
    }

    fn on_response(&mut self, backend: usize, status: u16, latency: Duration) {
        let mut latency_us = latency.as_secs_f64() * 1e6;
        if status == 0 {
            latency_us = latency_us.max(FAILURE_LATENCY_US);
        } else {
            self.clock.observe(latency_us);
        }
        let now = self.clock.now_us();
        if let Some(slot) = self.estimates.get_mut(backend) {
            match slot {
                Some(estimate) => estimate.observe(latency_us, now, self.decay_us),
                None => *slot = Some(PeakEwma::new(latency_us, now)),
            }
        }
    }
}

impl P2cEwma {
    /// Backend `i`'s cost now: peak EWMA × (in flight + 1) / weight (the weight scaled by the
    /// slow start factor).
    fn cost(&self, backends: &Backends<'_>, i: usize, now: f64) -> f64 {
        let in_flight = f64::from(backends.in_flight(i));
        let mut weight = f64::from(backends.get(i).map_or(1, |b| b.weight.max(1)));
        if let Some(slow_start) = &self.slow_start {
            weight *= slow_start.factor_of(backends, i);
        }
        let load = match self.estimates.get(i).copied().flatten() {
            Some(estimate) => estimate.at(now, self.decay_us) * (in_flight + 1.0),
            None if in_flight == 0.0 => 0.0,
            None => UNMEASURED_PENALTY_US + in_flight,
        };
        load / weight
    }
}

lbhost_sdk::export_strategy!(P2cEwma);

#[cfg(test)]
mod tests;
