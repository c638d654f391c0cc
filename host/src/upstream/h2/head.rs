//! The request head for an HTTP/2 backend, written field by field by the proxy's
//! `write_upstream` (the same fields an HTTP/1.1 backend gets) straight into an HPACK block:
//! no HTTP/1.1 bytes written and parsed back, no header map built and walked again.

use http::header::{HeaderName, HeaderValue};
use http::uri::{self, Authority, PathAndQuery};
use http::{Method, Uri};
use tokio::time::Instant;

use super::client::RequestHead;
use super::{grpc_timeout, scheme};
use crate::http1::Value;
use crate::http2::hpack::Encoder;
use crate::http2::is_connection_specific_name;
use crate::pool::Backend;
use crate::request::UpstreamFields;
use crate::upstream::UpstreamError;

/// A request head for an HTTP/2 backend: method, path, the client's `host` (which becomes
/// `:authority`) and the fields, without those HTTP/2 forbids (RFC 9113 §8.2.2), names in lower
/// case.
#[derive(Debug)]
pub(crate) struct H2Head {
    method: Method,
    path: Option<PathAndQuery>,
    authority: Option<Authority>,
    /// The authority the client named in its target (HTTP/2's `:authority`), which the proxy
    /// passes on as `host`: taken as it is, not parsed again.
    client_authority: Option<Authority>,
    /// The regular fields, HPACK-encoded.
    fields: Vec<u8>,
    /// A `content-type: application/grpc…` came: `te: trailers` goes along.
    grpc: bool,
    /// A `grpc-timeout` came: the time left until the deadline goes instead.
    grpc_timeout: bool,
    /// The first part that cannot go over HTTP/2, if any.
    invalid: Option<&'static str>,
    /// Where [`UpstreamFields::header_with`] puts a value together, and a name is lower-cased.
    scratch: Vec<u8>,
    name: Vec<u8>,
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
            // ~40 bytes a field, and the forwarding fields on top of the client's.
            fields: Vec::with_capacity(40 * (fields + 4)),
            grpc: false,
            grpc_timeout: false,
            invalid,
            scratch: Vec::new(),
            name: Vec::new(),
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
            let mut digits = itoa::Buffer::new();
            Encoder::field(
                &mut self.fields,
                b"content-length",
                digits.format(length).as_bytes(),
                false,
            );
        }
        self
    }

    /// The head to send: `host` as `:authority` (the backend's own when the client's is
    /// missing or not a valid authority), `te: trailers` for a gRPC call (its servers may
    /// require it), and a `grpc-timeout` of the time left until `deadline` (the call's), as the
    /// gRPC spec asks of proxies: the backend does not work on past the time the client waits.
    pub(super) fn into_request(
        mut self,
        backend: &Backend,
        deadline: Instant,
    ) -> Result<RequestHead, UpstreamError> {
        let invalid = |what: &str| UpstreamError::Request(format!("cannot go over HTTP/2: {what}"));
        if let Some(what) = self.invalid {
            return Err(invalid(what));
        }
        if self.grpc_timeout {
            let left = grpc_timeout(deadline);
            Encoder::field(&mut self.fields, b"grpc-timeout", left.as_bytes(), false);
        }
        if self.grpc {
            Encoder::field(&mut self.fields, b"te", b"trailers", false);
        }
        let mut target = uri::Parts::default();
        target.scheme = Some(scheme(backend));
        target.authority = Some(self.authority.unwrap_or_else(|| backend.authority.clone()));
        target.path_and_query = self.path;
        let uri = Uri::from_parts(target).map_err(|_| invalid("the target"))?;
        Ok(RequestHead {
            method: self.method,
            uri,
            fields: self.fields,
        })
    }

    /// `host` becomes the authority: the client's own when it is the one it named.
    fn host(&mut self, value: &[u8]) {
        self.authority = match self.client_authority.take() {
            Some(named) if named.as_str().as_bytes() == value => Some(named),
            _ => Authority::try_from(value).ok(),
        };
    }

    /// Encodes `name: value` (`name` in lower case), unless HTTP/2 forbids it or lbhost writes
    /// it otherwise (`host`, `grpc-timeout`); notes a gRPC call on the way.
    fn append(&mut self, name: &[u8], value: &[u8], sensitive: bool) {
        if name == b"host" {
            self.host(value);
            return;
        }
        if is_connection_specific_name(name) {
            return;
        }
        if name == b"content-type" && value.starts_with(b"application/grpc") {
            self.grpc = true;
        }
        if name == b"grpc-timeout" {
            self.grpc_timeout = true;
            return;
        }
        Encoder::field(&mut self.fields, name, value, sensitive);
    }
}

/// The bytes [`UpstreamFields::header_with`] reserves for a value.
const SCRATCH: usize = 128;

/// What a byte is in a field name: 0 a token character other than an upper-case letter,
/// [`UPPER`] an upper-case letter, [`NOT_TOKEN`] no token character (RFC 9110 §5.6.2).
const NAME_CLASS: [u8; 256] = {
    let mut class = [NOT_TOKEN; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_uppercase() {
            class[b] = UPPER;
        } else if c.is_ascii_alphanumeric() {
            class[b] = 0;
        } else {
            let mut i = 0;
            let specials = b"!#$%&'*+-.^_`|~";
            while i < specials.len() {
                if specials[i] == c {
                    class[b] = 0;
                }
                i += 1;
            }
        }
        b += 1;
    }
    class
};
const UPPER: u8 = 1;
const NOT_TOKEN: u8 = 2;

/// Whether a byte may not be in a field value (RFC 9110 §5.5: controls other than tab, DEL);
/// obs-text is let through, as `HeaderValue` lets it.
const NOT_IN_VALUE: [bool; 256] = {
    let mut not = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        not[b] = b != 0x09;
        b += 1;
    }
    not[0x7f] = true;
    not
};

impl UpstreamFields for H2Head {
    fn header(&mut self, name: &[u8], value: &[u8]) {
        // Table lookups folded without an early exit: a few instructions a byte, where
        // `HeaderName` and `HeaderValue` parsing cost a header map entry and a copy.
        let class = name
            .iter()
            .fold(0, |class, &b| class | NAME_CLASS[usize::from(b)]);
        if name.is_empty() || class & NOT_TOKEN != 0 {
            self.invalid.get_or_insert("a field name");
            return;
        }
        if value
            .iter()
            .fold(false, |not, &b| not | NOT_IN_VALUE[usize::from(b)])
        {
            self.invalid.get_or_insert("a field value");
            return;
        }
        if class & UPPER == 0 {
            self.append(name, value, false);
            return;
        }
        // HTTP/2 wants names in lower case.
        let mut lower = std::mem::take(&mut self.name);
        lower.clear();
        lower.extend(name.iter().map(u8::to_ascii_lowercase));
        self.append(&lower, value, false);
        self.name = lower;
    }

    fn field(&mut self, name: &HeaderName, value: &HeaderValue) {
        self.append(
            name.as_str().as_bytes(),
            value.as_bytes(),
            value.is_sensitive(),
        );
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

    /// The fields of `request`'s HPACK block.
    fn decoded(request: &RequestHead) -> Vec<(String, String)> {
        let mut fields = Vec::new();
        crate::http2::hpack::Decoder::new(4096)
            .decode(&request.fields, &mut |n, v| {
                fields.push((
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                ));
            })
            .unwrap();
        fields
    }

    fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn names_go_in_lower_case_and_bad_names_are_a_clear_error() {
        let mut head = H2Head::new(&Method::GET, &Uri::from_static("/"), 2);
        head.header(b"X-Custom-Name", b"v");
        let request = head
            .finish(&http_body_util::Empty::<bytes::Bytes>::new())
            .into_request(&backend(), Instant::now())
            .unwrap();
        assert_eq!(decoded(&request), [("x-custom-name".into(), "v".into())]);
        let mut head = H2Head::new(&Method::GET, &Uri::from_static("/"), 1);
        head.header(b"bad name", b"v");
        let head = head.finish(&http_body_util::Empty::<bytes::Bytes>::new());
        assert!(head.into_request(&backend(), Instant::now()).is_err());
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
        let request = head.into_request(&backend(), deadline).unwrap();
        assert_eq!(request.uri, "http://api.example:50051/pkg.Svc/Call?x=1");
        assert_eq!(request.method, Method::POST);
        let fields = decoded(&request);
        assert_eq!(field(&fields, "te"), Some("trailers"));
        assert_eq!(
            field(&fields, "content-type"),
            Some("application/grpc+proto")
        );
        assert_eq!(field(&fields, "content-length"), Some("2"));
        assert_eq!(
            field(&fields, "x-forwarded-for"),
            Some("10.0.0.1, 10.0.0.2")
        );
        let left = field(&fields, "grpc-timeout").unwrap();
        let ms: u64 = left.strip_suffix('m').unwrap().parse().unwrap();
        assert!((4_000..=5_000).contains(&ms), "{left}");
        assert_eq!(field(&fields, "connection"), None);
        assert_eq!(field(&fields, "host"), None);
        assert_eq!(fields.len(), 5, "{fields:?}");
    }

    #[test]
    fn without_a_valid_host_the_backend_is_the_authority() {
        let target = Uri::from_static("http://client.example/a");
        let mut head = H2Head::new(&Method::GET, &target, 1);
        head.header(b"host", b"not a host");
        let head = head.finish(&http_body_util::Empty::<bytes::Bytes>::new());
        let request = head.into_request(&backend(), Instant::now()).unwrap();
        assert_eq!(request.uri, "http://127.0.0.1:9/a");
        assert!(decoded(&request).is_empty());
    }

    #[test]
    fn a_bad_field_is_a_clear_error() {
        let mut head = H2Head::new(&Method::GET, &Uri::from_static("/"), 1);
        head.header(b"x-bad", b"a\x01b");
        let head = head.finish(&http_body_util::Empty::<bytes::Bytes>::new());
        let err = head.into_request(&backend(), Instant::now()).unwrap_err();
        assert!(err.to_string().contains("cannot go over HTTP/2"), "{err}");
    }
}
