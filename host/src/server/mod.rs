//! The client listener: worker threads accept connections, serve HTTP/1.1 (lbhost's own, [`h1`])
//! and HTTP/2 (h2c, hyper's), and drain on shutdown.
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
mod trim;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

use connection::Settings;

use crate::config::Config;
use crate::proxy::Proxy;

/// Starts `config.workers` worker threads accepting on `listener`; once `shutdown` resolves they
/// stop accepting and each waits up to `config.shutdown_timeout` for its in-flight requests.
/// Returns whether everything drained in time, or an error if no worker could start.
pub(crate) async fn serve(
    listener: std::net::TcpListener,
    proxy: Arc<Proxy>,
    config: &Config,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<bool> {
    let (stop, stopped) = watch::channel(false);
    let mut workers = Vec::with_capacity(config.workers);
    for index in 0..config.workers {
        let started = listener
            .try_clone()
            .context("sharing the listening socket")
            .and_then(|listener| {
                start_worker(index, listener, Arc::clone(&proxy), config, stopped.clone())
            });
        match started {
            Ok(done) => workers.push(done),
            Err(e) if index == 0 => return Err(e),
            Err(e) => {
                tracing::error!(worker = index, cause = %format!("{e:#}"), "worker not started; serving with fewer")
            }
        }
    }
    drop(listener);
    let trimmer = tokio::spawn(trim::run());
    shutdown.await;
    trimmer.abort();
    let _ = stop.send(true);
    tracing::info!("stopped accepting; draining in-flight requests");
    let mut drained = true;
    for done in workers {
        drained &= done.await.unwrap_or(false);
    }
    Ok(drained)
}

/// Starts worker `index` on its own thread and runtime. The receiver says whether it drained.
fn start_worker(
    index: usize,
    listener: std::net::TcpListener,
    proxy: Arc<Proxy>,
    config: &Config,
    stopped: watch::Receiver<bool>,
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
                match TcpListener::from_std(listener) {
                    Ok(listener) => accept_loop(listener, proxy, &config, stopped).await,
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

/// One worker: accepts client connections until told to stop, then waits up to
/// `config.shutdown_timeout` for its in-flight requests. Returns whether they all finished.
async fn accept_loop(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    config: &Config,
    mut stopped: watch::Receiver<bool>,
) -> bool {
    let settings = Arc::new(Settings::new(config, &proxy.metrics));
    // Every connection task holds a sender; the channel closes when the last one is gone.
    let (active, mut drained) = mpsc::channel::<Infallible>(1);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::error!(cause = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped.wait_for(|stop| *stop) => break,
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection::serve(
            stream,
            peer,
            Arc::clone(&proxy),
            Arc::clone(&settings),
            stopped.clone(),
            active.clone(),
        ));
    }
    drop(listener);
    drop(active);
    tokio::time::timeout(config.shutdown_timeout, drained.recv())
        .await
        .is_ok()
}
