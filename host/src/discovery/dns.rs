//! [`Discover`] for DNS entries, with hickory-resolver: A/AAAA records of a name with a port
//! from the config, or SRV records giving targets, ports and weights.
//!
//! The resolver's cache is off and cleared before every lookup: the refresh schedule (the
//! record's TTL within `min_refresh`..`max_refresh`) decides when a name is asked again, and a
//! change must be seen at the next refresh, not when a cached answer expires.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::{RData, Record};
use hickory_resolver::{Resolver, TokioResolver};

use super::{Discover, Discovered, DiscoveryError};
use crate::config::{BackendConfig, DnsBackend, DnsConfig, DnsLookup};
use crate::text::bounded_owned;

/// Most addresses one entry contributes (a bound on the pool); the rest, by address order, are
/// left out with a warning.
pub(crate) const MAX_ADDRESSES: usize = 256;
/// Attempts of one lookup at each server, each bounded by `dns.timeout`.
const ATTEMPTS: usize = 2;

/// A resolver built from the `dns` settings, shared by every entry.
#[derive(Clone)]
pub(crate) struct DnsResolver {
    resolver: TokioResolver,
}

impl std::fmt::Debug for DnsResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsResolver").finish_non_exhaustive()
    }
}

impl DnsResolver {
    /// A resolver asking `config.servers`, or those of `/etc/resolv.conf` when there are none
    /// (then its search domains, `ndots` and `/etc/hosts` apply too, as for any program).
    pub(crate) fn new(config: &DnsConfig) -> Result<Self, DiscoveryError> {
        let mut builder = if config.servers.is_empty() {
            Resolver::builder_tokio().map_err(|e| DiscoveryError::Setup(e.to_string()))?
        } else {
            let servers = config
                .servers
                .iter()
                .map(|server| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = server.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = server.port();
                    NameServerConfig::new(server.ip(), true, vec![udp, tcp])
                })
                .collect();
            let mut builder = Resolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            );
            // Configured servers are the only source: no /etc/hosts.
            builder.options_mut().use_hosts_file = ResolveHosts::Never;
            builder
        };
        let options = builder.options_mut();
        options.cache_size = 0;
        options.timeout = config.timeout;
        options.attempts = ATTEMPTS;
        options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        let resolver = builder
            .build()
            .map_err(|e| DiscoveryError::Setup(e.to_string()))?;
        Ok(DnsResolver { resolver })
    }

    /// The addresses of `name` and the smallest TTL of the records that gave them.
    async fn addresses(&self, name: &str) -> Result<(Vec<IpAddr>, u32), DiscoveryError> {
        self.resolver.clear_cache();
        let lookup = self.resolver.lookup_ip(name).await.map_err(classify)?;
        let ips: Vec<IpAddr> = lookup.iter().collect();
        if ips.is_empty() {
            return Err(DiscoveryError::Empty);
        }
        Ok((ips, min_ttl(lookup.as_lookup().answers())))
    }

    /// The SRV records of `name` with the lowest priority, as `(target, port, weight)`, and
    /// their smallest TTL. A target of `.` (service not offered) is left out.
    async fn services(&self, name: &str) -> Result<(Vec<(String, u16, u16)>, u32), DiscoveryError> {
        self.resolver.clear_cache();
        let lookup = self.resolver.srv_lookup(name).await.map_err(classify)?;
        let records: Vec<_> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(srv) if !srv.target.is_root() => Some(srv),
                _ => None,
            })
            .collect();
        let Some(best) = records.iter().map(|s| s.priority).min() else {
            return Err(DiscoveryError::Empty);
        };
        let services = records
            .iter()
            .filter(|s| s.priority == best)
            .map(|s| (s.target.to_ascii(), s.port, s.weight))
            .collect();
        Ok((services, min_ttl(lookup.answers())))
    }
}

/// One DNS backend entry, looked up with a shared resolver.
#[derive(Debug)]
pub(crate) struct DnsDiscovery {
    resolver: Arc<DnsResolver>,
    entry: DnsBackend,
}

impl DnsDiscovery {
    pub(crate) fn new(resolver: Arc<DnsResolver>, entry: DnsBackend) -> Self {
        DnsDiscovery { resolver, entry }
    }

    fn backend(&self, address: SocketAddr, weight: u32) -> BackendConfig {
        BackendConfig {
            // `SocketAddr`'s form, `[v6]:port` included, is what the config makes of a URL.
            address: address.to_string(),
            weight,
            labels: self.entry.labels.clone(),
            tls: None,
            protocol: self.entry.protocol,
        }
    }

    async fn srv(&self, name: &str) -> Result<Discovered, DiscoveryError> {
        let (services, mut ttl) = self.resolver.services(name).await?;
        let mut lookups = tokio::task::JoinSet::new();
        for (target, port, weight) in services.into_iter().take(MAX_ADDRESSES) {
            let resolver = Arc::clone(&self.resolver);
            lookups.spawn(async move {
                let found = resolver.addresses(&target).await;
                (target, port, weight, found)
            });
        }
        let mut backends = Vec::new();
        while let Some(done) = lookups.join_next().await {
            let Ok((target, port, weight, found)) = done else {
                return Err(DiscoveryError::Failed(
                    "a target lookup was cut short".into(),
                ));
            };
            match found {
                Ok((ips, target_ttl)) => {
                    ttl = ttl.min(target_ttl);
                    // SRV weight 0 means "no preference", not "drain".
                    let weight = u32::from(weight).clamp(1, crate::config::MAX_WEIGHT);
                    backends.extend(
                        ips.into_iter()
                            .map(|ip| self.backend(SocketAddr::new(ip, port), weight)),
                    );
                }
                // The DNS says this target has no address: it is left out.
                Err(e @ (DiscoveryError::NotFound | DiscoveryError::Empty)) => {
                    tracing::debug!(srv = name, %target, cause = %e, "SRV target without address");
                }
                // Anything else: the answer is incomplete; keep the last one.
                Err(e) => {
                    return Err(DiscoveryError::Failed(bounded_owned(format!(
                        "target {target}: {e}"
                    ))))
                }
            }
        }
        finish(name, backends, ttl)
    }
}

impl Discover for DnsDiscovery {
    async fn discover(&self) -> Result<Discovered, DiscoveryError> {
        match &self.entry.lookup {
            DnsLookup::Address { name, port } => {
                let (ips, ttl) = self.resolver.addresses(name).await?;
                let backends = ips
                    .into_iter()
                    .map(|ip| self.backend(SocketAddr::new(ip, *port), self.entry.weight))
                    .collect();
                finish(name, backends, ttl)
            }
            DnsLookup::Srv { name } => self.srv(name).await,
        }
    }
}

/// Sorts and dedupes `backends`, bounds them to [`MAX_ADDRESSES`], and refuses an empty set.
fn finish(
    name: &str,
    mut backends: Vec<BackendConfig>,
    ttl: u32,
) -> Result<Discovered, DiscoveryError> {
    backends.sort_by(|a, b| a.address.cmp(&b.address));
    backends.dedup_by(|a, b| a.address == b.address);
    if backends.is_empty() {
        return Err(DiscoveryError::Empty);
    }
    if backends.len() > MAX_ADDRESSES {
        tracing::warn!(
            name,
            addresses = backends.len(),
            kept = MAX_ADDRESSES,
            "DNS answer has more addresses than one entry may add; the first ones by address are kept"
        );
        backends.truncate(MAX_ADDRESSES);
    }
    Ok(Discovered {
        backends,
        ttl: Duration::from_secs(u64::from(ttl)),
    })
}

/// The smallest TTL of `records` (0 when there are none).
fn min_ttl(records: &[Record]) -> u32 {
    records.iter().map(|r| r.ttl).min().unwrap_or(0)
}

fn classify(error: NetError) -> DiscoveryError {
    if error.is_nx_domain() {
        DiscoveryError::NotFound
    } else if error.is_no_records_found() {
        DiscoveryError::Empty
    } else if matches!(error, NetError::Timeout) {
        DiscoveryError::Timeout
    } else {
        DiscoveryError::Failed(bounded_owned(error.to_string()))
    }
}
