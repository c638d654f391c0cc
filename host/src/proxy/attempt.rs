//! One request's attempts: the strategy's choice, the request sent to that backend, and after a
//! failure before any response byte, another choice with the failed backends left out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Response, StatusCode};

use super::{
    grpc, headers, retry, service, upgrade, Client, ClientUpgrade, Proxy, ProxyBody, ProxyError,
};
use crate::body::{HeldBody, UpstreamBody};
use crate::config::Config;
use crate::http1::RequestHeadBuilder;
use crate::pool::{Backend, Failure, InFlight, Outcome};
use crate::request::ClientHead;
use crate::strategy::{Choice, RequestData};
use crate::text::bounded;
use crate::upstream::{BackendBody, H2Head, UpstreamError, UpstreamHead};

impl Proxy {
    /// Chooses a backend and sends the request; after a failure before any response byte, asks
    /// the strategy again with the failed backends excluded, if the request can be resent and
    /// the retry budget allows. A gRPC call's `grpc-timeout` is its deadline from `started`.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn attempt(
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
                    head,
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
}

/// How a request's attempts ended, for [`Proxy::answer`].
pub(super) struct Attempted {
    /// A backend's response, ready to relay, or why there is none.
    pub(super) end: Result<Response<ProxyBody>, ProxyError>,
    /// The backend that answered, or the last one tried; `None` when none could be chosen.
    pub(super) backend: Option<Arc<Backend>>,
    pub(super) retries: u32,
    /// The canary side that routed it, while a canary ran.
    pub(super) canary: Option<crate::strategy::Tag>,
    /// Time the last selection took.
    pub(super) select: Option<Duration>,
    /// Time from sending upstream to the response head (or the failure).
    pub(super) upstream: Option<Duration>,
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
/// `Host`, or the backend's when the client named none) and the framing `body` needs; for an
/// HTTP/2 backend, the same fields in a header map.
fn upstream_head(
    client_head: &ClientHead,
    backend: &Backend,
    client: &Client,
    body: &UpstreamBody,
) -> UpstreamHead {
    // HTTP/2 clients name the host in the URI (`:authority`), not in a field; an HTTP/1.1
    // target in absolute form names it too, and then `Host` is ignored (RFC 9112 §3.2.2).
    let host = client_head
        .uri
        .authority()
        .map(|a| a.as_str().as_bytes())
        .or_else(|| client_head.fields.get("host"));
    let forwarding = headers::Forwarding {
        peer: client.peer_ip,
        peer_trusted: client.peer_trusted,
        secure: client.secure,
        host,
        fallback_host: backend.authority.as_str(),
        upgrade: client.upgrade.as_ref().map(|(protocol, _)| &protocol[..]),
    };
    if backend.protocol.is_http2() {
        let fields = client_head.fields.len();
        let mut head = H2Head::new(&client_head.method, &client_head.uri, fields);
        headers::write_upstream(&mut head, &client_head.fields, &forwarding);
        return UpstreamHead::Http2(Box::new(head.finish(body)));
    }
    let target = client_head.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut head = RequestHeadBuilder::new(&client_head.method, target);
    headers::write_upstream(&mut head, &client_head.fields, &forwarding);
    UpstreamHead::Http1(head.finish(body))
}
