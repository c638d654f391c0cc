//! gRPC calls (requests with `content-type: application/grpc*`): the call's deadline from
//! `grpc-timeout`, lbhost's own errors as gRPC statuses, and the call's `grpc-status` (in the
//! response head, or in the trailers at the end of the body) counted in metrics, the access log,
//! passive health and circuits.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};

use super::error::ProxyError;
use super::response_body::ProxyBody;
use super::Access;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::pool::{Admitted, Backend, Failure, Outcome, Pool};
use crate::request::RequestFields;
use crate::upstream::BackendBody;

/// `UNAVAILABLE`: no backend, or the backend failed.
pub(super) const UNAVAILABLE: u32 = 14;
/// `DEADLINE_EXCEEDED`: no answer by the call's deadline.
pub(super) const DEADLINE_EXCEEDED: u32 = 4;
/// `INTERNAL`: the client's request body failed.
const INTERNAL: u32 = 13;

/// What the proxy knows of a gRPC call from its request head.
#[derive(Clone, Copy, Debug)]
pub(super) struct GrpcCall {
    /// `grpc-timeout`, if the client sent a valid one.
    pub timeout: Option<Duration>,
}

impl GrpcCall {
    /// The call, if the request is one: gRPC calls are `POST`s with an `application/grpc*`
    /// content type. (The method first: other requests skip the field lookups.)
    pub(super) fn of(method: &Method, fields: &RequestFields) -> Option<Self> {
        if method != Method::POST {
            return None;
        }
        let content_type = fields.get("content-type")?;
        if !content_type.starts_with(b"application/grpc") {
            return None;
        }
        let timeout = fields.get("grpc-timeout").and_then(parse_timeout);
        Some(GrpcCall { timeout })
    }
}

/// `grpc-timeout`: 1 to 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
fn parse_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The gRPC status lbhost answers for `error`.
pub(super) fn status_of_error(error: &ProxyError) -> u32 {
    match error {
        ProxyError::NoBackend | ProxyError::Backend { .. } => UNAVAILABLE,
        ProxyError::Timeout { .. } => DEADLINE_EXCEEDED,
        ProxyError::ClientBody(_) => INTERNAL,
    }
}

/// lbhost's answer to a gRPC call it could not forward: HTTP 200 with `grpc-status` and
/// `grpc-message` in a head that ends the stream ("trailers-only"), as gRPC clients expect.
pub(super) fn error_response(error: &ProxyError) -> Response<ProxyBody> {
    let status = status_of_error(error);
    let message = match error {
        ProxyError::NoBackend => "no backend available",
        ProxyError::Backend { .. } => "the backend failed",
        ProxyError::Timeout { .. } => "the backend did not answer in time",
        ProxyError::ClientBody(_) => "the request body failed",
    };
    let mut response = Response::new(ProxyBody::local(""));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", HeaderValue::from(status));
    headers.insert("grpc-message", HeaderValue::from_static(message));
    response
}

/// The trailers lbhost ends a gRPC response with when the backend's stream failed after its
/// head: `UNAVAILABLE`, so that the client sees a retryable status rather than a reset.
pub(super) fn failed_stream_trailers() -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from(UNAVAILABLE));
    trailers.insert(
        "grpc-message",
        HeaderValue::from_static("the backend's stream failed"),
    );
    trailers
}

/// The `grpc-status` in `headers` (a response head or trailers), if any and valid.
pub(super) fn status_in(headers: &HeaderMap) -> Option<u32> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    value.parse().ok().filter(|&s| s <= 99)
}

/// The outcome for passive health and circuits of a call that ended with `status`: a failure
/// if the config counts the code as one (`grpc.failure_codes`); a missing status is not.
pub(super) fn outcome(status: Option<u32>, config: &Config) -> Outcome {
    match status {
        Some(code) if config.grpc.failure_codes.contains(&code) => {
            Outcome::Failed(Failure::Transport)
        }
        _ => Outcome::Success,
    }
}

/// Counts a call's end in `lbhost_grpc_responses_total{backend, grpc_status}`.
pub(super) fn count(metrics: &Metrics, backend: &str, status: Option<u32>) {
    let mut buf = itoa::Buffer::new();
    let status = status.map_or("none", |s| buf.format(s));
    metrics
        .grpc_responses
        .with_label_values(&[backend, status])
        .inc();
}

impl super::Proxy {
    /// Settles an attempt that got `response`'s head: at once (its outcome from the HTTP status,
    /// or from a gRPC call's status in the head), or, for a gRPC call answered 200 without a
    /// status in its head, the returned [`CallEnd`] does when the trailers come.
    pub(super) fn settle(
        &self,
        call: Option<GrpcCall>,
        service: &super::service::Service,
        backend: &Arc<Backend>,
        admitted: Admitted,
        response: &Response<BackendBody>,
    ) -> Option<CallEnd> {
        let config = &*service.config;
        let in_head = call.and_then(|_| status_in(response.headers()));
        let status = response.status();
        if call.is_some() && in_head.is_none() && status == StatusCode::OK {
            return Some(CallEnd {
                pool: Arc::clone(&service.runtime.pool),
                backend: Arc::clone(backend),
                admitted,
                config: Arc::clone(&service.config),
                metrics: Arc::clone(&self.metrics),
                access: None,
            });
        }
        let outcome = match in_head {
            Some(code) => {
                count(&self.metrics, &backend.address, Some(code));
                outcome(Some(code), config)
            }
            None => Outcome::of_status(status.as_u16()),
        };
        service
            .runtime
            .pool
            .report(backend, admitted, outcome, config, &self.metrics);
        None
    }
}

/// What is left to do when a gRPC response's trailers arrive: count and report its status, and
/// write its access log line (which then carries the status).
#[derive(Debug)]
pub(crate) struct CallEnd {
    pub(super) pool: Arc<Pool>,
    pub(super) backend: Arc<Backend>,
    pub(super) admitted: Admitted,
    pub(super) config: Arc<Config>,
    pub(super) metrics: Arc<Metrics>,
    /// The access log line, written at the end (`access_log` on).
    pub(super) access: Option<OwnedAccess>,
}

impl CallEnd {
    /// The call ended with `status` (`None`: no `grpc-status` came).
    pub(crate) fn finish(self, status: Option<u32>) {
        count(&self.metrics, &self.backend.address, status);
        let outcome = outcome(status, &self.config);
        if let Some(access) = &self.access {
            access.write(status);
        }
        self.pool.report(
            &self.backend,
            self.admitted,
            outcome,
            &self.config,
            &self.metrics,
        );
    }
}

/// An access log line kept until a gRPC call ends (its status comes in the trailers).
#[derive(Debug)]
pub(super) struct OwnedAccess {
    method: Method,
    path: String,
    route: String,
    pool: String,
    status: StatusCode,
    backend: String,
    retries: u32,
    select: Option<Duration>,
    upstream: Option<Duration>,
    client: IpAddr,
    started: Instant,
}

impl OwnedAccess {
    pub(super) fn of(a: &Access<'_>) -> Self {
        OwnedAccess {
            method: a.method.clone(),
            path: a.path.to_owned(),
            route: a.route.to_owned(),
            pool: a.pool.to_owned(),
            status: a.status,
            backend: a.backend.to_owned(),
            retries: a.retries,
            select: a.select,
            upstream: a.upstream,
            client: a.client,
            started: a.started,
        }
    }

    /// Writes the line, with the call's `grpc-status`.
    fn write(&self, grpc_status: Option<u32>) {
        super::access_line(&Access {
            method: &self.method,
            path: &self.path,
            route: &self.route,
            pool: &self.pool,
            status: self.status,
            grpc_status,
            backend: &self.backend,
            retries: self.retries,
            select: self.select,
            upstream: self.upstream,
            client: self.client,
            started: self.started,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_in_every_unit() {
        assert_eq!(parse_timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_timeout(b"2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_timeout(b"5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_timeout(b"250m"), Some(Duration::from_millis(250)));
        assert_eq!(
            parse_timeout(b"99999999u"),
            Some(Duration::from_micros(99_999_999))
        );
        assert_eq!(parse_timeout(b"10n"), Some(Duration::from_nanos(10)));
        for bad in [&b""[..], b"S", b"123456789S", b"5s", b"-5S", b"5 S"] {
            assert_eq!(parse_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn errors_are_grpc_statuses() {
        let response = error_response(&ProxyError::NoBackend);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(status_in(response.headers()), Some(UNAVAILABLE));
        let timeout = ProxyError::Timeout {
            backend: "b".into(),
        };
        assert_eq!(status_of_error(&timeout), DEADLINE_EXCEEDED);
    }
}
