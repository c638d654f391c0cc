//! IP hash: each client IP sticks to one backend, by rendezvous hashing.

use lbhost_sdk::hash::fnv1a64;
use lbhost_sdk::{BackendSet, Backends, Params, RendezvousTable, Request, Strategy};

/// Sends every request from one client IP (or, with `header`, one header value) to the same
/// backend. Rendezvous hashing over the backends' stable keys, precomputed into a table: every
/// lbhost node agrees, shares are even (weighted by weight), and when a backend goes down only its
/// own clients move. O(1) per request whatever the number of backends.
///
/// Parameter: `header` (hash this header instead of the client IP; requests without it fall back
/// to the IP).
pub struct IpHash {
    table: RendezvousTable,
    header: Option<String>,
}

impl Strategy for IpHash {
    fn configure(params: &Params) -> Result<Self, String> {
        params.allow_only(&["header"])?;
        let header = params.get("header").map(str::to_string);
        if header.as_deref() == Some("") {
            return Err("strategy_config.header: must not be empty".into());
        }
        Ok(IpHash {
            table: RendezvousTable::default(),
            header,
        })
    }

    fn backends_changed(&mut self, backends: &BackendSet) {
        self.table = RendezvousTable::new(backends);
    }

    fn select(&mut self, backends: &Backends<'_>, request: &Request<'_>) -> Option<usize> {
        let key = match self.header.as_deref().and_then(|h| request.header(h)) {
            Some(value) => fnv1a64(value.as_bytes()),
            None => request.client_ip_hash(),
        };
        self.table.lookup(key, backends)
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
        // Backend 2 held about a fifth of the clients: at most 1/5 + 2 % move.
        assert!(moved > 1600 && moved < 2200, "moved {moved}");
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
