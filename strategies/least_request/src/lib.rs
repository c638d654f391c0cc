//! Least request: Envoy's weighted least-request balancer.

use lbhost_sdk::{
    BackendSet, Backends, LeastRequest, Needs, Params, Request, SlowStart, Strategy,
    SLOW_START_PARAMS,
};

/// With equal weights, power of two choices on in-flight requests: two random candidates, the
/// one with fewer requests in flight wins. With unequal weights, Envoy's schedule: a smooth
/// weighted round-robin in which a backend comes round with the weight
/// `weight / (in_flight + 1) ^ active_request_bias`.
///
/// Parameters: `active_request_bias` (default 1.0; 0 is plain weighted round-robin); slow start
/// (`slow_start_window`, `slow_start_aggression`, `slow_start_min_weight_percent`, see
/// [`SlowStart`]): a backend's weight is scaled by its ramp factor, and while one ramps the
/// schedule is used even with equal weights.
pub struct LeastRequestStrategy {
    balancer: LeastRequest,
    slow_start: bool,
}

impl Strategy for LeastRequestStrategy {
    fn configure(params: &Params) -> Result<Self, String> {
        let mut known = vec!["active_request_bias"];
        known.extend(SLOW_START_PARAMS);
        params.allow_only(&known)?;
        let bias = params.parse_or("active_request_bias", LeastRequest::DEFAULT_BIAS)?;
        let slow_start = SlowStart::from_params(params)?;
        Ok(LeastRequestStrategy {
            balancer: LeastRequest::new(bias)?.with_slow_start(slow_start),
            slow_start: slow_start.is_some(),
        })
    }

    fn needs(&self) -> Needs {
        Needs {
            in_flight: true,
            clock: self.slow_start,
            ..Needs::default()
        }
    }

    fn backends_changed(&mut self, backends: &BackendSet) {
        self.balancer.backends_changed(backends);
    }

    fn select(&mut self, backends: &Backends<'_>, _request: &Request<'_>) -> Option<usize> {
        self.balancer.select(backends)
    }
}

lbhost_sdk::export_strategy!(LeastRequestStrategy);

#[cfg(test)]
mod tests {
    use super::*;
    use lbhost_sdk::testing::{backend, Harness, TestRequest};
    use std::time::Duration;

    fn harness(params: &[(&str, &str)], weights: &[u32]) -> Harness<LeastRequestStrategy> {
        let mut h = Harness::new(params).unwrap();
        h.set_backends(
            weights
                .iter()
                .enumerate()
                .map(|(i, &w)| backend(&format!("10.3.0.{i}:80")).weight(w))
                .collect(),
        );
        h
    }

    #[test]
    fn equal_weights_never_choose_the_busiest_and_spread_when_idle() {
        let mut h = harness(&[], &[1, 1, 1]);
        h.in_flight = vec![4, 1, 9];
        for _ in 0..200 {
            assert_ne!(h.select(&TestRequest::default()), Some(2));
        }
        h.in_flight = vec![0, 0, 0];
        let mut picks = [0u32; 3];
        for _ in 0..3000 {
            picks[h.select(&TestRequest::default()).unwrap()] += 1;
        }
        assert!(picks.iter().all(|&p| (850..1150).contains(&p)), "{picks:?}");
    }

    #[test]
    fn a_slow_backend_gets_less_in_a_closed_loop() {
        // 3 equal backends, one 10× slower: requests pile up there, so P2C avoids it.
        let mut h = harness(&[], &[1, 1, 1]);
        let latency = |b: usize, _| Duration::from_millis(if b == 2 { 10 } else { 1 });
        let served = h.closed_loop(12, 30_000, latency, |_| TestRequest::default());
        let slow = served.iter().filter(|s| s.backend == 2).count() as f64 / 30_000.0;
        assert!(slow < 0.12, "the slow backend got {slow:.3}");
    }

    #[test]
    fn unequal_weights_follow_weight_over_load() {
        // Weights 3:1, idle: 3:1 exactly per period.
        let mut h = harness(&[], &[3, 1]);
        let picks: Vec<_> = (0..400)
            .map(|_| h.select(&TestRequest::default()).unwrap())
            .collect();
        assert_eq!(picks.iter().filter(|&&p| p == 0).count(), 300);
        // Backend 0 holds 2 requests, backend 1 none: 3/3 against 1/1 with the default bias,
        // 3/9 against 1/1 with bias 2.
        for (bias, heavy) in [("1.0", 0.5), ("2", 0.25)] {
            let mut h = harness(&[("active_request_bias", bias)], &[3, 1]);
            h.in_flight = vec![2, 0];
            let share = (0..4000)
                .filter(|_| h.select(&TestRequest::default()) == Some(0))
                .count() as f64
                / 4000.0;
            assert!((share - heavy).abs() < 0.01, "bias {bias}: {share:.3}");
        }
    }

    #[test]
    fn never_down_drained_or_excluded() {
        for weights in [[1, 1, 1, 1], [1, 2, 3, 4]] {
            let mut h = harness(&[], &weights);
            let mut backends: Vec<_> = (0..4)
                .map(|i| backend(&format!("10.3.0.{i}:80")).weight(weights[i]))
                .collect();
            backends[0] = backends[0].clone().down();
            backends[1] = backends[1].clone().weight(0);
            h.set_backends(backends);
            h.exclude = vec![2];
            for _ in 0..100 {
                assert_eq!(h.select(&TestRequest::default()), Some(3));
            }
            h.exclude = vec![2, 3];
            assert_eq!(h.select(&TestRequest::default()), None);
        }
    }

    #[test]
    fn slow_start_ramps_a_new_backend_even_with_equal_weights() {
        let params = [("slow_start_window", "4s"), ("slow_start_aggression", "1")];
        let mut h = harness(&params, &[1, 1]);
        h.now_ms = 100_000;
        h.set_backends(vec![
            backend("10.3.0.0:80").eligible_since(0),
            backend("10.3.0.1:80").eligible_since(100_000),
        ]);
        let share = |h: &mut Harness<LeastRequestStrategy>| {
            (0..4000)
                .filter(|_| h.select(&TestRequest::default()) == Some(1))
                .count() as f64
                / 4000.0
        };
        // Factor 0.25 at first (max(0, 1 s) / 4 s), 0.5 at 2 s, 1 after the window.
        assert!((share(&mut h) - 0.2).abs() < 0.01);
        h.now_ms = 102_000;
        assert!((share(&mut h) - 1.0 / 3.0).abs() < 0.01);
        h.now_ms = 104_000;
        assert!((share(&mut h) - 0.5).abs() < 0.03, "P2C again");
    }

    #[test]
    fn bad_parameters_are_refused_with_their_name() {
        for params in [
            [("active_request_bias", "-1")],
            [("active_request_bias", "lots")],
            [("choice_count", "3")],
        ] {
            let err = Harness::<LeastRequestStrategy>::new(&params).err().unwrap();
            assert!(err.contains(params[0].0), "{err}");
        }
    }
}
