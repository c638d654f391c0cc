//! The request pipeline: rate limit, choose a backend with the strategy, forward (retrying on
//! another backend when that is safe), stream the answer back.

mod answer;
mod attempt;
mod error;
mod grpc;
mod headers;
mod response_body;
mod retry;
mod route;
pub(crate) mod service;
mod upgrade;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Response, StatusCode};

use answer::{access_line, Access, Routed};
pub(crate) use error::{local_response, ProxyError};
pub(crate) use response_body::{with_header_map, ProxyBody};
pub(crate) use retry::RetryBudget;
pub(crate) use upgrade::{upgrade_pair, ClientUpgrade, UpgradeHandover};

use crate::body::{BoxError, HeldBody};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use crate::request::ClientHead;
use crate::tls::Resolver;
use crate::upstream::Upstream;

/// Everything a request needs, shared by all connections.
#[derive(Debug)]
pub(crate) struct Proxy {
    /// The TLS listener's certificates, swapped on reload.
    pub(crate) certificates: Arc<Resolver>,
    /// The running config (swapped whole on reload).
    pub config: ArcSwap<Config>,
    /// The pools and the routes to them (swapped whole on reload).
    pub table: ArcSwap<service::Table>,
    /// Opens and leases connections to backends.
    pub upstream: Upstream,
    /// Metric families.
    pub metrics: Arc<Metrics>,
    /// Per-client token buckets (used when `rate_limit` is configured).
    pub rate_limiter: RateLimiter,
}

/// The client side of a request, fixed across attempts.
struct Client {
    ip: IpAddr,
    peer_ip: IpAddr,
    peer_trusted: bool,
    /// It came over TLS.
    secure: bool,
    /// The protocol asked for in `Upgrade`, and the client's half of the upgrade.
    upgrade: Option<(Bytes, ClientUpgrade)>,
}

impl Proxy {
    /// A proxy over the pools and routes of `table` with `config`.
    pub(crate) fn new(config: Config, table: service::Table, metrics: Arc<Metrics>) -> Self {
        Proxy {
            upstream: Upstream::counting(&metrics.upstream_tls_failures),
            rate_limiter: RateLimiter::new(),
            certificates: Arc::new(Resolver::default()),
            config: ArcSwap::from_pointee(config),
            table: ArcSwap::from_pointee(table),
            metrics,
        }
        .with_certificates()
    }

    fn with_certificates(self) -> Self {
        self.set_certificates(&self.config.load());
        self
    }

    /// Serves the certificates of `config` from the next TLS handshake on, and publishes their
    /// expiry and that of the client certificates `https://` backends are given; warns of any
    /// that expires within 14 days, and of `https://` backends whose certificates are not
    /// verified.
    pub(crate) fn set_certificates(&self, config: &Config) {
        crate::tls::client::warn_unverified(
            config
                .pools
                .iter()
                .flat_map(|pool| &pool.backends)
                .filter_map(|b| Some((b.address.as_str(), b.tls.as_deref()?))),
        );
        self.metrics.tls_certificate_expiry.reset();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let served = config
            .tls
            .iter()
            .flat_map(|tls| &tls.certificates.certificates)
            .map(|c| {
                (
                    c.names.join(","),
                    c.cert_path.display().to_string(),
                    c.not_after,
                )
            });
        let presented = config
            .client_certificates()
            .into_iter()
            .map(|(file, not_after)| (String::new(), file, not_after));
        for (names, file, not_after) in served.chain(presented) {
            self.metrics
                .tls_certificate_expiry
                .with_label_values(&[names.as_str(), file.as_str()])
                .set(not_after);
            let days = (not_after - now) / 86_400;
            if days < 14 {
                tracing::warn!(names = %names, file = %file, days, "TLS certificate expires soon");
            }
        }
        if let Some(tls) = &config.tls {
            self.certificates.set(Arc::clone(&tls.certificates));
        }
    }

    /// Serves one client request. Never fails: every problem becomes a status for the client.
    /// `upgrade`: where the client's connection arrives if the request asks for an upgrade and
    /// the backend agrees (HTTP/1.1 only).
    pub(crate) async fn handle<B>(
        self: Arc<Self>,
        head: ClientHead,
        body: B,
        peer: SocketAddr,
        secure: bool,
        upgrade: Option<ClientUpgrade>,
    ) -> Result<Response<ProxyBody>, Infallible>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let started = Instant::now();
        let method = head.method.clone();
        let config = self.config.load_full();
        let peer_ip = headers::canonical(peer.ip());
        let peer_trusted = headers::is_trusted(peer_ip, &config.trusted_proxies);
        let client_ip =
            headers::client_ip(peer_ip, peer_trusted, &head.fields, &config.trusted_proxies);
        if let Some(limit) = &config.rate_limit {
            if let Err(wait) = self.rate_limiter.check(client_ip, limit) {
                let path = head.uri.path();
                let response = self.too_many_requests(client_ip, &method, wait, started);
                if config.access_log {
                    access_line(&Access::unrouted(
                        &method,
                        path,
                        StatusCode::TOO_MANY_REQUESTS,
                        client_ip,
                        started,
                    ));
                }
                return Ok(response);
            }
        }
        let table = self.table.load_full();
        let mut head = head;
        let Some((route, service)) = route::route(&table, &mut head) else {
            return Ok(self.unrouted(&config, &head, client_ip, started));
        };
        let upgrade = upgrade.and_then(|upgrade| {
            headers::upgrade_protocol(&head.fields).map(|protocol| (protocol, upgrade))
        });
        let client = Client {
            ip: client_ip,
            peer_ip,
            peer_trusted,
            secure,
            upgrade,
        };
        let config = &service.config;
        service.runtime.retry_budget.deposit(&config.retries);
        Ok(self
            .forward(
                config,
                service,
                route,
                client,
                head,
                HeldBody::new(body),
                started,
            )
            .await)
    }

    /// Chooses a backend and forwards ([`Proxy::attempt`]), then answers: the one place where
    /// a forwarded request is counted and logged, whatever its end ([`Proxy::answer`]).
    #[allow(clippy::too_many_arguments)]
    async fn forward(
        &self,
        config: &Config,
        service: &service::Service,
        route: &str,
        client: Client,
        head: ClientHead,
        body: HeldBody,
        started: Instant,
    ) -> Response<ProxyBody> {
        let method = head.method.clone();
        // For logs; a reference-counted copy, not a new string.
        let target = head.uri.path_and_query().cloned();
        let path = target.as_ref().map_or("/", |p| p.as_str());
        let client_ip = client.ip;
        let grpc = grpc::GrpcCall::of(&head.method, &head.fields);
        let attempted = self
            .attempt(config, service, client, head, body, path, grpc, started)
            .await;
        let at = Routed {
            route,
            service,
            method: &method,
            path,
            client_ip,
            started,
            grpc,
        };
        self.answer(config, attempted, &at)
    }
}
