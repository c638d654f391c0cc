//! TLS towards clients (rustls, `ring` provider): certificates from PEM files chosen by SNI
//! ([`resolver`]), TLS 1.2 and 1.3 only, ALPN `h2` and `http/1.1`, session tickets on. And the
//! client configs of `https://` backends ([`client`]).

mod certificate;
pub(crate) mod client;
mod resolver;
mod stream;

use std::sync::Arc;

pub(crate) use certificate::Certificate;
pub(crate) use client::BackendTls;
pub(crate) use resolver::{CertificateSet, Resolver};
pub(crate) use stream::MaybeTls;

/// The crypto provider of every TLS session lbhost makes, towards clients and backends.
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    // ring: builds with nothing but a C compiler (aws-lc-rs wants cmake here). rustls marks it
    // deprecated because it has no post-quantum key exchange (aws-lc-rs offers X25519MLKEM768).
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls server config of every TLS listener, choosing certificates through `resolver`.
pub(crate) fn server_config(
    resolver: Arc<Resolver>,
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let provider = provider();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Resumption: stateless tickets (rotated every 6 hours) besides the session cache.
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    Ok(Arc::new(config))
}
