//! Random: a uniform draw over the eligible backends, in proportion to their weights.

use lbhost_sdk::hash::{mix64, scale};
use lbhost_sdk::{BackendSet, Backends, Params, Request, Strategy};

/// Draws a backend at random with probability proportional to its weight, from the host's
/// per-call random bits.
#[derive(Default)]
pub struct Random {
    /// Cumulative weights of the eligible backends, with their indices; empty when no backend
    /// can be chosen.
    cumulative: Vec<(u64, usize)>,
    /// Whether all eligible weights are equal (then a plain uniform draw suffices).
    uniform: bool,
}

impl Strategy for Random {
    fn configure(params: &Params) -> Result<Self, String> {
        params.allow_only(&[])?;
        Ok(Random::default())
    }

    fn backends_changed(&mut self, backends: &BackendSet) {
        let mut total = 0;
        self.cumulative = backends
            .eligible()
            .iter()
            .map(|&i| {
                total += u64::from(backends.all()[i].weight);
                (total, i)
            })
            .collect();
        let mut weights = backends
            .eligible()
            .iter()
            .map(|&i| backends.all()[i].weight);
        let first = weights.next();
        self.uniform = weights.all(|w| Some(w) == first);
    }

    fn select(&mut self, backends: &Backends<'_>, _request: &Request<'_>) -> Option<usize> {
        if self.uniform {
            return backends.rotate(backends.random());
        }
        let total = self.cumulative.last()?.0;
        let mut bits = backends.random();
        // A few fresh draws around excluded backends, then the first candidate.
        for _ in 0..4 {
            let point = scale(bits, total);
            let slot = self.cumulative.partition_point(|&(c, _)| c <= point);
            let index = self.cumulative[slot].1;
            if backends.is_candidate(index) {
                return Some(index);
            }
            bits = mix64(bits);
        }
        backends.candidates().next()
    }
}

lbhost_sdk::export_strategy!(Random);

#[cfg(test)]
mod tests {
    use super::*;
    use lbhost_sdk::testing::{backend, Harness, TestRequest};

    fn chi_square(counts: &[u64], expected: &[f64]) -> f64 {
        counts
            .iter()
            .zip(expected)
            .map(|(&c, &e)| (c as f64 - e).powi(2) / e)
            .sum()
    }

    #[test]
    fn weighted_draws_pass_chi_square() {
        let mut h = Harness::<Random>::new(&[]).unwrap();
        h.set_backends(vec![
            backend("a:1").weight(1),
            backend("b:1").weight(2),
            backend("c:1").weight(3),
            backend("d:1").down(),
        ]);
        let mut counts = [0u64; 4];
        for _ in 0..10_000 {
            counts[h.select(&TestRequest::default()).unwrap()] += 1;
        }
        assert_eq!(counts[3], 0);
        let expected = [10_000.0 / 6.0, 20_000.0 / 6.0, 30_000.0 / 6.0];
        // 2 degrees of freedom, p = 0.001.
        assert!(chi_square(&counts[..3], &expected) < 13.82, "{counts:?}");
    }

    #[test]
    fn none_when_nothing_is_eligible() {
        let mut h = Harness::<Random>::new(&[]).unwrap();
        h.set_backends(vec![backend("a:1").down()]);
        assert_eq!(h.select(&TestRequest::default()), None);
    }
}
