//! The request head for an HTTP/2 backend, written field by field straight into a header map by
//! the proxy's `write_upstream` (the same fields an HTTP/1.1 backend gets), with no HTTP/1.1
//! bytes written and parsed back on the way.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{self, Authority, PathAndQuery};
use http::{Method, Request, Uri, Version};
use tokio::time::Instant;

use super::{grpc_timeout, scheme};
use crate::http1::Value;
use crate::http2::is_connection_specific;
use crate::pool::Backend;
use crate::request::UpstreamFields;
use crate::upstream::UpstreamError;

/// A request head for an HTTP/2 backend: method, path, the client's `host` (which becomes
/// `:authority`) and the fields, without those HTTP/2 forbids (RFC 9113 §8.2.2).
#[derive(Debug)]
pub(crate) struct H2Head {
    method: Method,
    path: Option<PathAndQuery>,
    authority: Option<Authority>,
    /// The authority the client named in its target (HTTP/2's `:authority`), which the proxy
    /// passes on as `host`: taken as it is, not parsed again.
    client_authority: Option<Authority>,
    headers: HeaderMap,
    /// A `content-type: application/grpc…` came: `te: trailers` goes along.
    grpc: bool,
    /// A `grpc-timeout` came: the time left until the deadline goes instead.
    grpc_timeout: bool,
    /// The first part that cannot go over HTTP/2, if any.
    invalid: Option<&'static str>,
    /// Where [`UpstreamFields::header_with`] puts a value together.
    scratch: Vec<u8>,
}

impl H2Head {
    /// The head of a request for `target` (its path and query: `/` when it has none, a leading
    /// `/` added as for HTTP/1.1's origin form), with room for `fields` fields.
    pub(crate) fn new(method: &Method, target: &Uri, fields: usize) -> Self {
        let mut invalid = None;
        let path = match target.path_and_query() {
            None => Some(PathAndQuery::from_static("/")),
            Some(p) if p.as_str().starts_with('/') || p.as_str() == "*" => Some(p.clone()),
            Some(p) => PathAndQuery::try_from(format!("/{}", p.as_str()))
                .inspect_err(|_| invalid = Some("the target"))
                .ok(),
        };
        H2Head {
            method: method.clone(),
            path,
            authority: None,
            client_authority: target.authority().cloned(),
            // The forwarding fields come on top of the client's.
            headers: HeaderMap::with_capacity(fields + 4),
            grpc: false,
            grpc_timeout: false,
            invalid,
            scratch: Vec::new(),
        }
    }

    /// The head with the length its body has, as an HTTP/1.1 head says it: `0` for an empty
    /// `POST`, `PUT` or `PATCH`, the exact size when the body knows it.
    pub(crate) fn finish<B: http_body::Body>(mut self, body: &B) -> Self {
        let length = if body.is_end_stream() {
            matches!(self.method, Method::POST | Method::PUT | Method::PATCH).then_some(0)
        } else {
            body.size_hint().exact()
        };
        if let Some(length) = length {
            self.headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        }
        self
    }

    /// The `http` request head: `host` as `:authority` (the backend's own when the client's is
    /// missing or not a valid authority), `te: trailers` for a gRPC call (its servers may
    /// require it), and a `grpc-timeout` of the time left until `deadline` (the call's), as the
    /// gRPC spec asks of proxies: the backend does not work on past the time the client waits.
    pub(super) fn into_parts(
        mut self,
        backend: &Backend,
        deadline: Instant,
    ) -> Result<http::request::Parts, UpstreamError> {
        let invalid = |what: &str| UpstreamError::Request(format!("cannot go over HTTP/2: {what}"));
        if let Some(what) = self.invalid {
            return Err(invalid(what));
        }
        if self.grpc_timeout {
            self.headers.insert(GRPC_TIMEOUT, grpc_timeout(deadline));
        }
        if self.grpc {
            self.headers
                .insert(header::TE, HeaderValue::from_static("trailers"));
        }
        let mut target = uri::Parts::default();
        target.scheme = Some(scheme(backend));
        target.authority = Some(self.authority.unwrap_or_else(|| backend.authority.clone()));
        target.path_and_query = self.path;
        let uri = Uri::from_parts(target).map_err(|_| invalid("the target"))?;
        let (mut parts, ()) = Request::new(()).into_parts();
        parts.method = self.method;
        parts.uri = uri;
        parts.version = Version::HTTP_2;
        parts.headers = self.headers;
        Ok(parts)
    }
}

/// The bytes [`UpstreamFields::header_with`] reserves for a value.
const SCRATCH: usize = 128;

const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// The names the proxy writes itself, without parsing them (`x-forwarded-*` are no standard
/// names: parsed, each would be a copy on the heap).
fn proxy_name(name: &[u8]) -> Option<HeaderName> {
    const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
    const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
    const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
    Some(match name {
        b"host" => header::HOST,
        b"x-forwarded-for" => X_FORWARDED_FOR,
        b"x-forwarded-proto" => X_FORWARDED_PROTO,
        b"x-forwarded-host" => X_FORWARDED_HOST,
        b"forwarded" => header::FORWARDED,
        _ => return None,
    })
}

impl H2Head {
    /// `host` becomes the authority: the client's own when it is the one it named.
    fn host(&mut self, value: &[u8]) {
        self.authority = match self.client_authority.take() {
            Some(named) if named.as_str().as_bytes() == value => Some(named),
            _ => Authority::try_from(value).ok(),
        };
    }

    /// Whether the field `name: value` goes into the map as it is; notes a gRPC call and its
    /// `grpc-timeout` (replaced by the time left) on the way.
    fn keeps(&mut self, name: &HeaderName, value: &[u8]) -> bool {
        if is_connection_specific(name) {
            return false;
        }
        if name == header::CONTENT_TYPE && value.starts_with(b"application/grpc") {
            self.grpc = true;
        }
        if name == GRPC_TIMEOUT {
            self.grpc_timeout = true;
            return false;
        }
        true
    }
}

impl UpstreamFields for H2Head {
    fn header(&mut self, name: &[u8], value: &[u8]) {
        let name = match proxy_name(name).map_or_else(|| HeaderName::from_bytes(name), Ok) {
            Ok(name) => name,
            Err(_) => {
                self.invalid.get_or_insert("a field name");
                return;
            }
        };
        if name == header::HOST {
            self.host(value);
            return;
        }
        if !self.keeps(&name, value) {
            return;
        }
        // `x-forwarded-proto`'s values without a copy on the heap.
        let value = match value {
            b"http" => Ok(HeaderValue::from_static("http")),
            b"https" => Ok(HeaderValue::from_static("https")),
            _ => HeaderValue::from_bytes(value),
        };
        match value {
            Ok(value) => {
                self.headers.append(name, value);
            }
            Err(_) => {
                self.invalid.get_or_insert("a field value");
            }
        }
    }

    fn field(&mut self, name: &HeaderName, value: &HeaderValue) {
        if name == header::HOST {
            self.host(value.as_bytes());
            return;
        }
        if self.keeps(name, value.as_bytes()) {
            self.headers.append(name.clone(), value.clone());
        }
    }

    fn header_with(&mut self, name: &str, write: impl FnOnce(&mut Value<'_>)) {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        // Room for a `forwarded` value at once, not grown piece by piece.
        scratch.reserve(SCRATCH);
        write(&mut Value::new(&mut scratch));
        self.header(name.as_bytes(), &scratch);
        self.scratch = scratch;
    }

    /// The body goes in DATA frames: no transfer codings.
    fn transfer_encoding(&mut self, _value: &[u8]) {}
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::BackendConfig;

    fn backend() -> Backend {
        Backend::new(&BackendConfig {
            address: "127.0.0.1:9".into(),
            weight: 1,
            labels: Vec::new(),
            protocol: crate::config::BackendProtocol::H2c,
            tls: None,
        })
    }

    #[test]
    fn the_head_loses_its_connection_fields_and_gains_te_for_grpc() {
        let target = Uri::from_static("/pkg.Svc/Call?x=1");
        let mut head = H2Head::new(&Method::POST, &target, 4);
        head.header(b"Content-Type", b"application/grpc+proto");
        head.header(b"host", b"api.example:50051");
        head.header(b"connection", b"upgrade");
        head.header(b"grpc-timeout", b"5S");
        head.header_with("x-forwarded-for", |v| {
            v.push(b"10.0.0.1, ");
            v.push(b"10.0.0.2");
        });
        let head = head.finish(&http_body_util::Full::new(bytes::Bytes::from("xy")));
        let deadline = Instant::now() + Duration::from_secs(5);
        let parts = head.into_parts(&backend(), deadline).unwrap();
        assert_eq!(parts.uri, "http://api.example:50051/pkg.Svc/Call?x=1");
        assert_eq!(parts.method, Method::POST);
        assert_eq!(parts.version, Version::HTTP_2);
        assert_eq!(parts.headers["te"], "trailers");
        assert_eq!(parts.headers["content-type"], "application/grpc+proto");
        assert_eq!(parts.headers["content-length"], "2");
        assert_eq!(parts.headers["x-forwarded-for"], "10.0.0.1, 10.0.0.2");
        let left = parts.headers["grpc-timeout"].to_str().unwrap();
        let ms: u64 = left.strip_suffix('m').unwrap().parse().unwrap();
        assert!((4_000..=5_000).contains(&ms), "{left}");
        assert!(!parts.headers.contains_key("connection"));
        assert!(!parts.headers.contains_key("host"));
    }

    #[test]
    fn without_a_valid_host_the_backend_is_the_authority() {
        let target = Uri::from_static("http://client.example/a");
        let mut head = H2Head::new(&Method::GET, &target, 1);
        head.header(b"host", b"not a host");
        let head = head.finish(&http_body_util::Empty::<bytes::Bytes>::new());
        let parts = head.into_parts(&backend(), Instant::now()).unwrap();
        assert_eq!(parts.uri, "http://127.0.0.1:9/a");
        assert!(!parts.headers.contains_key("content-length"));
        assert!(!parts.headers.contains_key("te"));
    }

    #[test]
    fn a_bad_field_is_a_clear_error() {
        let mut head = H2Head::new(&Method::GET, &Uri::from_static("/"), 1);
        head.header(b"x-bad", b"a\x01b");
        let head = head.finish(&http_body_util::Empty::<bytes::Bytes>::new());
        let err = head.into_parts(&backend(), Instant::now()).unwrap_err();
        assert!(err.to_string().contains("cannot go over HTTP/2"), "{err}");
    }
}
