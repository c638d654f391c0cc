//! Prometheus metric families, defined in one typed struct and registered once at start.
//!
//! Label sets are bounded: backend addresses come from the config, methods and statuses are
//! folded into classes, fault kinds and results are fixed words. No paths, no client addresses.

mod series;

pub(crate) use series::BackendSeries;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Buckets from 100 µs to 30 s: sub-millisecond proxying up to slow backends.
const REQUEST_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];
/// Buckets from 250 ns to 10 ms for one strategy call.
const SELECT_BUCKETS: &[f64] = &[
    0.00000025, 0.0000005, 0.000001, 0.0000025, 0.000005, 0.00001, 0.000025, 0.0001, 0.001, 0.01,
];

/// Every metric lbhost exports.
#[derive(Debug)]
pub struct Metrics {
    /// Tells this registry's series apart from another's (see [`BackendSeries`]).
    id: u64,
    registry: Registry,
    /// `lbhost_requests_total{pool, backend, method, status_class}`: client requests, by the pool
    /// and the backend that answered (`none` when lbhost answered itself; pool `none` when no
    /// route took the request or it was refused before routing).
    pub requests: IntCounterVec,
    /// `lbhost_request_duration_seconds{pool, backend}`: request start to response head.
    pub request_duration: HistogramVec,
    /// `lbhost_backend_up{pool, backend}`: 1 while health checking has the backend up.
    pub backend_up: IntGaugeVec,
    /// `lbhost_backend_in_flight{pool, backend}`: requests in flight (sampled at scrape).
    pub backend_in_flight: IntGaugeVec,
    /// `lbhost_backend_ejections_total{pool, backend}`: passive ejections.
    pub ejections: IntCounterVec,
    /// `lbhost_backend_circuit_state{pool, backend}`: 0 closed, 1 open, 2 half-open.
    pub circuit_state: IntGaugeVec,
    /// `lbhost_health_checks_total{pool, backend, result}`: probes, `ok` or `fail`.
    pub health_checks: IntCounterVec,
    /// `lbhost_health_check_duration_seconds{pool, backend}`.
    pub health_check_duration: HistogramVec,
    /// `lbhost_strategy_select_duration_seconds`: one `select` call, fallback included.
    pub select_duration: Histogram,
    /// `lbhost_strategy_faults_total{kind}`: guest calls that faulted (trap, timeout, ...), in
    /// `select` or in any other export (`on-response`, `configure` of a rebuilt instance, ...).
    pub strategy_faults: IntCounterVec,
    /// `lbhost_strategy_fallbacks_total{reason}`: requests routed by the host's fallback
    /// (`fault` or `quarantine`).
    pub fallbacks: IntCounterVec,
    /// `lbhost_shadow_selects_total{outcome}`: calls of the shadow strategy: `agree` or
    /// `disagree` with the active strategy's choice, or `fault`.
    pub shadow_selects: IntCounterVec,
    /// `lbhost_canary_requests_total{side, result}`: requests answered while a canary ran, by
    /// the side that routed them (`active`, `canary`) and `ok` or `error` (5xx, or a failed
    /// attempt).
    pub canary_requests: IntCounterVec,
    /// `lbhost_canary_rollbacks_total{reason}`: canaries rolled back by themselves (`faults`,
    /// `errors`, `latency`) or by hand (`abort`).
    pub canary_rollbacks: IntCounterVec,
    /// `lbhost_strategy_quarantined`: 1 while the active strategy is quarantined.
    pub quarantined: IntGaugeVec,
    /// `lbhost_strategy_info{name, sha256}`: 1 for the active strategy.
    pub strategy_info: IntGaugeVec,
    /// `lbhost_reloads_total{kind, result}`: config and strategy reloads, applied or refused.
    pub reloads: IntCounterVec,
    /// `lbhost_retries_total{pool, backend}`: attempts retried on another backend, by the failed one.
    pub retries: IntCounterVec,
    /// `lbhost_retry_budget_exhausted_total`: retries not made because the budget was spent.
    pub retry_budget_exhausted: IntCounter,
    /// `lbhost_rate_limited_total`: requests answered 429.
    pub rate_limited: IntCounter,
    /// `lbhost_unrouted_requests_total`: requests no route took (answered 404).
    pub unrouted: IntCounter,
    /// `lbhost_admin_refused_total{reason}`: mutating admin requests refused, `unauthorized`
    /// (no or a wrong bearer token) or `no_token` (admin off loopback, no `admin_token_file`).
    pub admin_refused: IntCounterVec,
    /// `lbhost_upstream_connections_total{backend, kind}`: `opened` or `reused`.
    pub upstream_connections: IntCounterVec,
    /// `lbhost_client_connections{state}`: open client connections, `serving` (held by the
    /// HTTP machinery) or `parked` (idle keep-alive, waiting as a bare socket).
    pub client_connections: IntGaugeVec,
    /// `lbhost_tls_certificate_expiry_seconds{names,file}`: when each served certificate, and
    /// each client certificate presented to backends (`names` empty), expires (Unix time).
    pub tls_certificate_expiry: IntGaugeVec,
    /// `lbhost_tls_handshakes_total{result}`: TLS handshakes, `ok`, `failed` or `timeout`.
    pub tls_handshakes: IntCounterVec,
    /// `lbhost_upstream_tls_failures_total{backend, reason}`: failed TLS handshakes with
    /// `https://` backends (traffic and health probes), by reason (see
    /// [`crate::upstream::TlsFailure::reason`]).
    pub upstream_tls_failures: IntCounterVec,
    /// `lbhost_dns_lookups_total{name, result}`: lookups of DNS backend entries, `ok`,
    /// `nxdomain`, `empty`, `timeout` or `error`.
    pub dns_lookups: IntCounterVec,
    /// `lbhost_dns_addresses{name}`: addresses in the last good answer of a DNS entry.
    pub dns_addresses: IntGaugeVec,
    /// `lbhost_grpc_responses_total{backend, grpc_status}`: gRPC calls by how they ended (the
    /// backend's `grpc-status`, `none` if it sent none, or lbhost's own with `backend="none"`).
    pub grpc_responses: IntCounterVec,
}

impl Metrics {
    /// Creates and registers every family.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let gauge =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntGaugeVec, prometheus::Error> {
                let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(g.clone()))?;
                Ok(g)
            };
        let histogram = |name: &str,
                         help: &str,
                         buckets: &[f64],
                         labels: &[&str]|
         -> Result<HistogramVec, prometheus::Error> {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                labels,
            )?;
            registry.register(Box::new(h.clone()))?;
            Ok(h)
        };
        let select_duration = Histogram::with_opts(
            HistogramOpts::new(
                "lbhost_strategy_select_duration_seconds",
                "Time to choose a backend (strategy call, or fallback)",
            )
            .buckets(SELECT_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(select_duration.clone()))?;
        let retry_budget_exhausted = IntCounter::new(
            "lbhost_retry_budget_exhausted_total",
            "Retries not made because the retry budget was spent",
        )?;
        registry.register(Box::new(retry_budget_exhausted.clone()))?;
        let rate_limited = IntCounter::new(
            "lbhost_rate_limited_total",
            "Requests answered 429 by per-client rate limiting",
        )?;
        registry.register(Box::new(rate_limited.clone()))?;
        let unrouted = IntCounter::new(
            "lbhost_unrouted_requests_total",
            "Requests no route took, answered 404",
        )?;
        registry.register(Box::new(unrouted.clone()))?;
        static IDS: AtomicU64 = AtomicU64::new(1);
        Ok(Metrics {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            requests: counter(
                "lbhost_requests_total",
                "Client requests by backend, method and status class",
                &["pool", "backend", "method", "status_class"],
            )?,
            request_duration: histogram(
                "lbhost_request_duration_seconds",
                "Time from request to response head, by backend",
                REQUEST_BUCKETS,
                &["pool", "backend"],
            )?,
            backend_up: gauge(
                "lbhost_backend_up",
                "1 while the backend is up",
                &["pool", "backend"],
            )?,
            backend_in_flight: gauge(
                "lbhost_backend_in_flight",
                "Requests in flight to the backend",
                &["pool", "backend"],
            )?,
            ejections: counter(
                "lbhost_backend_ejections_total",
                "Passive ejections of the backend",
                &["pool", "backend"],
            )?,
            circuit_state: gauge(
                "lbhost_backend_circuit_state",
                "Circuit breaker: 0 closed, 1 open, 2 half-open",
                &["pool", "backend"],
            )?,
            health_checks: counter(
                "lbhost_health_checks_total",
                "Active health probes by result (ok, fail)",
                &["pool", "backend", "result"],
            )?,
            health_check_duration: histogram(
                "lbhost_health_check_duration_seconds",
                "Active health probe duration",
                REQUEST_BUCKETS,
                &["pool", "backend"],
            )?,
            select_duration,
            strategy_faults: counter(
                "lbhost_strategy_faults_total",
                "Strategy calls that faulted, by kind",
                &["kind"],
            )?,
            shadow_selects: counter(
                "lbhost_shadow_selects_total",
                "Calls of the shadow strategy: agree or disagree with the active one, or fault",
                &["outcome"],
            )?,
            canary_requests: counter(
                "lbhost_canary_requests_total",
                "Requests answered while a canary ran, by side (active, canary) and result (ok, error)",
                &["side", "result"],
            )?,
            canary_rollbacks: counter(
                "lbhost_canary_rollbacks_total",
                "Canaries rolled back, by reason (faults, errors, latency, abort)",
                &["reason"],
            )?,
            fallbacks: counter(
                "lbhost_strategy_fallbacks_total",
                "Requests routed by the host's fallback, by reason (fault, quarantine)",
                &["reason"],
            )?,
            quarantined: gauge(
                "lbhost_strategy_quarantined",
                "1 while the active strategy is quarantined",
                &["name"],
            )?,
            strategy_info: gauge(
                "lbhost_strategy_info",
                "The active strategy module",
                &["name", "sha256"],
            )?,
            reloads: counter(
                "lbhost_reloads_total",
                "Config and strategy reloads, by kind and result (applied, refused)",
                &["kind", "result"],
            )?,
            retries: counter(
                "lbhost_retries_total",
                "Attempts retried on another backend, by the backend that failed",
                &["pool", "backend"],
            )?,
            retry_budget_exhausted,
            rate_limited,
            unrouted,
            admin_refused: counter(
                "lbhost_admin_refused_total",
                "Mutating admin requests refused, by reason (unauthorized, no_token)",
                &["reason"],
            )?,
            upstream_connections: counter(
                "lbhost_upstream_connections_total",
                "Upstream connections by kind (opened, reused)",
                &["backend", "kind"],
            )?,
            client_connections: gauge(
                "lbhost_client_connections",
                "Open client connections, serving or parked (idle keep-alive)",
                &["state"],
            )?,
            tls_certificate_expiry: gauge(
                "lbhost_tls_certificate_expiry_seconds",
                "When each served TLS certificate expires (Unix time).",
                &["names", "file"],
            )?,
            tls_handshakes: counter(
                "lbhost_tls_handshakes_total",
                "TLS handshakes with clients, by result (ok, failed, timeout).",
                &["result"],
            )?,
            upstream_tls_failures: counter(
                "lbhost_upstream_tls_failures_total",
                "Failed TLS handshakes with backends, by backend and reason",
                &["backend", "reason"],
            )?,
            dns_lookups: counter(
                "lbhost_dns_lookups_total",
                "Lookups of DNS backend entries, by name and result (ok, nxdomain, empty, timeout, error)",
                &["name", "result"],
            )?,
            dns_addresses: gauge(
                "lbhost_dns_addresses",
                "Addresses in the last good answer of a DNS backend entry",
                &["name"],
            )?,
            grpc_responses: counter(
                "lbhost_grpc_responses_total",
                "gRPC calls by backend and grpc-status (none: the backend sent none)",
                &["backend", "grpc_status"],
            )?,
            registry,
        })
    }

    /// Counts one finished request.
    pub fn request(
        &self,
        pool: &str,
        backend: &str,
        method: &Method,
        status: StatusCode,
        started: Instant,
    ) {
        let (method, status) = (method_class(method), status_class(status));
        self.count_request(pool, backend, method, status, started.elapsed());
    }

    /// [`Metrics::request`] for a request a backend answered `took` after it started, through
    /// the handles of its series that `series` keeps.
    pub fn backend_request(
        &self,
        series: &BackendSeries,
        pool: &str,
        backend: &str,
        method: &Method,
        status: StatusCode,
        took: Duration,
    ) {
        let (method, status) = (method_class(method), status_class(status));
        match series.duration(self, pool, backend) {
            Some(duration) => {
                series.requests(self, pool, backend, method, status).inc();
                duration.observe(took.as_secs_f64());
            }
            None => self.count_request(pool, backend, method, status, took),
        }
    }

    /// Counts a request by its labels' values (indexes of [`METHOD_CLASSES`] and
    /// [`STATUS_CLASSES`]), looking its series up.
    fn count_request(
        &self,
        pool: &str,
        backend: &str,
        method: usize,
        status: usize,
        took: Duration,
    ) {
        self.requests
            .with_label_values(&[
                pool,
                backend,
                METHOD_CLASSES[method],
                STATUS_CLASSES[status],
            ])
            .inc();
        self.request_duration
            .with_label_values(&[pool, backend])
            .observe(took.as_secs_f64());
    }

    /// Removes every series of `backend` in `pool` (it left the pool, or the pool is gone), so
    /// that the exposition holds only what runs.
    pub fn forget_backend(&self, pool: &str, backend: &str) {
        let pair = [pool, backend];
        for family in [
            &self.backend_up,
            &self.backend_in_flight,
            &self.circuit_state,
        ] {
            let _ = family.remove_label_values(&pair);
        }
        for family in [&self.ejections, &self.retries] {
            let _ = family.remove_label_values(&pair);
        }
        for family in [&self.request_duration, &self.health_check_duration] {
            let _ = family.remove_label_values(&pair);
        }
        for result in ["ok", "fail"] {
            let _ = self
                .health_checks
                .remove_label_values(&[pool, backend, result]);
        }
        for method in METHOD_CLASSES {
            for status in STATUS_CLASSES {
                let _ = self
                    .requests
                    .remove_label_values(&[pool, backend, method, status]);
            }
        }
    }

    /// Records how long choosing a backend took.
    pub fn select(&self, took: Duration) {
        self.select_duration.observe(took.as_secs_f64());
    }

    /// Counts one fault of a guest call, of `kind` (a fixed word, see
    /// [`crate::strategy::Fault::kind`]).
    pub fn strategy_fault(&self, kind: &str) {
        self.strategy_faults.with_label_values(&[kind]).inc();
    }

    /// Counts one request served by the fallback, for `reason`: `fault` (the strategy faulted
    /// choosing it) or `quarantine` (the strategy was not asked).
    pub fn fallback(&self, reason: &str) {
        self.fallbacks.with_label_values(&[reason]).inc();
    }

    /// Records a reload attempt.
    pub fn reload(&self, kind: &str, result: &str) {
        self.reloads.with_label_values(&[kind, result]).inc();
    }

    /// Makes `name`/`sha256` the one active strategy in `lbhost_strategy_info`.
    pub fn set_active_strategy(&self, name: &str, sha256: &str) {
        self.strategy_info.reset();
        self.strategy_info.with_label_values(&[name, sha256]).set(1);
        self.quarantined.reset();
        self.quarantined.with_label_values(&[name]).set(0);
    }

    /// Records one active health probe.
    pub fn health_check(&self, pool: &str, backend: &str, ok: bool, took: Duration) {
        self.health_checks
            .with_label_values(&[pool, backend, if ok { "ok" } else { "fail" }])
            .inc();
        self.health_check_duration
            .with_label_values(&[pool, backend])
            .observe(took.as_secs_f64());
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(cause = %e, "encoding metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The `method` label's values; requests with other methods count as `other`.
const METHOD_CLASSES: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other",
];
/// The `status_class` label's values.
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The index of `method`'s class in [`METHOD_CLASSES`].
fn method_class(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        Method::PATCH => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

/// The index of `status`'s class in [`STATUS_CLASSES`].
fn status_class(status: StatusCode) -> usize {
    match status.as_u16() {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}
