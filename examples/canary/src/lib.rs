//! Canary routing: a request that opts in by header goes to the backends labelled as canary.

use lbhost_sdk::{Backends, Params, Request, Strategy};

/// Routes on something only a programmable balancer can: a request carrying the opt-in header
/// (default `x-canary: 1`) goes to backends whose label matches (default `track=canary`); all other
/// requests go, round-robin, to the rest. When no canary backend is up, canary requests fall back
/// to the stable pool rather than failing.
///
/// Parameters: `header`, `value`, `label`, `label_value`.
pub struct Canary {
    header: String,
    value: String,
    label: String,
    label_value: String,
}

impl Strategy for Canary {
    fn configure(params: &Params) -> Result<Self, String> {
        params.allow_only(&["header", "value", "label", "label_value"])?;
        let get = |k, default: &str| params.get(k).unwrap_or(default).to_string();
        Ok(Canary {
            header: get("header", "x-canary"),
            value: get("value", "1"),
            label: get("label", "track"),
            label_value: get("label_value", "canary"),
        })
    }

    fn select(&mut self, backends: &Backends<'_>, request: &Request<'_>) -> Option<usize> {
        let wants_canary = request.header(&self.header).as_deref() == Some(self.value.as_str());
        let is_canary = |i: &usize| {
            backends.set().all()[*i].label(&self.label) == Some(self.label_value.as_str())
        };
        let pick = |canary: bool| {
            let pool: Vec<usize> = backends
                .candidates()
                .filter(|i| is_canary(i) == canary)
                .collect();
            (!pool.is_empty()).then(|| pool[(backends.sequence() % pool.len() as u64) as usize])
        };
        pick(wants_canary).or_else(|| pick(!wants_canary))
    }
}

lbhost_sdk::export_strategy!(Canary);

#[cfg(test)]
mod tests {
    use super::*;
    use lbhost_sdk::testing::{backend, Harness, TestRequest};

    #[test]
    fn header_selects_the_canary_pool() {
        let mut h = Harness::<Canary>::new(&[]).unwrap();
        h.set_backends(vec![
            backend("a:1"),
            backend("b:1").with_label("track", "canary"),
            backend("c:1"),
        ]);
        let canary = TestRequest::default().with_header("X-Canary", "1");
        for _ in 0..5 {
            assert_eq!(h.select(&canary), Some(1));
            assert_ne!(h.select(&TestRequest::default()), Some(1));
        }
    }

    #[test]
    fn canary_requests_fall_back_when_no_canary_is_up() {
        let mut h = Harness::<Canary>::new(&[]).unwrap();
        h.set_backends(vec![
            backend("a:1"),
            backend("b:1").with_label("track", "canary").down(),
        ]);
        let canary = TestRequest::default().with_header("x-canary", "1");
        assert_eq!(h.select(&canary), Some(0));
    }
}
