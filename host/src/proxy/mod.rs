//! The request pipeline: choose a backend with the strategy, forward, stream the answer back.

mod body;
mod error;
mod headers;
mod upgrade;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;

pub use body::{BoxError, ProxyBody};
pub use error::{local_response, ProxyError};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::pool::Pool;
use crate::strategy::{Choice, RequestData, Strategies};
use crate::upstream::Upstream;

/// Everything a request needs, shared by all connections.
#[derive(Debug)]
pub struct Proxy {
    /// The running config (swapped whole on reload).
    pub config: ArcSwap<Config>,
    /// The backends.
    pub pool: Arc<Pool>,
    /// The active strategy.
    pub strategies: Arc<Strategies>,
    /// Pooled connections to backends (replaced only when the connect timeout changes).
    pub upstream: ArcSwap<Upstream>,
    /// Metric families.
    pub metrics: Arc<Metrics>,
}

impl Proxy {
    /// Replaces the upstream client with one using `connect` (pooled connections start over).
    pub fn set_connect_timeout(&self, connect: std::time::Duration) {
        let mut timeouts = self.config.load().timeouts.clone();
        timeouts.connect = connect;
        self.upstream.store(Arc::new(Upstream::new(&timeouts)));
    }

    /// Serves one client request. Never fails: every problem becomes a status for the client.
    pub async fn handle(
        self: Arc<Self>,
        mut request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let started = Instant::now();
        let method = request.method().clone();
        let config = self.config.load();
        let peer_ip = headers::canonical(peer.ip());
        let peer_trusted = headers::is_trusted(peer_ip, &config.trusted_proxies);
        let client_ip = headers::client_ip(
            peer_ip,
            peer_trusted,
            request.headers(),
            &config.trusted_proxies,
        );
        let upgrade = headers::upgrade_protocol(request.headers())
            .map(|protocol| (protocol, hyper::upgrade::on(&mut request)));
        let (parts, body) = request.into_parts();
        let set = self.pool.load();

        let select_started = Instant::now();
        let (data, choice) =
            self.strategies
                .select(&self.pool, &set, &[], RequestData { parts, client_ip });
        let select_time = select_started.elapsed();
        self.metrics.select(select_time);
        let mut parts = data.parts;
        let index = match choice {
            Choice::Strategy(i) => i,
            Choice::Fallback(i, fault) => {
                self.metrics.strategy_fault(fault.kind());
                i
            }
            Choice::Unavailable => {
                let error = ProxyError::NoBackend;
                tracing::warn!(%client_ip, path = parts.uri.path(), cause = %error, "503");
                self.metrics
                    .request("none", &method, StatusCode::SERVICE_UNAVAILABLE, started);
                return Ok(error.response());
            }
        };
        let Some(backend) = set.backends.get(index).cloned() else {
            return Ok(ProxyError::NoBackend.response());
        };
        let in_flight = backend.start_request();

        let host = parts.headers.get(http::header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
        });
        headers::remove_hop_by_hop(&mut parts.headers);
        headers::set_forwarded(&mut parts.headers, peer_ip, peer_trusted, host.as_ref());
        if let Some(host) = &host {
            parts.headers.insert(http::header::HOST, host.clone());
        }
        if let Some((protocol, _)) = &upgrade {
            parts.headers.insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("upgrade"),
            );
            parts
                .headers
                .insert(http::header::UPGRADE, protocol.clone());
        }
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        parts.uri = match Uri::builder()
            .scheme("http")
            .authority(backend.authority.clone())
            .path_and_query(path.as_str())
            .build()
        {
            Ok(uri) => uri,
            Err(_) => return Ok(local_response(StatusCode::BAD_REQUEST)),
        };
        parts.version = Version::HTTP_11;

        let sent = Instant::now();
        let result = tokio::time::timeout(
            config.timeouts.response_header,
            self.upstream
                .load()
                .request(Request::from_parts(parts, body)),
        )
        .await;
        let latency = sent.elapsed();
        let mut response = match result {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                backend.record_latency(latency);
                self.strategies.feedback(index, 0, latency);
                let error = ProxyError::Backend {
                    backend: backend.address.clone(),
                    cause: upstream_cause(&e),
                };
                tracing::warn!(backend = %backend.address, strategy = %self.strategies.active().name, %path, cause = %error, "502");
                self.metrics
                    .request(&backend.address, &method, error.status(), started);
                return Ok(error.response());
            }
            Err(_) => {
                self.strategies.feedback(index, 0, latency);
                let error = ProxyError::Timeout {
                    backend: backend.address.clone(),
                };
                tracing::warn!(backend = %backend.address, strategy = %self.strategies.active().name, %path, cause = %error, "504");
                self.metrics
                    .request(&backend.address, &method, error.status(), started);
                return Ok(error.response());
            }
        };
        backend.record_latency(latency);
        let status = response.status();
        self.strategies.feedback(index, status.as_u16(), latency);
        self.metrics
            .request(&backend.address, &method, status, started);
        if config.access_log {
            tracing::info!(
                target: "lbhost::access",
                %method,
                %path,
                status = status.as_u16(),
                backend = %backend.address,
                select_us = select_time.as_micros() as u64,
                upstream_ms = latency.as_secs_f64() * 1000.0,
                client = %client_ip,
            );
        }

        if status == StatusCode::SWITCHING_PROTOCOLS {
            if let Some((_, client_upgrade)) = upgrade {
                let backend_upgrade = hyper::upgrade::on(&mut response);
                upgrade::tunnel(
                    client_upgrade,
                    backend_upgrade,
                    in_flight,
                    backend.address.clone(),
                );
                let (parts, _) = response.into_parts();
                return Ok(Response::from_parts(parts, ProxyBody::local("")));
            }
        }
        let (mut parts, body) = response.into_parts();
        headers::remove_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(
            parts,
            ProxyBody::upstream(body, in_flight),
        ))
    }
}

/// The innermost cause of an upstream failure, for logs.
fn upstream_cause(error: &hyper_util::client::legacy::Error) -> String {
    let mut cause: &dyn std::error::Error = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    if error.is_connect() {
        format!("connect: {cause}")
    } else {
        cause.to_string()
    }
}
