//! Prometheus metric families, defined in one typed struct and registered once at start.

use std::time::Instant;

use http::{Method, StatusCode};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric lbhost exports. Label values are bounded: backend addresses come from the config,
/// methods and statuses are folded into classes; no paths or client addresses.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `lbhost_requests_total{backend, method, status_class}`.
    pub requests: IntCounterVec,
    /// `lbhost_request_duration_seconds{backend}`: until the response head.
    pub request_duration: HistogramVec,
    /// `lbhost_strategy_faults_total{kind}`: guest calls that failed and fell back.
    pub strategy_faults: IntCounterVec,
    /// `lbhost_strategy_info{name, sha256}`: 1 for the active strategy.
    pub strategy_info: IntGaugeVec,
    /// `lbhost_reloads_total{kind, result}`: config and strategy reloads, applied or refused.
    pub reloads: IntCounterVec,
}

impl Metrics {
    /// Creates and registers every family.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "lbhost_requests_total",
                "Client requests by backend, method and status class",
            ),
            &["backend", "method", "status_class"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "lbhost_request_duration_seconds",
                "Time from request to response head, by backend",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["backend"],
        )?;
        let strategy_faults = IntCounterVec::new(
            Opts::new(
                "lbhost_strategy_faults_total",
                "Strategy calls that faulted, by kind",
            ),
            &["kind"],
        )?;
        let strategy_info = IntGaugeVec::new(
            Opts::new("lbhost_strategy_info", "The active strategy module"),
            &["name", "sha256"],
        )?;
        let reloads = IntCounterVec::new(
            Opts::new(
                "lbhost_reloads_total",
                "Config and strategy reloads, by kind and result (applied, refused)",
            ),
            &["kind", "result"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(strategy_faults.clone()))?;
        registry.register(Box::new(strategy_info.clone()))?;
        registry.register(Box::new(reloads.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            request_duration,
            strategy_faults,
            strategy_info,
            reloads,
        })
    }

    /// Counts one finished request.
    pub fn request(&self, backend: &str, method: &Method, status: StatusCode, started: Instant) {
        self.requests
            .with_label_values(&[backend, method_class(method), status_class(status)])
            .inc();
        self.request_duration
            .with_label_values(&[backend])
            .observe(started.elapsed().as_secs_f64());
    }

    /// Counts one strategy fault.
    pub fn strategy_fault(&self, kind: &str) {
        self.strategy_faults.with_label_values(&[kind]).inc();
    }

    /// Records a reload attempt.
    pub fn reload(&self, kind: &str, result: &str) {
        self.reloads.with_label_values(&[kind, result]).inc();
    }

    /// Makes `name`/`sha256` the one active strategy in `lbhost_strategy_info`.
    pub fn set_active_strategy(&self, name: &str, sha256: &str) {
        self.strategy_info.reset();
        self.strategy_info.with_label_values(&[name, sha256]).set(1);
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

fn method_class(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}
