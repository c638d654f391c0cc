//! Connections to backends: opened on demand, kept alive and reused from a per-thread pool,
//! counted.
//!
//! lbhost speaks HTTP/1.1 to backends itself ([`crate::http1`]) rather than through hyper's
//! client: a request writes and reads its connection from its own task (`exchange.rs`) and the
//! response body reads the rest ([`BackendBody`]), so no task, channel or wake-up sits between the
//! request and its backend. An idle connection is a socket in the pool and nothing else.

mod backend_body;
mod conn;
mod counts;
mod exchange;
mod h2;
mod idle;

use std::time::Duration;

use http::Response;
use tokio::net::TcpStream;
use tokio::time::Instant;

pub(crate) use backend_body::{BackendBody, Upgraded};
pub(crate) use counts::{ConnectionCount, ConnectionCounts};
pub(crate) use h2::ReplayBody;

use crate::body::{BoxError, UpstreamBody};
use crate::config::BackendProtocol;
use crate::http1::{CodecError, Outgoing};
use crate::pool::Backend;
use conn::BackendConn;
use exchange::{exchange, ExchangeFailure};

/// TCP keep-alive probes on upstream connections start after this much silence.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// Why a request could not be sent to a backend or its response head not read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    /// No TCP connection could be opened.
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// Opening the TCP connection took longer than the connect timeout.
    #[error("connect: timed out after {0:?}")]
    ConnectTimeout(Duration),
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
    /// Whether nothing reached the backend because no connection could be opened.
    pub(crate) fn is_connect(&self) -> bool {
        matches!(
            self,
            UpstreamError::Connect(_) | UpstreamError::ConnectTimeout(_)
        )
    }
}

/// The client lbhost forwards with: HTTP/1.1 with keep-alive, connections reused across
/// requests from a per-thread pool.
#[derive(Debug, Default)]
pub(crate) struct Upstream {
    counts: ConnectionCounts,
}

impl Upstream {
    /// A client with no connection open yet.
    pub(crate) fn new() -> Self {
        Upstream::default()
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
        head: &Outgoing,
        mut body: UpstreamBody,
        connect_timeout: Duration,
        deadline: Instant,
    ) -> Result<Response<BackendBody>, UpstreamError> {
        if backend.protocol == BackendProtocol::H2c {
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
        // One exchange in one loop, so the future holds one exchange's state, not one per path.
        // A new connection never hands the request back, so the loop ends.
        let mut pooled = true;
        loop {
            let conn = match if pooled {
                idle::checkout(backend.key)
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
                Err(ExchangeFailure::Failed(e)) => return Err(e),
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
            ) => Err(e),
        }
    }

    /// Opens an HTTP/1.1 connection to `backend` within `timeout`, or by the request's
    /// `deadline` if that comes first.
    async fn connect(
        &self,
        backend: &Backend,
        timeout: Duration,
        deadline: Instant,
    ) -> Result<BackendConn, UpstreamError> {
        let stream = self.connect_stream(backend, timeout, deadline).await?;
        let mark = self.counts.opened(&backend.address);
        Ok(BackendConn::new(stream, mark, backend.key))
    }

    /// The connector: a stream to `backend`, opened within `timeout` (or by `deadline`), for
    /// whichever protocol speaks on it.
    async fn connect_stream(
        &self,
        backend: &Backend,
        timeout: Duration,
        deadline: Instant,
    ) -> Result<TcpStream, UpstreamError> {
        let by = Instant::now() + timeout;
        let connect = TcpStream::connect(backend.address.as_str());
        let stream = tokio::time::timeout_at(by.min(deadline), connect)
            .await
            .map_err(|_| {
                if deadline <= by {
                    UpstreamError::TimedOut
                } else {
                    UpstreamError::ConnectTimeout(timeout)
                }
            })?
            .map_err(UpstreamError::Connect)?;
        // Best effort: a connection without these still works.
        let _ = stream.set_nodelay(true);
        let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE);
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
        Ok(stream)
    }
}
