//! The TLS handshake with an `https://` backend over a connected socket: SNI and verification
//! as its [`BackendTls`] says, the negotiated ALPN protocol recorded (so a protocol other than
//! HTTP/1.1 can be chosen by it later), and a failure told by its reason.

use std::io;

use rustls::{AlertDescription, CertificateError};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::tls::BackendTls;

/// A finished handshake.
#[derive(Debug)]
pub(super) struct Handshaken {
    pub(super) stream: TlsStream<TcpStream>,
    pub(super) alpn: Alpn,
}

/// The application protocol a backend chose by ALPN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Alpn {
    /// None negotiated (a plain connection, or a backend that ignores ALPN): HTTP/1.1.
    Unstated,
    Http1,
    H2,
    /// One lbhost did not offer.
    Other,
}

impl Alpn {
    fn of(protocol: Option<&[u8]>) -> Alpn {
        match protocol {
            None => Alpn::Unstated,
            Some(b"http/1.1") => Alpn::Http1,
            Some(b"h2") => Alpn::H2,
            Some(_) => Alpn::Other,
        }
    }
}

/// Why a handshake with a backend failed.
#[derive(Debug, thiserror::Error)]
#[error("TLS handshake: {cause}")]
pub(crate) struct TlsFailure {
    reason: &'static str,
    cause: io::Error,
}

impl TlsFailure {
    /// The backend, dialed for HTTP/2, agreed to `chosen` instead of `h2` by ALPN.
    pub(super) fn not_h2(chosen: Alpn) -> TlsFailure {
        let chosen = match chosen {
            Alpn::Unstated => "no protocol",
            Alpn::Http1 => "http/1.1",
            Alpn::H2 => "h2",
            Alpn::Other => "another protocol",
        };
        TlsFailure {
            reason: "alpn",
            cause: io::Error::other(format!(
                "the backend agreed to {chosen} by ALPN, not h2 (HTTP/2 over TLS is \"protocol\": \"h2\", offered to HTTP/2 servers only)"
            )),
        }
    }

    /// The reason as a fixed word (a metric label): `unknown_issuer`, `expired`,
    /// `name_mismatch`, `bad_certificate`, `refused_by_backend` (it sent an alert, e.g. it
    /// wants a client certificate), `alpn` (an `"h2"` backend that did not agree to h2),
    /// `protocol` or `io`.
    pub(crate) fn reason(&self) -> &'static str {
        self.reason
    }
}

/// Runs the TLS handshake over `tcp` as `tls` says.
pub(super) async fn handshake(tcp: TcpStream, tls: &BackendTls) -> Result<Handshaken, TlsFailure> {
    let connector = TlsConnector::from(std::sync::Arc::clone(&tls.client));
    match connector.connect(tls.server_name.clone(), tcp).await {
        Ok(stream) => {
            let alpn = Alpn::of(stream.get_ref().1.alpn_protocol());
            Ok(Handshaken { stream, alpn })
        }
        Err(cause) => Err(TlsFailure {
            reason: reason(&cause),
            cause,
        }),
    }
}

/// `Some("refused_by_backend")` when `error`, from reading or writing an established TLS
/// connection, is an alert the backend sent: with TLS 1.3 a backend refuses a client
/// certificate (or its absence) only after the client finished its handshake, on the first
/// read.
pub(super) fn late_refusal(error: &io::Error) -> Option<&'static str> {
    let rustls = error.get_ref()?.downcast_ref::<rustls::Error>()?;
    match rustls {
        rustls::Error::AlertReceived(AlertDescription::CloseNotify) => None,
        rustls::Error::AlertReceived(_) => Some("refused_by_backend"),
        _ => None,
    }
}

/// The reason word of a failed handshake (see [`TlsFailure::reason`]).
fn reason(error: &io::Error) -> &'static str {
    let Some(rustls) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return "io";
    };
    match rustls {
        rustls::Error::InvalidCertificate(certificate) => match certificate {
            CertificateError::UnknownIssuer => "unknown_issuer",
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => "expired",
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "name_mismatch"
            }
            _ => "bad_certificate",
        },
        rustls::Error::AlertReceived(AlertDescription::CloseNotify) => "io",
        rustls::Error::AlertReceived(_) => "refused_by_backend",
        _ => "protocol",
    }
}
