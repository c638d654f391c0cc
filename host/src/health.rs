//! Active health checks: each backend is probed (HTTP `GET path`, a connect with the TLS
//! handshake for `https://`, or the gRPC
//! health service's `Check`) on its own
//! jittered schedule, concurrently, and its state flips only after `healthy_threshold` /
//! `unhealthy_threshold` consecutive results.
//!
//! Initial state: a backend starts *up* so traffic flows at once, but on probation: it is probed
//! right away, and a failure of that first probe takes it down immediately (as HAProxy does), so
//! a backend that was never seen healthy is not trusted for longer than one probe timeout.
//!
//! Real traffic may take a backend down too (a refused connection, see the proxy); the probes
//! then need `healthy_threshold` successes in a row to bring it back, counted from that moment.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header;
use tokio::task::JoinHandle;

use crate::body::UpstreamBody;
use crate::config::{HealthCheckConfig, ProbeKind};
use crate::http1::RequestHeadBuilder;
use crate::metrics::Metrics;
use crate::pool::{Backend, Pool};
use crate::upstream::Upstream;

/// Probes share the connector and codec of traffic, with connections of their own (each
/// probe's is new and closed after the answer).
type ProbeClient = Arc<Upstream>;

/// Runs one probe task per backend and keeps the set of tasks in step with the pool.
#[derive(Debug)]
pub(crate) struct HealthChecker {
    pool: Arc<Pool>,
    metrics: Arc<Metrics>,
    client: ProbeClient,
    tasks: HashMap<String, (JoinHandle<()>, HealthCheckConfig)>,
}

impl HealthChecker {
    /// A checker for `pool`; call [`HealthChecker::sync`] to start probing.
    pub(crate) fn new(pool: Arc<Pool>, metrics: Arc<Metrics>) -> Self {
        let client = Arc::new(Upstream::counting(&metrics.upstream_tls_failures));
        HealthChecker {
            pool,
            metrics,
            client,
            tasks: HashMap::new(),
        }
    }

    /// Starts probes for backends that have none, stops those of removed backends, and restarts
    /// all when the settings change. With `None`, stops everything and marks every backend up.
    pub(crate) fn sync(&mut self, config: Option<&HealthCheckConfig>) {
        let set = self.pool.load();
        let Some(config) = config else {
            for (_, (task, _)) in self.tasks.drain() {
                task.abort();
            }
            let changed = set.backends.iter().fold(false, |c, b| b.set_up(true) | c);
            if changed {
                self.pool.refresh();
            }
            self.publish(&set.backends);
            return;
        };
        self.tasks.retain(|address, (task, settings)| {
            let keep = settings == config && set.backends.iter().any(|b| &b.address == address);
            if !keep {
                task.abort();
            }
            keep
        });
        for backend in &set.backends {
            if !self.tasks.contains_key(&backend.address) {
                let task = tokio::spawn(probe_loop(
                    Arc::clone(&self.pool),
                    Arc::clone(backend),
                    Arc::clone(&self.metrics),
                    self.client.clone(),
                    config.clone(),
                ));
                self.tasks
                    .insert(backend.address.clone(), (task, config.clone()));
            }
        }
        self.publish(&set.backends);
    }

    /// Sets the per-backend gauges of `backends` to their current state (new backends appear
    /// at once, not at their first change).
    fn publish(&self, backends: &[Arc<Backend>]) {
        for b in backends {
            let address = b.metric_labels();
            self.metrics
                .backend_up
                .with_label_values(&address)
                .set(i64::from(b.is_up()));
            self.metrics
                .circuit_state
                .with_label_values(&address)
                .set(b.circuit_state() as i64);
        }
    }
}

impl Drop for HealthChecker {
    fn drop(&mut self) {
        for (task, _) in self.tasks.values() {
            task.abort();
        }
    }
}

/// Probes `backend` forever, flipping its state with hysteresis.
async fn probe_loop(
    pool: Arc<Pool>,
    backend: Arc<Backend>,
    metrics: Arc<Metrics>,
    client: ProbeClient,
    config: HealthCheckConfig,
) {
    let mut successes = 0u32;
    let mut failures = 0u32;
    let mut first = true;
    let mut seen_up = backend.is_up();
    // Spread the first probes of many backends over up to 100 ms.
    tokio::time::sleep(jitter(config.interval.min(Duration::from_millis(100)), 1.0)).await;
    loop {
        let started = Instant::now();
        let result = probe(&client, &backend, &config).await;
        metrics.health_check(
            &backend.pool,
            &backend.address,
            result.is_ok(),
            started.elapsed(),
        );
        let up = backend.is_up();
        if up != seen_up {
            // Someone else (real traffic) changed the state: count afresh from here.
            successes = 0;
            failures = 0;
        }
        match &result {
            Ok(()) => {
                successes += 1;
                failures = 0;
            }
            Err(_) => {
                failures += 1;
                successes = 0;
            }
        }
        let flip = match &result {
            Ok(()) => !up && successes >= config.healthy_threshold,
            Err(_) => up && (first || failures >= config.unhealthy_threshold),
        };
        if flip && backend.set_up(!up) {
            pool.refresh();
            metrics
                .backend_up
                .with_label_values(&backend.metric_labels())
                .set(i64::from(!up));
            match &result {
                Ok(()) => tracing::info!(backend = %backend.address, successes, "backend up"),
                Err(cause) => {
                    tracing::warn!(backend = %backend.address, failures, %cause, "backend down")
                }
            }
        }
        seen_up = backend.is_up();
        first = false;
        tokio::time::sleep(jitter(config.interval, 0.1)).await;
    }
}

/// One probe within `config.timeout`.
async fn probe(
    client: &ProbeClient,
    backend: &Backend,
    config: &HealthCheckConfig,
) -> Result<(), String> {
    let attempt = async {
        match config.kind {
            ProbeKind::Http => probe_http(client, backend, config).await,
            ProbeKind::Tcp => {
                let deadline = tokio::time::Instant::now() + config.timeout;
                client
                    .probe_connect(backend, config.timeout, deadline)
                    .await
                    .map_err(|e| e.to_string())
            }
            ProbeKind::Grpc => {
                let deadline = tokio::time::Instant::now() + config.timeout;
                client.probe_grpc(backend, &config.service, deadline).await
            }
        }
    };
    match tokio::time::timeout(config.timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {:?}", config.timeout)),
    }
}

/// `GET path`: healthy if the status is one of `expected_statuses` (default any 2xx or 3xx).
async fn probe_http(
    client: &ProbeClient,
    backend: &Backend,
    config: &HealthCheckConfig,
) -> Result<(), String> {
    let mut head = RequestHeadBuilder::new(&http::Method::GET, &config.path);
    head.header(b"host", backend.authority.as_str().as_bytes());
    head.header(
        header::USER_AGENT.as_str().as_bytes(),
        b"lbhost-health-check",
    );
    // A new connection per probe, closed after it: a probe must see a backend that stopped
    // accepting.
    head.close_connection();
    let head = head.finish(&UpstreamBody::empty());
    let deadline = tokio::time::Instant::now() + config.timeout;
    let response = client
        .probe(backend, &head, config.timeout, deadline)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let healthy = if config.expected_statuses.is_empty() {
        status.is_success() || status.is_redirection()
    } else {
        config.expected_statuses.contains(&status.as_u16())
    };
    if healthy {
        Ok(())
    } else {
        Err(format!("status {}", status.as_u16()))
    }
}

/// `base` scaled by a random factor in `[1 - spread, 1 + spread)` (or `[0, base)` for spread 1).
fn jitter(base: Duration, spread: f64) -> Duration {
    let unit = fastrand::f64();
    base.mul_f64((1.0 - spread + 2.0 * spread * unit).max(0.0))
}
