//! Where every forwarded request ends: its metrics, its access log line and the client's
//! response, whatever its attempts came to; and the answers lbhost gives before forwarding.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use http::{HeaderValue, Method, Response, StatusCode};

use super::attempt::Attempted;
use super::{grpc, local_response, service, Proxy, ProxyBody};
use crate::config::Config;
use crate::ratelimit::retry_after_secs;
use crate::text::bounded;

impl Proxy {
    /// Counts, logs and answers a forwarded request, however its attempts ended: a backend's
    /// response, or an error (a warning for a 5xx, lbhost's own or a backend's; a gRPC status
    /// for a gRPC call).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn answer(
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
    pub(super) fn too_many_requests(
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

/// Where a forwarded request went, for [`Proxy::answer`].
pub(super) struct Routed<'a> {
    /// The route's name (`default_pool` when none matched and the default pool took it).
    pub(super) route: &'a str,
    pub(super) service: &'a service::Service,
    pub(super) method: &'a Method,
    pub(super) path: &'a str,
    pub(super) client_ip: IpAddr,
    pub(super) started: Instant,
    /// Set for a gRPC call.
    pub(super) grpc: Option<grpc::GrpcCall>,
}

/// One access log line's fields.
pub(super) struct Access<'a> {
    pub(super) method: &'a Method,
    pub(super) path: &'a str,
    /// The route that matched (`none`: no route; `default_pool`: none matched, the default
    /// pool took it).
    pub(super) route: &'a str,
    /// The pool it went to (`none` when lbhost answered before routing or no route took it).
    pub(super) pool: &'a str,
    pub(super) status: StatusCode,
    /// A gRPC call's `grpc-status`, once known.
    pub(super) grpc_status: Option<u32>,
    /// The backend that answered, or `none` when lbhost answered itself.
    pub(super) backend: &'a str,
    pub(super) retries: u32,
    /// Time the (last) selection took.
    pub(super) select: Option<Duration>,
    /// Time from sending upstream to the response head.
    pub(super) upstream: Option<Duration>,
    pub(super) client: IpAddr,
    pub(super) started: Instant,
}

impl<'a> Access<'a> {
    /// The line of a request lbhost answered before any route took it (a rate limit, no route).
    pub(super) fn unrouted(
        method: &'a Method,
        path: &'a str,
        status: StatusCode,
        client: IpAddr,
        started: Instant,
    ) -> Self {
        Access {
            method,
            path,
            route: "none",
            pool: "none",
            status,
            grpc_status: None,
            backend: "none",
            retries: 0,
            select: None,
            upstream: None,
            client,
            started,
        }
    }
}

/// Writes one access log line (target `lbhost::access`): every request gets one, whoever
/// answered it. `total_ms` runs from the request head to the response head. The method and the
/// path are the client's: bounded, like every path in a log line (a head may be 64 KiB, a
/// method any token and a target any non-ASCII character, line separators and bidirectional
/// overrides included).
pub(super) fn access_line(a: &Access<'_>) {
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
