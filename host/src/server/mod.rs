//! The client listener: worker threads accept connections, serve HTTP/1.1 (lbhost's own, [`h1`])
//! and HTTP/2 (h2c and h2, lbhost's own, [`h2`]), and drain on shutdown.
//!
//! Each worker is a thread with its own single-threaded tokio runtime (thread per core, like
//! nginx's worker processes): a connection, its requests, the upstream connections they lease
//! and the strategy instance that routes them all stay on one thread, so no task wakes another
//! across threads and nothing is work-stolen. The workers share one listening socket (each
//! registers its own handle; the kernel hands a new connection to one of them). One
//! multi-threaded runtime for all workers cost 60 µs of CPU per request where this costs 44
//! (one worker, 64 connections; BENCHMARKS.md).

mod client_io;
mod connection;
mod h1;
mod h2;
mod handshake;
mod stream;
mod trim;
pub(crate) mod upgrade;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

use connection::Settings;
use stream::ClientStream;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::proxy::Proxy;

#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use h2::request_outcome as http2_request_outcome;

/// The TLS listener: its socket, and the rustls config its handshakes use.
#[derive(Debug)]
pub(crate) struct TlsListener {
    pub(crate) listener: std::net::TcpListener,
    pub(crate) config: Arc<rustls::ServerConfig>,
}

/// How the workers stop; they watch this from the start ([`Stop::Serve`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Not stopping: accept and serve.
    Serve,
    /// Another lbhost process took over the listening sockets (a binary upgrade): stop
    /// accepting; each connection's next response is its last (`connection: close`, GOAWAY for
    /// HTTP/2). An idle keep-alive connection stays open until its client sends that next
    /// request (or it idles out, or the deadline comes), so no client's request meets a
    /// connection closing under it.
    Handover,
    /// Shutting down (SIGTERM): stop accepting; exchanges in progress finish with
    /// `connection: close`, idle connections close now.
    Shutdown,
}

impl Stop {
    /// The workers stop accepting, and the exchange in progress on a connection is its last.
    pub(super) fn stops(self) -> bool {
        self != Stop::Serve
    }

    /// Idle connections close now.
    pub(super) fn closes_idle(self) -> bool {
        self == Stop::Shutdown
    }
}

/// The running workers (see [`start`]).
#[derive(Debug)]
pub(crate) struct Workers {
    stop: watch::Sender<Stop>,
    /// One per started worker: whether it drained in time.
    done: Vec<oneshot::Receiver<bool>>,
    trimmer: tokio::task::JoinHandle<()>,
}

/// Starts `config.workers` worker threads accepting on `listener` (and `tls`). Returns an error
/// if no worker could start; a worker after the first that cannot start is logged and left out.
pub(crate) fn start(
    listener: std::net::TcpListener,
    tls: Option<TlsListener>,
    proxy: Arc<Proxy>,
    config: &Config,
) -> anyhow::Result<Workers> {
    let (stop, stopped) = watch::channel(Stop::Serve);
    let mut workers = Vec::with_capacity(config.workers);
    for index in 0..config.workers {
        let started = listener
            .try_clone()
            .context("sharing the listening socket")
            .and_then(|listener| {
                let tls = match &tls {
                    Some(tls) => Some((
                        tls.listener
                            .try_clone()
                            .context("sharing the TLS listening socket")?,
                        Arc::clone(&tls.config),
                    )),
                    None => None,
                };
                start_worker(
                    index,
                    listener,
                    tls,
                    Arc::clone(&proxy),
                    config,
                    stopped.clone(),
                )
            });
        match started {
            Ok(done) => workers.push(done),
            Err(e) if index == 0 => return Err(e),
            Err(e) => {
                tracing::error!(worker = index, cause = %format!("{e:#}"), "worker not started; serving with fewer")
            }
        }
    }
    Ok(Workers {
        stop,
        done: workers,
        trimmer: tokio::spawn(trim::run()),
    })
}

impl Workers {
    /// Stops the workers `how` and waits: each gives its connections up to
    /// `config.shutdown_timeout` from now. If `escalate` resolves meanwhile, idle connections
    /// are closed at once after all ([`Stop::Shutdown`]). Returns whether everything drained in
    /// time.
    pub(crate) async fn stop(self, how: Stop, escalate: impl Future<Output = ()>) -> bool {
        self.trimmer.abort();
        let _ = self.stop.send(how);
        tracing::info!(?how, "stopped accepting; draining in-flight requests");
        let all_done = async {
            let mut drained = true;
            for done in self.done {
                drained &= done.await.unwrap_or(false);
            }
            drained
        };
        tokio::pin!(all_done);
        tokio::select! {
            drained = &mut all_done => return drained,
            () = escalate => {
                tracing::info!("closing idle connections now");
                let _ = self.stop.send(Stop::Shutdown);
            }
        }
        all_done.await
    }
}

/// Starts worker `index` on its own thread and runtime. The receiver says whether it drained.
fn start_worker(
    index: usize,
    listener: std::net::TcpListener,
    tls: Option<(std::net::TcpListener, Arc<rustls::ServerConfig>)>,
    proxy: Arc<Proxy>,
    config: &Config,
    stopped: watch::Receiver<Stop>,
) -> anyhow::Result<oneshot::Receiver<bool>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building a worker runtime")?;
    let config = config.clone();
    let (done, result) = oneshot::channel();
    std::thread::Builder::new()
        .name(format!("lbhost-worker-{index}"))
        .spawn(move || {
            let drained = runtime.block_on(async move {
                let tls = match tls.map(|(l, c)| TcpListener::from_std(l).map(|l| (l, c))) {
                    Some(Ok((listener, config))) => Some((listener, TlsAcceptor::from(config))),
                    Some(Err(e)) => {
                        tracing::error!(worker = index, cause = %e, "worker cannot use the TLS listening socket");
                        None
                    }
                    None => None,
                };
                match TcpListener::from_std(listener) {
                    Ok(listener) => accept_loop(listener, tls, proxy, &config, stopped).await,
                    Err(e) => {
                        tracing::error!(worker = index, cause = %e, "worker cannot use the listening socket");
                        true
                    }
                }
            });
            let _ = done.send(drained);
        })
        .context("starting a worker thread")?;
    Ok(result)
}

/// The next connection on the TLS listener; never, without one.
async fn accept_tls(
    tls: Option<&(TcpListener, TlsAcceptor)>,
) -> std::io::Result<(tokio::net::TcpStream, std::net::SocketAddr)> {
    match tls {
        Some((listener, _)) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// One worker: accepts client connections until told to stop, then waits up to
/// `config.shutdown_timeout` for its in-flight requests. Returns whether they all finished.
async fn accept_loop(
    listener: TcpListener,
    tls: Option<(TcpListener, TlsAcceptor)>,
    proxy: Arc<Proxy>,
    config: &Config,
    mut stopped: watch::Receiver<Stop>,
) -> bool {
    let settings = Arc::new(Settings::new(config, &proxy.metrics));
    let (handshake_timeout, max_handshakes) = config
        .tls
        .as_ref()
        .map_or((Duration::from_secs(10), 1), |t| {
            (t.handshake_timeout, t.max_handshakes)
        });
    let handshakes = Arc::new(Semaphore::new(max_handshakes));
    // Every connection task holds a sender; the channel closes when the last one is gone.
    let (active, mut drained) = mpsc::channel::<Infallible>(1);
    loop {
        let (accepted, secure) = tokio::select! {
            accepted = listener.accept() => (accepted, false),
            accepted = accept_tls(tls.as_ref()) => (accepted, true),
            _ = stopped.wait_for(|stop| stop.stops()) => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::error!(cause = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (proxy, settings, stopped, active) = (
            Arc::clone(&proxy),
            Arc::clone(&settings),
            stopped.clone(),
            active.clone(),
        );
        match (&tls, secure) {
            (Some((_, acceptor)), true) => {
                let (acceptor, handshakes) = (acceptor.clone(), Arc::clone(&handshakes));
                // The handshake runs in the connection's task, never on the accept loop.
                tokio::spawn(async move {
                    let config = Arc::clone(acceptor.config());
                    let shaken =
                        handshake::handshake(stream, config, &handshakes, handshake_timeout).await;
                    proxy
                        .metrics
                        .tls_handshakes
                        .with_label_values(&[shaken.result()])
                        .inc();
                    match shaken {
                        handshake::Shaken::Ok(tls) => {
                            let stream = ClientStream::Tls(tls);
                            connection::serve(stream, peer, proxy, settings, stopped, active).await;
                        }
                        handshake::Shaken::Failed(e) => {
                            tracing::debug!(%peer, cause = %e, "TLS handshake failed")
                        }
                        handshake::Shaken::Timeout => {}
                    }
                });
            }
            _ => {
                let stream = ClientStream::Plain(stream);
                tokio::spawn(connection::serve(
                    stream, peer, proxy, settings, stopped, active,
                ));
            }
        }
    }
    drop(listener);
    drop(tls);
    drop(active);
    tokio::time::timeout(config.shutdown_timeout, drained.recv())
        .await
        .is_ok()
}
