//! The protocol lbhost speaks to a backend (`backends[].protocol`), and the `grpc` settings.

use super::file::FileGrpc;
use super::ConfigError;

/// The protocol spoken to a backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendProtocol {
    /// HTTP/1.1 with keep-alive (the default).
    #[default]
    Http1,
    /// HTTP/2 over cleartext TCP ("prior knowledge", no upgrade): requests are multiplexed on a
    /// few connections per backend and worker.
    H2c,
    /// HTTP/2 over TLS (an `https://` backend), agreed by ALPN; multiplexed as h2c.
    H2,
}

impl BackendProtocol {
    /// The name written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendProtocol::Http1 => "http1",
            BackendProtocol::H2c => "h2c",
            BackendProtocol::H2 => "h2",
        }
    }

    /// Whether requests go over HTTP/2 (h2c or h2).
    pub fn is_http2(self) -> bool {
        matches!(self, BackendProtocol::H2c | BackendProtocol::H2)
    }
}

/// `backends[i].protocol`: `"http1"` (default), `"h2c"` or `"h2"`; whether it fits the URL's
/// scheme is checked by the caller ([`for_scheme`]).
pub(super) fn backend_protocol(
    i: usize,
    protocol: Option<&str>,
) -> Result<BackendProtocol, ConfigError> {
    match protocol {
        None | Some("http1") => Ok(BackendProtocol::Http1),
        Some("h2c") => Ok(BackendProtocol::H2c),
        Some("h2") => Ok(BackendProtocol::H2),
        Some(other) => Err(ConfigError::field(
            format!("backends[{i}].protocol"),
            format!("{other:?} is not a protocol (use \"http1\", \"h2c\" or \"h2\")"),
        )),
    }
}

/// `protocol` if it can be spoken to a backend whose URL is `https://` (`secure`) or `http://`:
/// h2c is cleartext and h2 is TLS.
pub(super) fn for_scheme(
    i: usize,
    protocol: BackendProtocol,
    secure: bool,
) -> Result<BackendProtocol, ConfigError> {
    let wrong = match (protocol, secure) {
        (BackendProtocol::H2c, true) => "\"h2c\" is HTTP/2 over cleartext TCP: an https:// backend speaks \"h2\" (HTTP/2 over TLS) or \"http1\"",
        (BackendProtocol::H2, false) => "\"h2\" is HTTP/2 over TLS: an http:// backend speaks \"h2c\" (HTTP/2 over cleartext) or \"http1\"",
        _ => return Ok(protocol),
    };
    Err(ConfigError::field(format!("backends[{i}].protocol"), wrong))
}

/// gRPC codes (UNAVAILABLE 14 and INTERNAL 13) that count against a backend by default.
pub(super) const DEFAULT_GRPC_FAILURE_CODES: [u32; 2] = [13, 14];

/// How lbhost treats gRPC calls (requests with `content-type: application/grpc*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrpcConfig {
    /// The `grpc-status` codes that count as a backend's failure for passive health and circuit
    /// breakers (default 13 INTERNAL and 14 UNAVAILABLE); other codes are answers.
    pub failure_codes: Vec<u32>,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            failure_codes: DEFAULT_GRPC_FAILURE_CODES.to_vec(),
        }
    }
}

/// Validates `grpc`.
pub(super) fn grpc(file: Option<FileGrpc>) -> Result<GrpcConfig, ConfigError> {
    let Some(file) = file else {
        return Ok(GrpcConfig::default());
    };
    let failure_codes = file
        .failure_codes
        .unwrap_or_else(|| DEFAULT_GRPC_FAILURE_CODES.to_vec());
    if let Some(bad) = failure_codes.iter().find(|&&c| c == 0 || c > 16) {
        return Err(ConfigError::field(
            "grpc.failure_codes",
            format!("{bad} is not a gRPC error code (1-16)"),
        ));
    }
    Ok(GrpcConfig { failure_codes })
}

/// `health_check.service` (gRPC probes only): a service name of at most 256 visible ASCII
/// characters; absent or empty asks about the whole server.
pub(super) fn grpc_service(service: Option<String>) -> Result<String, ConfigError> {
    let service = service.unwrap_or_default();
    if service.len() > 256 || !service.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::field(
            "health_check.service",
            "must be a gRPC service name of at most 256 visible ASCII characters",
        ));
    }
    Ok(service)
}
