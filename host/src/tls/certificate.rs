//! One certificate as lbhost serves it: its chain and key from PEM files, checked (the key
//! matches, the leaf is valid now), with the names it answers for and its expiry.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::crypto::ring::sign::any_supported_type;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Why a certificate cannot be served; one line, naming the file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CertificateError {
    #[error("{path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("{0}: no certificate in the file")]
    NoCertificate(PathBuf),
    #[error("{0}: not an X.509 certificate")]
    NotX509(PathBuf),
    #[error("{path}: the key is not usable for TLS: {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error("{key}: the key does not match the certificate in {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("{path}: expired {days} days ago")]
    Expired { path: PathBuf, days: u64 },
    #[error("{0}: not valid yet")]
    NotYetValid(PathBuf),
    #[error("{0}: names no DNS name (subjectAltName or CN)")]
    NoNames(PathBuf),
}

/// A certificate loaded and checked.
#[derive(Clone, Debug)]
pub(crate) struct Certificate {
    /// The chain file.
    pub(crate) cert_path: PathBuf,
    /// DNS names it answers for, lowercase (`*.example.com` for a wildcard).
    pub(crate) names: Vec<String>,
    /// The end of its validity, in seconds since the Unix epoch.
    pub(crate) not_after: i64,
    /// The chain and the signing key, as rustls serves them.
    pub(crate) key: Arc<CertifiedKey>,
}

impl PartialEq for Certificate {
    /// The same chain from the same file (a reload that changed nothing keeps it).
    fn eq(&self, other: &Self) -> bool {
        self.cert_path == other.cert_path && self.key.cert == other.key.cert
    }
}

impl Certificate {
    /// Reads the chain in `cert` and the key in `key` (PEM) and checks them: the key is one
    /// rustls can sign with and matches the leaf, and the leaf is valid now.
    pub(crate) fn load(cert: &Path, key: &Path) -> Result<Certificate, CertificateError> {
        let unreadable = |path: &Path, e: &dyn std::fmt::Display| CertificateError::Unreadable {
            path: path.to_path_buf(),
            reason: crate::text::bounded_owned(e.to_string()),
        };
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(|e| unreadable(cert, &e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| unreadable(cert, &e))?;
        let Some(leaf) = chain.first() else {
            return Err(CertificateError::NoCertificate(cert.to_path_buf()));
        };
        let (_, parsed) = X509Certificate::from_der(leaf)
            .map_err(|_| CertificateError::NotX509(cert.to_path_buf()))?;
        let names = dns_names(&parsed);
        if names.is_empty() {
            return Err(CertificateError::NoNames(cert.to_path_buf()));
        }
        let not_after = valid_now(cert, &parsed)?;
        let private = PrivateKeyDer::from_pem_file(key).map_err(|e| unreadable(key, &e))?;
        let signing = any_supported_type(&private).map_err(|e| CertificateError::BadKey {
            path: key.to_path_buf(),
            reason: e.to_string(),
        })?;
        let certified = CertifiedKey::new(chain, signing);
        if certified.keys_match().is_err() {
            return Err(CertificateError::KeyMismatch {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            });
        }
        Ok(Certificate {
            cert_path: cert.to_path_buf(),
            names,
            not_after,
            key: Arc::new(certified),
        })
    }
}

/// The end of the validity of the leaf `leaf` (DER) of the chain in `path`, in seconds since
/// the Unix epoch, if it is valid now.
pub(crate) fn leaf_not_after(path: &Path, leaf: &[u8]) -> Result<i64, CertificateError> {
    let (_, parsed) = X509Certificate::from_der(leaf)
        .map_err(|_| CertificateError::NotX509(path.to_path_buf()))?;
    valid_now(path, &parsed)
}

/// `cert`'s end of validity (seconds since the Unix epoch), if it is valid now.
fn valid_now(path: &Path, cert: &X509Certificate<'_>) -> Result<i64, CertificateError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs() as i64;
    let not_after = cert.validity().not_after.timestamp();
    if not_after < now {
        return Err(CertificateError::Expired {
            path: path.to_path_buf(),
            days: ((now - not_after) / 86_400) as u64,
        });
    }
    if cert.validity().not_before.timestamp() > now {
        return Err(CertificateError::NotYetValid(path.to_path_buf()));
    }
    Ok(not_after)
}

/// The DNS names of `cert`: its subjectAltName DNS entries, or its CN when it has none.
fn dns_names(cert: &X509Certificate<'_>) -> Vec<String> {
    let mut names: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    names
}
