//! A TLS server in front of a plain test backend (rustls): it terminates TLS with a given
//! certificate, optionally requires a client certificate, and relays the bytes to the backend.
//! It counts the TCP connections it accepted and the handshakes that succeeded, and records the
//! SNI each handshake sent, so a test can see what lbhost dialed.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// The running server; stopped when dropped.
#[derive(Debug)]
pub struct TlsFront {
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
    handshakes: Arc<AtomicU64>,
    names: Arc<Mutex<Vec<Option<String>>>>,
    groups: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl TlsFront {
    /// Serves TLS on a free loopback port with the chain `cert` and key `key`, relaying to
    /// `target`. With `client_ca`, a client must present a certificate signed by it. No ALPN
    /// protocol is agreed to.
    pub async fn start(
        target: SocketAddr,
        cert: &Path,
        key: &Path,
        client_ca: Option<&Path>,
    ) -> TlsFront {
        TlsFront::serve(target, cert, key, client_ca, Vec::new()).await
    }

    /// As [`TlsFront::start`], without client certificates, agreeing to `h2` by ALPN: in front
    /// of an h2c server, an HTTP/2-over-TLS server.
    pub async fn start_h2(target: SocketAddr, cert: &Path, key: &Path) -> TlsFront {
        TlsFront::serve(target, cert, key, None, vec![b"h2".to_vec()]).await
    }

    async fn serve(
        target: SocketAddr,
        cert: &Path,
        key: &Path,
        client_ca: Option<&Path>,
        alpn: Vec<Vec<u8>>,
    ) -> TlsFront {
        let chain = CertificateDer::pem_file_iter(cert)
            .expect("the chain file")
            .collect::<Result<Vec<_>, _>>()
            .expect("the chain");
        let private = PrivateKeyDer::from_pem_file(key).expect("the key");
        #[allow(deprecated)] // ring, as lbhost uses.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .expect("protocol versions");
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_file_iter(ca).expect("the CA file") {
                    roots.add(cert.expect("a CA certificate")).expect("a CA");
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .expect("a client verifier");
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(chain, private)
            .expect("the certificate and key");
        config.alpn_protocols = alpn;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let accepted = Arc::new(AtomicU64::new(0));
        let handshakes = Arc::new(AtomicU64::new(0));
        let names = Arc::new(Mutex::new(Vec::new()));
        let groups = Arc::new(Mutex::new(Vec::new()));
        let (a, h, n, g) = (
            Arc::clone(&accepted),
            Arc::clone(&handshakes),
            Arc::clone(&names),
            Arc::clone(&groups),
        );
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let (acceptor, h, n, g) = (
                    acceptor.clone(),
                    Arc::clone(&h),
                    Arc::clone(&n),
                    Arc::clone(&g),
                );
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    h.fetch_add(1, Ordering::SeqCst);
                    let name = tls.get_ref().1.server_name().map(str::to_string);
                    n.lock().unwrap_or_else(|e| e.into_inner()).push(name);
                    let group = tls.get_ref().1.negotiated_key_exchange_group();
                    let group = group.map_or_else(|| "none".into(), |g| format!("{:?}", g.name()));
                    g.lock().unwrap_or_else(|e| e.into_inner()).push(group);
                    let Ok(mut backend) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut backend).await;
                });
            }
        });
        TlsFront {
            addr,
            accepted,
            handshakes,
            names,
            groups,
            task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// TCP connections accepted.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// TLS handshakes completed.
    pub fn handshakes(&self) -> u64 {
        self.handshakes.load(Ordering::SeqCst)
    }

    /// The key exchange group of each completed handshake, in order (`X25519`, ...).
    pub fn groups(&self) -> Vec<String> {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The SNI of each completed handshake, in order (`None`: none sent).
    pub fn server_names(&self) -> Vec<Option<String>> {
        self.names.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}
