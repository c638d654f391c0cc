//! A small real HTTP backend (HTTP/1.1 and h2c) for lbhost's demo and end-to-end tests.
//!
//! Tests start it in-process and read its counters; the `demo-backend` binary runs the same
//! server from the command line.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let backend = demo_backend::Backend::builder("alpha").start().await?;
//! println!("listening on {}", backend.addr());
//! backend.set_status(503); // passive-ejection tests
//! backend.stop().await; // like a killed process: listener and connections closed
//! # Ok(())
//! # }
//! ```
//!
//! Routes (every answer carries `x-backend: <name>`):
//! - `GET /health`: the health status (default 200), body `ok` or `unhealthy`; not counted in `hits`.
//! - `/slow?ms=N`: waits N ms, then answers like `/`.
//! - `/echo`: the request as the backend saw it, as JSON:
//!   `{"method", "uri", "version", "headers": {name: [values]}}`.
//! - `/upload` (any method): reads the body as it streams in and answers the byte count.
//! - `/download?bytes=N`: streams N zero bytes.
//! - `/ws`: a WebSocket echo server.
//! - `/` and any other path: body `<name>\n`.
//!
//! All routes but `/health` and `/ws` answer with the status set by [`Backend::set_status`],
//! and all but `/health` wait [`Backend::set_delay`] before answering (latency tests).

mod routes;
mod ws;

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;

/// How long [`Backend::stop`] waits for its connections to close before giving up on them.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Configures a [`Backend`] before it starts. Listens on `127.0.0.1` on a free port by default.
#[derive(Debug)]
pub struct Builder {
    name: String,
    addr: SocketAddr,
}

impl Builder {
    /// Listens on `127.0.0.1:port` (e.g. to restart a stopped backend on its old port).
    pub fn port(mut self, port: u16) -> Self {
        self.addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        self
    }

    /// Listens on `addr`.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Binds the listener (with `SO_REUSEADDR`, so a stopped backend's port can be reused at
    /// once) and starts serving on the current tokio runtime.
    pub async fn start(self) -> io::Result<Backend> {
        let socket = if self.addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(self.addr)?;
        let listener = socket.listen(1024)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            name: self.name,
            hits: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            status: AtomicU16::new(200),
            health_status: AtomicU16::new(200),
            delay_us: AtomicU64::new(0),
        });
        let (shutdown, stopping) = watch::channel(false);
        tokio::spawn(accept_loop(listener, state.clone(), stopping));
        Ok(Backend {
            addr,
            state,
            shutdown,
        })
    }
}

/// A running backend. Dropping it stops it too, without waiting.
pub struct Backend {
    addr: SocketAddr,
    state: Arc<State>,
    /// Sends `true` to stop. Every task of this backend (accept loop, connections, WebSockets)
    /// holds a receiver and drops it once its socket is closed, so `closed()` means "all gone".
    shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Backend {
    /// A builder for a backend that calls itself `name` (in bodies and `x-backend`).
    pub fn builder(name: impl Into<String>) -> Builder {
        Builder {
            name: name.into(),
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// Requests received so far on every route but `/health` (counted on arrival).
    pub fn hits(&self) -> u64 {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// What every route but `/health` and `/ws` answers from now on (default 200).
    ///
    /// Panics if `status` is not a valid HTTP status code.
    pub fn set_status(&self, status: u16) {
        self.state.status.store(checked(status), Ordering::SeqCst);
    }

    /// How long every route but `/health` waits before answering, from now on (default none):
    /// a backend that turns slow while a test runs.
    pub fn set_delay(&self, delay: Duration) {
        let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.state.delay_us.store(micros, Ordering::SeqCst);
    }

    /// What `GET /health` answers from now on (default 200).
    ///
    /// Panics if `status` is not a valid HTTP status code.
    pub fn set_health_status(&self, status: u16) {
        self.state
            .health_status
            .store(checked(status), Ordering::SeqCst);
    }

    /// Closes the listener and drops every open connection (requests in progress get no
    /// answer), like a killed process. The port can be bound again as soon as this returns.
    pub async fn stop(self) {
        self.shutdown.send_replace(true);
        // Bounded, so that a stuck task cannot hang a test.
        let _ = tokio::time::timeout(STOP_TIMEOUT, self.shutdown.closed()).await;
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

/// What the routes share: counters and the configurable answers.
struct State {
    name: String,
    hits: AtomicU64,
    connections: AtomicU64,
    status: AtomicU16,
    health_status: AtomicU16,
    /// [`Backend::set_delay`], in microseconds.
    delay_us: AtomicU64,
}

fn checked(status: u16) -> u16 {
    match StatusCode::from_u16(status) {
        Ok(code) => code.as_u16(),
        Err(_) => panic!("{status} is not an HTTP status code"),
    }
}

/// Waits until `stopping` turns true (or the [`Backend`] is gone).
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|&stop| stop).await;
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<State>,
    mut stopping: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            () = stopped(&mut stopping) => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                state.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve_connection(stream, state.clone(), stopping.clone()));
            }
            // Out of file descriptors and the like: back off instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    state: Arc<State>,
    mut stopping: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let ctx = routes::Ctx {
        state,
        stopping: stopping.clone(),
    };
    let service = hyper::service::service_fn(move |req| routes::handle(ctx.clone(), req));
    // HTTP/1.1, or HTTP/2 when the client opens with the h2 preface (h2c prior knowledge).
    let server = auto::Builder::new(TokioExecutor::new());
    let connection = server.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::select! {
        _ = connection => {}
        () = stopped(&mut stopping) => {}
    }
}
