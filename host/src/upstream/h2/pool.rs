//! HTTP/2 connections to backends, kept per worker thread: a request takes a stream on the
//! oldest connection with room for one (the peer's `MAX_CONCURRENT_STREAMS`, at most
//! [`MAX_STREAMS`]), and a new connection opens only when all are full. While one opens, other
//! requests wait for it rather than opening their own.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use rustc_hash::FxHashMap;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;

use super::super::counts::ConnectionMark;
use super::super::stream::BackendStream;
use super::client::{self, Driver};
use crate::pool::clock_ms;

/// Streams one connection carries at most, whatever the peer allows.
pub(crate) const MAX_STREAMS: usize = 256;
/// Streams taken on a new connection until the peer's SETTINGS say how many it allows.
const INITIAL_STREAMS: usize = 100;
/// A PING goes out this often on every connection (idle or not, so that a backend gone without
/// a FIN is noticed before a request waits on it)...
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// ...and the connection closes if its PONG has not come within this.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection without streams for this long is closed (also those of backends that left the
/// config), checked every [`SWEEP_INTERVAL_MS`] as requests take streams.
const IDLE_TIMEOUT_MS: u64 = 60_000;
const SWEEP_INTERVAL_MS: u64 = 5_000;

/// What the request side and the connection's task share about one connection.
#[derive(Debug)]
struct Shared {
    /// Streams open on it: requests sent whose response has not ended.
    streams: AtomicUsize,
    /// The peer's `MAX_CONCURRENT_STREAMS` as last seen, at most [`MAX_STREAMS`].
    max: AtomicUsize,
    /// No new stream goes on it: it was refused a stream (GOAWAY), or closed.
    draining: AtomicBool,
    /// When a stream last started or ended on it ([`clock_ms`]).
    used_ms: AtomicU64,
    mark: Mutex<ConnectionMark>,
}

/// One HTTP/2 connection: a handle to send requests on it (its task reads and writes it).
#[derive(Clone, Debug)]
pub(super) struct H2Conn {
    pub(super) client: client::Connection,
    shared: Arc<Shared>,
}

impl Shared {
    fn new(mark: ConnectionMark) -> Arc<Self> {
        Arc::new(Shared {
            streams: AtomicUsize::new(0),
            max: AtomicUsize::new(INITIAL_STREAMS),
            draining: AtomicBool::new(false),
            used_ms: AtomicU64::new(clock_ms()),
            mark: Mutex::new(mark),
        })
    }
}

impl H2Conn {
    /// No new stream goes on this connection; streams on it finish.
    pub(super) fn drain(&self) {
        self.shared.draining.store(true, Ordering::Release);
    }

    /// Counts one response on it (opened or reused, for `/status`).
    pub(super) fn answered(&self) {
        self.shared
            .mark
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .answered();
    }

    fn usable(&self) -> bool {
        !self.shared.draining.load(Ordering::Acquire) && self.client.is_open()
    }
}

/// A stream taken on a connection; dropping it frees the place for another request.
#[derive(Debug)]
pub(crate) struct StreamSlot(Arc<Shared>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.used_ms.store(clock_ms(), Ordering::Relaxed);
        self.0.streams.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What [`checkout`] found.
pub(super) enum Checkout {
    /// A connection, with a stream taken on it.
    Ready(H2Conn, StreamSlot),
    /// Every connection is full and one is opening: wait for it, then ask again.
    Wait(Arc<Notify>),
    /// Every connection is full and none is opening: open one ([`Opening`]), then ask again.
    Open(Opening),
}

#[derive(Default)]
struct Conns {
    by_backend: FxHashMap<u64, PerBackend>,
    swept_ms: u64,
}

impl Conns {
    /// Drops the connections idle for [`IDLE_TIMEOUT_MS`], and closed ones, of every backend.
    fn sweep(&mut self, now: u64) {
        self.swept_ms = now;
        for entry in self.by_backend.values_mut() {
            entry.conns.retain(|c| {
                c.usable()
                    && (c.shared.streams.load(Ordering::Acquire) > 0
                        || now.saturating_sub(c.shared.used_ms.load(Ordering::Relaxed))
                            < IDLE_TIMEOUT_MS)
            });
        }
        self.by_backend
            .retain(|_, e| !e.conns.is_empty() || e.opening.is_some());
    }
}

#[derive(Default)]
struct PerBackend {
    /// Oldest first.
    conns: Vec<H2Conn>,
    /// Woken when the connection being opened is there (or failed).
    opening: Option<Arc<Notify>>,
}

thread_local! {
    static CONNS: RefCell<Conns> = RefCell::new(Conns::default());
}

/// A stream on a connection to the backend with stable key `key`, or what to do to get one.
pub(super) fn checkout(key: u64) -> Checkout {
    CONNS.with_borrow_mut(|all| {
        let now = clock_ms();
        if now.saturating_sub(all.swept_ms) >= SWEEP_INTERVAL_MS {
            all.sweep(now);
        }
        let entry = all.by_backend.entry(key).or_default();
        entry.conns.retain(H2Conn::usable);
        for conn in &entry.conns {
            let max = conn.shared.max.load(Ordering::Acquire);
            // Only this thread takes streams on its connections (releases may come from
            // anywhere, and only make room): a load then an add cannot overshoot `max`.
            if conn.shared.streams.load(Ordering::Acquire) < max {
                conn.shared.streams.fetch_add(1, Ordering::AcqRel);
                conn.shared.used_ms.store(now, Ordering::Relaxed);
                return Checkout::Ready(conn.clone(), StreamSlot(Arc::clone(&conn.shared)));
            }
        }
        if let Some(notify) = &entry.opening {
            return Checkout::Wait(Arc::clone(notify));
        }
        entry.opening = Some(Arc::new(Notify::new()));
        Checkout::Open(Opening { key, done: false })
    })
}

/// The right to open the next connection to a backend; dropped (opened or not), it wakes the
/// requests that waited for it.
pub(super) struct Opening {
    key: u64,
    done: bool,
}

impl Opening {
    /// Adds `conn` to the backend's connections and wakes the waiting requests.
    pub(super) fn opened(mut self, conn: H2Conn) {
        self.finish(Some(conn));
    }

    fn finish(&mut self, conn: Option<H2Conn>) {
        if self.done {
            return;
        }
        self.done = true;
        // `try_with`: a request dropped as its worker thread ends finds the pool gone.
        let notify = CONNS.try_with(|all| {
            let mut all = all.borrow_mut();
            let entry = all.by_backend.entry(self.key).or_default();
            if let Some(conn) = conn {
                entry.conns.push(conn);
            }
            entry.opening.take()
        });
        if let Ok(Some(notify)) = notify {
            notify.notify_waiters();
        }
    }
}

impl Drop for Opening {
    fn drop(&mut self) {
        self.finish(None);
    }
}

/// Speaks HTTP/2 on `stream` (prior knowledge over TCP, agreed by ALPN over TLS) and spawns the
/// connection's task on this worker.
pub(super) fn handshake(stream: BackendStream, mark: ConnectionMark) -> H2Conn {
    let (client, driver) = client::handshake(stream, KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT);
    let shared = Shared::new(mark);
    tokio::spawn(Driven {
        driver,
        shared: Arc::clone(&shared),
    });
    H2Conn { client, shared }
}

/// A connection's task: drives the connection and publishes the peer's stream limit after each
/// turn (a SETTINGS frame may change it).
struct Driven<T> {
    driver: Driver<T>,
    shared: Arc<Shared>,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Future for Driven<T> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.driver).poll(cx);
        let max = this
            .driver
            .max_concurrent_streams()
            .map_or(INITIAL_STREAMS, |max| {
                usize::try_from(max).unwrap_or(MAX_STREAMS).min(MAX_STREAMS)
            });
        this.shared.max.store(max, Ordering::Release);
        let Poll::Ready(ended) = polled else {
            return Poll::Pending;
        };
        this.shared.draining.store(true, Ordering::Release);
        if let Err(e) = ended {
            tracing::debug!(cause = %e, "HTTP/2 upstream connection ended with an error");
        }
        Poll::Ready(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::counts::ConnectionCounts;
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    const INTERVAL: Duration = Duration::from_millis(40);
    const TIMEOUT: Duration = Duration::from_millis(60);

    /// A connection's task over `io`, with its shared state and its handle for requests (the
    /// connection closes once no handle is left).
    fn driven(io: DuplexStream) -> (tokio::task::JoinHandle<()>, Arc<Shared>, client::Connection) {
        let (client, driver) = client::handshake(io, INTERVAL, TIMEOUT);
        let shared = Shared::new(ConnectionCounts::default().opened("127.0.0.1:1"));
        let task = tokio::spawn(Driven {
            driver,
            shared: Arc::clone(&shared),
        });
        (task, shared, client)
    }

    #[tokio::test]
    async fn a_backend_that_answers_pings_keeps_its_connection() {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let served = tokio::spawn(async move {
            // h2's server answers PINGs as it reads.
            let mut server = h2::server::handshake(server).await.expect("handshake");
            while let Some(_stream) = server.accept().await {}
        });
        let (task, shared, _client) = driven(client);
        tokio::time::sleep(INTERVAL * 6).await;
        assert!(!task.is_finished(), "closed although PONGs came");
        assert!(!shared.draining.load(Ordering::Acquire));
        task.abort();
        served.abort();
    }

    #[tokio::test]
    async fn a_backend_that_stops_answering_loses_its_connection() {
        let (client, mut server) = tokio::io::duplex(64 * 1024);
        let silent = tokio::spawn(async move {
            // An HTTP/2 server's SETTINGS, then silence: nothing read is answered.
            server
                .write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0])
                .await
                .expect("write");
            let mut sink = [0u8; 1024];
            while server.read(&mut sink).await.is_ok_and(|n| n > 0) {}
        });
        let (task, shared, _client) = driven(client);
        tokio::time::timeout(INTERVAL + TIMEOUT + Duration::from_secs(2), task)
            .await
            .expect("the connection closes once a PONG is overdue")
            .expect("the task ends by itself");
        assert!(shared.draining.load(Ordering::Acquire));
        silent.abort();
    }
}
