//! TLS towards backends, as configured: the rustls client config an `https://` backend is
//! dialed with (the roots it is verified against — the system's, or a configured CA — an
//! optional client certificate, ALPN `http/1.1` or `h2` as the backend's protocol), loaded from
//! its files and checked once per config load.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::ring::sign::any_supported_type;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// Why a backend's TLS settings cannot be used; one line, naming the file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientTlsError {
    #[error("{path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("{0}: no certificate in the file")]
    NoCertificate(PathBuf),
    #[error("{path}: not a CA certificate rustls can use: {reason}")]
    BadCa { path: PathBuf, reason: String },
    #[error("{path}: the key is not usable for TLS: {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error("{key}: the key does not match the certificate in {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("no system root certificates ({0}); name a \"ca\" file")]
    NoSystemRoots(String),
    #[error("{0}")]
    Rustls(String),
    /// The client certificate is expired, not valid yet or not X.509.
    #[error("{0}")]
    Certificate(#[from] super::certificate::CertificateError),
}

/// What a TLS client config is built from: files resolved against the config's folder.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ClientFiles {
    /// PEM file of the CA certificates to trust instead of the system's roots.
    pub(crate) ca: Option<PathBuf>,
    /// Client certificate chain and key (PEM), presented when the backend asks (mTLS).
    pub(crate) identity: Option<(PathBuf, PathBuf)>,
    /// Whether the backend's certificate is verified.
    pub(crate) verify: bool,
    /// Whether ALPN offers `h2` (an `"h2"` backend) rather than `http/1.1`.
    pub(crate) http2: bool,
}

/// How lbhost speaks TLS to one `https://` backend.
#[derive(Clone, Debug)]
pub struct BackendTls {
    /// Sent as SNI (a DNS name only) and verified against the certificate: the URL's host, or
    /// `server_name`.
    pub server_name: ServerName<'static>,
    /// Whether the certificate is verified (off only by an explicit `"verify": false`).
    pub verify: bool,
    /// The files the settings came from (CA, client certificate, key), for `/status` and the
    /// file watch.
    pub files: Vec<PathBuf>,
    /// The client certificate's chain file (mTLS), if any.
    pub client_certificate: Option<PathBuf>,
    /// When the client certificate expires (seconds since the Unix epoch), if there is one.
    pub client_certificate_not_after: Option<i64>,
    /// The rustls config, shared by every backend with the same files.
    pub(crate) client: Arc<ClientConfig>,
    /// Tells settings apart by what they say and their files' contents: connections made under
    /// one fingerprint are not reused under another, and a reload that changes nothing keeps
    /// the pooled connections.
    pub(crate) fingerprint: u64,
}

impl PartialEq for BackendTls {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint && self.server_name == other.server_name
    }
}

impl Eq for BackendTls {}

/// Logs a warning for each of `backends` (address, TLS settings) whose certificate is not
/// verified (`"verify": false`), each time a config is applied.
pub(crate) fn warn_unverified<'a>(backends: impl IntoIterator<Item = (&'a str, &'a BackendTls)>) {
    for (address, tls) in backends {
        if !tls.verify {
            tracing::warn!(backend = %address, "TLS certificate of the backend is not verified (\"verify\": false): anyone on the path can pose as it");
        }
    }
}

/// The system's root certificates (`SSL_CERT_FILE`/`SSL_CERT_DIR` if set, else the platform's
/// store, e.g. `/etc/ssl/certs`). Read at each config load, so an updated store applies on
/// reload.
pub(crate) fn system_roots() -> Result<Arc<RootCertStore>, ClientTlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let reason = found
            .errors
            .first()
            .map_or_else(|| "none found".to_string(), |e| e.to_string());
        return Err(ClientTlsError::NoSystemRoots(crate::text::bounded_owned(
            reason,
        )));
    }
    Ok(Arc::new(roots))
}

/// A client config built from its files.
#[derive(Clone, Debug)]
pub(crate) struct BuiltClient {
    pub(crate) config: Arc<ClientConfig>,
    /// See [`BackendTls::fingerprint`].
    pub(crate) fingerprint: u64,
    /// When the client certificate expires (seconds since the Unix epoch), if there is one.
    pub(crate) certificate_not_after: Option<i64>,
}

/// Builds the client config `files` describe. `system` gives the system's roots, asked for only
/// when verifying without a CA file. A client certificate that is not valid now is refused.
pub(crate) fn client_config(
    files: &ClientFiles,
    system: impl FnOnce() -> Result<Arc<RootCertStore>, ClientTlsError>,
) -> Result<BuiltClient, ClientTlsError> {
    let mut fingerprint = DefaultHasher::new();
    files.verify.hash(&mut fingerprint);
    files.http2.hash(&mut fingerprint);
    let provider = super::provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ClientTlsError::Rustls(e.to_string()))?;
    let roots = match &files.ca {
        Some(ca) => {
            let bytes = read(ca)?;
            bytes.hash(&mut fingerprint);
            Some(ca_roots(ca, &bytes)?)
        }
        None if files.verify => Some(system()?),
        None => None,
    };
    let builder = match roots {
        Some(roots) if files.verify => builder.with_root_certificates(roots),
        _ => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider))),
    };
    let mut certificate_not_after = None;
    let mut config = match &files.identity {
        Some((cert, key)) => {
            let (chain, private) = identity(cert, key, &mut fingerprint)?;
            certificate_not_after = Some(super::certificate::leaf_not_after(cert, &chain[0])?);
            builder
                .with_client_auth_cert(chain, private)
                .map_err(|e| ClientTlsError::BadKey {
                    path: key.clone(),
                    reason: e.to_string(),
                })?
        }
        None => builder.with_no_client_auth(),
    };
    // One protocol offered, the one the backend is configured to speak: a connection is
    // pooled by it, and a backend that agrees to another is refused at the handshake.
    config.alpn_protocols = vec![if files.http2 {
        b"h2".to_vec()
    } else {
        b"http/1.1".to_vec()
    }];
    Ok(BuiltClient {
        config: Arc::new(config),
        fingerprint: fingerprint.finish(),
        certificate_not_after,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, ClientTlsError> {
    std::fs::read(path).map_err(|e| ClientTlsError::Unreadable {
        path: path.to_path_buf(),
        reason: crate::text::bounded_owned(e.to_string()),
    })
}

/// The CA certificates in PEM `bytes` (from `path`), as the only roots.
fn ca_roots(path: &Path, bytes: &[u8]) -> Result<Arc<RootCertStore>, ClientTlsError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ClientTlsError::Unreadable {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(ClientTlsError::NoCertificate(path.to_path_buf()));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| ClientTlsError::BadCa {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    Ok(Arc::new(roots))
}

/// The client certificate chain in `cert` and its key in `key`, checked to match.
fn identity(
    cert: &Path,
    key: &Path,
    fingerprint: &mut DefaultHasher,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), ClientTlsError> {
    let cert_bytes = read(cert)?;
    let key_bytes = read(key)?;
    cert_bytes.hash(fingerprint);
    key_bytes.hash(fingerprint);
    let chain = CertificateDer::pem_slice_iter(&cert_bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ClientTlsError::Unreadable {
            path: cert.to_path_buf(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(ClientTlsError::NoCertificate(cert.to_path_buf()));
    }
    let private =
        PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| ClientTlsError::Unreadable {
            path: key.to_path_buf(),
            reason: e.to_string(),
        })?;
    let signing = any_supported_type(&private).map_err(|e| ClientTlsError::BadKey {
        path: key.to_path_buf(),
        reason: e.to_string(),
    })?;
    if CertifiedKey::new(chain.clone(), signing)
        .keys_match()
        .is_err()
    {
        return Err(ClientTlsError::KeyMismatch {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        });
    }
    Ok((chain, private))
}

/// `"verify": false`: any certificate is accepted (the handshake's signatures are still
/// checked, so the session is with whoever holds the presented certificate's key).
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
