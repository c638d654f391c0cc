//! One client connection: served as HTTP/1.1 by lbhost's own server ([`super::h1`]), or, when it
//! opens with the HTTP/2 preface, handed to hyper's HTTP/2 server; closed gracefully when the
//! worker stops.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::stream::ClientStream;
use http::{Method, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prometheus::IntGauge;
use tokio::sync::{mpsc, watch};

use super::client_io::Prefixed;
use super::h1;
use super::Stop;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::proxy::{local_response, with_header_map, Proxy, ProxyBody};
use crate::request::ClientHead;

/// How a worker serves its client connections; built once per worker from the config.
pub(super) struct Settings {
    http2: http2::Builder<TokioExecutor>,
    pub(super) header_read: Duration,
    pub(super) client_idle: Duration,
    pub(super) max_header_bytes: usize,
    /// `lbhost_client_connections{state="serving"}` and `{state="parked"}`.
    serving: IntGauge,
    parked: IntGauge,
}

impl Settings {
    pub(super) fn new(config: &Config, metrics: &Metrics) -> Self {
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .keep_alive_interval(Some(config.timeouts.client_idle))
            .max_header_list_size(config.limits.max_header_bytes as u32);
        Settings {
            http2: h2,
            header_read: config.timeouts.header_read,
            client_idle: config.timeouts.client_idle,
            max_header_bytes: config.limits.max_header_bytes,
            serving: metrics.client_connections.with_label_values(&["serving"]),
            parked: metrics.client_connections.with_label_values(&["parked"]),
        }
    }
}

/// Counts one open connection in `lbhost_client_connections`, in its current state.
pub(super) struct Counted<'a> {
    settings: &'a Settings,
    parked: bool,
}

impl<'a> Counted<'a> {
    fn serving(settings: &'a Settings) -> Self {
        settings.serving.inc();
        Counted {
            settings,
            parked: false,
        }
    }

    fn gauge(&self) -> &IntGauge {
        if self.parked {
            &self.settings.parked
        } else {
            &self.settings.serving
        }
    }

    pub(super) fn set_parked(&mut self, parked: bool) {
        if parked != self.parked {
            self.gauge().dec();
            self.parked = parked;
            self.gauge().inc();
        }
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.gauge().dec();
    }
}

/// Serves one accepted client connection until it closes, idles out, or the worker stops
/// (see [`Stop`]: in-flight exchanges finish, then the connection closes). `active` is held
/// until the connection is gone (a WebSocket or other tunnel it turns into holds a clone), so
/// the worker can wait for its connections to drain.
pub(super) async fn serve(
    stream: ClientStream,
    peer: SocketAddr,
    proxy: Arc<Proxy>,
    settings: Arc<Settings>,
    mut stopped: watch::Receiver<Stop>,
    active: mpsc::Sender<Infallible>,
) {
    let mut counted = Counted::serving(&settings);
    let ended = h1::serve(
        stream,
        peer,
        &proxy,
        &settings,
        &mut stopped,
        &mut counted,
        &active,
    )
    .await;
    let h1::Ended::Http2(stream, read) = ended else {
        return;
    };
    let secure = stream.is_tls();
    let service = service_fn(move |request: http::Request<Incoming>| {
        let (parts, body) = request.into_parts();
        // lbhost is no forward proxy, over HTTP/1.1 (see `h1`) or HTTP/2.
        let connect = parts.method == Method::CONNECT;
        let head = ClientHead::from_parts(parts);
        // Boxed: hyper spawns a task per stream and moves its future several times on the way
        // in (and again when it completes); the proxy's future is several KiB, a box is a word.
        let answer =
            (!connect).then(|| Box::pin(Arc::clone(&proxy).handle(head, body, peer, secure, None)));
        async move {
            let Some(answer) = answer else {
                return Ok(local_response(StatusCode::METHOD_NOT_ALLOWED));
            };
            Ok::<_, Infallible>(http2_head(answer.await?))
        }
    });
    let connection = boxed(|| {
        settings
            .http2
            .serve_connection(TokioIo::new(Prefixed::new(stream, read)), service)
    });
    let mut connection = Box::into_pin(connection);
    // When the worker stops: GOAWAY (streams in progress finish, no new ones start), then wait
    // for it to close.
    let ended = tokio::select! {
        ended = connection.as_mut() => Some(ended),
        _ = stopped.wait_for(|stop| stop.stops()) => None,
    };
    let ended = match ended {
        Some(ended) => ended,
        None => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(%peer, cause = %e, "HTTP/2 client connection ended with an error");
    }
}

/// `response` with all its fields in its header map, as hyper's HTTP/2 server writes them from
/// there (a backend's arrive in wire form, see [`ProxyBody::take_fields`]).
fn http2_head(response: Response<ProxyBody>) -> Response<ProxyBody> {
    match with_header_map(response) {
        Ok(response) => response,
        Err(e) => {
            tracing::warn!(cause = %e, "502: the backend's response head has a field HTTP/2 cannot carry");
            local_response(StatusCode::BAD_GATEWAY)
        }
    }
}

/// `make()` on the heap, built in a frame of its own: hyper's connections are large, and a value
/// built in place inside `serve` would enlarge the task of every connection, parked ones
/// included (async functions keep room for such temporaries).
#[inline(never)]
fn boxed<T>(make: impl FnOnce() -> T) -> Box<T> {
    Box::new(make())
}
