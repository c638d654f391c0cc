//! Named pools and the routes that pick between them: their domain types, the defaults a pool
//! takes from the top level, and the checks `lbhost check` makes of a routing table (a route
//! naming a missing pool, a pool no route reaches, a route an earlier one shadows).
//!
//! A config without `pools` is one pool named `default` (the top level's backends, strategy,
//! health check ...) behind one catch-all route, also named `default`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::file::{FileBackend, FileMatch, FilePool, FileRoute};
use super::validate::{duration, health_check, plain_path};
use super::{
    dns, resilience, BackendConfig, CircuitBreakerConfig, ConfigError, HealthCheckConfig,
    PassiveConfig, RetryConfig,
};
use crate::text::{bounded_owned, has_control, MAX_BYTES};

/// The name of the pool a config without `pools` has (and of its catch-all route).
pub const DEFAULT_POOL: &str = "default";

/// The longest pool name (it is a metric label and a JSON key).
const MAX_POOL_NAME: usize = 64;

/// One pool: its backends and everything that decides how they are chosen and treated.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolConfig {
    /// Its name: letters, digits, `_`, `-`, `.`.
    pub name: String,
    /// Backends given by address.
    pub backends: Vec<BackendConfig>,
    /// Its DNS entries: indexes into [`super::Config::dns_backends`].
    pub dns: Vec<usize>,
    /// Its strategy component (default: the top level's).
    pub strategy: PathBuf,
    /// Whether `strategy` is the top level's (a `--strategy` override then applies to it).
    pub strategy_inherited: bool,
    /// Its `strategy_config` (default: the top level's).
    pub strategy_config: Vec<(String, String)>,
    /// Active health checks (default: the top level's).
    pub health_check: Option<HealthCheckConfig>,
    /// Passive ejection (default: the top level's).
    pub passive: PassiveConfig,
    /// Retries (default: the top level's).
    pub retries: RetryConfig,
    /// Circuit breakers (default: the top level's).
    pub circuit_breaker: CircuitBreakerConfig,
    /// `timeouts.connect` (default: the top level's).
    pub connect_timeout: Duration,
    /// `timeouts.response_header` (default: the top level's).
    pub response_header_timeout: Duration,
}

/// One route: when it matches, the request goes to `pool`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteConfig {
    /// For logs: `default` for the implicit route, else `routes[i]`.
    pub name: String,
    /// What must hold; an empty match takes every request.
    pub matches: RouteMatch,
    /// The pool's name (checked to exist).
    pub pool: String,
    /// Taken off the start of the path before forwarding (when the path starts with it).
    pub strip_prefix: Option<String>,
    /// Put in place of `strip_prefix` (default: nothing, and the path keeps its leading `/`).
    pub prefix_rewrite: Option<String>,
}

/// A route's conditions; every one given must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteMatch {
    pub host: Option<HostMatch>,
    pub path: Option<PathMatch>,
    /// An exact method, upper case as sent.
    pub method: Option<String>,
    /// Fields that must be present with exactly this value: (lower-case name, value).
    pub headers: Vec<(String, String)>,
}

/// How a route's `host` matches the request's host (lower case, port left out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostMatch {
    /// This host exactly.
    Exact(String),
    /// `*.example.com`: any host ending in `.example.com` (one label or more before it), held
    /// as the suffix with its dot.
    Suffix(String),
}

/// How a route's path condition matches the request's path (the query left out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathMatch {
    /// The path starts with this (bytes, as nginx's `location /prefix`).
    Prefix(String),
    /// The path is exactly this.
    Exact(String),
}

impl super::Config {
    /// The pool the top level's `strategy`, `shadow` and status fields stand for:
    /// `default_pool`, else the pool `default`, else the first.
    pub fn main_pool(&self) -> &PoolConfig {
        let named = |name: &str| self.pools.iter().find(|p| p.name == name);
        self.default_pool
            .as_deref()
            .and_then(named)
            .or_else(|| named(DEFAULT_POOL))
            .unwrap_or(&self.pools[0])
    }

    /// Whether the config names its pools (rather than being the one pool `default`).
    pub fn has_pools(&self) -> bool {
        self.pools.len() > 1 || self.pools[0].name != DEFAULT_POOL
    }
}

/// What the top level gives every pool that does not say otherwise.
pub(super) struct Defaults<'a> {
    pub strategy: &'a Path,
    pub strategy_config: &'a [(String, String)],
    pub health_check: &'a Option<HealthCheckConfig>,
    pub passive: &'a PassiveConfig,
    pub retries: &'a RetryConfig,
    pub circuit_breaker: &'a CircuitBreakerConfig,
    pub connect_timeout: Duration,
    pub response_header_timeout: Duration,
}

/// The pools, routes and default pool of a config, and the DNS entries its pools add.
pub(super) struct Routing {
    pub pools: Vec<PoolConfig>,
    pub routes: Vec<RouteConfig>,
    pub default_pool: Option<String>,
}

/// Validates `pools`, `routes` and `default_pool`. `top` is the top level's own pool (its
/// backends), if it has backends: it becomes the pool `default`. `dns_backends` collects every
/// pool's DNS entries (the top level's are already in it).
#[allow(clippy::too_many_arguments)]
pub(super) fn routing(
    pools: Option<BTreeMap<String, FilePool>>,
    routes: Option<Vec<FileRoute>>,
    default_pool: Option<String>,
    top: Option<(Vec<BackendConfig>, Vec<usize>)>,
    defaults: &Defaults<'_>,
    base: &Path,
    dns_backends: &mut Vec<dns::DnsBackend>,
    entries: impl Fn(Vec<FileBackend>) -> Result<EntryLists, ConfigError>,
) -> Result<Routing, ConfigError> {
    let inherit = |name: &str, backends: Vec<BackendConfig>, dns: Vec<usize>| PoolConfig {
        name: name.to_string(),
        backends,
        dns,
        strategy: defaults.strategy.to_path_buf(),
        strategy_inherited: true,
        strategy_config: defaults.strategy_config.to_vec(),
        health_check: defaults.health_check.clone(),
        passive: defaults.passive.clone(),
        retries: defaults.retries.clone(),
        circuit_breaker: defaults.circuit_breaker.clone(),
        connect_timeout: defaults.connect_timeout,
        response_header_timeout: defaults.response_header_timeout,
    };
    let Some(file_pools) = pools else {
        if routes.is_some() || default_pool.is_some() {
            let field = if routes.is_some() {
                "routes"
            } else {
                "default_pool"
            };
            return Err(ConfigError::field(field, "needs \"pools\" to route to"));
        }
        let Some((backends, dns)) = top else {
            return Err(ConfigError::field("config", "missing field `backends`"));
        };
        return Ok(Routing {
            pools: vec![inherit(DEFAULT_POOL, backends, dns)],
            routes: vec![RouteConfig {
                name: DEFAULT_POOL.into(),
                matches: RouteMatch::default(),
                pool: DEFAULT_POOL.into(),
                strip_prefix: None,
                prefix_rewrite: None,
            }],
            default_pool: None,
        });
    };
    let mut pools = Vec::with_capacity(file_pools.len() + 1);
    if let Some((backends, dns)) = top {
        if file_pools.contains_key(DEFAULT_POOL) {
            return Err(ConfigError::field(
                "pools.default",
                "the top level's \"backends\" are the pool \"default\" already: move them into it",
            ));
        }
        pools.push(inherit(DEFAULT_POOL, backends, dns));
    }
    if file_pools.is_empty() && pools.is_empty() {
        return Err(ConfigError::field("pools", "must name at least one pool"));
    }
    for (name, p) in file_pools {
        let field = format!("pools.{}", bounded_owned(name.clone()));
        check_pool_name(&field, &name)?;
        let within = |e: ConfigError| prefixed(&field, e);
        if p.backends.is_empty() {
            return Err(ConfigError::field(
                format!("{field}.backends"),
                "at least one backend is required",
            ));
        }
        let (backends, dns_entries) = entries(p.backends).map_err(within)?;
        let dns = dns_entries
            .into_iter()
            .map(
                |entry| match dns_backends.iter().position(|e| e == &entry) {
                    Some(i) => i,
                    None => {
                        dns_backends.push(entry);
                        dns_backends.len() - 1
                    }
                },
            )
            .collect();
        let mut pool = inherit(&name, backends, dns);
        if let Some(strategy) = &p.strategy {
            pool.strategy = base.join(plain_path(&format!("{field}.strategy"), strategy)?);
            pool.strategy_inherited = false;
        }
        if let Some(params) = p.strategy_config {
            pool.strategy_config = super::params(params);
        }
        if let Some(h) = p.health_check {
            pool.health_check = Some(health_check(h).map_err(within)?);
        }
        if let Some(passive) = p.passive {
            pool.passive = resilience::passive(passive).map_err(within)?;
        }
        if let Some(retries) = p.retries {
            pool.retries = resilience::retries(retries).map_err(within)?;
        }
        if let Some(c) = p.circuit_breaker {
            pool.circuit_breaker = resilience::circuit_breaker(c).map_err(within)?;
        }
        if let Some(t) = p.timeouts {
            if let Some(connect) = t.connect.as_deref() {
                pool.connect_timeout =
                    duration("timeouts.connect", Some(connect), "1s").map_err(within)?;
            }
            if let Some(header) = t.response_header.as_deref() {
                pool.response_header_timeout =
                    duration("timeouts.response_header", Some(header), "30s").map_err(within)?;
            }
        }
        pools.push(pool);
    }
    let names: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
    let known = |field: String, name: &str| -> Result<(), ConfigError> {
        if names.contains(&name) {
            Ok(())
        } else {
            Err(ConfigError::field(
                field,
                format!("{name:?} is not a pool (pools: {})", names.join(", ")),
            ))
        }
    };
    if let Some(name) = &default_pool {
        known("default_pool".into(), name)?;
    }
    let routes = routes
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, r)| route(i, r))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, r) in routes.iter().enumerate() {
        known(format!("routes[{i}].pool"), &r.pool)?;
    }
    if let Some((later, earlier)) = first_shadowed(&routes) {
        return Err(ConfigError::field(
            format!("routes[{later}]"),
            format!(
                "never matches: routes[{earlier}] comes first and matches every request it would"
            ),
        ));
    }
    for pool in &pools {
        let reached = default_pool.as_deref() == Some(pool.name.as_str())
            || routes.iter().any(|r| r.pool == pool.name);
        if !reached {
            return Err(ConfigError::field(
                format!("pools.{}", pool.name),
                "no route leads to it (and it is not default_pool)",
            ));
        }
    }
    Ok(Routing {
        pools,
        routes,
        default_pool,
    })
}

/// A pool's backends by address and by DNS name, as the backend list validation returns them.
pub(super) type EntryLists = (Vec<BackendConfig>, Vec<dns::DnsBackend>);

/// `error` with `prefix.` before its field.
fn prefixed(prefix: &str, error: ConfigError) -> ConfigError {
    match error {
        ConfigError::Field { field, reason } => ConfigError::Field {
            field: format!("{prefix}.{field}"),
            reason,
        },
        other => other,
    }
}

fn check_pool_name(field: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_POOL_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::field(
            field,
            format!(
                "a pool name is 1 to {MAX_POOL_NAME} letters, digits, _ - . (it is a metric label)"
            ),
        ))
    }
}

/// Validates `routes[i]`.
fn route(i: usize, r: FileRoute) -> Result<RouteConfig, ConfigError> {
    let field = |what: &str| format!("routes[{i}].{what}");
    let matches = route_match(i, r.matches)?;
    for (what, value) in [
        ("strip_prefix", &r.strip_prefix),
        ("prefix_rewrite", &r.prefix_rewrite),
    ] {
        if let Some(value) = value {
            path_text(&field(what), value)?;
        }
    }
    if r.prefix_rewrite.is_some() && r.strip_prefix.is_none() {
        return Err(ConfigError::field(
            field("prefix_rewrite"),
            "needs \"strip_prefix\": the prefix it replaces",
        ));
    }
    Ok(RouteConfig {
        name: format!("routes[{i}]"),
        matches,
        pool: r.pool,
        strip_prefix: r.strip_prefix,
        prefix_rewrite: r.prefix_rewrite,
    })
}

fn route_match(i: usize, m: FileMatch) -> Result<RouteMatch, ConfigError> {
    let field = |what: &str| format!("routes[{i}].match.{what}");
    let host = match m.host {
        None => None,
        Some(host) => {
            let host = host.to_ascii_lowercase();
            let (wildcard, name) = match host.strip_prefix("*.") {
                Some(rest) => (true, rest),
                None => (false, host.as_str()),
            };
            let valid = !name.is_empty()
                && name.len() <= 253
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
            if !valid {
                return Err(ConfigError::field(
                    field("host"),
                    format!(
                        "{:?} is not a host name or *.name (no port; leave host out to match any host)",
                        bounded_owned(host.clone())
                    ),
                ));
            }
            Some(if wildcard {
                HostMatch::Suffix(format!(".{name}"))
            } else {
                HostMatch::Exact(name.to_string())
            })
        }
    };
    let path = match (m.path_prefix, m.path_exact) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::field(
                field("path_exact"),
                "\"path_prefix\" and \"path_exact\" exclude each other",
            ))
        }
        (Some(prefix), None) => Some(PathMatch::Prefix(path_text(
            &field("path_prefix"),
            &prefix,
        )?)),
        (None, Some(exact)) => Some(PathMatch::Exact(path_text(&field("path_exact"), &exact)?)),
        (None, None) => None,
    };
    let method = match m.method {
        Some(method) if http::Method::from_bytes(method.as_bytes()).is_ok() => Some(method),
        Some(method) => {
            return Err(ConfigError::field(
                field("method"),
                format!("{:?} is not a method", bounded_owned(method)),
            ))
        }
        None => None,
    };
    let mut headers = Vec::with_capacity(m.header.len());
    for (name, value) in m.header {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(ConfigError::field(
                field("header"),
                format!("{:?} is not a header field name", bounded_owned(name)),
            ));
        }
        if value.len() > MAX_BYTES || has_control(&value) {
            return Err(ConfigError::field(
                field("header"),
                format!("the value of {name:?} must be plain text of at most {MAX_BYTES} bytes"),
            ));
        }
        headers.push((name.to_ascii_lowercase(), value));
    }
    headers.sort();
    headers.dedup_by(|a, b| a.0 == b.0);
    Ok(RouteMatch {
        host,
        path,
        method,
        headers,
    })
}

/// A path condition or rewrite: starts with `/`, plain text.
fn path_text(field: &str, text: &str) -> Result<String, ConfigError> {
    if !text.starts_with('/') || text.len() > MAX_BYTES || has_control(text) || text.contains(' ') {
        return Err(ConfigError::field(
            field,
            format!(
                "must start with / and be a path of at most {MAX_BYTES} bytes: {:?}",
                bounded_owned(text.to_string())
            ),
        ));
    }
    Ok(text.to_string())
}

/// The first route that can never match because an earlier one matches every request it
/// would: `(later, earlier)`.
pub fn first_shadowed(routes: &[RouteConfig]) -> Option<(usize, usize)> {
    (1..routes.len()).find_map(|later| {
        (0..later)
            .find(|&earlier| covers(&routes[earlier].matches, &routes[later].matches))
            .map(|earlier| (later, earlier))
    })
}

/// Whether every request `b` matches, `a` matches too.
pub fn covers(a: &RouteMatch, b: &RouteMatch) -> bool {
    let host = match (&a.host, &b.host) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(HostMatch::Exact(x)), Some(HostMatch::Exact(y))) => x == y,
        (Some(HostMatch::Exact(_)), Some(HostMatch::Suffix(_))) => false,
        (Some(HostMatch::Suffix(s)), Some(HostMatch::Exact(y))) => y.ends_with(s.as_str()),
        // `*.b.c` (".b.c") is within `*.c` (".c").
        (Some(HostMatch::Suffix(s)), Some(HostMatch::Suffix(t))) => t.ends_with(s.as_str()),
    };
    let path = match (&a.path, &b.path) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(PathMatch::Prefix(p)), Some(PathMatch::Prefix(q) | PathMatch::Exact(q))) => {
            q.starts_with(p.as_str())
        }
        (Some(PathMatch::Exact(e)), Some(PathMatch::Exact(f))) => e == f,
        (Some(PathMatch::Exact(_)), Some(PathMatch::Prefix(_))) => false,
    };
    let method = a.method.is_none() || a.method == b.method;
    let headers = a.headers.iter().all(|h| b.headers.contains(h));
    host && path && method && headers
}

#[cfg(test)]
mod tests;
