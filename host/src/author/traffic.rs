//! The synthetic traffic of a simulation: a deterministic generator, and requests from a skewed
//! mix of clients with the fields strategies read (address, headers, cookies, path, query).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::request::ClientHead;
use crate::strategy::RequestData;

/// A request of client `client`: its address (every tenth one IPv6), a user agent, `x-user`,
/// a session cookie, and one of a few paths and methods.
pub fn synthetic_request(client: u32, rng: &mut Rng) -> Box<RequestData> {
    let client_ip = if client % 10 == 9 {
        IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            0,
            0,
            0,
            0,
            (client >> 16) as u16,
            client as u16,
        ))
    } else {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + client))
    };
    let (method, path) = match rng.below(10) {
        0 => ("POST", format!("/api/orders?id={client}")),
        1..=3 => ("GET", "/static/app.js".to_string()),
        4..=6 => ("GET", format!("/api/users/{}", client % 100)),
        _ => ("GET", "/".to_string()),
    };
    let agents = ["curl/8.5", "Mozilla/5.0 (X11; Linux x86_64)", "okhttp/4.12"];
    let mut builder = http::Request::builder()
        .method(method)
        .uri(path)
        .header("user-agent", agents[(client % 3) as usize])
        .header("accept", "*/*")
        .header("x-user", format!("u{client}"));
    if client % 4 != 3 {
        builder = builder.header("cookie", format!("session=s{client}; theme=dark"));
    }
    let head = match builder.body(()) {
        Ok(request) => ClientHead::from_parts(request.into_parts().0),
        // Every part above is valid; an empty head all the same rather than a panic.
        Err(_) => ClientHead::empty(),
    };
    RequestData::new(head, client_ip)
}

/// A small deterministic generator (splitmix64) for traffic and latencies.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        lbhost_sdk::hash::mix64(self.0)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A client index, skewed: client `k` of `n` is drawn about `1/sqrt(k)` as often as client 0.
    pub fn client(&mut self, n: u32) -> u32 {
        let u = self.unit();
        ((u * u * f64::from(n)) as u32).min(n - 1)
    }

    /// A log-normal factor with median 1 and shape `sigma` (Box–Muller).
    pub fn log_normal(&mut self, sigma: f64) -> f64 {
        let u1 = self.unit().max(f64::MIN_POSITIVE);
        let u2 = self.unit();
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        (sigma * z).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_mix_is_deterministic_and_skewed() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let draws: Vec<u32> = (0..1000).map(|_| a.client(100)).collect();
        assert_eq!(draws, (0..1000).map(|_| b.client(100)).collect::<Vec<_>>());
        let low = draws.iter().filter(|c| **c < 25).count();
        assert!(
            low > 400,
            "the busiest quarter of clients sends half: {low}"
        );
        let head = synthetic_request(19, &mut a);
        assert!(head.client_ip.is_ipv6());
        assert_eq!(head.head.fields.get("x-user"), Some(&b"u19"[..]));
    }
}
