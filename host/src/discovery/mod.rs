//! Service discovery: backend entries that stand for the answer of a lookup (a DNS name), kept
//! fresh by one refresh task per entry.
//!
//! One small trait, [`Discover`], turns an entry into a backend set (as Pingora's
//! `ServiceDiscovery` does); [`dns`] implements it with hickory-resolver. [`Discovery`] runs the
//! refresh tasks, keeps each entry's last good answer, and signals a change, which
//! [`crate::reload::Reloader`] applies to the pool exactly as a config reload applies a new
//! backend list: addresses that stay keep their live state, removed ones drain, new ones join.
//!
//! A failed lookup (timeout, SERVFAIL, NXDOMAIN, an empty answer) never changes the pool: the
//! entry keeps its last answer, the failure is logged, counted
//! (`lbhost_dns_lookups_total{name, result}`) and shown in `/status`, and the lookup is tried
//! again after `min_refresh`, then twice as long each time up to `max_refresh`.

pub(crate) mod dns;
mod entry;
mod registry;

use std::future::Future;
use std::time::Duration;

use crate::config::BackendConfig;

pub(crate) use registry::{Discovery, EntryStatus};

/// A source of backends.
pub(crate) trait Discover: Send + Sync + 'static {
    /// The current backend set, and how long it may be trusted.
    fn discover(&self) -> impl Future<Output = Result<Discovered, DiscoveryError>> + Send;
}

/// What one discovery found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Discovered {
    /// The backends, sorted by address, no address twice; never empty.
    pub(crate) backends: Vec<BackendConfig>,
    /// How long the answer stays valid (the smallest TTL of its records).
    pub(crate) ttl: Duration,
}

/// Why a discovery found nothing usable. `Display` is what logs and `/status` show.
#[derive(Clone, Debug, thiserror::Error)]
pub(crate) enum DiscoveryError {
    /// The name does not exist (NXDOMAIN).
    #[error("no such name (NXDOMAIN)")]
    NotFound,
    /// The name exists but the answer holds no usable record.
    #[error("empty answer (no records)")]
    Empty,
    /// No server answered in time.
    #[error("no answer in time")]
    Timeout,
    /// Any other failure (SERVFAIL, REFUSED, a network error), as the resolver says it.
    #[error("{0}")]
    Failed(String),
    /// The resolver could not be set up (say, an unreadable `/etc/resolv.conf`).
    #[error("cannot set up the DNS resolver: {0}")]
    Setup(String),
}

impl DiscoveryError {
    /// The `result` label of `lbhost_dns_lookups_total`.
    pub(crate) fn result(&self) -> &'static str {
        match self {
            DiscoveryError::NotFound => "nxdomain",
            DiscoveryError::Empty => "empty",
            DiscoveryError::Timeout => "timeout",
            DiscoveryError::Failed(_) | DiscoveryError::Setup(_) => "error",
        }
    }
}

/// The backend list the pool gets: the static backends, then each DNS entry's last answer in
/// config order; an address already listed is left out (the first entry naming it wins).
pub(crate) fn compose(
    static_backends: &[BackendConfig],
    discovered: impl IntoIterator<Item = Vec<BackendConfig>>,
) -> Vec<BackendConfig> {
    let mut all = static_backends.to_vec();
    let mut seen: std::collections::HashSet<String> =
        all.iter().map(|b| b.address.clone()).collect();
    for answer in discovered {
        for backend in answer {
            if seen.insert(backend.address.clone()) {
                all.push(backend);
            }
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(address: &str) -> BackendConfig {
        BackendConfig {
            address: address.into(),
            weight: 1,
            labels: Vec::new(),
            tls: None,
            protocol: Default::default(),
        }
    }

    #[test]
    fn compose_keeps_order_and_drops_repeats() {
        let all = compose(
            &[b("10.0.0.1:80")],
            [
                vec![b("10.0.0.2:80"), b("10.0.0.1:80")],
                vec![b("10.0.0.2:80"), b("10.0.0.3:80")],
            ],
        );
        let addresses: Vec<_> = all.iter().map(|b| b.address.as_str()).collect();
        assert_eq!(addresses, ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]);
    }
}
