//! `GET /status`: the balancer's state as one JSON document, for people (the status page) and
//! scripts.
//!
//! Live state comes from the pool and the active strategy; request, error and connection
//! counts are read back from the metric families, so the two never disagree.

use std::collections::{BTreeMap, HashMap};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use prometheus::core::Collector;
use prometheus::IntCounterVec;
use serde::Serialize;

use crate::pool::{Backend, CircuitState};
use crate::proxy::Proxy;
use crate::reload::Reloader;
use crate::strategy::{FaultStatus, Strategies};
use crate::upstream::ConnectionCount;

/// The whole document.
#[derive(Debug, Serialize)]
struct Status {
    /// lbhost's version.
    version: &'static str,
    /// Seconds since the admin listener started.
    uptime_s: u64,
    /// When this document was made (milliseconds since the Unix epoch).
    now_unix_ms: u64,
    /// The main pool's backends (`default_pool`, else the pool `default`, else the first):
    /// without `pools`, the only pool's.
    backends: Vec<BackendStatus>,
    /// Every available backend of the main pool is ejected, so ejections are ignored until one
    /// is back.
    panic_mode: bool,
    /// Every pool by name, the main one included.
    pools: BTreeMap<String, PoolStatus>,
    /// The routes in the order they are tried.
    routes: Vec<RouteStatus>,
    /// Requests no route took (answered 404).
    unrouted: u64,
    /// Requests lbhost answered itself with no backend (503: nothing eligible), by status class.
    unavailable: BTreeMap<String, u64>,
    strategy: StrategyStatus,
    /// Each DNS backend entry: its last good answer, that answer's age and the last error.
    dns: Vec<crate::discovery::EntryStatus>,
    /// The strategy in shadow and its figures; null when none is.
    shadow: Option<crate::strategy::ShadowStatus>,
    /// The canary (running, or how it ended) and both sides' figures; null when none was set.
    canary: Option<crate::strategy::CanaryStatus>,
    /// Config version and the last config and strategy reloads ([`Reloader::status`]).
    reload: serde_json::Value,
    /// The TLS certificates in use: the listener's and the backends' client certificates.
    certificates: Vec<super::certificates::CertificateStatus>,
}

/// One pool: what the top level shows of the main pool, for this one.
#[derive(Debug, Serialize)]
struct PoolStatus {
    backends: Vec<BackendStatus>,
    panic_mode: bool,
    strategy: StrategyStatus,
    shadow: Option<crate::strategy::ShadowStatus>,
    canary: Option<crate::strategy::CanaryStatus>,
}

#[derive(Debug, Serialize)]
struct RouteStatus {
    name: String,
    pool: String,
}

#[derive(Debug, Serialize)]
struct BackendStatus {
    address: String,
    /// Stable key (hex), the same on every node.
    key: String,
    weight: u32,
    labels: BTreeMap<String, String>,
    /// One word for the page, the first that holds of: `down` (health checks), `circuit_open`,
    /// `half_open` (circuit probing), `ejected` (passive health), `draining` (weight 0), `up`.
    state: &'static str,
    /// Health checking has it up.
    up: bool,
    /// A strategy may choose it now (up, circuit letting requests through, not ejected, or the
    /// pool is in panic mode).
    eligible: bool,
    /// Passive health has it ejected now.
    ejected: bool,
    /// Failures in a row seen by passive health.
    consecutive_failures: u32,
    /// Ejections since start.
    ejections_total: u64,
    /// Circuit breaker: `closed`, `open` or `half-open`.
    circuit: &'static str,
    in_flight: u32,
    /// Moving average of the time to response head, in microseconds (0: none yet).
    latency_ewma_us: u32,
    /// Requests answered through this backend since start.
    requests_total: u64,
    /// Of those, 5xx (lbhost's own 502/504 for this backend included).
    errors_total: u64,
    /// `requests_total` by status class (`2xx`, `5xx`, ...).
    requests_by_class: BTreeMap<String, u64>,
    /// Attempts on this backend that failed and were retried on another.
    retries_total: u64,
    upstream_connections: Connections,
}

#[derive(Debug, Default, Serialize)]
struct Connections {
    opened: u64,
    reused: u64,
}

#[derive(Debug, Serialize)]
struct StrategyStatus {
    name: String,
    path: String,
    sha256: String,
    loaded_at_unix: u64,
    /// RFC 3339, UTC.
    loaded_at: String,
    /// Faults and quarantine of the active module.
    faults: FaultStatus,
    /// Faults since start, by kind, every module loaded so far included.
    faults_by_kind: BTreeMap<String, u64>,
    /// Requests routed by the host's fallback since start, by reason.
    fallbacks: BTreeMap<String, u64>,
}

/// The state of `proxy` and `reloader`; `started` is when the admin listener started.
pub(super) fn status(proxy: &Proxy, reloader: &Reloader, started: Instant) -> String {
    let metrics = &proxy.metrics;
    let per_backend = PerBackend {
        requests: series(&metrics.requests),
        ejections: per_pool_backend(&series(&metrics.ejections)),
        retries: per_pool_backend(&series(&metrics.retries)),
    };
    let connections: HashMap<String, ConnectionCount> = proxy
        .upstream
        .connections()
        .snapshot()
        .into_iter()
        .map(|c| (c.backend.clone(), c))
        .collect();
    let table = proxy.table.load();
    let pools: BTreeMap<String, PoolStatus> = table
        .services
        .iter()
        .map(|service| {
            let runtime = &service.runtime;
            let set = runtime.pool.load();
            let backends = set
                .backends
                .iter()
                .map(|b| backend_status(b, &per_backend, connections.get(&b.address)))
                .collect();
            let status = PoolStatus {
                backends,
                panic_mode: runtime.pool.is_panic(),
                strategy: strategy_status(&runtime.strategies, metrics),
                shadow: runtime.strategies.shadow_status(),
                canary: runtime.strategies.canary_status(),
            };
            (service.name().to_string(), status)
        })
        .collect();
    let main = pools.get(table.main().name());
    let status = Status {
        version: env!("CARGO_PKG_VERSION"),
        uptime_s: started.elapsed().as_secs(),
        now_unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        backends: table
            .main()
            .runtime
            .pool
            .load()
            .backends
            .iter()
            .map(|b| backend_status(b, &per_backend, connections.get(&b.address)))
            .collect(),
        panic_mode: main.is_some_and(|m| m.panic_mode),
        unavailable: by_class(&per_backend.requests, None, "none"),
        strategy: strategy_status(&table.main().runtime.strategies, metrics),
        dns: reloader.discovery().status(),
        shadow: table.main().runtime.strategies.shadow_status(),
        canary: table.main().runtime.strategies.canary_status(),
        reload: reloader.status(),
        routes: table
            .routes
            .iter()
            .map(|r| RouteStatus {
                name: r.name.clone(),
                pool: r.pool.clone(),
            })
            .collect(),
        unrouted: metrics.unrouted.get(),
        pools,
        certificates: super::certificates::certificates(&proxy.config.load()),
    };
    serde_json::to_string(&status).unwrap_or_else(|e| {
        tracing::error!(cause = %e, "serializing the admin status");
        r#"{"error":"status unavailable"}"#.to_string()
    })
}

/// What `/status` shows of a strategy slot's active strategy.
fn strategy_status(strategies: &Strategies, metrics: &crate::metrics::Metrics) -> StrategyStatus {
    let active = strategies.active();
    let loaded_at = active
        .loaded_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    StrategyStatus {
        name: active.name.clone(),
        path: active.path.display().to_string(),
        sha256: active.sha256.clone(),
        loaded_at_unix: loaded_at,
        loaded_at: humantime::format_rfc3339_seconds(active.loaded_at).to_string(),
        faults: strategies.fault_status(),
        faults_by_kind: totals_by(&series(&metrics.strategy_faults), "kind"),
        fallbacks: totals_by(&series(&metrics.fallbacks), "reason"),
    }
}

/// Counts read back from the metric families, for [`backend_status`].
struct PerBackend {
    requests: Vec<Series>,
    /// By (pool, backend).
    ejections: BTreeMap<(String, String), u64>,
    retries: BTreeMap<(String, String), u64>,
}

fn backend_status(
    backend: &Backend,
    counts: &PerBackend,
    connections: Option<&ConnectionCount>,
) -> BackendStatus {
    let requests_by_class = by_class(&counts.requests, Some(&backend.pool), &backend.address);
    let key = (backend.pool.to_string(), backend.address.clone());
    let circuit = backend.circuit_state();
    let ejected = backend.is_ejected();
    let state = if !backend.is_up() {
        "down"
    } else if circuit == CircuitState::Open {
        "circuit_open"
    } else if circuit == CircuitState::HalfOpen {
        "half_open"
    } else if ejected {
        "ejected"
    } else if backend.weight == 0 {
        "draining"
    } else {
        "up"
    };
    BackendStatus {
        address: backend.address.clone(),
        key: format!("{:016x}", backend.key),
        weight: backend.weight,
        labels: backend.labels.iter().cloned().collect(),
        state,
        up: backend.is_up(),
        eligible: backend.is_eligible(),
        ejected,
        consecutive_failures: backend.consecutive_failures(),
        ejections_total: counts.ejections.get(&key).copied().unwrap_or(0),
        circuit: circuit.as_str(),
        in_flight: backend.in_flight(),
        latency_ewma_us: backend.latency_ewma_us(),
        requests_total: requests_by_class.values().sum(),
        errors_total: requests_by_class.get("5xx").copied().unwrap_or(0),
        requests_by_class,
        retries_total: counts.retries.get(&key).copied().unwrap_or(0),
        upstream_connections: connections.map_or_else(Connections::default, |c| Connections {
            opened: c.opened,
            reused: c.reused,
        }),
    }
}

/// One series of a counter family: its labels and its value.
struct Series {
    labels: HashMap<String, String>,
    value: u64,
}

/// Every series of `family` as it is now.
fn series(family: &IntCounterVec) -> Vec<Series> {
    family
        .collect()
        .iter()
        .flat_map(|f| f.get_metric())
        .map(|m| Series {
            labels: m
                .get_label()
                .iter()
                .map(|l| (l.name().to_string(), l.value().to_string()))
                .collect(),
            // Counters hold integers; the f64 is exact below 2^53.
            value: m.get_counter().get_value() as u64,
        })
        .collect()
}

/// `lbhost_requests_total` of `backend` (in `pool`, or in any), summed over methods, by
/// status class.
fn by_class(requests: &[Series], pool: Option<&str>, backend: &str) -> BTreeMap<String, u64> {
    let of_backend = requests.iter().filter(|s| {
        s.labels.get("backend").is_some_and(|b| b == backend)
            && pool.is_none_or(|pool| s.labels.get("pool").is_some_and(|p| p == pool))
    });
    totals_by(of_backend, "status_class")
}

/// Sums of `series` by their `pool` and `backend` labels.
fn per_pool_backend(series: &[Series]) -> BTreeMap<(String, String), u64> {
    let mut totals = BTreeMap::new();
    for s in series {
        if let (Some(pool), Some(backend)) = (s.labels.get("pool"), s.labels.get("backend")) {
            *totals.entry((pool.clone(), backend.clone())).or_insert(0) += s.value;
        }
    }
    totals
}

/// Sums of `series` by the value of `label`.
fn totals_by<'a>(
    series: impl IntoIterator<Item = &'a Series>,
    label: &str,
) -> BTreeMap<String, u64> {
    let mut totals = BTreeMap::new();
    for s in series {
        if let Some(value) = s.labels.get(label) {
            *totals.entry(value.clone()).or_insert(0) += s.value;
        }
    }
    totals
}
