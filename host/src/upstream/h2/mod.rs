//! HTTP/2 to backends (`"protocol": "h2c"`), on lbhost's own client ([`client`]): requests are
//! multiplexed on a few connections per backend and worker ([`pool`]), the request body goes out
//! as the backend's window allows ([`RequestBody`]), the response body streams from its stream,
//! trailers included ([`ResponseBody`]), and a stream the backend refused unprocessed comes back
//! as [`UpstreamError::Refused`] with its body, so the proxy can send it elsewhere.
//!
//! A request is sent and its response awaited in the request's own task; the connection's task
//! only reads and writes the socket.
//!
//! The connection comes from the same connector as HTTP/1.1 ([`Upstream::connect_http2`]): TCP
//! for h2c, TLS with `h2` agreed by ALPN for h2.

mod client;
mod head;
mod pool;
mod probe;
mod replay;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use http::header::HeaderValue;
use http::Response;
use http_body::Body;
use tokio::time::Instant;

pub(crate) use client::ResponseBody;
pub(crate) use head::H2Head;
pub(crate) use pool::StreamSlot;
pub(crate) use replay::ReplayBody;

use super::{BackendBody, Upstream, UpstreamError};
use crate::body::UpstreamBody;
use crate::pool::Backend;
use client::{RequestBody, SendError, StreamError};
use pool::Checkout;

/// Sends `head` and `body` to `backend` over HTTP/2 and resolves to the response head, or to
/// [`UpstreamError::TimedOut`] if it has not come by `deadline`.
pub(super) async fn request(
    upstream: &Upstream,
    backend: &Backend,
    head: Box<H2Head>,
    body: UpstreamBody,
    connect_timeout: Duration,
    deadline: Instant,
) -> Result<Response<BackendBody>, UpstreamError> {
    let request = (*head).into_request(backend, deadline)?;
    let (conn, slot) = loop {
        match pool::checkout(super::pool_key(backend)) {
            // A connection whose backend sent GOAWAY (or that failed) since it was last used
            // takes no new stream: it drains, and the request takes another (opened if need be)
            // rather than failing or spending a retry.
            Checkout::Ready(conn, slot) if conn.client.is_open() => break (conn, slot),
            Checkout::Ready(conn, _) => conn.drain(),
            Checkout::Wait(opened) => tokio::time::timeout_at(deadline, opened.notified())
                .await
                .map_err(|_| UpstreamError::TimedOut)?,
            Checkout::Open(opening) => {
                let stream = upstream
                    .connect_http2(backend, connect_timeout, deadline)
                    .await?;
                let mark = upstream.counts.opened(&backend.address);
                opening.opened(pool::handshake(stream, mark));
            }
        }
    };
    // A request without a body (most are) needs no recording: it is never read, so another
    // attempt can send it as it is.
    let end = body.is_end_stream();
    let (body, replay) = if end {
        (None, None)
    } else {
        let body = ReplayBody::new(body);
        let replay = body.replay();
        (Some(body), replay)
    };
    let mut stream = match conn.client.send_request(&request, end) {
        Ok(stream) => stream,
        Err(SendError::Closed(why)) => {
            // Nothing went out: the connection is closing (GOAWAY, or gone; seen just above
            // unless it ran out of stream ids).
            conn.drain();
            return Err(UpstreamError::Refused(why, replay));
        }
        Err(e @ SendError::Invalid(_)) => return Err(UpstreamError::Request(e.to_string())),
    };
    let mut sending = body.map(|body| RequestBody::new(body, stream.another()));
    // The body goes out while the response is awaited (a backend may answer before it read
    // it all).
    let head = std::future::poll_fn(|cx| {
        if let Some(body) = &mut sending {
            if let std::task::Poll::Ready(sent) = Pin::new(body).poll(cx) {
                sending = None;
                if let Err(e) = sent {
                    tracing::debug!(cause = %e, "HTTP/2 request body not sent whole");
                }
            }
        }
        stream.poll_response(cx)
    });
    let parts = match tokio::time::timeout_at(deadline, head).await {
        Err(_) => return Err(UpstreamError::TimedOut),
        Ok(Ok(parts)) => parts,
        // The backend did not process it (REFUSED_STREAM, or a GOAWAY below its stream): it
        // may go elsewhere whatever its method (RFC 9113 §8.7).
        Ok(Err(StreamError::Refused(why))) => {
            if !conn.client.is_open() {
                conn.drain();
            }
            return Err(UpstreamError::Refused(why, replay));
        }
        Ok(Err(e)) => return Err(UpstreamError::Receive(std::io::Error::other(e))),
    };
    conn.answered();
    if let Some(body) = sending {
        // A streaming call: the rest of its body goes on in a task of its own, as the client
        // sends it.
        tokio::spawn(async move {
            if let Err(e) = body.await {
                tracing::debug!(cause = %e, "HTTP/2 request body not sent whole");
            }
        });
    }
    let body = ResponseBody::new(stream);
    Ok(Response::from_parts(parts, BackendBody::h2(body, slot)))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_count_in_milliseconds_then_seconds() {
        let now = Instant::now();
        assert_eq!(grpc_timeout(now), "0m");
        let day = grpc_timeout(now + Duration::from_secs(86_400));
        assert!(day.to_str().unwrap().ends_with('m'), "{day:?}");
        let year = grpc_timeout(now + Duration::from_secs(365 * 86_400));
        assert!(year.to_str().unwrap().ends_with('S'), "{year:?}");
    }
}
