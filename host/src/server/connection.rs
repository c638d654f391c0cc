//! One client connection: tells HTTP/2 from HTTP/1.1, serves it with hyper, parks idle HTTP/1.1
//! keep-alive connections, and closes gracefully when the worker stops.
//!
//! **Parking.** A hyper HTTP/1.1 connection holds ~20 KiB while it waits for the next request
//! (an 8 KiB read and an 8 KiB write buffer, the dispatcher and the slot for the service's
//! future). Once a connection has had no new request for [`PARK_AFTER`] and nothing is left to
//! read or write, lbhost takes the socket back: it asks hyper to close gracefully (an idle hyper
//! connection closes at once, without writing anything) while the socket's `shutdown` is a
//! no-op, keeps the bytes hyper had read but not parsed, and drops hyper. The socket then waits
//! alone (~3 KiB in all, task included) until the client sends more, and a new hyper connection
//! picks it up. A client sees one keep-alive connection throughout. Upgraded connections and
//! HTTP/2 are never parked; a connection whose last request had a body waits for its next
//! bodiless request (whether hyper read a body to its end is not visible from here).

use std::convert::Infallible;
use std::future::{poll_fn, Future as _};
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use http_body::Body as _;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::{service_fn, HttpService};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prometheus::IntGauge;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use super::client_io::{ClientIo, ConnState, TrackedBody};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::proxy::{Proxy, ProxyBody};

/// A keep-alive connection is parked once it has seen no new request for between one and two
/// of these. Parking right after every response cost +7–10 % CPU per request under load
/// (hyper's connection state and buffers rebuilt each time); a check every 50 ms costs a busy
/// connection one extra poll per 50 ms. Longer is worse for memory: while 10,000 connections
/// are being opened, more of them hold hyper's buffers at once (250 ms: 7.0 KiB per idle
/// connection, 50 ms: 4.4, with the task at 1,320 B; BENCHMARKS.md).
const PARK_AFTER: Duration = Duration::from_millis(50);

/// How a worker serves its client connections; built once per worker from the config.
pub(super) struct Settings {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    header_read: Duration,
    client_idle: Duration,
    /// `lbhost_client_connections{state="serving"}` and `{state="parked"}`.
    serving: IntGauge,
    parked: IntGauge,
}

impl Settings {
    pub(super) fn new(config: &Config, metrics: &Metrics) -> Self {
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            // Head and idle deadlines are ClientIo's (it answers 408); hyper's would close silently.
            .header_read_timeout(None)
            .max_buf_size(config.limits.max_header_bytes.max(8192))
            .keep_alive(true);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .keep_alive_interval(Some(config.timeouts.client_idle))
            .max_header_list_size(config.limits.max_header_bytes as u32);
        Settings {
            http1: h1,
            http2: h2,
            header_read: config.timeouts.header_read,
            client_idle: config.timeouts.client_idle,
            serving: metrics.client_connections.with_label_values(&["serving"]),
            parked: metrics.client_connections.with_label_values(&["parked"]),
        }
    }
}

/// Counts one open connection in `lbhost_client_connections`, in its current state.
struct Counted<'a> {
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

    fn set_parked(&mut self, parked: bool) {
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
/// (`stopped` turns true: in-flight exchanges finish, then the connection closes). `_active` is
/// held until the connection is gone, so the worker can wait for its connections to drain.
pub(super) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    proxy: Arc<Proxy>,
    settings: Arc<Settings>,
    mut stopped: watch::Receiver<bool>,
    _active: mpsc::Sender<Infallible>,
) {
    let mut counted = Counted::serving(&settings);
    let state = ConnState::new();
    let mut io = ClientIo::new(
        stream,
        Arc::clone(&state),
        settings.header_read,
        settings.client_idle,
    );
    let mut service = {
        let state = Arc::clone(&state);
        service_fn(move |request: http::Request<Incoming>| {
            state.head_received(request.body().is_end_stream());
            let response = Arc::clone(&proxy).handle(request, peer);
            let state = Arc::clone(&state);
            async move {
                let response = response.await?;
                if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                    state.upgraded();
                }
                Ok::<_, Infallible>(response.map(|body| TrackedBody::new(body, state)))
            }
        })
    };
    let http2 = tokio::select! {
        sniffed = io.sniff_http2() => sniffed,
        _ = stopped.wait_for(|stop| *stop) => return,
    };
    match http2 {
        Ok(false) => {}
        Ok(true) => {
            let connection = boxed(|| settings.http2.serve_connection(TokioIo::new(io), service));
            if let Err(e) = serve_http2(Box::into_pin(connection), &mut stopped).await {
                tracing::debug!(%peer, cause = %e, "HTTP/2 client connection ended with an error");
            }
            return;
        }
        Err(e) => {
            tracing::debug!(%peer, cause = %e, "client connection ended before a request");
            return;
        }
    }
    // HTTP/1.1, parked whenever it idles (module docs), until it closes, idles out, or the
    // worker stops. This loop stays in `serve` rather than a function of its own: `io` and
    // `service` would then be held twice by every connection's task (~970 B instead of 1,320 B).
    loop {
        let mut connection = boxed(|| {
            settings
                .http1
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades()
        });
        let parked = match until_idle(&mut *connection, &state, &mut stopped).await {
            Ok(parked) => parked,
            Err(e) => {
                tracing::debug!(cause = %e, "client connection ended with an error");
                return;
            }
        };
        // Closed by either side, drained, or upgraded into a tunnel.
        let Some(parts) = connection.into_parts().filter(|_| parked) else {
            return;
        };
        io = parts.io.into_inner();
        io.unread(parts.read_buf);
        service = parts.service;
        counted.set_parked(true);
        super::trim::parked();
        let more = tokio::select! {
            more = io.wait_for_request() => more,
            _ = stopped.wait_for(|stop| *stop) => false,
        };
        counted.set_parked(false);
        if !more {
            // Idle too long, or the worker stops: dropping the socket closes it.
            return;
        }
    }
}

/// Drives an HTTP/2 connection to its end; when the worker stops, sends GOAWAY (streams in
/// progress finish, no new ones start) and waits for it to close.
async fn serve_http2<C>(
    mut connection: Pin<Box<C>>,
    stopped: &mut watch::Receiver<bool>,
) -> Result<(), hyper::Error>
where
    C: std::future::Future<Output = Result<(), hyper::Error>> + Graceful,
{
    let ended = tokio::select! {
        ended = connection.as_mut() => Some(ended),
        _ = stopped.wait_for(|stop| *stop) => None,
    };
    match ended {
        Some(ended) => ended,
        None => {
            connection.as_mut().graceful();
            connection.await
        }
    }
}

/// A hyper server connection that can be asked to finish its exchanges and close (hyper has no
/// trait for it).
trait Graceful {
    fn graceful(self: Pin<&mut Self>);
}

impl<I, S> Graceful for http2::Connection<I, S, TokioExecutor>
where
    S: HttpService<Incoming, ResBody = TrackedBody<ProxyBody>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    TokioExecutor: hyper::rt::bounds::Http2ServerConnExec<S::Future, TrackedBody<ProxyBody>>,
{
    fn graceful(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S> Graceful for http1::UpgradeableConnection<I, S>
where
    S: HttpService<Incoming, ResBody = TrackedBody<ProxyBody>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
{
    fn graceful(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// Drives `connection` until it ends. `Ok(true)`: it ended because it was idle and is being
/// parked (its socket is still open); `Ok(false)`: it closed, drained after `stopped`, or
/// became a tunnel.
async fn until_idle<C>(
    connection: &mut C,
    state: &ConnState,
    stopped: &mut watch::Receiver<bool>,
) -> Result<bool, hyper::Error>
where
    C: std::future::Future<Output = Result<(), hyper::Error>> + Graceful + Unpin,
{
    let mut stop = pin!(stopped.wait_for(|stop| *stop));
    let mut park_check = pin!(tokio::time::sleep(PARK_AFTER));
    let mut requests_seen = state.requests();
    let mut draining = false;
    let mut parking = false;
    let ended = poll_fn(|cx| loop {
        if !draining && !parking && stop.as_mut().poll(cx).is_ready() {
            draining = true;
            Pin::new(&mut *connection).graceful();
        }
        match Pin::new(&mut *connection).poll(cx) {
            Poll::Ready(result) => return Poll::Ready(result),
            Poll::Pending if parking => {
                // hyper was not idle after all: it finishes the exchange and closes.
                parking = false;
                state.set_parking(false);
                return Poll::Pending;
            }
            Poll::Pending if draining => return Poll::Pending,
            Poll::Pending => {}
        }
        if park_check.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        // A check every PARK_AFTER: park if no request came since the last one.
        let requests = state.requests();
        if requests == requests_seen && state.between_requests() {
            // An idle hyper connection closes at once, leaving the socket open: polled again.
            parking = true;
            state.set_parking(true);
            Pin::new(&mut *connection).graceful();
        } else {
            requests_seen = requests;
            park_check
                .as_mut()
                .reset(tokio::time::Instant::now() + PARK_AFTER);
            // Pending now: this registers the next check.
            let _ = park_check.as_mut().poll(cx);
            return Poll::Pending;
        }
    })
    .await;
    state.set_parking(false);
    ended.map(|()| parking)
}

/// `make()` on the heap, built in a frame of its own: hyper's connections are large, and a value
/// built in place inside `serve` would enlarge the task of every connection, parked ones
/// included (async functions keep room for such temporaries: 2.5 KiB here instead of ~0.3).
#[inline(never)]
fn boxed<T>(make: impl FnOnce() -> T) -> Box<T> {
    Box::new(make())
}
