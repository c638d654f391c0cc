//! One backend and its live state: in flight, health, passive ejection, circuit, eligibility.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use http::uri::Authority;

use super::circuit::{Circuit, CircuitState};
use super::passive::Passive;
use crate::config::{BackendConfig, BackendProtocol};
use crate::metrics::BackendSeries;

/// A backend: its identity from the config and its live counters.
#[derive(Debug)]
pub struct Backend {
    /// `host:port`, as configured.
    pub address: String,
    /// The name of the pool it belongs to (its metric series carry it).
    pub pool: Arc<str>,
    /// Parsed form of `address`, used to build upstream URIs.
    pub authority: Authority,
    /// Stable key: the same hash of `address` on every node and across reloads.
    pub key: u64,
    /// Relative weight; 0 drains.
    pub weight: u32,
    /// Labels, sorted by key.
    pub labels: Vec<(String, String)>,
    /// How to speak TLS to it (`https://`); `None` is plain HTTP.
    pub tls: Option<Arc<crate::tls::BackendTls>>,
    /// The protocol spoken to it.
    pub protocol: BackendProtocol,
    /// Requests forwarded and not yet finished (response body done or dropped).
    in_flight: Arc<AtomicU32>,
    /// Up according to active health checking (or a refused connection, when active checks
    /// run); starts up.
    up: Arc<AtomicBool>,
    /// Passive ejection state.
    passive: Arc<Passive>,
    /// Circuit breaker state.
    circuit: Arc<Circuit>,
    /// What strategies see: computed by [`super::Pool::refresh`] from `up`, the ejection, the
    /// circuit and the panic rule of the whole set.
    eligible: AtomicBool,
    /// When it last became eligible ([`super::clock_ms`]): when it joined the pool, or when it
    /// came back after being ineligible. Strategies ramp a backend up from here (slow start).
    eligible_since_ms: AtomicU64,
    /// Moving average of the time to response head, in microseconds (0: none yet).
    latency_ewma_us: Arc<AtomicU32>,
    /// Its series of the per-request metrics, once used.
    pub series: Arc<BackendSeries>,
}

impl Backend {
    /// A backend of the pool `default` from its config, up, with nothing in flight.
    pub fn new(config: &BackendConfig) -> Self {
        Backend::of_pool(config, Arc::from(crate::config::DEFAULT_POOL))
    }

    /// A backend of the pool named `pool`, up, with nothing in flight.
    pub fn of_pool(config: &BackendConfig, pool: Arc<str>) -> Self {
        Backend {
            pool,
            address: config.address.clone(),
            authority: authority(&config.address),
            key: lbhost_sdk::hash::backend_key(&config.address),
            weight: config.weight,
            labels: config.labels.clone(),
            tls: config.tls.clone(),
            protocol: config.protocol,
            in_flight: Arc::new(AtomicU32::new(0)),
            up: Arc::new(AtomicBool::new(true)),
            passive: Arc::default(),
            circuit: Arc::default(),
            eligible: AtomicBool::new(true),
            eligible_since_ms: AtomicU64::new(super::clock_ms()),
            latency_ewma_us: Arc::new(AtomicU32::new(0)),
            series: Arc::default(),
        }
    }

    /// The same backend with a new weight, labels or TLS settings, sharing its live state.
    pub fn reconfigured(&self, config: &BackendConfig) -> Self {
        Backend {
            address: self.address.clone(),
            pool: Arc::clone(&self.pool),
            authority: self.authority.clone(),
            key: self.key,
            weight: config.weight,
            labels: config.labels.clone(),
            tls: config.tls.clone(),
            protocol: config.protocol,
            in_flight: Arc::clone(&self.in_flight),
            up: Arc::clone(&self.up),
            passive: Arc::clone(&self.passive),
            circuit: Arc::clone(&self.circuit),
            eligible: AtomicBool::new(self.is_eligible()),
            eligible_since_ms: AtomicU64::new(self.eligible_since_ms()),
            latency_ewma_us: Arc::clone(&self.latency_ewma_us),
            series: Arc::clone(&self.series),
        }
    }

    /// The values of the `pool` and `backend` labels of its metric series.
    pub fn metric_labels(&self) -> [&str; 2] {
        [&self.pool, &self.address]
    }

    /// Whether a strategy may choose this backend now.
    pub fn is_eligible(&self) -> bool {
        self.eligible.load(Ordering::Acquire)
    }

    /// Sets what strategies see; returns whether it changed. Only [`super::Pool::refresh`]
    /// calls this.
    pub(super) fn set_eligible(&self, eligible: bool) -> bool {
        let changed = self.eligible.swap(eligible, Ordering::AcqRel) != eligible;
        if changed && eligible {
            self.eligible_since_ms
                .store(super::clock_ms(), Ordering::Release);
        }
        changed
    }

    /// When it last became eligible, in [`super::clock_ms`] milliseconds.
    pub fn eligible_since_ms(&self) -> u64 {
        self.eligible_since_ms.load(Ordering::Acquire)
    }

    /// Whether health checking has this backend up. Call [`super::Pool::refresh`] after
    /// changing it with [`Backend::set_up`].
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Sets the health state; returns whether it changed.
    pub fn set_up(&self, up: bool) -> bool {
        self.up.swap(up, Ordering::AcqRel) != up
    }

    /// Whether passive ejection has this backend out now.
    pub fn is_ejected(&self) -> bool {
        self.passive.is_ejected(super::clock_ms())
    }

    /// Failures in a row seen by passive health.
    pub fn consecutive_failures(&self) -> u32 {
        self.passive.consecutive_failures()
    }

    /// The circuit breaker's state.
    pub fn circuit_state(&self) -> CircuitState {
        self.circuit.state()
    }

    pub(super) fn passive(&self) -> &Passive {
        &self.passive
    }

    pub(super) fn circuit(&self) -> &Circuit {
        &self.circuit
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Moving average of the time to response head in microseconds (0 until measured).
    pub fn latency_ewma_us(&self) -> u32 {
        self.latency_ewma_us.load(Ordering::Relaxed)
    }

    /// Folds one response time into the moving average (weight 1/8 for the new sample).
    pub fn record_latency(&self, latency: std::time::Duration) {
        let sample = u32::try_from(latency.as_micros())
            .unwrap_or(u32::MAX)
            .max(1);
        let old = self.latency_ewma_us.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample
        } else {
            ((u64::from(old) * 7 + u64::from(sample)) / 8) as u32
        };
        // A lost update under contention only delays the average by one sample.
        self.latency_ewma_us.store(new, Ordering::Relaxed);
    }

    /// Counts one request in flight until the returned guard drops.
    pub fn start_request(&self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(&self.in_flight))
    }
}

/// Holds one in-flight request on a backend; dropping it ends the request.
#[derive(Debug)]
pub struct InFlight(Arc<AtomicU32>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `address` was validated as `host:port` by the config, so it parses; a fallback keeps this
/// infallible all the same.
fn authority(address: &str) -> Authority {
    address
        .parse()
        .unwrap_or_else(|_| Authority::from_static("invalid.invalid:1"))
}
