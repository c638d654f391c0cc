//! The config file as written: serde structs, no validation beyond types.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The top-level JSON object. Every field has a default except `backends`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    pub listen: Option<String>,
    pub admin: Option<String>,
    pub strategy: Option<String>,
    #[serde(default)]
    pub strategy_config: serde_json::Map<String, serde_json::Value>,
    pub strategies_dir: Option<String>,
    pub workers: Option<usize>,
    /// Required unless `pools` is given (checked in validation).
    pub backends: Option<Vec<FileBackend>>,
    pub health_check: Option<FileHealthCheck>,
    #[serde(default)]
    pub passive: FilePassive,
    #[serde(default)]
    pub retries: FileRetries,
    #[serde(default)]
    pub circuit_breaker: FileCircuitBreaker,
    pub rate_limit: Option<FileRateLimit>,
    #[serde(default)]
    pub timeouts: FileTimeouts,
    #[serde(default)]
    pub limits: FileLimits,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    #[serde(default)]
    pub sandbox: FileSandbox,
    pub shutdown_timeout: Option<String>,
    pub drain_delay: Option<String>,
    pub access_log: Option<bool>,
    pub admin_token_file: Option<String>,
    pub dns: Option<FileDns>,
    pub tls: Option<FileTls>,
    pub upstream_tls: Option<super::upstream_tls::FileUpstreamTls>,
    pub shadow: Option<FileShadow>,
    pub grpc: Option<FileGrpc>,
    pub canary: Option<super::canary::FileCanary>,
    /// Named pools ([`super::pools`]); without them the top level is the one pool `default`.
    pub pools: Option<BTreeMap<String, FilePool>>,
    pub routes: Option<Vec<FileRoute>>,
    pub default_pool: Option<String>,
}

/// One entry of `pools`: what is not given comes from the top level.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FilePool {
    pub backends: Vec<FileBackend>,
    pub strategy: Option<String>,
    pub strategy_config: Option<serde_json::Map<String, serde_json::Value>>,
    pub health_check: Option<FileHealthCheck>,
    pub passive: Option<FilePassive>,
    pub retries: Option<FileRetries>,
    pub circuit_breaker: Option<FileCircuitBreaker>,
    pub timeouts: Option<FilePoolTimeouts>,
}

/// The timeouts a pool may set for itself (the client side's are the listener's).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FilePoolTimeouts {
    pub connect: Option<String>,
    pub response_header: Option<String>,
}

/// One entry of `routes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRoute {
    #[serde(rename = "match", default)]
    pub matches: FileMatch,
    pub pool: String,
    pub strip_prefix: Option<String>,
    pub prefix_rewrite: Option<String>,
}

/// A route's conditions; all given must hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileMatch {
    pub host: Option<String>,
    pub path_prefix: Option<String>,
    pub path_exact: Option<String>,
    pub method: Option<String>,
    #[serde(default)]
    pub header: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileGrpc {
    pub failure_codes: Option<Vec<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileTls {
    pub listen: String,
    pub certificates: Vec<FileCertificate>,
    pub handshake_timeout: Option<String>,
    pub max_handshakes: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileCertificate {
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileShadow {
    pub(super) strategy: String,
    #[serde(default)]
    pub(super) strategy_config: serde_json::Map<String, serde_json::Value>,
    pub(super) sample: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileBackend {
    /// Exactly one of `url`, `dns` and `srv` (checked in validation).
    pub url: Option<String>,
    pub dns: Option<String>,
    pub srv: Option<String>,
    /// Any integer, so that a port out of range gets its own message.
    pub port: Option<i64>,
    pub weight: Option<u32>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// TLS settings of an `https://` backend (over `upstream_tls`).
    pub tls: Option<super::upstream_tls::FileUpstreamTls>,
    pub protocol: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileDns {
    #[serde(default)]
    pub servers: Vec<String>,
    pub min_refresh: Option<String>,
    pub max_refresh: Option<String>,
    pub timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileHealthCheck {
    pub path: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub healthy_threshold: Option<u32>,
    pub unhealthy_threshold: Option<u32>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub expected_statuses: Option<Vec<u16>>,
    pub service: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FilePassive {
    pub enabled: Option<bool>,
    pub consecutive_failures: Option<u32>,
    pub base_ejection: Option<String>,
    pub max_ejection: Option<String>,
    pub max_ejected_percent: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRetries {
    pub max: Option<u32>,
    pub budget_percent: Option<f64>,
    pub min_per_second: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileCircuitBreaker {
    pub enabled: Option<bool>,
    pub failure_ratio: Option<f64>,
    pub min_requests: Option<u32>,
    pub window: Option<String>,
    pub cooldown: Option<String>,
    pub half_open_probes: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRateLimit {
    pub requests_per_second: Option<f64>,
    pub burst: Option<u32>,
    pub max_clients: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileTimeouts {
    pub connect: Option<String>,
    pub response_header: Option<String>,
    pub client_idle: Option<String>,
    pub header_read: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileLimits {
    pub max_header_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileSandbox {
    pub deadline: Option<String>,
    pub memory_limit_bytes: Option<usize>,
    pub quarantine: Option<FileQuarantine>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileQuarantine {
    pub fault_ratio: Option<f64>,
    pub min_faults: Option<u32>,
    pub window: Option<String>,
    pub cooldown: Option<String>,
}
