//! Turns the file structs into a [`Config`], naming the field of every problem.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;

use crate::text::{bounded_owned, has_control, MAX_BYTES};

use super::file::{FileBackend, FileConfig, FileHealthCheck};
use super::{dns, pools, resilience};
use super::{
    BackendConfig, Config, ConfigError, HealthCheckConfig, Limits, ProbeKind, QuarantineConfig,
    Sandbox, ShadowConfig, Timeouts, MAX_WEIGHT,
};

/// Parses JSON `text` and validates it; relative paths are resolved against `base`.
pub fn from_file(text: &str, base: &Path) -> Result<Config, ConfigError> {
    let de = &mut serde_json::Deserializer::from_str(text);
    let file: FileConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ConfigError::Syntax(bounded_owned(inner.to_string()))
        } else if field == "." {
            ConfigError::field("config", strip_position(&inner.to_string()))
        } else {
            ConfigError::field(field, strip_position(&inner.to_string()))
        }
    })?;
    validate(file, base)
}

/// serde_json appends " at line L column C"; the field path already says where.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

/// `strategy_config` as the guest's `configure` takes it: strings as they are, other values as
/// JSON text.
pub fn params(map: serde_json::Map<String, serde_json::Value>) -> Vec<(String, String)> {
    map.into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect()
}

fn validate(file: FileConfig, base: &Path) -> Result<Config, ConfigError> {
    let listen = socket_addr("listen", file.listen.as_deref().unwrap_or("127.0.0.1:8080"))?;
    let admin = socket_addr("admin", file.admin.as_deref().unwrap_or("127.0.0.1:9901"))?;
    if admin == listen {
        return Err(ConfigError::field("admin", "must differ from listen"));
    }
    let admin_token_file = match &file.admin_token_file {
        Some(path) => {
            let path = base.join(plain_path("admin_token_file", path)?);
            super::read_token(&path)
                .map_err(|reason| ConfigError::field("admin_token_file", &reason))?;
            Some(path)
        }
        None => None,
    };
    let strategy = base.join(plain_path(
        "strategy",
        file.strategy
            .as_deref()
            .unwrap_or("strategies/round_robin.wasm"),
    )?);
    let strategies_dir = match &file.strategies_dir {
        Some(dir) => base.join(plain_path("strategies_dir", dir)?),
        None => strategy
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| base.to_path_buf()),
    };
    let strategy_config = params(file.strategy_config);
    let shadow = match file.shadow {
        Some(shadow) => {
            let sample = shadow.sample.unwrap_or(0.1);
            if !(sample > 0.0 && sample <= 1.0) {
                return Err(ConfigError::field(
                    "shadow.sample",
                    "must be above 0 and at most 1",
                ));
            }
            Some(ShadowConfig {
                strategy: base.join(plain_path("shadow.strategy", &shadow.strategy)?),
                strategy_config: params(shadow.strategy_config),
                sample,
            })
        }
        None => None,
    };
    let canary = file
        .canary
        .map(|c| super::canary::canary_config(c, base))
        .transpose()?;
    let workers = match file.workers {
        Some(0) => return Err(ConfigError::field("workers", "must be at least 1")),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    // Built once per set of files and shared by every pool's https:// backends.
    let upstream_tls = std::cell::RefCell::new(super::upstream_tls::UpstreamTls::new(
        file.upstream_tls,
        base,
    ));
    // The top level's own backends: the pool `default` (the only one without `pools`).
    let top_level = match file.backends {
        Some(list) if list.is_empty() => {
            return Err(ConfigError::field(
                "backends",
                "at least one backend is required",
            ))
        }
        Some(list) => Some(entries(list, &mut upstream_tls.borrow_mut())?),
        None => None,
    };
    let dns = dns::settings(file.dns)?;
    let health_check = file.health_check.map(health_check).transpose()?;
    let passive = resilience::passive(file.passive)?;
    let retries = resilience::retries(file.retries)?;
    let circuit_breaker = resilience::circuit_breaker(file.circuit_breaker)?;
    let rate_limit = file.rate_limit.map(resilience::rate_limit).transpose()?;
    let t = file.timeouts;
    let timeouts = Timeouts {
        connect: duration("timeouts.connect", t.connect.as_deref(), "1s")?,
        response_header: duration(
            "timeouts.response_header",
            t.response_header.as_deref(),
            "30s",
        )?,
        client_idle: duration("timeouts.client_idle", t.client_idle.as_deref(), "60s")?,
        header_read: duration("timeouts.header_read", t.header_read.as_deref(), "10s")?,
    };
    let max_header_bytes = file.limits.max_header_bytes.unwrap_or(64 * 1024);
    if !(1024..=1024 * 1024).contains(&max_header_bytes) {
        return Err(ConfigError::field(
            "limits.max_header_bytes",
            "must be between 1024 and 1048576",
        ));
    }
    let trusted_proxies = file
        .trusted_proxies
        .iter()
        .enumerate()
        .map(|(i, p)| {
            p.parse::<IpNet>()
                .or_else(|_| p.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    ConfigError::field(
                        format!("trusted_proxies[{i}]"),
                        format!("{p:?} is not an IP address or CIDR range"),
                    )
                })
        })
        .collect::<Result<_, _>>()?;
    let q = file.sandbox.quarantine.unwrap_or_default();
    let defaults = QuarantineConfig::default();
    let quarantine = QuarantineConfig {
        fault_ratio: q.fault_ratio.unwrap_or(defaults.fault_ratio),
        min_faults: q.min_faults.unwrap_or(defaults.min_faults),
        window: duration("sandbox.quarantine.window", q.window.as_deref(), "10s")?,
        cooldown: duration("sandbox.quarantine.cooldown", q.cooldown.as_deref(), "30s")?,
    };
    if !(quarantine.fault_ratio > 0.0 && quarantine.fault_ratio <= 1.0) {
        return Err(ConfigError::field(
            "sandbox.quarantine.fault_ratio",
            "must be above 0 and at most 1",
        ));
    }
    let sandbox = Sandbox {
        deadline: duration("sandbox.deadline", file.sandbox.deadline.as_deref(), "1ms")?,
        memory_limit_bytes: file.sandbox.memory_limit_bytes.unwrap_or(16 << 20),
        quarantine,
    };
    if sandbox.deadline > Duration::from_secs(1) {
        return Err(ConfigError::field("sandbox.deadline", "must be at most 1s"));
    }
    if sandbox.memory_limit_bytes < (1 << 20) {
        return Err(ConfigError::field(
            "sandbox.memory_limit_bytes",
            "must be at least 1048576 (1 MiB)",
        ));
    }
    let tls = match &file.tls {
        Some(tls) => Some(tls_config(tls, base, listen, admin)?),
        None => None,
    };
    let (backends, mut dns_backends) = top_level.clone().unwrap_or_default();
    let top = top_level.map(|(b, d)| (b, (0..d.len()).collect()));
    let routing = pools::routing(
        file.pools,
        file.routes,
        file.default_pool,
        top,
        &pools::Defaults {
            strategy: &strategy,
            strategy_config: &strategy_config,
            health_check: &health_check,
            passive: &passive,
            retries: &retries,
            circuit_breaker: &circuit_breaker,
            connect_timeout: timeouts.connect,
            response_header_timeout: timeouts.response_header,
        },
        base,
        &mut dns_backends,
        |list| entries(list, &mut upstream_tls.borrow_mut()),
    )?;
    upstream_tls.into_inner().finish()?;
    Ok(Config {
        pools: routing.pools,
        routes: routing.routes,
        default_pool: routing.default_pool,
        tls,
        listen,
        admin,
        strategy,
        strategy_config,
        strategies_dir,
        workers,
        backends,
        dns_backends,
        dns,
        health_check,
        passive,
        retries,
        circuit_breaker,
        rate_limit,
        timeouts,
        limits: Limits { max_header_bytes },
        trusted_proxies,
        sandbox,
        shutdown_timeout: duration("shutdown_timeout", file.shutdown_timeout.as_deref(), "30s")?,
        drain_delay: duration("drain_delay", file.drain_delay.as_deref(), "0s")?,
        access_log: file.access_log.unwrap_or(false),
        grpc: super::protocol::grpc(file.grpc)?,
        admin_token_file,
        shadow,
        canary,
    })
}

/// Validates a list of backend entries (`backends`, or a pool's): those with a `url` and
/// those with a DNS name, each in list order, a repeated one refused.
fn entries(
    list: Vec<FileBackend>,
    upstream_tls: &mut super::upstream_tls::UpstreamTls<'_>,
) -> Result<pools::EntryLists, ConfigError> {
    // Where each entry went, for the message about a repeated one.
    let mut positions = (Vec::new(), Vec::new());
    let mut backends: Vec<BackendConfig> = Vec::new();
    let mut dns_backends: Vec<dns::DnsBackend> = Vec::new();
    for (i, b) in list.into_iter().enumerate() {
        match (&b.url, b.dns.is_some() || b.srv.is_some()) {
            (Some(_), true) => {
                return Err(ConfigError::field(
                    format!("backends[{i}]"),
                    "\"url\" and \"dns\" or \"srv\" exclude each other",
                ))
            }
            (None, false) => {
                return Err(ConfigError::field(
                    format!("backends[{i}]"),
                    "needs \"url\", or \"dns\" with \"port\", or \"srv\"",
                ))
            }
            (Some(_), false) => {
                let backend = backend(i, b, upstream_tls)?;
                if let Some(j) = backends.iter().position(|o| o.address == backend.address) {
                    return Err(ConfigError::field(
                        format!("backends[{i}].url"),
                        format!(
                            "{} is already backends[{}]",
                            backend.address, positions.0[j]
                        ),
                    ));
                }
                backends.push(backend);
                positions.0.push(i);
            }
            (None, true) => {
                if b.tls.is_some() {
                    return Err(ConfigError::field(
                        format!("backends[{i}].tls"),
                        "applies to https:// url entries only",
                    ));
                }
                let entry = dns::backend(i, b)?;
                if let Some(j) = dns_backends.iter().position(|o| o.lookup == entry.lookup) {
                    return Err(ConfigError::field(
                        format!("backends[{i}].{}", entry.lookup.kind()),
                        format!("{} is already backends[{}]", entry.lookup, positions.1[j]),
                    ));
                }
                dns_backends.push(entry);
                positions.1.push(i);
            }
        }
    }
    Ok((backends, dns_backends))
}

/// The `tls` section: its listener, and every certificate loaded and checked.
fn tls_config(
    tls: &super::file::FileTls,
    base: &Path,
    listen: SocketAddr,
    admin: SocketAddr,
) -> Result<super::TlsConfig, ConfigError> {
    let tls_listen = socket_addr("tls.listen", &tls.listen)?;
    if tls_listen == listen || tls_listen == admin {
        return Err(ConfigError::field(
            "tls.listen",
            "must differ from listen and admin",
        ));
    }
    if tls.certificates.is_empty() {
        return Err(ConfigError::field(
            "tls.certificates",
            "must name at least one certificate",
        ));
    }
    let mut files = Vec::with_capacity(tls.certificates.len());
    let mut loaded = Vec::with_capacity(tls.certificates.len());
    for (i, certificate) in tls.certificates.iter().enumerate() {
        let field = format!("tls.certificates[{i}]");
        let cert = base.join(plain_path(&format!("{field}.cert"), &certificate.cert)?);
        let key = base.join(plain_path(&format!("{field}.key"), &certificate.key)?);
        let checked = crate::tls::Certificate::load(&cert, &key)
            .map_err(|e| ConfigError::field(&field, e.to_string()))?;
        loaded.push(checked);
        files.push((cert, key));
    }
    let max_handshakes = match tls.max_handshakes {
        Some(0) => {
            return Err(ConfigError::field(
                "tls.max_handshakes",
                "must be at least 1",
            ))
        }
        Some(n) => n,
        None => 256,
    };
    Ok(super::TlsConfig {
        listen: tls_listen,
        files,
        certificates: std::sync::Arc::new(crate::tls::CertificateSet::new(loaded)),
        handshake_timeout: duration(
            "tls.handshake_timeout",
            tls.handshake_timeout.as_deref(),
            "10s",
        )?,
        max_handshakes,
    })
}

/// The weight of `backends[i]` (default 1), at most [`MAX_WEIGHT`].
pub(super) fn backend_weight(i: usize, weight: Option<u32>) -> Result<u32, ConfigError> {
    let weight = weight.unwrap_or(1);
    if weight > MAX_WEIGHT {
        return Err(ConfigError::field(
            format!("backends[{i}].weight"),
            format!("must be at most {MAX_WEIGHT}"),
        ));
    }
    Ok(weight)
}

/// The longest path the file may name (Linux's `PATH_MAX`).
const MAX_PATH_BYTES: usize = 4096;

/// `text`, a path shown in logs and `/status` as it is: refused if it holds control characters
/// or is longer than a path can be.
pub(super) fn plain_path<'t>(field: &str, text: &'t str) -> Result<&'t str, ConfigError> {
    if text.len() > MAX_PATH_BYTES || has_control(text) {
        return Err(ConfigError::field(
            field,
            format!(
                "must be a path of at most {MAX_PATH_BYTES} bytes with no control characters: {text:?}"
            ),
        ));
    }
    Ok(text)
}

fn socket_addr(field: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse().map_err(|_| {
        ConfigError::field(
            field,
            format!("{text:?} is not an address like 127.0.0.1:8080"),
        )
    })
}

/// Validates `backends[i]`, an entry with a `url` (`https://` ones get their TLS settings from
/// `upstream_tls`).
fn backend(
    i: usize,
    b: FileBackend,
    upstream_tls: &mut super::upstream_tls::UpstreamTls<'_>,
) -> Result<BackendConfig, ConfigError> {
    let field = format!("backends[{i}].url");
    let url = b.url.unwrap_or_default();
    if b.port.is_some() {
        return Err(ConfigError::field(
            format!("backends[{i}].port"),
            "applies to \"dns\" entries only (a url has its port: http://host:port)",
        ));
    }
    let uri: http::Uri = url
        .parse()
        .map_err(|e| ConfigError::field(&field, format!("{url:?} is not a URL: {e}")))?;
    let secure = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        Some(other) => {
            return Err(ConfigError::field(
                &field,
                format!("scheme {other:?} is not supported (use http:// or https://)"),
            ))
        }
        None => {
            return Err(ConfigError::field(
                &field,
                format!("{url:?} has no scheme (write http://host:port)"),
            ))
        }
    };
    let authority = uri
        .authority()
        .ok_or_else(|| ConfigError::field(&field, "missing host"))?;
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(ConfigError::field(
            &field,
            "a backend URL has no path or query (write http://host:port)",
        ));
    }
    let host = authority.host();
    let port = authority
        .port_u16()
        .unwrap_or(if secure { 443 } else { 80 });
    let address = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    // Resolve once to catch typos early; the connector resolves again at connect time.
    if address.to_socket_addrs().is_err() {
        return Err(ConfigError::field(
            &field,
            format!("cannot resolve {address}"),
        ));
    }
    let weight = backend_weight(i, b.weight)?;
    labels(i, &b.labels)?;
    let protocol = super::protocol::backend_protocol(i, b.protocol.as_deref())?;
    let protocol = super::protocol::for_scheme(i, protocol, secure)?;
    let tls = match (secure, &b.tls) {
        (true, own) => Some(std::sync::Arc::new(upstream_tls.backend(
            i,
            host,
            own.as_ref(),
            protocol,
        )?)),
        (false, Some(_)) => {
            return Err(ConfigError::field(
                format!("backends[{i}].tls"),
                "applies to https:// backends only",
            ))
        }
        (false, None) => None,
    };
    Ok(BackendConfig {
        address,
        weight,
        labels: b.labels.into_iter().collect(),
        tls,
        protocol,
    })
}

/// Checks the labels of `backends[i]`: they are shown in `/status` and handed to strategies as
/// they are, so plain text only.
pub(super) fn labels(
    i: usize,
    labels: &std::collections::BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    for (key, value) in labels {
        for (what, text) in [("key", key), ("value", value)] {
            if text.len() > MAX_BYTES || has_control(text) {
                return Err(ConfigError::field(
                    format!("backends[{i}].labels"),
                    format!(
                        "a {what} must be plain text of at most {MAX_BYTES} bytes (no control characters): {text:?}"
                    ),
                ));
            }
        }
    }
    Ok(())
}

pub(super) fn health_check(h: FileHealthCheck) -> Result<HealthCheckConfig, ConfigError> {
    let path = h.path.unwrap_or_else(|| "/health".into());
    if !path.starts_with('/') {
        return Err(ConfigError::field("health_check.path", "must start with /"));
    }
    let kind = match h.kind.as_deref() {
        None | Some("http") => ProbeKind::Http,
        Some("tcp") => ProbeKind::Tcp,
        Some("grpc") => ProbeKind::Grpc,
        Some(other) => {
            return Err(ConfigError::field(
                "health_check.type",
                format!("{other:?} is not a probe type (use \"http\", \"tcp\" or \"grpc\")"),
            ))
        }
    };
    if h.expected_statuses.as_ref().is_some_and(Vec::is_empty) {
        return Err(ConfigError::field(
            "health_check.expected_statuses",
            "must list at least one status (leave it out for any 2xx or 3xx)",
        ));
    }
    let expected_statuses = h.expected_statuses.unwrap_or_default();
    if h.service.is_some() && kind != ProbeKind::Grpc {
        return Err(ConfigError::field(
            "health_check.service",
            "applies to \"type\": \"grpc\" only",
        ));
    }
    let service = super::protocol::grpc_service(h.service)?;
    if kind != ProbeKind::Http && !expected_statuses.is_empty() {
        return Err(ConfigError::field(
            "health_check.expected_statuses",
            "applies to \"type\": \"http\" only",
        ));
    }
    if let Some(&bad) = expected_statuses.iter().find(|s| !(100..=599).contains(*s)) {
        return Err(ConfigError::field(
            "health_check.expected_statuses",
            format!("{bad} is not an HTTP status (100-599)"),
        ));
    }
    let check = HealthCheckConfig {
        kind,
        path,
        expected_statuses,
        interval: duration("health_check.interval", h.interval.as_deref(), "5s")?,
        timeout: duration("health_check.timeout", h.timeout.as_deref(), "1s")?,
        healthy_threshold: h.healthy_threshold.unwrap_or(2),
        unhealthy_threshold: h.unhealthy_threshold.unwrap_or(2),
        service,
    };
    if check.interval.is_zero() {
        return Err(ConfigError::field(
            "health_check.interval",
            "must be above 0",
        ));
    }
    if check.healthy_threshold == 0 {
        return Err(ConfigError::field(
            "health_check.healthy_threshold",
            "must be at least 1",
        ));
    }
    if check.unhealthy_threshold == 0 {
        return Err(ConfigError::field(
            "health_check.unhealthy_threshold",
            "must be at least 1",
        ));
    }
    Ok(check)
}

/// Parses a duration like `250ms`, `5s` or `1m`, or `default` when absent.
pub(super) fn duration(
    field: &str,
    text: Option<&str>,
    default: &str,
) -> Result<Duration, ConfigError> {
    let text = text.unwrap_or(default);
    humantime::parse_duration(text).map_err(|e| {
        ConfigError::field(
            field,
            format!("{text:?} is not a duration like \"250ms\" or \"5s\" ({e})"),
        )
    })
}
