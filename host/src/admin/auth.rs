//! Who may change the balancer through the admin API: the mutating endpoints (`POST /reload`,
//! `POST /strategy`) need the bearer token of `admin_token_file` when one is configured, and are
//! refused outright on an admin address off loopback without one (in a pod, the admin listener
//! is reachable from the whole cluster network). Reading endpoints stay open.

use std::net::SocketAddr;
use std::path::Path;

use http::{header, HeaderMap};
use sha2::{Digest, Sha256};

/// Why a mutating admin request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// No `Authorization: Bearer` header, or the wrong token: 401.
    Unauthorized,
    /// The admin address is off loopback and no `admin_token_file` is set: 403.
    NoToken,
    /// The token file cannot be read now: 503 (fail closed).
    TokenUnavailable,
}

impl Refusal {
    /// The metric label and log word.
    pub(super) fn reason(self) -> &'static str {
        match self {
            Refusal::Unauthorized => "unauthorized",
            Refusal::NoToken => "no_token",
            Refusal::TokenUnavailable => "token_unavailable",
        }
    }
}

/// Whether the request whose headers are `headers` may change the balancer, given the admin
/// listener's address and the configured token file. The file is read at every call, so a
/// rotated secret (a Kubernetes Secret update, say) applies at once.
pub(super) fn authorize(
    headers: &HeaderMap,
    admin: SocketAddr,
    token_file: Option<&Path>,
) -> Result<(), Refusal> {
    let Some(path) = token_file else {
        return if admin.ip().is_loopback() {
            Ok(())
        } else {
            Err(Refusal::NoToken)
        };
    };
    let expected = crate::config::read_token(path).map_err(|reason| {
        tracing::error!(path = %path.display(), %reason, "admin token file unreadable; refusing");
        Refusal::TokenUnavailable
    })?;
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(Refusal::Unauthorized)?;
    if same_secret(given.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(Refusal::Unauthorized)
    }
}

/// Compares two secrets in time that depends on neither: both are hashed to 32 bytes first, so
/// not even the length of the expected one shows.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(given), Sha256::digest(expected));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |diff, (x, y)| diff | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().expect("a valid header"),
        );
        headers
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("a socket address")
    }

    #[test]
    fn loopback_without_a_token_file_is_open_and_elsewhere_refused() {
        let none = HeaderMap::new();
        assert_eq!(authorize(&none, addr("127.0.0.1:9901"), None), Ok(()));
        assert_eq!(authorize(&none, addr("[::1]:9901"), None), Ok(()));
        assert_eq!(
            authorize(&none, addr("0.0.0.0:9901"), None),
            Err(Refusal::NoToken)
        );
        assert_eq!(
            authorize(&bearer("x"), addr("10.0.0.7:9901"), None),
            Err(Refusal::NoToken)
        );
    }

    #[test]
    fn a_token_file_is_required_everywhere_once_set() {
        let dir = std::env::temp_dir().join(format!("lbhost-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let path = dir.join("token");
        std::fs::write(&path, "s3cret\n").expect("writing the token");
        for admin in ["127.0.0.1:9901", "0.0.0.0:9901"] {
            let admin = addr(admin);
            assert_eq!(authorize(&bearer("s3cret"), admin, Some(&path)), Ok(()));
            assert_eq!(
                authorize(&bearer("s3cre"), admin, Some(&path)),
                Err(Refusal::Unauthorized)
            );
            assert_eq!(
                authorize(&HeaderMap::new(), admin, Some(&path)),
                Err(Refusal::Unauthorized)
            );
        }
        std::fs::remove_file(&path).expect("removing the token");
        assert_eq!(
            authorize(&bearer("s3cret"), addr("0.0.0.0:9901"), Some(&path)),
            Err(Refusal::TokenUnavailable)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
