//! HTTP/2 to backends (`"protocol": "h2c"`), on hyper's HTTP/2 client: requests are multiplexed
//! on a few connections per backend and worker ([`pool`]), the response body streams from its
//! stream (trailers included), and a stream the backend refused unprocessed comes back as
//! [`UpstreamError::Refused`] with its body, so the proxy can send it elsewhere.
//!
//! The connection comes from the same connector as HTTP/1.1 ([`Upstream::connect_http2`]): TCP
//! for h2c, TLS with `h2` agreed by ALPN for h2.

mod pool;
mod probe;
mod replay;

use std::error::Error as _;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response, Uri, Version};
use tokio::time::Instant;

pub(crate) use pool::StreamSlot;
pub(crate) use replay::ReplayBody;

use super::{BackendBody, Upstream, UpstreamError};
use crate::body::UpstreamBody;
use crate::http1::Outgoing;
use crate::pool::Backend;
use pool::Checkout;

/// Sends `head` and `body` to `backend` over HTTP/2 and resolves to the response head, or to
/// [`UpstreamError::TimedOut`] if it has not come by `deadline`.
pub(super) async fn request(
    upstream: &Upstream,
    backend: &Backend,
    head: &Outgoing,
    body: UpstreamBody,
    connect_timeout: Duration,
    deadline: Instant,
) -> Result<Response<BackendBody>, UpstreamError> {
    let parts = request_head(head, backend, deadline)?;
    let (conn, slot) = loop {
        match pool::checkout(super::pool_key(backend)) {
            Checkout::Ready(conn, slot) => break (conn, slot),
            Checkout::Wait(opened) => tokio::time::timeout_at(deadline, opened.notified())
                .await
                .map_err(|_| UpstreamError::TimedOut)?,
            Checkout::Open(opening) => {
                let stream = upstream
                    .connect_http2(backend, connect_timeout, deadline)
                    .await?;
                let mark = upstream.counts.opened(&backend.address);
                let conn = pool::handshake(stream, mark)
                    .await
                    .map_err(|e| UpstreamError::Receive(std::io::Error::other(e)))?;
                opening.opened(conn);
            }
        }
    };
    let body = ReplayBody::new(body);
    let replay = body.replay();
    let mut send = conn.send.clone();
    let sent = send.send_request(Request::from_parts(parts, body));
    let response = match tokio::time::timeout_at(deadline, sent).await {
        Err(_) => return Err(UpstreamError::TimedOut),
        Ok(Ok(response)) => response,
        Ok(Err(e)) => {
            if is_unprocessed(&e) {
                conn.drain();
                return Err(UpstreamError::Refused(e.to_string(), replay));
            }
            return Err(UpstreamError::Receive(std::io::Error::other(e)));
        }
    };
    conn.answered();
    let (parts, body) = response.into_parts();
    Ok(Response::from_parts(parts, BackendBody::h2(body, slot)))
}

/// Whether the backend never processed the request, so that it can go elsewhere whatever its
/// method: it was never sent (the connection closed first), the stream was reset with
/// `REFUSED_STREAM`, or a graceful GOAWAY's last stream id was below it (RFC 9113 §8.7).
fn is_unprocessed(e: &hyper::Error) -> bool {
    if e.is_canceled() {
        return true;
    }
    let Some(h2) = e.source().and_then(|s| s.downcast_ref::<h2::Error>()) else {
        return false;
    };
    h2.reason() == Some(h2::Reason::REFUSED_STREAM)
        || (h2.is_go_away() && h2.is_remote() && h2.reason() == Some(h2::Reason::NO_ERROR))
}

/// A `grpc-timeout` value for the time left until `deadline`: milliseconds, or seconds past
/// what 8 digits of milliseconds hold (~27 hours).
fn grpc_timeout(deadline: Instant) -> HeaderValue {
    let left = deadline.saturating_duration_since(Instant::now());
    let value = match left.as_millis() {
        ms @ 0..=99_999_999 => format!("{ms}m"),
        _ => format!("{}S", left.as_secs().min(99_999_999)),
    };
    HeaderValue::try_from(value).unwrap_or(HeaderValue::from_static("0m"))
}

/// The `:scheme` of requests to `backend`: `https` over TLS.
fn scheme(backend: &Backend) -> http::uri::Scheme {
    if backend.tls.is_some() {
        http::uri::Scheme::HTTPS
    } else {
        http::uri::Scheme::HTTP
    }
}

/// Connection-specific fields HTTP/2 forbids (RFC 9113 §8.2.2), and `host`, which becomes
/// `:authority`.
const NOT_FORWARDED: [&str; 7] = [
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
];

/// The HTTP/2 request head for `head` (the HTTP/1.1 head the proxy built, with its forwarding
/// fields): the same method, target and fields, `host` as `:authority` (the backend's own if the
/// client's is not a valid authority), without the connection-specific fields, and with
/// `te: trailers` for a gRPC call (its servers may require it). A `grpc-timeout` becomes the
/// time left until `deadline` (the call's, which it set), as the gRPC spec asks of proxies: the
/// backend does not work on past the time the client waits.
fn request_head(
    head: &Outgoing,
    backend: &Backend,
    deadline: Instant,
) -> Result<http::request::Parts, UpstreamError> {
    let invalid = |what: &str| UpstreamError::Request(format!("cannot go over HTTP/2: {what}"));
    let lines = head.bytes.iter().filter(|&&b| b == b'\n').count();
    let mut slots = vec![httparse::EMPTY_HEADER; lines];
    let mut parsed = httparse::Request::new(&mut slots);
    match parsed.parse(&head.bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(invalid("the request head does not parse")),
    }
    let mut headers = HeaderMap::with_capacity(parsed.headers.len() + 1);
    let mut authority = None;
    let mut grpc = false;
    for field in parsed.headers.iter() {
        let name =
            HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| invalid("a field name"))?;
        if name == http::header::HOST {
            authority = http::uri::Authority::try_from(field.value).ok();
            continue;
        }
        if NOT_FORWARDED.contains(&name.as_str()) {
            continue;
        }
        if name == http::header::CONTENT_TYPE && field.value.starts_with(b"application/grpc") {
            grpc = true;
        }
        if name.as_str() == "grpc-timeout" {
            headers.append(name, grpc_timeout(deadline));
            continue;
        }
        let value = HeaderValue::from_bytes(field.value).map_err(|_| invalid("a field value"))?;
        headers.append(name, value);
    }
    if grpc {
        headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
    }
    let target = parsed.path.unwrap_or("/");
    let uri = Uri::builder()
        .scheme(scheme(backend))
        .authority(authority.unwrap_or_else(|| backend.authority.clone()))
        .path_and_query(target)
        .build()
        .map_err(|_| invalid("the target"))?;
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = head.method.clone();
    parts.uri = uri;
    parts.version = Version::HTTP_2;
    parts.headers = headers;
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BackendConfig;
    use crate::http1::RequestHeadBuilder;

    #[test]
    fn grpc_timeouts_count_in_milliseconds_then_seconds() {
        let now = Instant::now();
        assert_eq!(grpc_timeout(now), "0m");
        let day = grpc_timeout(now + Duration::from_secs(86_400));
        assert!(day.to_str().unwrap().ends_with('m'), "{day:?}");
        let year = grpc_timeout(now + Duration::from_secs(365 * 86_400));
        assert!(year.to_str().unwrap().ends_with('S'), "{year:?}");
    }

    #[test]
    fn the_head_loses_its_connection_fields_and_gains_te_for_grpc() {
        let backend = Backend::new(&BackendConfig {
            address: "127.0.0.1:9".into(),
            weight: 1,
            labels: Vec::new(),
            protocol: crate::config::BackendProtocol::H2c,
            tls: None,
        });
        let mut head = RequestHeadBuilder::new(&http::Method::POST, "/pkg.Svc/Call?x=1");
        head.header(b"Content-Type", b"application/grpc+proto");
        head.header(b"host", b"api.example:50051");
        head.header(b"connection", b"upgrade");
        head.header(b"grpc-timeout", b"5S");
        let head = head.finish(&http_body_util::Full::new(bytes::Bytes::from("xy")));
        let parts = request_head(&head, &backend, Instant::now() + Duration::from_secs(5)).unwrap();
        assert_eq!(parts.uri, "http://api.example:50051/pkg.Svc/Call?x=1");
        assert_eq!(parts.headers["te"], "trailers");
        let left = parts.headers["grpc-timeout"].to_str().unwrap();
        let ms: u64 = left.strip_suffix('m').unwrap().parse().unwrap();
        assert!((4_000..=5_000).contains(&ms), "{left}");
        assert!(!parts.headers.contains_key("connection"));
        assert!(!parts.headers.contains_key("host"));
    }
}
