//! Backends named by DNS (`{"dns": "api.internal", "port": 8080}`, `{"srv": "_http._tcp.api"}`)
//! and the resolver settings (`"dns": {...}`): their domain types, defaults and validation.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::file::{FileBackend, FileDns};
use super::validate::{duration, labels};
use super::ConfigError;

/// The longest DNS name (RFC 1035), without the trailing dot.
const MAX_NAME_BYTES: usize = 253;
/// The longest label of a DNS name.
const MAX_LABEL_BYTES: usize = 63;

/// A backend entry that stands for every address a DNS lookup answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsBackend {
    /// What is looked up.
    pub lookup: DnsLookup,
    /// Weight of each address of an A/AAAA answer (default 1); SRV answers carry their own.
    pub weight: u32,
    /// Labels every address of the answer gets, sorted by key.
    pub labels: Vec<(String, String)>,
    /// The protocol spoken to every address of the answer.
    pub protocol: super::BackendProtocol,
}

/// The kind of lookup and its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsLookup {
    /// A and AAAA records of `name`; each address becomes a backend on `port`.
    Address { name: String, port: u16 },
    /// SRV records of `name`: each target of the lowest priority becomes a backend on its
    /// record's port with its record's weight (at least 1).
    Srv { name: String },
}

impl DnsLookup {
    /// The name looked up, as written in the config.
    pub fn name(&self) -> &str {
        match self {
            DnsLookup::Address { name, .. } | DnsLookup::Srv { name } => name,
        }
    }

    /// `dns` or `srv`: the config key, and what `/status` and metrics call the kind.
    pub fn kind(&self) -> &'static str {
        match self {
            DnsLookup::Address { .. } => "dns",
            DnsLookup::Srv { .. } => "srv",
        }
    }
}

impl fmt::Display for DnsLookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsLookup::Address { name, port } => write!(f, "{name} port {port}"),
            DnsLookup::Srv { name } => write!(f, "SRV {name}"),
        }
    }
}

/// How DNS backends are resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsConfig {
    /// The servers asked, in order (port 53 unless given); empty (the default) means the
    /// system's resolver configuration, `/etc/resolv.conf`.
    pub servers: Vec<SocketAddr>,
    /// A name is looked up again after its answer's TTL, but never sooner than this
    /// (default 1 s).
    pub min_refresh: Duration,
    /// ... and never later than this (default 30 s).
    pub max_refresh: Duration,
    /// How long one attempt at one server may take (default 2 s); a lookup makes two.
    pub timeout: Duration,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            servers: Vec::new(),
            min_refresh: Duration::from_secs(1),
            max_refresh: Duration::from_secs(30),
            timeout: Duration::from_secs(2),
        }
    }
}

/// Validates the `dns` section.
pub(super) fn settings(file: Option<FileDns>) -> Result<DnsConfig, ConfigError> {
    let file = file.unwrap_or_default();
    let servers = file
        .servers
        .iter()
        .enumerate()
        .map(|(i, text)| {
            text.parse::<SocketAddr>()
                .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                .map_err(|_| {
                    ConfigError::field(
                        format!("dns.servers[{i}]"),
                        format!("{text:?} is not an IP address with an optional port, like 127.0.0.1:5353"),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let config = DnsConfig {
        servers,
        min_refresh: duration("dns.min_refresh", file.min_refresh.as_deref(), "1s")?,
        max_refresh: duration("dns.max_refresh", file.max_refresh.as_deref(), "30s")?,
        timeout: duration("dns.timeout", file.timeout.as_deref(), "2s")?,
    };
    if config.min_refresh < Duration::from_millis(100) {
        return Err(ConfigError::field(
            "dns.min_refresh",
            "must be at least 100ms",
        ));
    }
    if config.min_refresh > config.max_refresh {
        return Err(ConfigError::field(
            "dns.min_refresh",
            format!(
                "{} is above dns.max_refresh ({})",
                humantime::format_duration(config.min_refresh),
                humantime::format_duration(config.max_refresh)
            ),
        ));
    }
    if config.timeout.is_zero() || config.timeout > Duration::from_secs(30) {
        return Err(ConfigError::field(
            "dns.timeout",
            "must be above 0 and at most 30s",
        ));
    }
    Ok(config)
}

/// Validates `backends[i]`, an entry with `dns` or `srv` (the caller checked it has one of them
/// and no `url`).
pub(super) fn backend(i: usize, b: FileBackend) -> Result<DnsBackend, ConfigError> {
    let lookup = match (b.dns, b.srv) {
        (Some(name), None) => {
            let field = format!("backends[{i}].port");
            let port =
                match b.port {
                    Some(port) => u16::try_from(port).ok().filter(|&p| p > 0).ok_or_else(|| {
                        ConfigError::field(&field, format!("{port} is not a port (1-65535)"))
                    })?,
                    None => return Err(ConfigError::field(
                        &field,
                        "required with \"dns\" (the port every address of the answer serves on)",
                    )),
                };
            let name = dns_name(&format!("backends[{i}].dns"), &name, false)?;
            DnsLookup::Address { name, port }
        }
        (None, Some(name)) => {
            if b.port.is_some() {
                return Err(ConfigError::field(
                    format!("backends[{i}].port"),
                    "does not apply to \"srv\" (its records give the ports)",
                ));
            }
            if b.weight.is_some() {
                return Err(ConfigError::field(
                    format!("backends[{i}].weight"),
                    "does not apply to \"srv\" (its records give the weights)",
                ));
            }
            let name = dns_name(&format!("backends[{i}].srv"), &name, true)?;
            DnsLookup::Srv { name }
        }
        _ => {
            return Err(ConfigError::field(
                format!("backends[{i}]"),
                "\"dns\" and \"srv\" exclude each other",
            ))
        }
    };
    let weight = super::validate::backend_weight(i, b.weight)?;
    labels(i, &b.labels)?;
    let protocol = super::protocol::backend_protocol(i, b.protocol.as_deref())?;
    if protocol == super::BackendProtocol::H2 {
        return Err(ConfigError::field(
            format!("backends[{i}].protocol"),
            "\"h2\" is HTTP/2 over TLS, and the addresses a name resolves to are dialed in cleartext: use \"h2c\" or \"http1\"",
        ));
    }
    Ok(DnsBackend {
        lookup,
        weight,
        labels: b.labels.into_iter().collect(),
        protocol,
    })
}

/// `text` if it is a DNS name (letters, digits, `-` and `_` in dot-separated labels of at most
/// 63 bytes, 253 in all, an optional final dot); an SRV name must start with `_service._proto.`.
fn dns_name(field: &str, text: &str, srv: bool) -> Result<String, ConfigError> {
    let example = if srv {
        "like _http._tcp.api.internal"
    } else {
        "like api.internal"
    };
    if text.parse::<IpAddr>().is_ok() {
        return Err(ConfigError::field(
            field,
            format!(
                "{text:?} is an IP address, not a name (write {{\"url\": \"http://{text}:PORT\"}})"
            ),
        ));
    }
    let bare = text.strip_suffix('.').unwrap_or(text);
    if bare.is_empty() || bare.len() > MAX_NAME_BYTES {
        return Err(ConfigError::field(
            field,
            format!("{text:?} is not a DNS name of 1 to {MAX_NAME_BYTES} bytes, {example}"),
        ));
    }
    let labels: Vec<&str> = bare.split('.').collect();
    for label in &labels {
        let valid_chars = label
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
        if label.is_empty()
            || label.len() > MAX_LABEL_BYTES
            || !valid_chars
            || label.starts_with('-')
            || label.ends_with('-')
        {
            return Err(ConfigError::field(
                field,
                format!(
                    "{text:?} is not a DNS name: each dot-separated label is 1 to \
                     {MAX_LABEL_BYTES} letters, digits, '-' or '_' ({example})"
                ),
            ));
        }
    }
    if srv && !(labels.len() >= 3 && labels[0].starts_with('_') && labels[1].starts_with('_')) {
        return Err(ConfigError::field(
            field,
            format!("{text:?} is not an SRV name: it starts with _service._proto. ({example})"),
        ));
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(dns_name("f", "api.internal", false).is_ok());
        assert!(dns_name("f", "api.internal.", false).is_ok());
        assert!(dns_name("f", "backend", false).is_ok());
        assert!(dns_name("f", "_http._tcp.api.internal", true).is_ok());
        for bad in [
            "", ".", "a..b", "-a.b", "a-.b", "a b", "a/b", "10.0.0.1", "::1",
        ] {
            assert!(dns_name("f", bad, false).is_err(), "{bad:?} passed");
        }
        assert!(dns_name("f", &"a".repeat(64), false).is_err());
        assert!(dns_name("f", &["a"; 128].join("."), false).is_err());
        let srv = dns_name("f", "api.internal", true).unwrap_err().to_string();
        assert!(srv.contains("_service._proto."), "{srv}");
    }
}
