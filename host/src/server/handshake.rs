//! A client's TLS handshake, in two steps under one `handshake_timeout`: its ClientHello is
//! awaited holding nothing but the socket, then the handshake proper (the server's key exchange
//! and signature, the client's Finished) runs in one of the worker's `max_handshakes` slots.
//! A flood of clients that connect and send nothing, or half a ClientHello, takes no slot, so
//! it cannot keep a real client from being served; each is closed at the timeout.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;

/// How a handshake ended, as `lbhost_tls_handshakes_total{result}` counts it.
#[derive(Debug)]
pub(super) enum Shaken {
    Ok(Box<TlsStream<TcpStream>>),
    /// Not TLS, no certificate for it, a protocol error, or the client went away.
    Failed(io::Error),
    /// Not done within the timeout (waiting for a slot included).
    Timeout,
}

impl Shaken {
    /// The `result` label.
    pub(super) fn result(&self) -> &'static str {
        match self {
            Shaken::Ok(_) => "ok",
            Shaken::Failed(_) => "failed",
            Shaken::Timeout => "timeout",
        }
    }
}

/// Runs the handshake of `tcp` with `config` within `timeout`, in one of `slots` once its
/// ClientHello has arrived.
pub(super) async fn handshake(
    tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
    slots: &Semaphore,
    timeout: Duration,
) -> Shaken {
    let deadline = Instant::now() + timeout;
    let hello = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
    let start = match tokio::time::timeout_at(deadline, hello).await {
        Err(_) => return Shaken::Timeout,
        Ok(Err(e)) => return Shaken::Failed(e),
        Ok(Ok(start)) => start,
    };
    let rest = async {
        let Ok(_slot) = slots.acquire().await else {
            return Shaken::Failed(io::Error::other("the worker is stopping"));
        };
        match start.into_stream(config).await {
            Ok(tls) => Shaken::Ok(Box::new(tls)),
            Err(e) => Shaken::Failed(e),
        }
    };
    tokio::time::timeout_at(deadline, rest)
        .await
        .unwrap_or(Shaken::Timeout)
}
