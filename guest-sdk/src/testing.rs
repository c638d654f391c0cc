//! Run a strategy natively under `cargo test`, the way the host drives it.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

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
        eligible_since_ms: 0,
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

    /// This backend eligible since `ms` on the host's clock ([`Harness::now_ms`]).
    pub fn eligible_since(mut self, ms: u64) -> Self {
        self.eligible_since_ms = ms;
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
    /// The host's clock in milliseconds (seen by the strategy only if it asks for
    /// [`crate::Needs::clock`]); tests move it by hand.
    pub now_ms: u64,
    /// The fields the last `select` put on the response, as `(name, value)`.
    pub response_headers: Vec<(String, String)>,
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
            now_ms: 0,
            response_headers: Vec::new(),
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
            now_ms: needs.clock.then_some(self.now_ms),
        };
        let fields = RefCell::new(Vec::new());
        let chosen = self
            .strategy
            .select(&view, &Request::test(request, &fields));
        // Like the host: fields reach the response only when a backend was chosen.
        self.response_headers = if chosen.is_some() {
            fields.into_inner()
        } else {
            Vec::new()
        };
        chosen
    }

    /// Tells the strategy how backend `index` answered, as the host does after each response,
    /// if the strategy asked for [`crate::Needs::feedback`].
    pub fn respond(&mut self, index: usize, status: u16, latency: Duration) {
        if self.strategy.needs().feedback {
            self.strategy.on_response(index, status, latency);
        }
    }

    /// Like [`Harness::respond`], for a response whose [`Strategy::report_header`] field says
    /// `report`.
    pub fn respond_reporting(
        &mut self,
        index: usize,
        status: u16,
        latency: Duration,
        report: &str,
    ) {
        if self.strategy.needs().feedback && self.strategy.report_header().is_some() {
            self.strategy.on_report(index, report);
        }
        self.respond(index, status, latency);
    }

    /// Selects a backend for `request` and counts the request in flight there, as the host does
    /// while it forwards it. End it with [`Harness::finish`].
    pub fn start(&mut self, request: &TestRequest) -> Option<usize> {
        let chosen = self.select(request)?;
        if let Some(count) = self.in_flight.get_mut(chosen) {
            *count += 1;
        }
        Some(chosen)
    }

    /// Ends a request started with [`Harness::start`]: no longer in flight, and the strategy
    /// hears the answer ([`Harness::respond`]).
    pub fn finish(&mut self, index: usize, status: u16, latency: Duration) {
        if let Some(count) = self.in_flight.get_mut(index) {
            *count = count.saturating_sub(1);
        }
        self.respond(index, status, latency);
    }

    /// The strategy itself.
    pub fn strategy_mut(&mut self) -> &mut S {
        &mut self.strategy
    }

    /// Simulates `clients` clients that each send their next request as soon as the previous
    /// one is answered, `requests` requests in all, on a simulated clock: backend `b` answers a
    /// request started at time `t` (with status 200) after `latency(b, t)`; `request(n)` is the
    /// `n`-th request. Returns what happened to each request, in the order they started.
    ///
    /// Panics if the strategy chooses no backend.
    pub fn closed_loop(
        &mut self,
        clients: usize,
        requests: usize,
        mut latency: impl FnMut(usize, Duration) -> Duration,
        mut request: impl FnMut(usize) -> TestRequest,
    ) -> Vec<Served> {
        // Requests in flight, earliest answer first: (answered at, start order, backend, latency).
        let mut pending: BinaryHeap<Reverse<(Duration, usize, usize, Duration)>> =
            BinaryHeap::new();
        let mut served = Vec::with_capacity(requests);
        let mut now = Duration::ZERO;
        while served.len() < requests {
            if pending.len() >= clients.max(1) {
                if let Some(Reverse((answered, _, backend, took))) = pending.pop() {
                    now = answered;
                    self.finish(backend, 200, took);
                }
                continue;
            }
            let n = served.len();
            let Some(backend) = self.start(&request(n)) else {
                panic!("the strategy chose no backend for request {n}");
            };
            let took = latency(backend, now);
            pending.push(Reverse((now + took, n, backend, took)));
            served.push(Served {
                at: now,
                backend,
                in_flight: self.in_flight.clone(),
            });
        }
        served
    }
}

/// One request of a [`Harness::closed_loop`] simulation.
#[derive(Clone, Debug)]
pub struct Served {
    /// When it started, on the simulated clock.
    pub at: Duration,
    /// The backend the strategy chose.
    pub backend: usize,
    /// Requests in flight per backend right after it started (itself included).
    pub in_flight: Vec<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Needs;

    /// Round-robin that counts the answers it hears.
    struct Counting {
        answers: Vec<(usize, Duration)>,
    }

    impl Strategy for Counting {
        fn configure(_: &Params) -> Result<Self, String> {
            Ok(Counting {
                answers: Vec::new(),
            })
        }

        fn needs(&self) -> Needs {
            Needs {
                feedback: true,
                ..Needs::default()
            }
        }

        fn select(&mut self, backends: &Backends<'_>, _: &Request<'_>) -> Option<usize> {
            backends.rotate(backends.sequence())
        }

        fn on_response(&mut self, backend: usize, _: u16, latency: Duration) {
            self.answers.push((backend, latency));
        }
    }

    #[test]
    fn a_closed_loop_keeps_each_client_busy_and_reports_every_answer() {
        let mut h = Harness::<Counting>::new(&[]).unwrap();
        h.set_backends(vec![backend("a:1"), backend("b:1")]);
        let ms = Duration::from_millis;
        let latency = |b: usize, _| ms(if b == 0 { 1 } else { 3 });
        let served = h.closed_loop(2, 6, latency, |_| TestRequest::default());
        let starts: Vec<_> = served.iter().map(|s| (s.at, s.backend)).collect();
        assert_eq!(
            starts,
            [
                (ms(0), 0),
                (ms(0), 1),
                (ms(1), 0),
                (ms(2), 1),
                (ms(3), 0),
                (ms(4), 1)
            ]
        );
        assert_eq!(served[3].in_flight, [0, 2]);
        assert_eq!(
            h.strategy_mut().answers,
            [(0, ms(1)), (0, ms(1)), (1, ms(3)), (0, ms(1))]
        );
        // Two are still in flight when the loop ends.
        assert_eq!(h.in_flight, [0, 2]);
    }
}
