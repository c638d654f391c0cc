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
}

impl BackendProtocol {
    /// The name written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendProtocol::Http1 => "http1",
            BackendProtocol::H2c => "h2c",
        }
    }
}

/// `backends[i].protocol`: `"http1"` (default) or `"h2c"`.
pub(super) fn backend_protocol(
    i: usize,
    protocol: Option<&str>,
) -> Result<BackendProtocol, ConfigError> {
    match protocol {
        None | Some("http1") => Ok(BackendProtocol::Http1),
        Some("h2c") => Ok(BackendProtocol::H2c),
        Some("h2") => Err(ConfigError::field(
            format!("backends[{i}].protocol"),
            "\"h2\" (HTTP/2 over TLS) is not supported yet; use \"h2c\" for HTTP/2 over cleartext, or \"http1\" for an https:// backend",
        )),
        Some(other) => Err(ConfigError::field(
            format!("backends[{i}].protocol"),
            format!("{other:?} is not a protocol (use \"http1\" or \"h2c\")"),
        )),
    }
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
