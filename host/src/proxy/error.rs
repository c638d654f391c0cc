//! Errors the proxy answers itself, each with its status and a short body without internals.

use http::{header, Response, StatusCode};

use super::response_body::ProxyBody;

/// A request lbhost could not forward. `Display` is for logs; clients see only [`Self::response`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    /// No backend is eligible, or the strategy chose none.
    #[error("no backend available")]
    NoBackend,
    /// The backend failed (refused, reset, or sent garbage) before a response head.
    #[error("backend {backend} failed: {cause}")]
    Backend { backend: String, cause: String },
    /// The backend did not send a response head within `timeouts.response_header`.
    #[error("backend {backend} timed out waiting for the response head")]
    Timeout { backend: String },
    /// The client's request body failed while it was being sent (malformed chunked framing,
    /// or the client went away): the client's fault, not the backend's.
    #[error("{0}")]
    ClientBody(String),
}

impl ProxyError {
    /// The status the client gets.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoBackend => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Backend { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::ClientBody(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// The response the client gets: the status and its reason phrase, nothing internal.
    pub(crate) fn response(&self) -> Response<ProxyBody> {
        local_response(self.status())
    }
}

/// A short plain-text response for `status`.
pub(crate) fn local_response(status: StatusCode) -> Response<ProxyBody> {
    let text = format!(
        "{} {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("error")
    );
    let mut response = Response::new(ProxyBody::local(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
