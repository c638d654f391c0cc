//! Which certificate a handshake gets: the one whose name matches the client's SNI exactly,
//! else one with a wildcard for its parent domain, else the default (the first configured).
//! The set is swapped whole on reload: new handshakes get the new certificates, open
//! connections keep theirs.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::Certificate;

/// Certificates indexed by name.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct CertificateSet {
    /// In config order; the first is the default.
    pub(crate) certificates: Vec<Certificate>,
    exact: HashMap<String, usize>,
    /// By the domain a `*.` name covers (`example.com` for `*.example.com`).
    wildcard: HashMap<String, usize>,
}

impl CertificateSet {
    pub(crate) fn new(certificates: Vec<Certificate>) -> Self {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (i, certificate) in certificates.iter().enumerate() {
            for name in &certificate.names {
                // The first certificate to claim a name keeps it.
                match name.strip_prefix("*.") {
                    Some(domain) => wildcard.entry(domain.to_string()).or_insert(i),
                    None => exact.entry(name.clone()).or_insert(i),
                };
            }
        }
        CertificateSet {
            certificates,
            exact,
            wildcard,
        }
    }

    /// The certificate for SNI `name` (any case), or the default.
    pub(crate) fn pick(&self, name: Option<&str>) -> Option<&Certificate> {
        let index = name.and_then(|name| {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            self.exact.get(&name).copied().or_else(|| {
                let (_, parent) = name.split_once('.')?;
                self.wildcard.get(parent).copied()
            })
        });
        self.certificates.get(index.unwrap_or(0))
    }
}

/// The running certificate set, for rustls to choose from.
#[derive(Debug, Default)]
pub(crate) struct Resolver(ArcSwap<CertificateSet>);

impl Resolver {
    /// Serves `set` from the next handshake on.
    pub(crate) fn set(&self, set: Arc<CertificateSet>) {
        self.0.store(set);
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let set = self.0.load();
        set.pick(hello.server_name()).map(|c| Arc::clone(&c.key))
    }
}
