//! Run a strategy natively under `cargo test`, the way the host drives it.

use std::net::{IpAddr, Ipv4Addr};

use crate::hash::{backend_key, mix64};
use crate::{Backend, BackendSet, Backends, Params, Request, Strategy};

/// A backend at `address`, weight 1, eligible, no labels, keyed as the host keys it.
pub fn backend(address: &str) -> Backend {
    Backend {
        key: backend_key(address),
        address: address.to_string(),
        weight: 1,
        eligible: true,
        labels: Vec::new(),
    }
}

impl Backend {
    /// This backend with weight `weight`.
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// This backend marked ineligible (down).
    pub fn down(mut self) -> Self {
        self.eligible = false;
        self
    }

    /// This backend with label `key=value`.
    pub fn with_label(mut self, key: &str, value: &str) -> Self {
        self.labels.push((key.to_string(), value.to_string()));
        self
    }
}

/// A request for native tests.
#[derive(Clone, Debug)]
pub struct TestRequest {
    /// Method.
    pub method: String,
    /// Path without query.
    pub path: String,
    /// Query without `?`.
    pub query: Option<String>,
    /// Headers as `(name, value)`.
    pub headers: Vec<(String, String)>,
    /// Cookies as `(name, value)`.
    pub cookies: Vec<(String, String)>,
    /// Client address.
    pub client_ip: IpAddr,
}

impl Default for TestRequest {
    fn default() -> Self {
        TestRequest {
            method: "GET".into(),
            path: "/".into(),
            query: None,
            headers: Vec::new(),
            cookies: Vec::new(),
            client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }
}

impl TestRequest {
    /// A GET of `/` from `ip`.
    pub fn from_ip(ip: IpAddr) -> Self {
        TestRequest {
            client_ip: ip,
            ..TestRequest::default()
        }
    }

    /// This request with header `name: value`.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// This request with path `path` (without the query).
    pub fn with_path(mut self, path: &str) -> Self {
        self.path = path.to_string();
        self
    }

    /// This request with query string `query` (without `?`).
    pub fn with_query(mut self, query: &str) -> Self {
        self.query = Some(query.to_string());
        self
    }

    /// This request with cookie `name=value`.
    pub fn with_cookie(mut self, name: &str, value: &str) -> Self {
        self.cookies.push((name.to_string(), value.to_string()));
        self
    }
}

/// Drives a strategy like the host does: configure, push the backend set, then select with a
/// growing sequence number and deterministic random bits.
pub struct Harness<S> {
    strategy: S,
    set: BackendSet,
    sequence: u64,
    /// In-flight requests per backend, as the host would report them (seen by the strategy only
    /// if it asks for [`crate::Needs::in_flight`]).
    pub in_flight: Vec<u32>,
    /// Latency averages per backend in microseconds (empty: not measured).
    pub latency_ewma_us: Vec<u32>,
    /// Backends already tried for the next request.
    pub exclude: Vec<u32>,
}

impl<S> std::fmt::Debug for Harness<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("backends", &self.set.len())
            .field("sequence", &self.sequence)
            .finish_non_exhaustive()
    }
}

impl<S: Strategy> Harness<S> {
    /// Configures the strategy with `params`, as `strategy_config` would.
    pub fn new(params: &[(&str, &str)]) -> Result<Self, String> {
        let params = Params::new(
            params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        Ok(Harness {
            strategy: S::configure(&params)?,
            set: BackendSet::default(),
            sequence: 0,
            in_flight: Vec::new(),
            latency_ewma_us: Vec::new(),
            exclude: Vec::new(),
        })
    }

    /// Pushes a new backend set, as the host does when it changes.
    pub fn set_backends(&mut self, backends: Vec<Backend>) {
        self.in_flight.resize(backends.len(), 0);
        self.set = BackendSet::new(backends);
        self.strategy.backends_changed(&self.set);
    }

    /// Asks the strategy for a backend for `request`.
    pub fn select(&mut self, request: &TestRequest) -> Option<usize> {
        let sequence = self.sequence;
        self.sequence += 1;
        // Like the host, provide only the columns the strategy asked for.
        let needs = self.strategy.needs();
        let view = Backends {
            set: &self.set,
            sequence,
            random: mix64(sequence ^ 0x5eed),
            in_flight: if needs.in_flight {
                &self.in_flight
            } else {
                &[]
            },
            latency_ewma_us: if needs.latency {
                &self.latency_ewma_us
            } else {
                &[]
            },
            exclude: &self.exclude,
        };
        self.strategy.select(&view, &Request::test(request))
    }

    /// The strategy itself.
    pub fn strategy_mut(&mut self) -> &mut S {
        &mut self.strategy
    }
}
