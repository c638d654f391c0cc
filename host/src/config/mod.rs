//! Configuration: the JSON file parsed with serde, then validated once into domain types.
//!
//! A bad file is reported as one line naming the field and the reason
//! (`backends[1].url: scheme must be http`); a bad reload leaves the running config in place.

mod canary;
mod dns;
mod file;
mod pools;
mod protocol;
mod resilience;
#[cfg(test)]
mod tests;
mod token;
mod upstream_tls;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use crate::text::bounded_owned;

pub use crate::tls::client::BackendTls;
pub use canary::{canary_plan, CanaryConfig, CanaryKey, CanaryPlan, CanaryShare, RollbackConfig};
pub use dns::{DnsBackend, DnsConfig, DnsLookup};
pub use pools::{
    covers, first_shadowed, HostMatch, PathMatch, PoolConfig, RouteConfig, RouteMatch, DEFAULT_POOL,
};
pub use protocol::{BackendProtocol, GrpcConfig};
pub use resilience::{CircuitBreakerConfig, PassiveConfig, RateLimitConfig, RetryConfig};
pub(crate) use token::read_token;
pub use validate::{from_file, params};

/// The largest backend weight.
pub const MAX_WEIGHT: u32 = 10_000;

/// A validated configuration, ready to run.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Where client traffic is accepted.
    pub listen: SocketAddr,
    /// Where the admin API (metrics, status, reload) listens; loopback by default.
    pub admin: SocketAddr,
    /// The active strategy component.
    pub strategy: PathBuf,
    /// `strategy_config`, flattened to `(key, value)` pairs for the guest's `configure`.
    pub strategy_config: Vec<(String, String)>,
    /// Folder of strategies that can be switched to by name (default: the strategy's folder).
    pub strategies_dir: PathBuf,
    /// Worker threads (default: one per core).
    pub workers: usize,
    /// The backends given by address (`url`), in config order. With the DNS entries, at least
    /// one backend entry is configured.
    pub backends: Vec<BackendConfig>,
    /// The backend entries given by a DNS name (`dns` or `srv`), in config order: each stands for
    /// the addresses its last lookup answered (see [`crate::discovery`]).
    pub dns_backends: Vec<DnsBackend>,
    /// How DNS entries are resolved.
    pub dns: DnsConfig,
    /// Active health checking; `None` means backends are assumed up until traffic says otherwise.
    pub health_check: Option<HealthCheckConfig>,
    /// Passive ejection of backends that keep failing real traffic.
    pub passive: PassiveConfig,
    /// Retries of requests that failed before a response head.
    pub retries: RetryConfig,
    /// Per-backend circuit breakers.
    pub circuit_breaker: CircuitBreakerConfig,
    /// Per-client-IP rate limiting; `None` (the default) is off.
    pub rate_limit: Option<RateLimitConfig>,
    /// Network timeouts.
    pub timeouts: Timeouts,
    /// Request limits.
    pub limits: Limits,
    /// Peers whose `X-Forwarded-For` / `Forwarded` headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Limits for strategy guests.
    pub sandbox: Sandbox,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub shutdown_timeout: Duration,
    /// After SIGTERM, how long lbhost keeps accepting and serving while `GET /healthz` already
    /// fails, so that a load balancer or Kubernetes takes it out of rotation first (default 0).
    pub drain_delay: Duration,
    /// One log line per request.
    pub access_log: bool,
    /// A file holding the bearer token that `POST /reload` and `POST /strategy` require
    /// (read at each such request, so a rotated secret applies at once). Without it, those
    /// endpoints answer only on a loopback admin address.
    pub admin_token_file: Option<PathBuf>,
    /// A TLS listener beside the plain one; `None` (the default) is none.
    pub tls: Option<TlsConfig>,
    /// A strategy in shadow from the start: asked on a sampled share of requests, never used.
    pub shadow: Option<ShadowConfig>,
    /// The pools, at least one: without `pools` in the file, the one pool `default` made of the
    /// top level's backends and settings. The top level's `backends`, `strategy`,
    /// `health_check`, `passive`, `retries`, `circuit_breaker` and `timeouts` are the defaults
    /// of every pool (and `backends` the pool `default`).
    pub pools: Vec<PoolConfig>,
    /// The routes in the order written; the first that matches wins. Without `pools`, one
    /// catch-all route to `default`.
    pub routes: Vec<RouteConfig>,
    /// Where a request no route matches goes; `None`: it gets 404.
    pub default_pool: Option<String>,
    /// A strategy in canary from the start: routes a share of the clients ([`CanaryPlan`]).
    pub canary: Option<CanaryConfig>,
    /// How gRPC calls count against backends.
    pub grpc: GrpcConfig,
}

/// The TLS listener.
#[derive(Clone, Debug, PartialEq)]
pub struct TlsConfig {
    /// Where HTTPS is accepted (HTTP/1.1 and HTTP/2 by ALPN).
    pub listen: SocketAddr,
    /// The certificate files, in config order (the first is the default).
    pub files: Vec<(PathBuf, PathBuf)>,
    /// The certificates loaded from them and checked.
    pub(crate) certificates: std::sync::Arc<crate::tls::CertificateSet>,
    /// A handshake not done within this closes the connection (default 10 s).
    pub handshake_timeout: Duration,
    /// Handshakes past their ClientHello in progress per worker; a connection past it waits to
    /// start its own (default 256), so a flood of handshakes cannot starve served connections
    /// of CPU. Waiting for a ClientHello takes no slot.
    pub max_handshakes: usize,
}

/// `shadow`: a second strategy asked about a sampled share of requests after the active one
/// decided; its answers are recorded (`/status`), never used.
#[derive(Clone, Debug, PartialEq)]
pub struct ShadowConfig {
    /// Its component.
    pub strategy: PathBuf,
    /// Its `strategy_config`.
    pub strategy_config: Vec<(String, String)>,
    /// Share of first attempts it is asked about: above 0, at most 1 (default 0.1).
    pub sample: f64,
}

/// One backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendConfig {
    /// `host:port`, the backend's identity (its stable key is the hash of this).
    pub address: String,
    /// Relative weight; 0 drains the backend.
    pub weight: u32,
    /// Labels, sorted by key.
    pub labels: Vec<(String, String)>,
    /// How to speak TLS to it, for an `https://` URL; `None` is plain HTTP.
    pub tls: Option<std::sync::Arc<crate::tls::BackendTls>>,
    /// The protocol spoken to it (default HTTP/1.1).
    pub protocol: BackendProtocol,
}

/// Active health check settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheckConfig {
    /// How a backend is probed (default HTTP).
    pub kind: ProbeKind,
    /// Path probed with `GET` (HTTP probes).
    pub path: String,
    /// Statuses that count as healthy (HTTP probes); empty means any 2xx or 3xx.
    pub expected_statuses: Vec<u16>,
    /// Time between probes of one backend.
    pub interval: Duration,
    /// Time a probe may take.
    pub timeout: Duration,
    /// Consecutive successes that bring a down backend up.
    pub healthy_threshold: u32,
    /// Consecutive failures that take an up backend down.
    pub unhealthy_threshold: u32,
    /// The service asked about by gRPC probes (`grpc.health.v1.Health/Check`); empty: the
    /// whole server.
    pub service: String,
}

/// How an active health probe tests a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    /// `GET path` on a fresh connection; healthy if the status is expected.
    Http,
    /// A TCP connection is accepted.
    Tcp,
    /// `grpc.health.v1.Health/Check` over HTTP/2 (cleartext) on a fresh connection; healthy if
    /// the answer is `SERVING`.
    Grpc,
}

/// Network timeouts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Connecting to a backend (default 1 s); past it the request fails with 502.
    pub connect: Duration,
    /// Waiting for a backend's response head (default 30 s); past it the client gets 504.
    pub response_header: Duration,
    /// An idle client keep-alive connection is closed after this (default 60 s).
    pub client_idle: Duration,
    /// A client must send a whole request head within this (default 10 s), or gets 408.
    pub header_read: Duration,
}

/// Request limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head accepted (default 64 KiB); larger gets 431.
    pub max_header_bytes: usize,
}

/// Limits for strategy guests.
#[derive(Clone, Debug, PartialEq)]
pub struct Sandbox {
    /// Longest a single guest call may run (default 1 ms).
    pub deadline: Duration,
    /// Most linear memory one instance may use (default 16 MiB).
    pub memory_limit_bytes: usize,
    /// When a faulting strategy is taken out of the request path.
    pub quarantine: QuarantineConfig,
}

/// A strategy with at least `min_faults` faults that are at least `fault_ratio` of its calls
/// within `window` is quarantined for `cooldown`: all traffic goes to the host's fallback.
#[derive(Clone, Debug, PartialEq)]
pub struct QuarantineConfig {
    /// Share of calls that may fault (default 0.2).
    pub fault_ratio: f64,
    /// Fewest faults that can quarantine (default 5).
    pub min_faults: u32,
    /// The window faults are counted in (default 10 s).
    pub window: Duration,
    /// How long a quarantine lasts before the strategy is tried again (default 30 s).
    pub cooldown: Duration,
}

impl Default for QuarantineConfig {
    fn default() -> Self {
        QuarantineConfig {
            fault_ratio: 0.2,
            min_faults: 5,
            window: Duration::from_secs(10),
            cooldown: Duration::from_secs(30),
        }
    }
}

/// Why a config was refused. `Display` is the one line an operator sees.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (the caller names the file).
    #[error("{source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A field is missing, has the wrong type or an invalid value.
    #[error("{field}: {reason}")]
    Field { field: String, reason: String },
    /// The file is not JSON.
    #[error("invalid JSON: {0}")]
    Syntax(String),
}

impl Config {
    /// The client certificates `https://` backends present (mTLS), once each by file, and
    /// when each expires (seconds since the Unix epoch).
    pub fn client_certificates(&self) -> Vec<(String, i64)> {
        let mut clients: Vec<(String, i64)> = self
            .pools
            .iter()
            .flat_map(|pool| &pool.backends)
            .filter_map(|b| {
                let tls = b.tls.as_ref()?;
                let path = tls.client_certificate.as_ref()?;
                Some((
                    path.display().to_string(),
                    tls.client_certificate_not_after?,
                ))
            })
            .collect();
        clients.sort();
        clients.dedup_by(|a, b| a.0 == b.0);
        clients
    }
}

impl ConfigError {
    /// A problem with `field`. Both may quote the file (an unknown key, a bad value), which can
    /// be of any length or hold control characters: they are bounded ([`crate::text`]).
    pub(crate) fn field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Field {
            field: bounded_owned(field.into()),
            reason: bounded_owned(reason.into()),
        }
    }
}

/// Reads and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    from_file(&text, base)
}
