//! What a TLS server costs with each rustls crypto provider lbhost could use (ring, aws-lc-rs):
//! CPU time of the server side of a full handshake (TLS 1.3, X25519, the given certificate),
//! of a resumed one (ticket), and of sealing and opening records of a typical small response
//! and of 16 KiB. Both sides run in memory in one thread; only the server's calls are timed.
//!
//! ```sh
//! openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
//!     -subj /CN=127.0.0.1 -keyout /tmp/key.pem -out /tmp/cert.pem
//! cd bench/tls_provider && cargo run --release -- /tmp/cert.pem /tmp/key.pem [ROUNDS]
//! ```
//!
//! Every provider runs with one key exchange group on both sides, as a browser's first key
//! share would be: X25519, and for aws-lc-rs also X25519MLKEM768 (its default, post-quantum).

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Moves every pending TLS record from `from` to `to`; the time counts when `to` is the server.
fn transfer(
    from: &mut Connection,
    to: &mut Connection,
    server_time: &mut Duration,
    to_server: bool,
) {
    let mut buf = Vec::new();
    while from.wants_write() {
        let t = Instant::now();
        from.write_tls(&mut buf).expect("write_tls");
        if !to_server {
            *server_time += t.elapsed();
        }
    }
    let mut rd = &buf[..];
    let t = Instant::now();
    while !rd.is_empty() {
        to.read_tls(&mut rd).expect("read_tls");
        to.process_new_packets().expect("process");
    }
    if to_server {
        *server_time += t.elapsed();
    }
}

fn handshake(client: &mut Connection, server: &mut Connection) -> Duration {
    let mut server_time = Duration::ZERO;
    while client.is_handshaking()
        || server.is_handshaking()
        || client.wants_write()
        || server.wants_write()
    {
        transfer(client, server, &mut server_time, true);
        transfer(server, client, &mut server_time, false);
    }
    server_time
}

struct Setup {
    name: &'static str,
    /// The key exchange both sides use (the client offers only it, as a browser's first share).
    group: rustls::NamedGroup,
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

fn setup(
    name: &'static str,
    mut provider: CryptoProvider,
    group: rustls::NamedGroup,
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
) -> Setup {
    provider.kx_groups.retain(|g| g.name() == group);
    assert_eq!(provider.kx_groups.len(), 1, "{name}: no {group:?}");
    let provider = Arc::new(provider);
    let mut server = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain.to_vec(), key.clone_key())
        .expect("cert");
    server.ticketer = if name.starts_with("ring") {
        rustls::crypto::ring::Ticketer::new().expect("ticketer")
    } else {
        rustls::crypto::aws_lc_rs::Ticketer::new().expect("ticketer")
    };
    let client = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        .with_no_client_auth();
    Setup {
        name,
        group,
        server: Arc::new(server),
        client: Arc::new(client),
    }
}

fn pair(s: &Setup, client: Arc<ClientConfig>) -> (Connection, Connection) {
    let c = ClientConnection::new(client, ServerName::try_from("127.0.0.1").expect("name"))
        .expect("client");
    let sv = ServerConnection::new(Arc::clone(&s.server)).expect("server");
    (Connection::Client(c), Connection::Server(sv))
}

/// Server µs per full handshake (fresh client config, so no ticket is offered).
fn full(s: &Setup, n: u32) -> f64 {
    let mut total = Duration::ZERO;
    for _ in 0..n {
        let mut fresh = (*s.client).clone();
        fresh.resumption = rustls::client::Resumption::disabled();
        let (mut c, mut sv) = pair(s, Arc::new(fresh));
        total += handshake(&mut c, &mut sv);
        assert_eq!(
            c.handshake_kind(),
            Some(rustls::HandshakeKind::Full),
            "not full"
        );
        if let Connection::Server(sv) = &sv {
            assert_eq!(
                sv.negotiated_key_exchange_group().map(|g| g.name()),
                Some(s.group)
            );
        }
    }
    total.as_secs_f64() * 1e6 / f64::from(n)
}

/// Server µs per resumed handshake (a ticket from the previous connection).
fn resumed(s: &Setup, n: u32) -> f64 {
    let client = Arc::clone(&s.client);
    let (mut c, mut sv) = pair(s, Arc::clone(&client));
    handshake(&mut c, &mut sv);
    let mut total = Duration::ZERO;
    for _ in 0..n {
        let (mut c, mut sv) = pair(s, Arc::clone(&client));
        total += handshake(&mut c, &mut sv);
        assert_eq!(
            c.handshake_kind(),
            Some(rustls::HandshakeKind::Resumed),
            "not resumed"
        );
    }
    total.as_secs_f64() * 1e6 / f64::from(n)
}

/// Server µs per exchange of `size` bytes each way: the server opens a request of `size`
/// bytes and seals a response of `size` bytes.
fn records(s: &Setup, size: usize, n: u32) -> f64 {
    let (mut c, mut sv) = pair(s, Arc::clone(&s.client));
    handshake(&mut c, &mut sv);
    let payload = vec![b'x'; size];
    let mut got = vec![0u8; size];
    let mut total = Duration::ZERO;
    for _ in 0..n {
        c.writer().write_all(&payload).expect("client write");
        let mut t = Duration::ZERO;
        transfer(&mut c, &mut sv, &mut t, true);
        let start = Instant::now();
        sv.reader().read_exact(&mut got).expect("server read");
        sv.writer().write_all(&payload).expect("server write");
        t += start.elapsed();
        transfer(&mut sv, &mut c, &mut t, false);
        c.reader().read_exact(&mut got).expect("client read");
        total += t;
    }
    total.as_secs_f64() * 1e6 / f64::from(n)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (cert, key) = (
        args.next().expect("CERT.pem"),
        args.next().expect("KEY.pem"),
    );
    let rounds: u32 = args.next().map_or(5, |r| r.parse().expect("rounds"));
    let chain: Vec<_> = CertificateDer::pem_file_iter(&cert)
        .expect("cert")
        .map(|c| c.expect("cert"))
        .collect();
    let key = PrivateKeyDer::from_pem_file(&key).expect("key");
    use rustls::NamedGroup::{X25519, X25519MLKEM768};
    #[allow(deprecated)]
    let ring = rustls::crypto::ring::default_provider;
    let aws = rustls::crypto::aws_lc_rs::default_provider;
    let setups = [
        setup("ring, X25519", ring(), X25519, &chain, &key),
        setup("aws-lc-rs, X25519", aws(), X25519, &chain, &key),
        setup(
            "aws-lc-rs, X25519MLKEM768",
            aws(),
            X25519MLKEM768,
            &chain,
            &key,
        ),
    ];
    let mut rows: Vec<(&str, Vec<[f64; 4]>)> =
        setups.iter().map(|s| (s.name, Vec::new())).collect();
    // Interleaved rounds, medians: the machine is shared.
    for _ in 0..rounds {
        for (s, row) in setups.iter().zip(rows.iter_mut()) {
            row.1.push([
                full(s, 400),
                resumed(s, 400),
                records(s, 200, 20_000),
                records(s, 16_384, 2_000),
            ]);
        }
    }
    println!("| provider | full handshake µs | resumed handshake µs | 200 B each way µs | 16 KiB each way µs |");
    println!("|---|---:|---:|---:|---:|");
    for (name, runs) in rows {
        let med = |i: usize| {
            let mut v: Vec<f64> = runs.iter().map(|r| r[i]).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        println!(
            "| {name} | {:.1} | {:.1} | {:.2} | {:.2} |",
            med(0),
            med(1),
            med(2),
            med(3)
        );
    }
}
