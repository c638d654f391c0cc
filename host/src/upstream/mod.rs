//! Connections to backends: opened on demand, kept alive and reused from a per-thread pool,
//! counted.
//!
//! Each connection is driven by its own task (hyper's HTTP/1.1 client dispatcher); a request
//! borrows one with a [`Lease`] and the response body gives it back when read whole.

mod counts;
mod pool;

use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

pub use counts::{ConnectionCount, ConnectionCounts};
pub use pool::{Lease, IDLE_TIMEOUT};

use crate::pool::Backend;
use crate::proxy::UpstreamBody;

/// TCP keep-alive probes on upstream connections start after this much silence.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// Why a request could not be sent to a backend or its response head not read.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No TCP connection could be opened.
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// Opening the TCP connection took longer than the connect timeout.
    #[error("connect: timed out after {0:?}")]
    ConnectTimeout(Duration),
    /// The exchange failed on an open connection (reset, closed early, malformed response).
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

impl UpstreamError {
    /// Whether nothing reached the backend because no connection could be opened.
    pub fn is_connect(&self) -> bool {
        matches!(
            self,
            UpstreamError::Connect(_) | UpstreamError::ConnectTimeout(_)
        )
    }
}

/// The client lbhost forwards with: HTTP/1.1 with keep-alive, connections reused across
/// requests from a per-thread pool.
#[derive(Debug, Default)]
pub struct Upstream {
    counts: ConnectionCounts,
}

impl Upstream {
    /// A client with no connection open yet.
    pub fn new() -> Self {
        Upstream::default()
    }

    /// How many connections this client opened and reused, per backend.
    pub fn connections(&self) -> &ConnectionCounts {
        &self.counts
    }

    /// Sends `request` (origin-form URI, `Host` set) to `backend` and resolves to the response
    /// head and the connection's lease, which the caller releases once the body is read whole.
    /// A new connection must be established within `connect_timeout` (the running config's,
    /// so a reload applies to the next connection opened).
    ///
    /// A pooled connection is tried first. One that its backend closed while idle hands the
    /// request back unsent (hyper returns it), and the next one, or a new connection, gets it.
    pub async fn request(
        &self,
        backend: &Backend,
        mut request: Request<UpstreamBody>,
        connect_timeout: Duration,
    ) -> Result<(Response<Incoming>, Lease), UpstreamError> {
        while let Some(mut lease) = pool::checkout(backend.key) {
            match send(&mut lease, request).await {
                Ok(response) => return Ok((response, lease)),
                Err(Unsent(again, _)) => request = *again,
                Err(Failed(e)) => return Err(e),
            }
        }
        let mut lease = self.connect(backend, connect_timeout).await?;
        match send(&mut lease, request).await {
            Ok(response) => Ok((response, lease)),
            Err(Unsent(_, e)) => Err(e.into()),
            Err(Failed(e)) => Err(e),
        }
    }

    /// Opens a connection to `backend` and starts the task that drives it.
    async fn connect(&self, backend: &Backend, timeout: Duration) -> Result<Lease, UpstreamError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(backend.address.as_str()))
            .await
            .map_err(|_| UpstreamError::ConnectTimeout(timeout))?
            .map_err(UpstreamError::Connect)?;
        // Best effort: a connection without these still works.
        let _ = stream.set_nodelay(true);
        let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE);
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
        let (sender, connection) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await?;
        let address = backend.address.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(backend = %address, cause = %e, "upstream connection ended with an error");
            }
        });
        let mark = self.counts.opened(&backend.address);
        Ok(Lease::new(sender, mark, backend.key))
    }
}

/// Why [`send`] did not get a response.
enum SendFailure {
    /// The connection closed before the request was written: it can go on another.
    Unsent(Box<Request<UpstreamBody>>, hyper::Error),
    Failed(UpstreamError),
}
use SendFailure::{Failed, Unsent};

/// Sends `request` on `lease`'s connection once it is ready.
async fn send(
    lease: &mut Lease,
    request: Request<UpstreamBody>,
) -> Result<Response<Incoming>, SendFailure> {
    if let Err(e) = lease.sender.ready().await {
        return Err(Unsent(Box::new(request), e));
    }
    match lease.sender.try_send_request(request).await {
        Ok(response) => {
            lease.mark.answered();
            Ok(response)
        }
        Err(mut e) => match e.take_message() {
            Some(request) => Err(Unsent(Box::new(request), e.into_error())),
            None => Err(Failed(e.into_error().into())),
        },
    }
}
