//! One backend's peak EWMA of response time (Finagle's `PeakEwma`, tower's `RttEstimate`).

/// A response-time estimate that jumps to a slower response at once and forgets with time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PeakEwma {
    /// The estimate in microseconds as of `stamp_us`.
    cost_us: f64,
    /// When it was last updated, on the strategy's clock.
    stamp_us: f64,
}

impl PeakEwma {
    /// An estimate starting at the first response time seen, `sample_us`, at `now_us`.
    pub fn new(sample_us: f64, now_us: f64) -> Self {
        PeakEwma {
            cost_us: sample_us,
            stamp_us: now_us,
        }
    }

    /// Folds in a response time: a slower one replaces the estimate (the peak); a faster one
    /// moves it with weight `1 - exp(-elapsed / decay)`, elapsed since the last update.
    pub fn observe(&mut self, sample_us: f64, now_us: f64, decay_us: f64) {
        if sample_us > self.cost_us {
            self.cost_us = sample_us;
        } else {
            let kept = self.kept(now_us, decay_us);
            self.cost_us = self.cost_us * kept + sample_us * (1.0 - kept);
        }
        self.stamp_us = self.stamp_us.max(now_us);
    }

    /// The estimate at `now_us`: decayed toward zero since the last update, as if a response
    /// of 0 had arrived (so that an idle backend is tried again).
    pub fn at(&self, now_us: f64, decay_us: f64) -> f64 {
        self.cost_us * self.kept(now_us, decay_us)
    }

    /// `exp(-elapsed / decay)`.
    fn kept(&self, now_us: f64, decay_us: f64) -> f64 {
        let elapsed = (now_us - self.stamp_us).max(0.0);
        (-elapsed / decay_us).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DECAY: f64 = 10e6;

    #[test]
    fn a_slower_response_is_taken_at_once() {
        let mut e = PeakEwma::new(1_000.0, 0.0);
        e.observe(50_000.0, 1.0, DECAY);
        assert_eq!(e.at(1.0, DECAY), 50_000.0);
    }

    #[test]
    fn faster_responses_pull_down_by_elapsed_time() {
        let mut e = PeakEwma::new(50_000.0, 0.0);
        // No time passed: a faster response changes nothing.
        e.observe(1_000.0, 0.0, DECAY);
        assert_eq!(e.at(0.0, DECAY), 50_000.0);
        // One decay later: 1/e of the old estimate remains.
        e.observe(1_000.0, DECAY, DECAY);
        let expected = 50_000.0 / std::f64::consts::E + 1_000.0 * (1.0 - 1.0 / std::f64::consts::E);
        assert!((e.at(DECAY, DECAY) - expected).abs() < 1e-6);
    }

    #[test]
    fn an_idle_estimate_decays_toward_zero() {
        let e = PeakEwma::new(50_000.0, 0.0);
        assert!((e.at(DECAY * 2.0_f64.ln(), DECAY) - 25_000.0).abs() < 1e-6);
        assert_eq!(e.at(-5.0, DECAY), 50_000.0, "time never runs backwards");
    }
}
