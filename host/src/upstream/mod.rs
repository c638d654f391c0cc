//! Connections to backends: opened on demand, kept alive and reused from a per-thread pool,
//! counted.
//!
//! lbhost speaks HTTP/1.1 to backends itself ([`crate::http1`]) rather than through hyper's
//! client: a request writes and reads its connection from its own task (`exchange.rs`) and the
//! response body reads the rest ([`BackendBody`]), so no task, channel or wake-up sits between the
//! request and its backend. An idle connection is a socket in the pool and nothing else.
//! `https://` backends are dialed the same way, with a TLS handshake after the TCP connect
//! (`tls.rs`); their connections are pooled and reused like plain ones.

mod backend_body;
mod conn;
mod counts;
mod exchange;
mod h2;
mod idle;
mod stream;
mod tls;

use std::time::Duration;

use http::Response;
use prometheus::IntCounterVec;
use tokio::net::TcpStream;
use tokio::time::Instant;

pub(crate) use backend_body::{BackendBody, Upgraded};
pub(crate) use counts::{ConnectionCount, ConnectionCounts};
pub(crate) use h2::{H2Head, ReplayBody};
pub(crate) use tls::TlsFailure;

use crate::body::{BoxError, UpstreamBody};
use crate::http1::{CodecError, Outgoing};
use crate::pool::Backend;
use conn::BackendConn;
use exchange::{exchange, ExchangeFailure};
use stream::BackendStream;

/// A request head for a backend, in the form its protocol takes.
#[derive(Debug)]
pub(crate) enum UpstreamHead {
    /// HTTP/1.1: the head's bytes, ready for the wire.
    Http1(Outgoing),
    /// HTTP/2: the fields in a header map, for the HTTP/2 client. Boxed: ~250 bytes that every
    /// HTTP/1.1 request's future would carry and move otherwise (~200 instructions a request).
    Http2(Box<H2Head>),
}

/// TCP keep-alive probes on upstream connections start after this much silence.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// Why a request could not be sent to a backend or its response head not read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    /// No TCP connection could be opened.
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// Opening the TCP connection (and the TLS session, for `https://`) took longer than the
    /// connect timeout.
    #[error("connect: timed out after {0:?}")]
    ConnectTimeout(Duration),
    /// The TLS handshake failed (a certificate that does not verify, a refused client
    /// certificate, ...): nothing was sent.
    #[error("{0}")]
    Tls(TlsFailure),
    /// Writing the request failed (reset, broken pipe).
    #[error("sending the request: {0}")]
    Send(std::io::Error),
    /// Reading the response head failed.
    #[error("reading the response: {0}")]
    Receive(std::io::Error),
    /// The backend closed the connection before a whole response head.
    #[error("the backend closed the connection before answering")]
    Closed,
    /// No response head by the deadline (`timeouts.response_header` after the request
    /// started).
    #[error("no response head in time")]
    TimedOut,
    /// The backend's answer is not valid HTTP/1.1.
    #[error("{0}")]
    Invalid(CodecError),
    /// The client's request body failed while it was being sent.
    #[error("request body: {0}")]
    Body(BoxError),
    /// The backend did not process the request (an HTTP/2 stream refused, or past a GOAWAY):
    /// it may go to another backend whatever its method, with the body given back here (`None`
    /// when too much of it was sent to be kept).
    #[error("the backend did not process the request: {0}")]
    Refused(String, Option<ReplayBody>),
    /// The request cannot be sent in the backend's protocol.
    #[error("{0}")]
    Request(String),
}

impl UpstreamError {
    /// Whether nothing reached the backend because no connection could be opened (a failed
    /// TLS handshake included).
    pub(crate) fn is_connect(&self) -> bool {
        matches!(
            self,
            UpstreamError::Connect(_) | UpstreamError::ConnectTimeout(_) | UpstreamError::Tls(_)
        )
    }
}

/// The client lbhost forwards with: HTTP/1.1 with keep-alive, connections reused across
/// requests from a per-thread pool.
#[derive(Debug, Default)]
pub(crate) struct Upstream {
    counts: ConnectionCounts,
    /// `lbhost_upstream_tls_failures_total{backend, reason}`, when counted.
    tls_failures: Option<IntCounterVec>,
}

impl Upstream {
    /// A client with no connection open yet, counting failed TLS handshakes in `tls_failures`
    /// (`lbhost_upstream_tls_failures_total`).
    pub(crate) fn counting(tls_failures: &IntCounterVec) -> Self {
        Upstream {
            tls_failures: Some(tls_failures.clone()),
            ..Upstream::default()
        }
    }

    /// How many connections this client opened and reused, per backend.
    pub(crate) fn connections(&self) -> &ConnectionCounts {
        &self.counts
    }

    /// Sends `head` and `body` to `backend` and resolves to the response head, or to
    /// [`UpstreamError::TimedOut`] if it has not come by `deadline`; the body streams from the
    /// connection, which goes back to the pool when the body has been read whole. The head's
    /// header fields travel with the body ([`BackendBody::take_fields`]), not in its map. A new
    /// connection must be established within `connect_timeout` (the running config's, so a
    /// reload applies to the next connection opened).
    ///
    /// A pooled connection is tried first. One the backend closed while idle is skipped; one
    /// that fails before the request is written hands it back, and the next one, or a new
    /// connection, gets it. One the backend closes without answering, as the request arrives,
    /// hands back an idempotent request without a body, and a new connection gets it.
    pub(crate) async fn request(
        &self,
        backend: &Backend,
        head: UpstreamHead,
        mut body: UpstreamBody,
        connect_timeout: Duration,
        deadline: Instant,
    ) -> Result<Response<BackendBody>, UpstreamError> {
        let head = match head {
            UpstreamHead::Http1(head) => head,
            UpstreamHead::Http2(head) => {
                return Box::pin(h2::request(
                    self,
                    backend,
                    head,
                    body,
                    connect_timeout,
                    deadline,
                ))
                .await;
            }
        };
        let head = &head;
        // One exchange in one loop, so the future holds one exchange's state, not one per path.
        // A new connection never hands the request back, so the loop ends.
        let mut pooled = true;
        loop {
            let conn = match if pooled {
                idle::checkout(pool_key(backend))
            } else {
                None
            } {
                Some(conn) => conn,
                None => {
                    pooled = false;
                    self.connect(backend, connect_timeout, deadline).await?
                }
            };
            match exchange(conn, head, body, deadline).await {
                Ok(response) => return Ok(response),
                Err(ExchangeFailure::Unsent(again, e)) => {
                    tracing::debug!(backend = %backend.address, cause = %e, "pooled connection failed before the request went out; trying another");
                    body = again;
                }
                Err(ExchangeFailure::Stale(again, e)) => {
                    tracing::debug!(backend = %backend.address, cause = %e, "pooled connection closed under the request; sending it on a new one");
                    body = again;
                    pooled = false;
                }
                Err(ExchangeFailure::Failed(e)) => {
                    self.count_late_refusal(backend, &e);
                    return Err(e);
                }
            }
        }
    }

    /// Counts and logs a TLS alert that ended an exchange (see [`tls::late_refusal`]).
    fn count_late_refusal(&self, backend: &Backend, error: &UpstreamError) {
        let (UpstreamError::Send(io) | UpstreamError::Receive(io)) = error else {
            return;
        };
        if let Some(reason) = tls::late_refusal(io) {
            tracing::warn!(backend = %backend.address, reason, cause = %io, "the backend ended the TLS session");
            if let Some(counter) = &self.tls_failures {
                counter
                    .with_label_values(&[backend.address.as_str(), reason])
                    .inc();
            }
        }
    }

    /// Sends `head` (a request without a body that says `connection: close`) to `backend` on a
    /// new connection, never a pooled one, and resolves to the response head: a health probe,
    /// through the same connector and codec as traffic.
    pub(crate) async fn probe(
        &self,
        backend: &Backend,
        head: &Outgoing,
        connect_timeout: Duration,
        deadline: Instant,
    ) -> Result<Response<BackendBody>, UpstreamError> {
        let conn = self.connect(backend, connect_timeout, deadline).await?;
        match exchange(conn, head, UpstreamBody::empty(), deadline).await {
            Ok(response) => Ok(response),
            Err(
                ExchangeFailure::Unsent(_, e)
                | ExchangeFailure::Stale(_, e)
                | ExchangeFailure::Failed(e),
            ) => {
                self.count_late_refusal(backend, &e);
                Err(e)
            }
        }
    }

    /// Opens a connection to `backend` as traffic would, within `timeout` (or by `deadline`),
    /// and closes it: TCP, then for `https://` the TLS handshake, with `h2` agreed by ALPN for an
    /// `"h2"` backend. A `tcp` health probe.
    pub(crate) async fn probe_connect(
        &self,
        backend: &Backend,
        timeout: Duration,
        deadline: Instant,
    ) -> Result<(), UpstreamError> {
        if backend.protocol.is_http2() {
            return self
                .connect_http2(backend, timeout, deadline)
                .await
                .map(drop);
        }
        within(timeout, deadline, self.open(backend))
            .await
            .map(drop)
    }

    /// Opens an HTTP/1.1 connection to `backend` within `timeout`, or by the request's
    /// `deadline` if that comes first: TCP, then TLS for an `https://` backend.
    async fn connect(
        &self,
        backend: &Backend,
        timeout: Duration,
        deadline: Instant,
    ) -> Result<Box<BackendConn>, UpstreamError> {
        let (stream, alpn) = within(timeout, deadline, self.open(backend)).await?;
        let mark = self.counts.opened(&backend.address);
        // Boxed once here: the connection moves through the pool, the exchange and the response
        // body by pointer, not as ~150 bytes copied at each step.
        Ok(Box::new(BackendConn::new(
            stream,
            mark,
            pool_key(backend),
            alpn,
        )))
    }

    /// The connector for HTTP/2 (h2c and h2 connections, gRPC probes): a stream to `backend`
    /// opened within `timeout` (or by `deadline`), over TCP for h2c, TLS for h2 with `h2`
    /// agreed by ALPN (a backend that agrees to another protocol is refused and counted as a
    /// failed handshake).
    async fn connect_http2(
        &self,
        backend: &Backend,
        timeout: Duration,
        deadline: Instant,
    ) -> Result<BackendStream, UpstreamError> {
        let (stream, alpn) = within(timeout, deadline, self.open(backend)).await?;
        if backend.tls.is_none() || alpn == tls::Alpn::H2 {
            return Ok(stream);
        }
        Err(self.tls_failed(backend, TlsFailure::not_h2(alpn)))
    }

    /// Connects to `backend` and, for `https://`, runs the TLS handshake: the stream and the
    /// ALPN protocol negotiated. A failed handshake is logged and counted.
    async fn open(&self, backend: &Backend) -> Result<(BackendStream, tls::Alpn), UpstreamError> {
        let tcp = tcp(backend).await?;
        let Some(settings) = &backend.tls else {
            return Ok((BackendStream::Plain(tcp), tls::Alpn::Unstated));
        };
        match tls::handshake(tcp, settings).await {
            Ok(done) => Ok((BackendStream::Tls(Box::new(done.stream)), done.alpn)),
            Err(failure) => Err(self.tls_failed(backend, failure)),
        }
    }

    /// Logs and counts a TLS handshake with `backend` that failed.
    fn tls_failed(&self, backend: &Backend, failure: TlsFailure) -> UpstreamError {
        tracing::warn!(backend = %backend.address, reason = failure.reason(), cause = %failure, "TLS handshake with a backend failed");
        if let Some(counter) = &self.tls_failures {
            counter
                .with_label_values(&[backend.address.as_str(), failure.reason()])
                .inc();
        }
        UpstreamError::Tls(failure)
    }
}

/// `connect` done within `timeout`, or by the request's `deadline` if that comes first.
async fn within<T>(
    timeout: Duration,
    deadline: Instant,
    connect: impl std::future::Future<Output = Result<T, UpstreamError>>,
) -> Result<T, UpstreamError> {
    let by = Instant::now() + timeout;
    tokio::time::timeout_at(by.min(deadline), connect)
        .await
        .map_err(|_| {
            if deadline <= by {
                UpstreamError::TimedOut
            } else {
                UpstreamError::ConnectTimeout(timeout)
            }
        })?
}

/// A TCP connection to `backend`, with Nagle off and keep-alive probes on.
async fn tcp(backend: &Backend) -> Result<TcpStream, UpstreamError> {
    let tcp = TcpStream::connect(backend.address.as_str())
        .await
        .map_err(UpstreamError::Connect)?;
    // Best effort: a connection without these still works.
    let _ = tcp.set_nodelay(true);
    let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE);
    let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);
    Ok(tcp)
}

/// Where `backend`'s idle (HTTP/1.1) or multiplexed (HTTP/2) connections are pooled: its key,
/// told apart by the TLS settings a connection was made with (a reload that changes them does
/// not reuse the old connections).
fn pool_key(backend: &Backend) -> u64 {
    match &backend.tls {
        None => backend.key,
        Some(tls) => backend.key ^ tls.fingerprint.rotate_left(17) ^ 1,
    }
}
