//! Least connections: the eligible backend with the fewest in-flight requests per unit of weight.

use lbhost_sdk::{Backends, Needs, Params, Request, Strategy};

/// Chooses the candidate with the lowest `in_flight / weight`. Ties rotate with the global
/// sequence, so an idle pool is shared evenly instead of piling onto the first backend.
pub struct LeastConn;

impl Strategy for LeastConn {
    fn configure(params: &Params) -> Result<Self, String> {
        params.allow_only(&[])?;
        Ok(LeastConn)
    }

    fn needs(&self) -> Needs {
        Needs {
            in_flight: true,
            ..Needs::default()
        }
    }

    fn select(&mut self, backends: &Backends<'_>, _request: &Request<'_>) -> Option<usize> {
        let eligible = backends.set().eligible();
        let n = eligible.len();
        if n == 0 {
            return None;
        }
        let start = (backends.sequence() % n as u64) as usize;
        let mut best: Option<(usize, u64, u64)> = None;
        for step in 0..n {
            let i = eligible[(start + step) % n];
            if backends.is_excluded(i) {
                continue;
            }
            let load = u64::from(backends.in_flight(i));
            let weight = u64::from(backends.set().all()[i].weight);
            // load/weight < best_load/best_weight, without division.
            if best.is_none_or(|(_, bl, bw)| load * bw < bl * weight) {
                best = Some((i, load, weight));
            }
        }
        best.map(|(i, _, _)| i)
    }
}

lbhost_sdk::export_strategy!(LeastConn);

#[cfg(test)]
mod tests {
    use super::*;
    use lbhost_sdk::testing::{backend, Harness, TestRequest};

    #[test]
    fn picks_fewest_in_flight_per_weight() {
        let mut h = Harness::<LeastConn>::new(&[]).unwrap();
        h.set_backends(vec![
            backend("a:1"),
            backend("b:1").weight(4),
            backend("c:1"),
        ]);
        h.in_flight = vec![2, 4, 3];
        // a: 2/1, b: 4/4 = 1, c: 3/1.
        assert_eq!(h.select(&TestRequest::default()), Some(1));
    }

    #[test]
    fn ties_rotate() {
        let mut h = Harness::<LeastConn>::new(&[]).unwrap();
        h.set_backends(vec![backend("a:1"), backend("b:1"), backend("c:1")]);
        let picks: Vec<_> = (0..6).map(|_| h.select(&TestRequest::default())).collect();
        assert_eq!(
            picks,
            [Some(0), Some(1), Some(2), Some(0), Some(1), Some(2)]
        );
    }

    #[test]
    fn never_picks_down_or_excluded() {
        let mut h = Harness::<LeastConn>::new(&[]).unwrap();
        h.set_backends(vec![backend("a:1").down(), backend("b:1"), backend("c:1")]);
        h.in_flight = vec![0, 5, 9];
        h.exclude = vec![1];
        assert_eq!(h.select(&TestRequest::default()), Some(2));
    }
}
