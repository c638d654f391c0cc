//! Pooled keep-alive connections to backends, and how many were opened and reused.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Response, Uri};
use hyper::body::Incoming;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower_service::Service;

use crate::config::Timeouts;
use crate::proxy::UpstreamBody;

/// How long an idle upstream connection is kept for reuse.
const POOL_IDLE: Duration = Duration::from_secs(90);

/// The client lbhost forwards with: HTTP/1.1, keep-alive, connections reused across requests.
#[derive(Clone, Debug)]
pub struct Upstream {
    client: Client<CountingConnector, UpstreamBody>,
    counts: Arc<ConnectionCounts>,
}

impl Upstream {
    /// A client with the configured connect timeout, counting into the process-wide
    /// [`ConnectionCounts::process`] (so counts survive the client being replaced on reload).
    pub fn new(timeouts: &Timeouts) -> Self {
        Upstream::with_counts(timeouts, ConnectionCounts::process())
    }

    /// A client with the configured connect timeout, counting connections into `counts`.
    pub fn with_counts(timeouts: &Timeouts, counts: Arc<ConnectionCounts>) -> Self {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(timeouts.connect));
        http.set_nodelay(true);
        http.set_keepalive(Some(Duration::from_secs(60)));
        let connector = CountingConnector {
            http,
            counts: Arc::clone(&counts),
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_timer(TokioTimer::new())
            .pool_max_idle_per_host(1024)
            .build(connector);
        Upstream { client, counts }
    }

    /// Sends `request` (its URI names the backend) and resolves to the response head. A
    /// response that arrives on a connection which already carried one counts as a reuse.
    pub fn request(
        &self,
        request: http::Request<UpstreamBody>,
    ) -> impl Future<Output = Result<Response<Incoming>, hyper_util::client::legacy::Error>>
           + Send
           + 'static {
        let response = self.client.request(request);
        async move {
            let response = response.await?;
            if let Some(mark) = response.extensions().get::<ConnectionMark>() {
                mark.answered();
            }
            Ok(response)
        }
    }

    /// Where this client counts its connections.
    pub fn connections(&self) -> &Arc<ConnectionCounts> {
        &self.counts
    }
}

/// Upstream connections per backend address (the authority of the URIs sent): how many were
/// opened, and how many responses came over a connection that had already carried one.
#[derive(Debug, Default)]
pub struct ConnectionCounts {
    /// One entry per authority ever connected to; bounded by the configured backends.
    by_backend: Mutex<HashMap<String, Arc<BackendCounts>>>,
}

/// One row of [`ConnectionCounts::snapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionCount {
    /// `host:port`.
    pub backend: String,
    /// Connections established.
    pub opened: u64,
    /// Responses received on a connection that had answered before.
    pub reused: u64,
}

#[derive(Debug, Default)]
struct BackendCounts {
    opened: AtomicU64,
    reused: AtomicU64,
}

impl ConnectionCounts {
    /// The counts every [`Upstream::new`] client of this process shares.
    pub fn process() -> Arc<ConnectionCounts> {
        static PROCESS: OnceLock<Arc<ConnectionCounts>> = OnceLock::new();
        Arc::clone(PROCESS.get_or_init(Arc::default))
    }

    /// The counts now, sorted by backend.
    pub fn snapshot(&self) -> Vec<ConnectionCount> {
        let mut rows: Vec<_> = self
            .lock()
            .iter()
            .map(|(backend, c)| ConnectionCount {
                backend: backend.clone(),
                opened: c.opened.load(Ordering::Relaxed),
                reused: c.reused.load(Ordering::Relaxed),
            })
            .collect();
        rows.sort_by(|a, b| a.backend.cmp(&b.backend));
        rows
    }

    /// The counters of `backend`, created on first use (once per new connection, not per
    /// request).
    fn backend(&self, backend: &str) -> Arc<BackendCounts> {
        let mut map = self.lock();
        if let Some(counts) = map.get(backend) {
            return Arc::clone(counts);
        }
        let counts = Arc::new(BackendCounts::default());
        map.insert(backend.to_string(), Arc::clone(&counts));
        counts
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<BackendCounts>>> {
        // Counters stay consistent even if a holder panicked: nothing is half-written.
        self.by_backend
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// An [`HttpConnector`] that counts the connections it opens and marks each one, so that the
/// responses it carries can tell a first use from a reuse.
#[derive(Clone, Debug)]
struct CountingConnector {
    http: HttpConnector,
    counts: Arc<ConnectionCounts>,
}

type HttpError = <HttpConnector as Service<Uri>>::Error;
type HttpIo = <HttpConnector as Service<Uri>>::Response;

impl Service<Uri> for CountingConnector {
    type Response = CountedIo<HttpIo>;
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.http.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let counts = self
            .counts
            .backend(uri.authority().map_or("", |a| a.as_str()));
        let connecting = self.http.call(uri);
        Box::pin(async move {
            let io = connecting.await?;
            counts.opened.fetch_add(1, Ordering::Relaxed);
            Ok(CountedIo {
                io,
                mark: ConnectionMark {
                    answered: Arc::new(AtomicBool::new(false)),
                    counts,
                },
            })
        })
    }
}

/// Travels with every response of one connection (hyper-util copies a connection's "extra"
/// into each response's extensions).
#[derive(Clone, Debug)]
struct ConnectionMark {
    /// Whether a response already came over this connection.
    answered: Arc<AtomicBool>,
    counts: Arc<BackendCounts>,
}

impl ConnectionMark {
    /// Records one response: the first on a connection is its opening use, later ones reuse.
    fn answered(&self) {
        if self.answered.swap(true, Ordering::Relaxed) {
            self.counts.reused.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A connection's I/O, passed through untouched, plus its [`ConnectionMark`].
#[derive(Debug)]
struct CountedIo<T> {
    io: T,
    mark: ConnectionMark,
}

impl<T: Connection> Connection for CountedIo<T> {
    fn connected(&self) -> Connected {
        self.io.connected().extra(self.mark.clone())
    }
}

impl<T: Read + Unpin> Read for CountedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for CountedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_answer_opens_later_answers_reuse() {
        let counts = ConnectionCounts::default();
        let backend = counts.backend("127.0.0.1:1");
        backend.opened.fetch_add(1, Ordering::Relaxed);
        let mark = ConnectionMark {
            answered: Arc::new(AtomicBool::new(false)),
            counts: Arc::clone(&backend),
        };
        let copy = mark.clone();
        mark.answered();
        copy.answered();
        mark.answered();
        assert_eq!(
            counts.snapshot(),
            vec![ConnectionCount {
                backend: "127.0.0.1:1".into(),
                opened: 1,
                reused: 2,
            }]
        );
    }
}
