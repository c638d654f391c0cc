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
    // ring rather than aws-lc-rs, measured by bench/tls_provider (BENCHMARKS.md): the server
    // side of a full TLS 1.3 handshake costs the same with either (ECDSA P-256, X25519: 141 vs
    // 137 µs), and ring seals and opens records 15-35 % faster (a 200-byte exchange 0.73 vs
    // 0.86 µs, 16 KiB 7.8 vs 11.7 µs), the cost every keep-alive request pays. rustls marks it
    // deprecated because it has no post-quantum key exchange (aws-lc-rs's X25519MLKEM768, +14 %
    // per handshake).
    #[allow(deprecated)]
    let mut provider = rustls::crypto::ring::default_provider();
    // X25519 first: ring's default order starts with P-384, the key share lbhost would then send
    // first to every https:// backend, a handshake ~8 times the CPU of one with X25519 (bench/tls_provider). As a server,
    // rustls takes the client's order whatever this one says.
    #[allow(deprecated)]
    {
        use rustls::crypto::ring::kx_group::{SECP256R1, SECP384R1, X25519};
        provider.kx_groups = vec![X25519, SECP256R1, SECP384R1];
    }
    Arc::new(provider)
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
