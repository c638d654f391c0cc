//! Weighted: nginx's smooth weighted round-robin, exact across worker threads.

use lbhost_sdk::{BackendSet, Backends, Params, Request, SmoothWeighted, Strategy};

/// Spreads requests in proportion to the backends' weights without bursts (weights 5, 1, 1 give
/// `a a b a c a a`). Exact ratios over every period; weight 0 drains a backend.
#[derive(Default)]
pub struct Weighted {
    table: SmoothWeighted,
}

impl Strategy for Weighted {
    fn configure(params: &Params) -> Result<Self, String> {
        params.allow_only(&[])?;
        Ok(Weighted::default())
    }

    fn backends_changed(&mut self, backends: &BackendSet) {
        self.table = SmoothWeighted::new(backends);
    }

    fn select(&mut self, backends: &Backends<'_>, _request: &Request<'_>) -> Option<usize> {
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
