//! The certificates in `GET /status`: each one the TLS listener serves (its names, file and
//! expiry), and each client certificate `https://` backends present.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::config::Config;

/// One certificate.
#[derive(Debug, Serialize)]
pub(super) struct CertificateStatus {
    /// `listener` (served to clients; the first is the default) or `backend_client` (presented to
    /// `https://` backends that ask).
    role: &'static str,
    /// DNS names from its SANs (or CN), lowercase; empty for a client certificate.
    names: Vec<String>,
    /// The chain file.
    file: String,
    /// When it expires (seconds since the Unix epoch).
    not_after_unix: i64,
    /// Whole days left (negative once expired).
    expires_in_days: i64,
}

/// The certificates of `config`, listener's first (in config order).
pub(super) fn certificates(config: &Config) -> Vec<CertificateStatus> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut all: Vec<CertificateStatus> = config
        .tls
        .iter()
        .flat_map(|tls| &tls.certificates.certificates)
        .map(|c| CertificateStatus {
            role: "listener",
            names: c.names.clone(),
            file: c.cert_path.display().to_string(),
            not_after_unix: c.not_after,
            expires_in_days: (c.not_after - now).div_euclid(86_400),
        })
        .collect();
    all.extend(
        config
            .client_certificates()
            .into_iter()
            .map(|(file, not_after)| CertificateStatus {
                role: "backend_client",
                names: Vec::new(),
                file,
                not_after_unix: not_after,
                expires_in_days: (not_after - now).div_euclid(86_400),
            }),
    );
    all
}
