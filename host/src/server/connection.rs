//! One client connection: served as HTTP/1.1 by lbhost's own server ([`super::h1`]), or, when it
//! opens with the HTTP/2 preface, by its HTTP/2 server ([`super::h2`]); closed gracefully when
//! the worker stops.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::stream::ClientStream;
use prometheus::IntGauge;
use tokio::sync::{mpsc, watch};

use super::h2::H2Settings;
use super::Stop;
use super::{h1, h2};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::proxy::Proxy;

/// How a worker serves its client connections; built once per worker from the config.
pub(super) struct Settings {
    http2: H2Settings,
    pub(super) header_read: Duration,
    pub(super) client_idle: Duration,
    pub(super) max_header_bytes: usize,
    /// `lbhost_client_connections{state="serving"}` and `{state="parked"}`.
    serving: IntGauge,
    parked: IntGauge,
}

impl Settings {
    pub(super) fn new(config: &Config, metrics: &Metrics) -> Self {
        let max_header_bytes = u32::try_from(config.limits.max_header_bytes).unwrap_or(u32::MAX);
        Settings {
            http2: H2Settings::new(
                config.timeouts.header_read,
                config.timeouts.client_idle,
                max_header_bytes,
            ),
            header_read: config.timeouts.header_read,
            client_idle: config.timeouts.client_idle,
            max_header_bytes: config.limits.max_header_bytes,
            serving: metrics.client_connections.with_label_values(&["serving"]),
            parked: metrics.client_connections.with_label_values(&["parked"]),
        }
    }
}

/// Counts one open connection in `lbhost_client_connections`, in its current state.
pub(super) struct Counted<'a> {
    settings: &'a Settings,
    parked: bool,
}

impl<'a> Counted<'a> {
    fn serving(settings: &'a Settings) -> Self {
        settings.serving.inc();
        Counted {
            settings,
            parked: false,
        }
    }

    fn gauge(&self) -> &IntGauge {
        if self.parked {
            &self.settings.parked
        } else {
            &self.settings.serving
        }
    }

    pub(super) fn set_parked(&mut self, parked: bool) {
        if parked != self.parked {
            self.gauge().dec();
            self.parked = parked;
            self.gauge().inc();
        }
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.gauge().dec();
    }
}

/// Serves one accepted client connection until it closes, idles out, or the worker stops
/// (see [`Stop`]: in-flight exchanges finish, then the connection closes). `active` is held
/// until the connection is gone (a WebSocket or other tunnel it turns into holds a clone), so
/// the worker can wait for its connections to drain.
pub(super) async fn serve(
    stream: ClientStream,
    peer: SocketAddr,
    proxy: Arc<Proxy>,
    settings: Arc<Settings>,
    mut stopped: watch::Receiver<Stop>,
    active: mpsc::Sender<Infallible>,
) {
    let mut counted = Counted::serving(&settings);
    let ended = h1::serve(
        stream,
        peer,
        &proxy,
        &settings,
        &mut stopped,
        &mut counted,
        &active,
    )
    .await;
    let h1::Ended::Http2(stream, read) = ended else {
        return;
    };
    let secure = stream.is_tls();
    // Boxed: an HTTP/2 connection's state is large, and kept in place it would enlarge the task
    // of every connection, HTTP/1.1 and parked ones included.
    let served = Box::pin(h2::serve(
        stream,
        read,
        peer,
        secure,
        &proxy,
        &settings.http2,
        &mut stopped,
    ));
    if let Err(e) = served.await {
        tracing::debug!(%peer, cause = %e, "HTTP/2 client connection ended with an error");
    }
}
