//! A request head or trailer section from the fields HPACK decoded, checked as RFC 9113 §8.2
//! and §8.3.1 ask: the pseudo-fields a request needs, once each and before the rest, names in
//! lower case, no connection-specific field, values without CR, LF, NUL or surrounding
//! whitespace; the whole within `limits.max_header_bytes`.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{request, Method, Request, Version};

/// Why a header section cannot be taken.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Malformed (RFC 9113 §8.1.1): the stream is reset with PROTOCOL_ERROR.
    Malformed(&'static str),
    /// Larger than `limits.max_header_bytes`: answered 431.
    TooLarge,
}

/// Collects one header section's fields.
#[derive(Debug)]
pub(super) struct Section {
    /// Trailers: no pseudo-field at all.
    trailers: bool,
    max: usize,
    /// What RFC 7541 §4.1 counts: name + value + 32 a field.
    size: usize,
    method: Option<Method>,
    scheme: Option<Scheme>,
    authority: Option<Authority>,
    path: Option<PathAndQuery>,
    headers: HeaderMap,
    regular_seen: bool,
    error: Option<Refusal>,
}

impl Section {
    /// A section of at most `max` bytes as HPACK counts them.
    pub(super) fn new(trailers: bool, max: usize) -> Self {
        Section {
            trailers,
            max,
            size: 0,
            method: None,
            scheme: None,
            authority: None,
            path: None,
            headers: HeaderMap::new(),
            regular_seen: false,
            error: None,
        }
    }

    /// Takes one field; the first fault is kept and the rest ignored.
    pub(super) fn field(&mut self, name: &[u8], value: &[u8]) {
        if self.error.is_some() {
            return;
        }
        self.size += name.len() + value.len() + 32;
        if self.size > self.max {
            self.error = Some(Refusal::TooLarge);
            return;
        }
        if let Err(e) = self.take(name, value) {
            self.error = Some(Refusal::Malformed(e));
        }
    }

    fn take(&mut self, name: &[u8], value: &[u8]) -> Result<(), &'static str> {
        if value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
            return Err("CR, LF or NUL in a field value");
        }
        if let Some(pseudo) = name.strip_prefix(b":") {
            if self.trailers {
                return Err("pseudo-field in trailers");
            }
            if self.regular_seen {
                return Err("pseudo-field after a regular field");
            }
            return self.pseudo(pseudo, value);
        }
        self.regular_seen = true;
        if name.iter().any(u8::is_ascii_uppercase) {
            return Err("field name in upper case");
        }
        if matches!(value.first(), Some(b' ' | b'\t')) || matches!(value.last(), Some(b' ' | b'\t'))
        {
            return Err("whitespace around a field value");
        }
        let name = HeaderName::from_bytes(name).map_err(|_| "invalid field name")?;
        if crate::http2::is_connection_specific(&name)
            && !(name == http::header::TE && value == b"trailers")
        {
            return Err("connection-specific field");
        }
        let value = HeaderValue::from_bytes(value).map_err(|_| "invalid field value")?;
        self.headers.append(name, value);
        Ok(())
    }

    fn pseudo(&mut self, name: &[u8], value: &[u8]) -> Result<(), &'static str> {
        match name {
            b"method" if self.method.is_none() => {
                self.method = Some(Method::from_bytes(value).map_err(|_| "invalid :method")?);
            }
            b"scheme" if self.scheme.is_none() => {
                self.scheme = Some(Scheme::try_from(value).map_err(|_| "invalid :scheme")?);
            }
            b"authority" if self.authority.is_none() => {
                if value.contains(&b'@') {
                    return Err(":authority with userinfo");
                }
                self.authority = Some(
                    Authority::from_maybe_shared(Bytes::copy_from_slice(value))
                        .map_err(|_| "invalid :authority")?,
                );
            }
            b"path" if self.path.is_none() => {
                if value.is_empty() {
                    return Err("empty :path");
                }
                self.path = Some(
                    PathAndQuery::from_maybe_shared(Bytes::copy_from_slice(value))
                        .map_err(|_| "invalid :path")?,
                );
            }
            b"method" | b"scheme" | b"authority" | b"path" => {
                return Err("a pseudo-field twice");
            }
            _ => return Err("unknown pseudo-field"),
        }
        Ok(())
    }

    /// The request's head and its `content-length` (if it has one), or why there is none.
    pub(super) fn into_request(self) -> Result<(request::Parts, Option<u64>), Refusal> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let method = self.method.ok_or(Refusal::Malformed("no :method"))?;
        let uri = if method == Method::CONNECT {
            // RFC 9113 §8.5: `:authority` only.
            if self.scheme.is_some() || self.path.is_some() {
                return Err(Refusal::Malformed(":scheme or :path in a CONNECT"));
            }
            let authority = self
                .authority
                .ok_or(Refusal::Malformed("CONNECT without :authority"))?;
            Uri::from(authority)
        } else {
            let scheme = self.scheme.ok_or(Refusal::Malformed("no :scheme"))?;
            let path = self.path.ok_or(Refusal::Malformed("no :path"))?;
            if path.as_str() == "*" && method != Method::OPTIONS {
                return Err(Refusal::Malformed(
                    ":path * for a method other than OPTIONS",
                ));
            }
            if !path.as_str().starts_with('/') && path.as_str() != "*" {
                return Err(Refusal::Malformed(":path neither absolute nor *"));
            }
            let mut parts = http::uri::Parts::default();
            if let Some(authority) = self.authority {
                parts.scheme = Some(scheme);
                parts.authority = Some(authority);
            }
            parts.path_and_query = Some(path);
            Uri::from_parts(parts).map_err(|_| Refusal::Malformed("invalid request target"))?
        };
        let length = crate::http2::content_length(&self.headers).map_err(Refusal::Malformed)?;
        let (mut parts, ()) = Request::new(()).into_parts();
        parts.method = method;
        parts.uri = uri;
        parts.version = Version::HTTP_2;
        parts.headers = self.headers;
        Ok((parts, length))
    }

    /// The trailer section's fields.
    pub(super) fn into_trailers(self) -> Result<HeaderMap, Refusal> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.headers),
        }
    }
}

/// What a request head of `fields` comes to (for the fuzzing harness, `crate::fuzz`): the
/// request's method, target and field count, or why it was refused.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn outcome(fields: &[(Vec<u8>, Vec<u8>)], max: usize) -> String {
    let mut section = Section::new(false, max);
    for (name, value) in fields {
        section.field(name, value);
    }
    match section.into_request() {
        Ok((parts, _)) => {
            assert!(parts.headers.len() <= fields.len());
            format!("{} {} {}", parts.method, parts.uri, parts.headers.len())
        }
        Err(refusal) => format!("{refusal:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(fields: &[(&str, &str)]) -> Result<request::Parts, Refusal> {
        let mut section = Section::new(false, 4096);
        for (n, v) in fields {
            section.field(n.as_bytes(), v.as_bytes());
        }
        section.into_request().map(|(parts, _)| parts)
    }

    const GET: [(&str, &str); 4] = [
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "example.com"),
        (":path", "/a?b"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        GET.iter().chain(extra).copied().collect()
    }

    #[test]
    fn a_request_has_its_pseudo_fields_once_and_first() {
        let parts = request(&with(&[("user-agent", "x")])).unwrap();
        assert_eq!(parts.method, Method::GET);
        assert_eq!(parts.uri, "https://example.com/a?b");
        assert_eq!(parts.version, Version::HTTP_2);
        assert_eq!(parts.headers["user-agent"], "x");
        let no_authority = request(&[(":method", "GET"), (":scheme", "http"), (":path", "/")]);
        assert_eq!(no_authority.unwrap().uri, "/");

        let malformed = |fields: &[(&'static str, &'static str)]| {
            assert!(
                matches!(request(fields), Err(Refusal::Malformed(_))),
                "{fields:?}"
            );
        };
        malformed(&GET[1..]);
        malformed(&[GET[0], GET[1], GET[2]]);
        malformed(&[GET[0], GET[2], GET[3]]);
        malformed(&with(&[(":method", "GET")]));
        malformed(&with(&[(":foo", "x")]));
        malformed(&[GET[0], GET[1], ("x", "y"), GET[2], GET[3]]);
        malformed(&with(&[("User-Agent", "x")]));
        malformed(&with(&[("connection", "keep-alive")]));
        malformed(&with(&[("te", "gzip")]));
        malformed(&with(&[("x", " padded")]));
        malformed(&with(&[("x", "a\nb")]));
        malformed(&with(&[("content-length", "ten")]));
        malformed(&[GET[0], GET[1], GET[2], (":path", "")]);
        malformed(&[GET[0], GET[1], GET[2], (":path", "*")]);
        malformed(&[GET[0], GET[1], (":authority", "u@example.com"), GET[3]]);
        assert!(request(&with(&[("te", "trailers")])).is_ok());
    }

    #[test]
    fn connect_names_only_an_authority() {
        let parts = request(&[(":method", "CONNECT"), (":authority", "example.com:443")]).unwrap();
        assert_eq!(parts.method, Method::CONNECT);
        assert!(request(&[(":method", "CONNECT")]).is_err());
        assert!(request(&[
            (":method", "CONNECT"),
            (":authority", "example.com:443"),
            (":path", "/")
        ])
        .is_err());
    }

    #[test]
    fn a_head_over_the_limit_is_too_large_and_trailers_have_no_pseudo_field() {
        let big = "v".repeat(5000);
        let mut section = Section::new(false, 4096);
        for (n, v) in GET {
            section.field(n.as_bytes(), v.as_bytes());
        }
        section.field(b"x", big.as_bytes());
        assert_eq!(section.into_request().unwrap_err(), Refusal::TooLarge);

        let mut trailers = Section::new(true, 4096);
        trailers.field(b"x-checksum", b"1");
        assert_eq!(trailers.into_trailers().unwrap()["x-checksum"], "1");
        let mut trailers = Section::new(true, 4096);
        trailers.field(b":path", b"/");
        assert!(trailers.into_trailers().is_err());
    }
}
