//! TLS towards clients (rustls, `ring` provider): certificates from PEM files chosen by SNI
//! ([`resolver`]), TLS 1.2 and 1.3 only, ALPN `h2` and `http/1.1`, session tickets on.

mod certificate;
mod resolver;

use std::sync::Arc;

pub(crate) use certificate::Certificate;
pub(crate) use resolver::{CertificateSet, Resolver};

/// The rustls server config of every TLS listener, choosing certificates through `resolver`.
pub(crate) fn server_config(
    resolver: Arc<Resolver>,
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    // ring: builds with nothing but a C compiler (aws-lc-rs wants cmake here). rustls marks it
    // deprecated because it has no post-quantum key exchange (aws-lc-rs offers X25519MLKEM768).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Resumption: stateless tickets (rotated every 6 hours) besides the session cache.
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    Ok(Arc::new(config))
}
