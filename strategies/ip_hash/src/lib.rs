//! IP hash: each client IP sticks to one backend, via a consistent-hash ring.

use lbhost_sdk::hash::fnv1a64;
use lbhost_sdk::ring::DEFAULT_POINTS_PER_WEIGHT;
use lbhost_sdk::{BackendSet, Backends, HashRing, Params, Request, Strategy};

/// Sends every request from one client IP (or, with `header`, one header value) to the same
/// backend. Backed by a consistent-hash ring over the backends' stable keys, so every lbhost node
/// agrees, and when a backend goes down only its own clients move.
///
/// Parameters: `header` (hash this header instead of the client IP; requests without it fall back
/// to the IP), `points_per_weight` (ring points per unit of weight, default 160).
pub struct IpHash {
    ring: HashRing,
    header: Option<String>,
    points_per_weight: u32,
}

impl Strategy for IpHash {
    fn configure(params: &Params) -> Result<Self, String> {
        params.allow_only(&["header", "points_per_weight"])?;
        let points_per_weight = params.parse_or("points_per_weight", DEFAULT_POINTS_PER_WEIGHT)?;
        if points_per_weight == 0 {
            return Err("strategy_config.points_per_weight: must be at least 1".into());
        }
        let header = params.get("header").map(str::to_string);
        if header.as_deref() == Some("") {
            return Err("strategy_config.header: must not be empty".into());
        }
        Ok(IpHash {
            ring: HashRing::default(),
            header,
            points_per_weight,
        })
    }

    fn backends_changed(&mut self, backends: &BackendSet) {
        self.ring = HashRing::new(backends, self.points_per_weight);
    }

    fn select(&mut self, backends: &Backends<'_>, request: &Request<'_>) -> Option<usize> {
        let key = match self.header.as_deref().and_then(|h| request.header(h)) {
            Some(value) => fnv1a64(value.as_bytes()),
            None => request.client_ip_hash(),
        };
        self.ring.lookup(key, backends)
    }
}

lbhost_sdk::export_strategy!(IpHash);

#[cfg(test)]
mod tests {
    use super::*;
    use lbhost_sdk::testing::{backend, Harness, TestRequest};
    use std::net::{IpAddr, Ipv4Addr};

    fn client(i: u32) -> TestRequest {
        TestRequest::from_ip(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)))
    }

    fn pool(n: usize) -> Vec<lbhost_sdk::Backend> {
        (0..n)
            .map(|i| backend(&format!("10.1.0.{i}:8080")))
            .collect()
    }

    #[test]
    fn same_client_same_backend() {
        let mut h = Harness::<IpHash>::new(&[]).unwrap();
        h.set_backends(pool(3));
        for i in 0..100 {
            let first = h.select(&client(i));
            assert!(first.is_some());
            assert_eq!(h.select(&client(i)), first);
        }
    }

    #[test]
    fn only_the_clients_of_a_removed_backend_move() {
        let mut h = Harness::<IpHash>::new(&[]).unwrap();
        h.set_backends(pool(5));
        let before: Vec<_> = (0..10_000).map(|i| h.select(&client(i)).unwrap()).collect();
        let mut after_pool = pool(5);
        after_pool[2] = after_pool[2].clone().down();
        h.set_backends(after_pool);
        let mut moved = 0;
        for (i, &was) in before.iter().enumerate() {
            let now = h.select(&client(i as u32)).unwrap();
            assert_ne!(now, 2);
            if was != 2 {
                assert_eq!(now, was, "client {i} moved though its backend stayed");
            } else {
                moved += 1;
            }
        }
        assert!(moved > 1000 && moved < 3000, "moved {moved}");
    }

    #[test]
    fn header_mode_hashes_the_header() {
        let mut h = Harness::<IpHash>::new(&[("header", "x-user")]).unwrap();
        h.set_backends(pool(4));
        let a = h.select(&client(1).with_header("X-User", "alice"));
        for i in 2..50 {
            assert_eq!(h.select(&client(i).with_header("x-user", "alice")), a);
        }
    }
}
