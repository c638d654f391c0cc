//! The request pipeline: rate limit, choose a backend with the strategy, forward (retrying on
//! another backend when that is safe), stream the answer back.

mod error;
mod grpc;
mod headers;
mod response_body;
mod retry;
mod route;
pub(crate) mod service;
mod upgrade;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode};

pub(crate) use error::{local_response, ProxyError};
pub(crate) use response_body::{with_header_map, ProxyBody};
pub(crate) use retry::RetryBudget;
pub(crate) use upgrade::{upgrade_pair, ClientUpgrade, UpgradeHandover};

use crate::body::{BoxError, HeldBody, UpstreamBody};
use crate::config::Config;
use crate::http1::{Outgoing, RequestHeadBuilder};
use crate::metrics::Metrics;
use crate::pool::{Backend, Failure, InFlight, Outcome};
use crate::ratelimit::{retry_after_secs, RateLimiter};
use crate::request::ClientHead;
use crate::strategy::{Choice, RequestData};
use crate::text::bounded;
use crate::tls::Resolver;
use crate::upstream::{BackendBody, Upstream, UpstreamError};

/// Everything a request needs, shared by all connections.
#[derive(Debug)]
pub(crate) struct Proxy {
    /// The TLS listener's certificates, swapped on reload.
    pub(crate) certificates: Arc<Resolver>,
    /// The running config (swapped whole on reload).
    pub config: ArcSwap<Config>,
    /// The pools and the routes to them (swapped whole on reload).
    pub table: ArcSwap<service::Table>,
    /// Opens and leases connections to backends.
    pub upstream: Upstream,
    /// Metric families.
    pub metrics: Arc<Metrics>,
    /// Per-client token buckets (used when `rate_limit` is configured).
    pub rate_limiter: RateLimiter,
}

/// The client side of a request, fixed across attempts.
struct Client {
    ip: IpAddr,
    peer_ip: IpAddr,
    peer_trusted: bool,
    /// It came over TLS.
    secure: bool,
    /// The protocol asked for in `Upgrade`, and the client's half of the upgrade.
    upgrade: Option<(Bytes, ClientUpgrade)>,
}

impl Proxy {
    /// A proxy over the pools and routes of `table` with `config`.
    pub(crate) fn new(config: Config, table: service::Table, metrics: Arc<Metrics>) -> Self {
        Proxy {
            upstream: Upstream::counting(&metrics.upstream_tls_failures),
            rate_limiter: RateLimiter::new(),
            certificates: Arc::new(Resolver::default()),
            config: ArcSwap::from_pointee(config),
            table: ArcSwap::from_pointee(table),
            metrics,
        }
        .with_certificates()
    }

    fn with_certificates(self) -> Self {
        self.set_certificates(&self.config.load());
        self
    }

    /// Serves the certificates of `config` from the next TLS handshake on, and publishes their
    /// expiry; warns of any that expires within 14 days, and of `https://` backends whose
    /// certificates are not verified.
    pub(crate) fn set_certificates(&self, config: &Config) {
        crate::tls::client::warn_unverified(
            config
                .pools
                .iter()
                .flat_map(|pool| &pool.backends)
                .filter_map(|b| Some((b.address.as_str(), b.tls.as_deref()?))),
        );
        let Some(tls) = &config.tls else {
            return;
        };
        self.metrics.tls_certificate_expiry.reset();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        for certificate in &tls.certificates.certificates {
            let names = certificate.names.join(",");
            let file = certificate.cert_path.display().to_string();
            self.metrics
                .tls_certificate_expiry
                .with_label_values(&[names.as_str(), file.as_str()])
                .set(certificate.not_after);
            let days = (certificate.not_after - now) / 86_400;
            if days < 14 {
                tracing::warn!(names = %names, file = %file, days, "TLS certificate expires soon");
            }
        }
        self.certificates.set(Arc::clone(&tls.certificates));
    }

    /// Serves one client request. Never fails: every problem becomes a status for the client.
    /// `upgrade`: where the client's connection arrives if the request asks for an upgrade and
    /// the backend agrees (HTTP/1.1 only).
    pub(crate) async fn handle<B>(
        self: Arc<Self>,
        head: ClientHead,
        body: B,
        peer: SocketAddr,
        secure: bool,
        upgrade: Option<ClientUpgrade>,
    ) -> Result<Response<ProxyBody>, Infallible>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let started = Instant::now();
        let method = head.method.clone();
        let config = self.config.load_full();
        let peer_ip = headers::canonical(peer.ip());
        let peer_trusted = headers::is_trusted(peer_ip, &config.trusted_proxies);
        let client_ip =
            headers::client_ip(peer_ip, peer_trusted, &head.fields, &config.trusted_proxies);
        if let Some(limit) = &config.rate_limit {
            if let Err(wait) = self.rate_limiter.check(client_ip, limit) {
                let path = head.uri.path();
                let response = self.too_many_requests(client_ip, &method, wait, started);
                if config.access_log {
                    access_line(&Access {
                        method: &method,
                        path,
                        route: "none",
                        pool: "none",
                        status: StatusCode::TOO_MANY_REQUESTS,
                        grpc_status: None,
                        backend: "none",
                        retries: 0,
                        select: None,
                        upstream: None,
                        client: client_ip,
                        started,
                    });
                }
                return Ok(response);
            }
        }
        let table = self.table.load_full();
        let mut head = head;
        let Some((route, service)) = route::route(&table, &mut head) else {
            return Ok(self.unrouted(&config, &head, client_ip, started));
        };
        let upgrade = upgrade.and_then(|upgrade| {
            headers::upgrade_protocol(&head.fields).map(|protocol| (protocol, upgrade))
        });
        let client = Client {
            ip: client_ip,
            peer_ip,
            peer_trusted,
            secure,
            upgrade,
        };
        let config = &service.config;
        service.runtime.retry_budget.deposit(&config.retries);
        Ok(self
            .forward(
                config,
                service,
                route,
                client,
                head,
                HeldBody::new(body),
                started,
            )
            .await)
    }

    /// Chooses a backend and forwards ([`Proxy::attempt`]), then answers: the one place where
    /// a forwarded request is counted and logged, whatever its end ([`Proxy::answer`]).
    #[allow(clippy::too_many_arguments)]
    async fn forward(
        &self,
        config: &Config,
        service: &service::Service,
        route: &str,
        client: Client,
        head: ClientHead,
        body: HeldBody,
        started: Instant,
    ) -> Response<ProxyBody> {
        let method = head.method.clone();
        // For logs; a reference-counted copy, not a new string.
        let target = head.uri.path_and_query().cloned();
        let path = target.as_ref().map_or("/", |p| p.as_str());
        let client_ip = client.ip;
        let grpc = grpc::GrpcCall::of(&head.fields);
        let attempted = self
            .attempt(config, service, client, head, body, path, grpc, started)
            .await;
        let at = Routed {
            route,
            service,
            method: &method,
            path,
            client_ip,
            started,
            grpc,
        };
        self.answer(config, attempted, &at)
    }

    /// Chooses a backend and sends the request; after a failure before any response byte, asks
    /// the strategy again with the failed backends excluded, if the request can be resent and
    /// the retry budget allows. A gRPC call's `grpc-timeout` is its deadline from `started`.
    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        config: &Config,
        service: &service::Service,
        client: Client,
        head: ClientHead,
        body: HeldBody,
        path: &str,
        grpc: Option<grpc::GrpcCall>,
        started: Instant,
    ) -> Attempted {
        let rt = &*service.runtime;
        let set = rt.pool.load();
        let method = head.method.clone();
        // Boxed: it moves into the guest's store and back for every selection.
        let mut data = RequestData::new(head, client.ip);
        // Backends tried (or refused by their circuit) for this request.
        let mut exclude: Vec<u32> = Vec::new();
        // The failure of the last attempt, while a retry is being looked for.
        let mut failed: Option<(Arc<Backend>, ProxyError)> = None;
        let mut retries = 0u32;
        let mut select: Option<Duration>;
        loop {
            let select_started = Instant::now();
            let (returned, choice) = rt.strategies.select(&rt.pool, &set, &exclude, data);
            data = returned;
            // Also when the attempt starts: building its head costs well under a microsecond.
            let selected = Instant::now();
            let select_time = selected - select_started;
            self.metrics.select(select_time);
            select = Some(select_time);
            let index = match choice {
                Choice::Strategy(i) => i,
                Choice::Fallback(i, fault) => {
                    // The fault itself was counted where it was recorded.
                    self.metrics.fallback(fault.fallback_reason());
                    i
                }
                Choice::Unavailable => break,
            };
            let Some(backend) = set.backends.get(index).cloned() else {
                break;
            };
            let Some(admitted) = rt.pool.admit(&backend, &config.circuit_breaker) else {
                // Its circuit opened (or ran out of probes) after the strategy last heard: choose
                // again without it. Not a retry: nothing was sent.
                exclude.push(index as u32);
                continue;
            };
            if let Some((failed_backend, _)) = &failed {
                if !rt.retry_budget.withdraw(&config.retries) {
                    self.metrics.retry_budget_exhausted.inc();
                    tracing::debug!(backend = %failed_backend.address, "retry budget spent; not retrying");
                    break;
                }
                self.metrics
                    .retries
                    .with_label_values(&failed_backend.metric_labels())
                    .inc();
                retries += 1;
            }
            let Some(upstream_body) = body.next_attempt() else {
                break;
            };
            let head = upstream_head(&data.head, &backend, &client, &upstream_body);
            let in_flight = backend.start_request();
            let sent = selected;
            let deadline = match grpc.and_then(|call| call.timeout) {
                Some(timeout) => tokio::time::Instant::from_std(started + timeout),
                None => tokio::time::Instant::from_std(sent + config.timeouts.response_header),
            };
            let result = self
                .upstream
                .request(
                    &backend,
                    &head,
                    upstream_body,
                    config.timeouts.connect,
                    deadline,
                )
                .await;
            let answered = Instant::now();
            let latency = answered - sent;
            let (error, failure) = match result {
                Ok(response) => {
                    backend.record_latency(latency);
                    let status = response.status();
                    rt.strategies.feedback_for(
                        data.canary,
                        index,
                        status.as_u16(),
                        latency,
                        |name| {
                            response.body().fields().get(name.as_str()).or_else(|| {
                                // An HTTP/2 backend's fields are in the map.
                                response.headers().get(name.as_str()).map(|v| v.as_bytes())
                            })
                        },
                    );
                    let pending = self.settle(grpc, service, &backend, admitted, &response);
                    let client_upgrade = client.upgrade.map(|(_, on)| on);
                    let mut response = relay(response, client_upgrade, in_flight, &backend);
                    if let Some(end) = pending {
                        response.body_mut().watch_grpc(end);
                    }
                    headers::add_strategy_fields(&mut response, &mut data.response_fields);
                    return Attempted {
                        end: Ok(response),
                        backend: Some(backend),
                        retries,
                        canary: data.canary,
                        select,
                        upstream: Some(latency),
                    };
                }
                Err(UpstreamError::Body(cause)) => {
                    // The client's body failed (malformed, or the client went away): nothing is
                    // held against the backend (a circuit's probe goes back unused), and the
                    // request cannot go again (its body is spent). The backend's connection
                    // closed with the attempt.
                    drop(in_flight);
                    return Attempted {
                        end: Err(ProxyError::ClientBody(format!("request body: {cause}"))),
                        backend: Some(backend),
                        retries,
                        // The client's doing: held against neither side of a canary.
                        canary: None,
                        select,
                        upstream: None,
                    };
                }
                Err(UpstreamError::Refused(cause, rest)) => {
                    // Nothing was processed: the request may go elsewhere, whatever its method,
                    // with the part of its body already sent.
                    if let Some(rest) = rest {
                        body.put_back(rest);
                    }
                    let error = ProxyError::Backend {
                        backend: backend.address.clone(),
                        cause,
                    };
                    (error, Failure::Connect)
                }
                Err(UpstreamError::TimedOut) => {
                    let error = ProxyError::Timeout {
                        backend: backend.address.clone(),
                    };
                    (error, Failure::Timeout)
                }
                Err(e) => {
                    backend.record_latency(latency);
                    let failure = if e.is_connect() {
                        Failure::Connect
                    } else {
                        Failure::Transport
                    };
                    let cause = e.to_string();
                    if failure == Failure::Connect && config.health_check.is_some() {
                        rt.pool.mark_down(&backend, &cause, &self.metrics);
                    }
                    let error = ProxyError::Backend {
                        backend: backend.address.clone(),
                        cause,
                    };
                    (error, failure)
                }
            };
            drop(in_flight);
            rt.strategies
                .feedback_for(data.canary, index, 0, latency, |_| None);
            rt.pool.report(
                &backend,
                admitted,
                Outcome::Failed(failure),
                config,
                &self.metrics,
            );
            let retry = retries < config.retries.max
                && retry::is_retryable(&method, failure)
                && body.is_replayable();
            if !retry {
                return Attempted {
                    end: Err(error),
                    backend: Some(backend),
                    retries,
                    canary: data.canary,
                    select,
                    upstream: Some(latency),
                };
            }
            tracing::debug!(backend = %backend.address, path = %bounded(path), cause = %error, "retrying on another backend");
            exclude.push(index as u32);
            failed = Some((backend, error));
        }
        let (backend, error) = match failed {
            // No other backend to retry on, or no budget: the client gets the last failure.
            Some((backend, error)) => (Some(backend), error),
            None => (None, ProxyError::NoBackend),
        };
        Attempted {
            end: Err(error),
            backend,
            retries,
            canary: data.canary,
            select,
            upstream: None,
        }
    }

    /// Counts, logs and answers a forwarded request, however its attempts ended: a backend's
    /// response, or an error (a warning for a 5xx, lbhost's own or a backend's; a gRPC status
    /// for a gRPC call).
    #[allow(clippy::too_many_arguments)]
    fn answer(
        &self,
        config: &Config,
        attempted: Attempted,
        at: &Routed<'_>,
    ) -> Response<ProxyBody> {
        let Routed {
            method,
            path,
            client_ip,
            started,
            grpc,
            ..
        } = *at;
        let pool = at.service.name();
        let backend = attempted.backend.as_deref();
        let address = backend.map_or("none", |b| b.address.as_str());
        if attempted.canary.is_some() {
            let status = match &attempted.end {
                Ok(response) => response.status(),
                Err(error) => error.status(),
            };
            let answered = attempted.end.is_ok().then_some(address);
            at.service.runtime.strategies.canary_outcome(
                attempted.canary,
                status.as_u16(),
                attempted.retries > 0,
                started.elapsed(),
                answered,
            );
        }
        let mut grpc_status = None;
        let mut response = match attempted.end {
            Ok(response) => {
                if grpc.is_some() {
                    grpc_status = grpc::status_in(response.headers());
                }
                if let Some(backend) = backend {
                    let took = started.elapsed();
                    self.metrics.backend_request(
                        &backend.series,
                        pool,
                        address,
                        method,
                        response.status(),
                        took,
                    );
                }
                response
            }
            Err(error) => {
                let status = error.status();
                if status.is_server_error() {
                    tracing::warn!(
                        backend = %address,
                        pool,
                        strategy = %at.service.runtime.strategies.active().name,
                        %client_ip,
                        path = %bounded(path),
                        cause = %error,
                        "{}",
                        status.as_u16()
                    );
                } else {
                    // The client's fault: not worth a warning.
                    tracing::debug!(
                        backend = %address,
                        path = %bounded(path),
                        cause = %error,
                        "{}",
                        status.as_u16()
                    );
                }
                self.metrics.request(pool, address, method, status, started);
                if grpc.is_some() {
                    let code = grpc::status_of_error(&error);
                    grpc::count(&self.metrics, "none", Some(code));
                    grpc_status = Some(code);
                    grpc::error_response(&error)
                } else {
                    error.response()
                }
            }
        };
        if config.access_log {
            let access = Access {
                method,
                path,
                route: at.route,
                pool,
                status: response.status(),
                grpc_status,
                backend: address,
                retries: attempted.retries,
                select: attempted.select,
                upstream: attempted.upstream,
                client: client_ip,
                started,
            };
            match response.body_mut().grpc_end() {
                // Written when the call's trailers come, with their status.
                Some(end) => end.access = Some(grpc::OwnedAccess::of(&access)),
                None => access_line(&access),
            }
        }
        response
    }

    /// 429 with `Retry-After` for a client over its rate.
    fn too_many_requests(
        &self,
        client_ip: IpAddr,
        method: &Method,
        wait: Duration,
        started: Instant,
    ) -> Response<ProxyBody> {
        self.metrics.rate_limited.inc();
        self.metrics.request(
            "none",
            "none",
            method,
            StatusCode::TOO_MANY_REQUESTS,
            started,
        );
        let seconds = retry_after_secs(wait);
        tracing::debug!(%client_ip, retry_after = seconds, "429: over the rate limit");
        let mut response = local_response(StatusCode::TOO_MANY_REQUESTS);
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from(seconds));
        response
    }
}

/// How a request's attempts ended, for [`Proxy::answer`].
struct Attempted {
    /// A backend's response, ready to relay, or why there is none.
    end: Result<Response<ProxyBody>, ProxyError>,
    /// The backend that answered, or the last one tried; `None` when none could be chosen.
    backend: Option<Arc<Backend>>,
    retries: u32,
    /// The canary side that routed it, while a canary ran.
    canary: Option<crate::strategy::Tag>,
    /// Time the last selection took.
    select: Option<Duration>,
    /// Time from sending upstream to the response head (or the failure).
    upstream: Option<Duration>,
}

/// Where a forwarded request went, for [`Proxy::answer`].
struct Routed<'a> {
    /// The route's name (`default_pool` when none matched and the default pool took it).
    route: &'a str,
    service: &'a service::Service,
    method: &'a Method,
    path: &'a str,
    client_ip: IpAddr,
    started: Instant,
    /// Set for a gRPC call.
    grpc: Option<grpc::GrpcCall>,
}

/// One access log line's fields.
struct Access<'a> {
    method: &'a Method,
    path: &'a str,
    /// The route that matched (`none`: no route; `default_pool`: none matched, the default
    /// pool took it).
    route: &'a str,
    /// The pool it went to (`none` when lbhost answered before routing or no route took it).
    pool: &'a str,
    status: StatusCode,
    /// A gRPC call's `grpc-status`, once known.
    grpc_status: Option<u32>,
    /// The backend that answered, or `none` when lbhost answered itself.
    backend: &'a str,
    retries: u32,
    /// Time the (last) selection took.
    select: Option<Duration>,
    /// Time from sending upstream to the response head.
    upstream: Option<Duration>,
    client: IpAddr,
    started: Instant,
}

/// Writes one access log line (target `lbhost::access`): every request gets one, whoever
/// answered it. `total_ms` runs from the request head to the response head. The method and the
/// path are the client's: bounded, like every path in a log line (a head may be 64 KiB, a
/// method any token and a target any non-ASCII character, line separators and bidirectional
/// overrides included).
fn access_line(a: &Access<'_>) {
    tracing::info!(
        target: "lbhost::access",
        method = %bounded(a.method.as_str()),
        path = %bounded(a.path),
        route = %a.route,
        pool = %a.pool,
        status = a.status.as_u16(),
        grpc_status = a.grpc_status,
        backend = %a.backend,
        retries = a.retries,
        select_us = a.select.map(|d| d.as_micros() as u64),
        upstream_ms = a.upstream.map(|d| d.as_secs_f64() * 1000.0),
        total_ms = a.started.elapsed().as_secs_f64() * 1000.0,
        client = %a.client,
    );
}

/// The client's response from a backend's: its body streams through (counted in flight, the
/// connection back to the pool when it ends), or, for `101 Switching Protocols` to an upgrade
/// request, the two connections are joined.
fn relay(
    response: Response<BackendBody>,
    client_upgrade: Option<ClientUpgrade>,
    in_flight: InFlight,
    backend: &Backend,
) -> Response<ProxyBody> {
    let (mut parts, mut body) = response.into_parts();
    if parts.status == StatusCode::SWITCHING_PROTOCOLS {
        // The switch's fields go in its head's map: the local body that follows carries none.
        parts.headers = match body.take_fields().header_map() {
            Ok(headers) => headers,
            Err(e) => {
                return ProxyError::Backend {
                    backend: backend.address.clone(),
                    cause: format!("101 with an {e}"),
                }
                .response()
            }
        };
        if let (Some(client_upgrade), Some(upgraded)) = (client_upgrade, body.into_upgraded()) {
            upgrade::tunnel(client_upgrade, upgraded, in_flight, backend.address.clone());
            return Response::from_parts(parts, ProxyBody::local(""));
        }
        // Not reached: the upstream refuses a 101 that no upgrade asked for.
        return ProxyError::Backend {
            backend: backend.address.clone(),
            cause: "unexpected 101".into(),
        }
        .response();
    }
    // The backend's hop-by-hop fields were left out as its head was parsed.
    Response::from_parts(parts, ProxyBody::upstream(body, in_flight))
}

/// The request head for one attempt on `backend`: the client's method, target (in origin
/// form) and fields, with the proxy fields (`Host` from the target's authority or the client's
/// `Host`, or the backend's when the client named none) and the framing `body` needs.
fn upstream_head(
    client_head: &ClientHead,
    backend: &Backend,
    client: &Client,
    body: &UpstreamBody,
) -> Outgoing {
    // HTTP/2 clients name the host in the URI (`:authority`), not in a field; an HTTP/1.1
    // target in absolute form names it too, and then `Host` is ignored (RFC 9112 §3.2.2).
    let host = client_head
        .uri
        .authority()
        .map(|a| a.as_str().as_bytes())
        .or_else(|| client_head.fields.get("host"));
    let target = client_head.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut head = RequestHeadBuilder::new(&client_head.method, target);
    let forwarding = headers::Forwarding {
        peer: client.peer_ip,
        peer_trusted: client.peer_trusted,
        secure: client.secure,
        host,
        fallback_host: backend.authority.as_str(),
        upgrade: client.upgrade.as_ref().map(|(protocol, _)| &protocol[..]),
    };
    headers::write_upstream(&mut head, &client_head.fields, &forwarding);
    head.finish(body)
}
