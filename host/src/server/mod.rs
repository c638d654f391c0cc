//! The client listener: accepts connections, serves HTTP/1.1 and HTTP/2 (h2c), drains on shutdown.

mod client_io;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use client_io::{ClientIo, ConnState, TrackedBody};

use crate::config::Config;
use crate::proxy::Proxy;

/// Accepts client connections until `shutdown` resolves, then waits up to `config.shutdown_timeout`
/// for in-flight requests to finish. Returns whether everything drained in time.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    config: &Config,
    shutdown: impl Future<Output = ()>,
) -> bool {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Head and idle deadlines are ClientIo's (it answers 408); hyper's would close silently.
        .header_read_timeout(None)
        .max_buf_size(config.limits.max_header_bytes.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(config.timeouts.client_idle))
        .max_header_list_size(config.limits.max_header_bytes as u32);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
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
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let proxy = Arc::clone(&proxy);
        let state = ConnState::new();
        let io = ClientIo::new(
            stream,
            Arc::clone(&state),
            config.timeouts.header_read,
            config.timeouts.client_idle,
        );
        let service = service_fn(move |request| {
            state.head_received();
            let response = Arc::clone(&proxy).handle(request, peer);
            let state = Arc::clone(&state);
            async move {
                let response = response.await?;
                if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                    state.upgraded();
                }
                Ok::<_, Infallible>(response.map(|body| TrackedBody::new(body, state)))
            }
        });
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, cause = %e, "client connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("stopped accepting; draining in-flight requests");
    tokio::time::timeout(config.shutdown_timeout, graceful.shutdown())
        .await
        .is_ok()
}
