//! HTTP/2 client connections (h2c with prior knowledge, h2 agreed by ALPN), served on the h2
//! crate: the connection's task reads frames and accepts streams; each stream runs the proxy
//! in a task of its own and sends the response as the client's window allows. When the worker
//! stops, a GOAWAY lets the streams in progress finish and starts no new one.
//!
//! h2 is used directly rather than through hyper's server: no service and executor layers, no
//! ping recorder locked on every frame (lbhost PINGs on a timer, [`KeepAlive`]).

use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use tokio::sync::watch;

use super::client_io::Prefixed;
use super::Stop;
use crate::http1::date_value;
use crate::http2::{strip_connection_fields, KeepAlive, RecvBody, SendBody};
use crate::proxy::{local_response, with_header_map, Proxy, ProxyBody};
use crate::request::ClientHead;

/// A client's PONG may come this late before its connection is given up.
const PONG_TIMEOUT: Duration = Duration::from_secs(20);
/// Flow-control windows: what a client may send on one stream, and on the connection, before
/// lbhost has read it.
const STREAM_WINDOW: u32 = 1024 * 1024;
const CONNECTION_WINDOW: u32 = 1024 * 1024;
/// Streams one client may have open at once.
const MAX_STREAMS: u32 = 200;
/// Response bytes h2 keeps for one stream beyond what the client's window takes.
const SEND_BUFFER: usize = 400 * 1024;

/// How client connections are spoken to over HTTP/2; built once per worker.
#[derive(Debug)]
pub(super) struct H2Settings {
    builder: h2::server::Builder,
    /// The rest of the client's preface must come within this.
    handshake: Duration,
    /// A PING goes to the client this often.
    ping_interval: Duration,
}

impl H2Settings {
    pub(super) fn new(header_read: Duration, client_idle: Duration, max_header_bytes: u32) -> Self {
        let mut builder = h2::server::Builder::new();
        builder
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_header_list_size(max_header_bytes)
            .max_concurrent_streams(MAX_STREAMS)
            .max_send_buffer_size(SEND_BUFFER);
        H2Settings {
            builder,
            handshake: header_read,
            ping_interval: client_idle,
        }
    }
}

/// Serves HTTP/2 on `io` (the preface already read is in front of it) until the client closes
/// the connection or it fails; once `stopped` says so, with a GOAWAY.
pub(super) async fn serve(
    io: Prefixed,
    peer: SocketAddr,
    secure: bool,
    proxy: &Arc<Proxy>,
    settings: &H2Settings,
    stopped: &mut watch::Receiver<Stop>,
) -> Result<(), String> {
    let handshake = settings.builder.handshake::<_, Bytes>(io);
    let mut conn = match tokio::time::timeout(settings.handshake, handshake).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return Err(format!("handshake: {e}")),
        Err(_) => return Err("no HTTP/2 SETTINGS in time".to_owned()),
    };
    let mut keep_alive = KeepAlive::new(conn.ping_pong(), settings.ping_interval, PONG_TIMEOUT);
    let mut stop = pin!(stopped.wait_for(|stop| stop.stops()));
    let mut closing = false;
    poll_fn(|cx| loop {
        if !closing && stop.as_mut().poll(cx).is_ready() {
            conn.graceful_shutdown();
            closing = true;
        }
        match conn.poll_accept(cx) {
            Poll::Ready(Some(Ok((request, respond)))) => {
                tokio::spawn(stream(request, respond, Arc::clone(proxy), peer, secure));
            }
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e.to_string())),
            Poll::Ready(None) => return Poll::Ready(Ok(())),
            Poll::Pending => {
                return match keep_alive.poll_overdue(cx) {
                    Poll::Ready(()) => Poll::Ready(Err("no PONG to a keep-alive PING".to_owned())),
                    Poll::Pending => Poll::Pending,
                };
            }
        }
    })
    .await
}

/// One stream: the request through the proxy, then the response out. A client that resets the
/// stream first cancels the request (the proxy's future is dropped).
async fn stream(
    request: Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    proxy: Arc<Proxy>,
    peer: SocketAddr,
    secure: bool,
) {
    let (parts, recv) = request.into_parts();
    let response = if parts.method == Method::CONNECT {
        // lbhost is no forward proxy, over HTTP/1.1 (see `h1`) or HTTP/2.
        local_response(StatusCode::METHOD_NOT_ALLOWED)
    } else {
        let body = RecvBody::new(recv, &parts.headers);
        let head = ClientHead::from_parts(parts);
        // Boxed: the proxy's future is several KiB, which spawning the stream's task would
        // copy whole (~1,000 instructions a request, against a box's ~150).
        let mut answer = Box::pin(proxy.handle(head, body, peer, secure, None));
        let answered = poll_fn(|cx| {
            if let Poll::Ready(Ok(response)) = answer.as_mut().poll(cx) {
                return Poll::Ready(Some(response));
            }
            match respond.poll_reset(cx) {
                Poll::Ready(_) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        let Some(response) = answered else {
            tracing::debug!(%peer, "HTTP/2 stream reset by the client before its response");
            return;
        };
        response
    };
    let (mut parts, body) = http2_head(response).into_parts();
    strip_connection_fields(&mut parts.headers);
    if !parts.headers.contains_key(header::DATE) {
        if let Some(date) = date_value() {
            parts.headers.insert(header::DATE, date);
        }
    }
    let end = body.is_end_stream();
    if !end {
        if let Some(length) = body.size_hint().exact() {
            if !parts.headers.contains_key(header::CONTENT_LENGTH) {
                parts
                    .headers
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
            }
        }
    }
    let sending = match respond.send_response(Response::from_parts(parts, ()), end) {
        Ok(sending) => sending,
        Err(e) => {
            tracing::debug!(%peer, cause = %e, "HTTP/2 response head not sent");
            return;
        }
    };
    if !end {
        if let Err(e) = SendBody::new(body, sending).await {
            tracing::debug!(%peer, cause = %e, "HTTP/2 response body not sent whole");
        }
    }
}

/// `response` with all its fields in its header map, as h2 writes them from there (a backend's
/// arrive in wire form, see [`ProxyBody::take_fields`]).
fn http2_head(response: Response<ProxyBody>) -> Response<ProxyBody> {
    match with_header_map(response) {
        Ok(response) => response,
        Err(e) => {
            tracing::warn!(cause = %e, "502: the backend's response head has a field HTTP/2 cannot carry");
            local_response(StatusCode::BAD_GATEWAY)
        }
    }
}
