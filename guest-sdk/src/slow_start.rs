//! Slow start: a backend that has just become eligible ramps from a small share of its weight
//! to all of it over a window, as Envoy's slow start mode does.

use std::time::Duration;

use crate::{BackendSet, Backends, Params};

/// Envoy's default `min_weight_percent`.
const DEFAULT_MIN_WEIGHT_PERCENT: f64 = 10.0;

/// The slow start parameters of a strategy: `slow_start_window` (e.g. `"30s"`; absent: no slow
/// start), `slow_start_aggression` (default 1.0: a linear ramp) and
/// `slow_start_min_weight_percent` (default 10).
///
/// During the window after a backend became eligible its weight is scaled by Envoy's factor
/// `max(min_weight_percent / 100, time_factor ^ (1 / aggression))`, where
/// `time_factor = max(eligible_for, 1 s) / window`. An aggression above 1 ramps faster at first,
/// below 1 slower. Needs [`crate::Needs::clock`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SlowStart {
    window_ms: f64,
    /// `1 / aggression`.
    exponent: f64,
    min_factor: f64,
}

/// The parameter names, for [`Params::allow_only`].
pub const SLOW_START_PARAMS: [&str; 3] = [
    "slow_start_window",
    "slow_start_aggression",
    "slow_start_min_weight_percent",
];

impl SlowStart {
    /// Reads the slow start parameters; `None` when `slow_start_window` is absent (the others
    /// are refused then, naming the missing one).
    pub fn from_params(params: &Params) -> Result<Option<Self>, String> {
        let Some(_) = params.get("slow_start_window") else {
            if let Some(key) = SLOW_START_PARAMS[1..]
                .iter()
                .find(|k| params.get(k).is_some())
            {
                return Err(format!(
                    "strategy_config.{key}: needs slow_start_window (the ramp's length)"
                ));
            }
            return Ok(None);
        };
        let window = params.duration_or("slow_start_window", Duration::ZERO)?;
        if window < Duration::from_secs(1) || window > Duration::from_secs(24 * 3600) {
            return Err("strategy_config.slow_start_window: must be between 1s and 24h".into());
        }
        let aggression: f64 = params.parse_or("slow_start_aggression", 1.0)?;
        if !aggression.is_finite() || aggression <= 0.0 {
            return Err(format!(
                "strategy_config.slow_start_aggression: must be a number above 0 (got {aggression})"
            ));
        }
        let min_percent: f64 =
            params.parse_or("slow_start_min_weight_percent", DEFAULT_MIN_WEIGHT_PERCENT)?;
        if !(min_percent > 0.0 && min_percent <= 100.0) {
            return Err(format!(
                "strategy_config.slow_start_min_weight_percent: must be above 0 and at most 100 (got {min_percent})"
            ));
        }
        Ok(Some(SlowStart {
            window_ms: window.as_secs_f64() * 1000.0,
            exponent: 1.0 / aggression,
            min_factor: min_percent / 100.0,
        }))
    }

    /// The factor a backend's weight is scaled by after it has been eligible for
    /// `eligible_for_ms`: 1 once the window has passed.
    pub fn factor(&self, eligible_for_ms: u64) -> f64 {
        let age = eligible_for_ms as f64;
        if age >= self.window_ms {
            return 1.0;
        }
        let time_factor = age.max(1000.0) / self.window_ms;
        time_factor.powf(self.exponent).clamp(self.min_factor, 1.0)
    }

    /// The factor of backend `index` now (1 when the host gave no clock or the backend is not
    /// eligible).
    pub fn factor_of(&self, backends: &Backends<'_>, index: usize) -> f64 {
        backends
            .eligible_for_ms(index)
            .map_or(1.0, |age| self.factor(age))
    }

    /// Until when (on the host's clock) some eligible backend of `set` is still ramping.
    pub fn ramp_until_ms(&self, set: &BackendSet) -> u64 {
        set.eligible()
            .iter()
            .map(|&i| set.all()[i].eligible_since_ms + self.window_ms as u64)
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slow_start(pairs: &[(&str, &str)]) -> Result<Option<SlowStart>, String> {
        SlowStart::from_params(&Params::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ))
    }

    #[test]
    fn envoys_factor_linear_and_aggressive() {
        let linear = slow_start(&[("slow_start_window", "10s")])
            .unwrap()
            .unwrap();
        assert_eq!(linear.factor(0), 0.1, "max(t, 1 s) / window");
        assert!((linear.factor(5_000) - 0.5).abs() < 1e-9);
        assert_eq!(linear.factor(10_000), 1.0);
        assert_eq!(linear.factor(u64::MAX), 1.0);
        let fast = slow_start(&[("slow_start_window", "10s"), ("slow_start_aggression", "2")])
            .unwrap()
            .unwrap();
        assert!((fast.factor(2_500) - 0.5).abs() < 1e-9, "sqrt(0.25)");
        let slow = slow_start(&[
            ("slow_start_window", "10s"),
            ("slow_start_aggression", "0.5"),
            ("slow_start_min_weight_percent", "5"),
        ])
        .unwrap()
        .unwrap();
        assert!((slow.factor(5_000) - 0.25).abs() < 1e-9);
        assert_eq!(slow.factor(1_000), 0.05, "floored at the minimum");
    }

    #[test]
    fn absent_window_is_no_slow_start_and_bad_values_name_their_key() {
        assert_eq!(slow_start(&[]), Ok(None));
        for (pairs, key) in [
            (
                vec![("slow_start_aggression", "2")],
                "slow_start_aggression",
            ),
            (vec![("slow_start_window", "10ms")], "slow_start_window"),
            (vec![("slow_start_window", "soon")], "slow_start_window"),
            (
                vec![("slow_start_window", "5s"), ("slow_start_aggression", "0")],
                "slow_start_aggression",
            ),
            (
                vec![
                    ("slow_start_window", "5s"),
                    ("slow_start_min_weight_percent", "0"),
                ],
                "slow_start_min_weight_percent",
            ),
        ] {
            let err = slow_start(&pairs).unwrap_err();
            assert!(err.contains(key), "{err}");
        }
    }
}
