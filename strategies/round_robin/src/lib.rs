//! Round-robin: exact rotation over the eligible backends, across all worker threads.

use lbhost_sdk::{Backends, Params, Request, Strategy};

/// Takes the eligible backends in turn. The turn comes from the host's global sequence number,
/// so 300 requests over 3 backends give exactly 100 each, however many threads serve them.
pub struct RoundRobin;

impl Strategy for RoundRobin {
    fn configure(params: &Params) -> Result<Self, String> {
        params.allow_only(&[])?;
        Ok(RoundRobin)
    }

    fn select(&mut self, backends: &Backends<'_>, _request: &Request<'_>) -> Option<usize> {
        backends.rotate(backends.sequence())
    }
}

lbhost_sdk::export_strategy!(RoundRobin);

#[cfg(test)]
mod tests {
    use super::*;
    use lbhost_sdk::testing::{backend, Harness, TestRequest};

    #[test]
    fn rotates_exactly_and_skips_down_backends() {
        let mut h = Harness::<RoundRobin>::new(&[]).unwrap();
        h.set_backends(vec![backend("a:1"), backend("b:1").down(), backend("c:1")]);
        let picks: Vec<_> = (0..4).map(|_| h.select(&TestRequest::default())).collect();
        assert_eq!(picks, [Some(0), Some(2), Some(0), Some(2)]);
    }

    #[test]
    fn excluded_backend_is_skipped_and_none_when_nothing_is_left() {
        let mut h = Harness::<RoundRobin>::new(&[]).unwrap();
        h.set_backends(vec![backend("a:1"), backend("b:1")]);
        h.exclude = vec![0];
        for _ in 0..4 {
            assert_eq!(h.select(&TestRequest::default()), Some(1));
        }
        h.exclude = vec![0, 1];
        assert_eq!(h.select(&TestRequest::default()), None);
    }

    #[test]
    fn unknown_parameter_is_refused() {
        let err = Harness::<RoundRobin>::new(&[("header", "x")]).unwrap_err();
        assert!(err.contains("strategy_config.header"), "{err}");
    }
}
