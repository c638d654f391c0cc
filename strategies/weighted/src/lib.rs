//! Weighted: nginx's smooth weighted round-robin, exact across worker threads.

use lbhost_sdk::{
    BackendSet, Backends, LeastRequest, Needs, Params, Request, SlowStart, SmoothWeighted,
    Strategy, SLOW_START_PARAMS,
};

/// Spreads requests in proportion to the backends' weights without bursts (weights 5, 1, 1 give
/// `a a b a c a a`). Exact ratios over every period; weight 0 drains a backend.
///
/// Parameters: slow start (`slow_start_window`, `slow_start_aggression`,
/// `slow_start_min_weight_percent`, see [`SlowStart`]). While a backend ramps up, requests follow
/// an earliest-deadline-first schedule of the scaled weights (Envoy's weighted round-robin);
/// otherwise the precomputed table.
#[derive(Default)]
pub struct Weighted {
    table: SmoothWeighted,
    /// The schedule used while some backend ramps up (with slow start only).
    ramp: Option<LeastRequest>,
}

impl Strategy for Weighted {
    fn configure(params: &Params) -> Result<Self, String> {
        params.allow_only(&SLOW_START_PARAMS)?;
        let ramp = match SlowStart::from_params(params)? {
            // Bias 0: weights alone, whatever is in flight.
            Some(slow_start) => Some(LeastRequest::new(0.0)?.with_slow_start(Some(slow_start))),
            None => None,
        };
        Ok(Weighted {
            table: SmoothWeighted::default(),
            ramp,
        })
    }

    fn needs(&self) -> Needs {
        Needs {
            clock: self.ramp.is_some(),
            ..Needs::default()
        }
    }

    fn backends_changed(&mut self, backends: &BackendSet) {
        self.table = SmoothWeighted::new(backends);
        if let Some(ramp) = &mut self.ramp {
            ramp.backends_changed(backends);
        }
    }

    fn select(&mut self, backends: &Backends<'_>, _request: &Request<'_>) -> Option<usize> {
        if let Some(ramp) = self.ramp.as_mut().filter(|r| r.is_ramping(backends)) {
            return ramp.select(backends);
        }
        let order = self.table.order();
        if order.is_empty() {
            return None;
        }
        let start = (backends.sequence() % order.len() as u64) as usize;
        backends.first_candidate_from(order, start)
    }
}

lbhost_sdk::export_strategy!(Weighted);

#[cfg(test)]
mod tests {
    use super::*;
    use lbhost_sdk::testing::{backend, Harness, TestRequest};

    #[test]
    fn five_one_one_never_bursts_and_is_exact_per_period() {
        let mut h = Harness::<Weighted>::new(&[]).unwrap();
        h.set_backends(vec![
            backend("a:1").weight(5),
            backend("b:1").weight(1),
            backend("c:1").weight(1),
        ]);
        let picks: Vec<_> = (0..14)
            .map(|_| h.select(&TestRequest::default()).unwrap())
            .collect();
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn slow_start_ramps_a_new_backend_up_over_the_window() {
        let mut h = Harness::<Weighted>::new(&[("slow_start_window", "10s")]).unwrap();
        // a and b have been eligible for a minute; c joins at 60 s.
        h.now_ms = 60_000;
        h.set_backends(vec![
            backend("a:1"),
            backend("b:1"),
            backend("c:1").eligible_since(60_000),
        ]);
        let mut share_of_c = Vec::new();
        for second in 0..12u64 {
            h.now_ms = 60_000 + second * 1000;
            let picks: Vec<_> = (0..3000)
                .map(|_| h.select(&TestRequest::default()).unwrap())
                .collect();
            share_of_c.push(picks.iter().filter(|&&p| p == 2).count() as f64 / 3000.0);
        }
        // Weight factor 0.1 at first (1 s / 10 s), 0.5 at 5 s: shares 0.1/2.1 and 0.5/2.5.
        assert!((share_of_c[0] - 0.1 / 2.1).abs() < 0.01, "{share_of_c:?}");
        assert!((share_of_c[5] - 0.2).abs() < 0.01, "{share_of_c:?}");
        assert!(
            share_of_c.windows(2).all(|w| w[1] >= w[0] - 0.01),
            "{share_of_c:?}"
        );
        // Past the window: the table, exact thirds.
        assert!((share_of_c[11] - 1.0 / 3.0).abs() < 0.001, "{share_of_c:?}");
    }

    #[test]
    fn slow_start_parameters_are_checked() {
        for params in [
            [("slow_start_window", "0s")],
            [("slow_start_aggression", "2")],
            [("slow_start", "10s")],
        ] {
            let err = Harness::<Weighted>::new(&params).err().unwrap();
            assert!(err.contains("strategy_config.slow_start"), "{err}");
        }
    }

    #[test]
    fn zero_weight_and_down_backends_get_nothing() {
        let mut h = Harness::<Weighted>::new(&[]).unwrap();
        h.set_backends(vec![
            backend("a:1").weight(0),
            backend("b:1").weight(2).down(),
            backend("c:1").weight(3),
        ]);
        for _ in 0..10 {
            assert_eq!(h.select(&TestRequest::default()), Some(2));
        }
        h.set_backends(vec![backend("a:1").weight(0)]);
        assert_eq!(h.select(&TestRequest::default()), None);
    }
}
