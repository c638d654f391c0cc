//! Backends, configs and waiting: what most tests start from.

use std::time::Duration;

use demo_backend::Backend;
use serde_json::{json, Value};

/// Starts one demo backend per name, each on a free loopback port.
pub async fn start_backends(names: &[&str]) -> Vec<Backend> {
    let mut backends = Vec::with_capacity(names.len());
    for name in names {
        let backend = Backend::builder(*name)
            .start()
            .await
            .unwrap_or_else(|e| panic!("starting demo backend {name}: {e}"));
        backends.push(backend);
    }
    backends
}

/// Starts one demo backend on each of the loopback addresses `ips` (127.0.0.2, 127.0.0.3, ...:
/// all of 127.0.0.0/8 reaches `lo` on Linux), all on one port, so that one DNS name with a port
/// can stand for them; each is named by its address. Returns the port and the backends.
pub async fn loopback_backends(ips: &[&str]) -> (u16, Vec<Backend>) {
    for _ in 0..20 {
        let port = crate::free_addr().port();
        let mut backends = Vec::with_capacity(ips.len());
        for ip in ips {
            let addr = std::net::SocketAddr::new(ip.parse().expect("an IP address"), port);
            match Backend::builder(*ip).listen(addr).start().await {
                Ok(backend) => backends.push(backend),
                Err(_) => break,
            }
        }
        if backends.len() == ips.len() {
            return (port, backends);
        }
        for backend in backends {
            backend.stop().await;
        }
    }
    panic!("no port free on all of {ips:?}");
}

/// A minimal config: the built-in strategy `strategy` (absolute path) over `backends`.
/// `listen` and `admin` are filled in by [`crate::Lb::start`].
pub fn config(strategy: &str, backends: &[Backend]) -> Value {
    json!({
        "strategy": crate::strategy(strategy),
        "backends": backends
            .iter()
            .map(|b| json!({ "url": b.url() }))
            .collect::<Vec<_>>(),
    })
}

/// Polls `condition` every 5 ms until it holds; panics naming `what` after `within`.
pub async fn wait_until(what: &str, within: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A metric's value from the Prometheus text exposition `text`: the first sample whose line
/// starts with `series`, 0 when there is none (a counter never incremented is not exported).
pub fn metric(text: &str, series: &str) -> f64 {
    samples(text, series).next().unwrap_or(0.0)
}

/// The sum of every sample of `name` in `text`, whatever its labels.
pub fn metric_total(text: &str, name: &str) -> f64 {
    samples(text, name).sum()
}

fn samples<'t>(text: &'t str, series: &'t str) -> impl Iterator<Item = f64> + 't {
    text.lines()
        .filter(move |l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
}
