//! A client's request head as the proxy and the strategies read it: method, target, version and
//! header fields, however it arrived. An HTTP/1.1 head keeps its fields where they were parsed
//! (spans of the frozen head, no map built); hyper's HTTP/2 server hands over a header map.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{request, Method, Uri, Version};

use crate::http1::{FieldSpans, Span, Value};

/// A client's request head.
#[derive(Debug)]
pub struct ClientHead {
    pub method: Method,
    /// The target: origin form (`/path?query`), or absolute form (HTTP/2's `:authority` and
    /// `:path`, or an HTTP/1.1 absolute-form target).
    pub uri: Uri,
    pub version: Version,
    pub fields: RequestFields,
}

impl ClientHead {
    /// The head of an `http` request (hyper's HTTP/2 server, tests); its header map becomes the
    /// fields, its extensions are dropped.
    pub fn from_parts(parts: request::Parts) -> Self {
        ClientHead {
            method: parts.method,
            uri: parts.uri,
            version: parts.version,
            fields: RequestFields::Map(parts.headers),
        }
    }

    /// `GET /` with no fields.
    pub fn empty() -> Self {
        ClientHead {
            method: Method::GET,
            uri: Uri::from_static("/"),
            version: Version::HTTP_11,
            fields: RequestFields::Map(HeaderMap::new()),
        }
    }
}

/// Where the proxy writes the fields of a request to a backend (`proxy::headers::write_upstream`):
/// an HTTP/1.1 head ([`crate::http1::RequestHeadBuilder`]), or an HTTP/2 backend's HPACK block
/// (`upstream::H2Head`).
pub(crate) trait UpstreamFields {
    /// One field; `name` is a token (any case), `value` a valid field value.
    fn header(&mut self, name: &[u8], value: &[u8]);
    /// One field whose value `write` puts together from pieces.
    fn header_with(&mut self, name: &str, write: impl FnOnce(&mut Value<'_>));
    /// The value of a client's `Transfer-Encoding` (hop-by-hop; its codings go with the framing).
    fn transfer_encoding(&mut self, value: &[u8]);
    /// One of an HTTP/2 client's fields, as its header map holds it (already a lower-case name
    /// and a checked value).
    fn field(&mut self, name: &HeaderName, value: &HeaderValue) {
        self.header(name.as_str().as_bytes(), value.as_bytes());
    }
}

/// A request's header fields, in the order they came. Lookups match names in any case; values are the field values as received (no leading or trailing whitespace).
#[derive(Debug)]
pub enum RequestFields {
    /// The fields of `head`, a frozen HTTP/1.1 request head, at `spans`. Names keep the client's
    /// casing; `httparse` has checked every name is a token and every value free of control
    /// characters, the same rules the `http` types apply.
    Head { head: Bytes, spans: FieldSpans },
    /// An HTTP/2 request's fields (names in lowercase).
    Map(HeaderMap),
}

impl RequestFields {
    /// Every field as its name and its value, in order.
    pub fn iter(&self) -> Iter<'_> {
        match self {
            RequestFields::Head { head, spans } => Iter::Head {
                head,
                spans: spans.as_slice().iter(),
            },
            RequestFields::Map(map) => Iter::Map(map.iter()),
        }
    }

    /// The values of every field named `name`, in order.
    pub fn get_all<'a, 'n>(
        &'a self,
        name: &'n str,
    ) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
        self.iter()
            .filter(move |(n, _)| is_named(n, name))
            .map(|(_, value)| value)
    }

    /// The value of the first field named `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.get_all(name).next()
    }

    /// Whether a field named `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The number of fields.
    pub fn len(&self) -> usize {
        match self {
            RequestFields::Head { spans, .. } => spans.as_slice().len(),
            RequestFields::Map(map) => map.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether the field name `name` is `wanted`, in any case.
pub fn is_named(name: &[u8], wanted: &str) -> bool {
    name.len() == wanted.len() && name.eq_ignore_ascii_case(wanted.as_bytes())
}

/// `value` as text if it is visible ASCII (with spaces and tabs), as
/// [`HeaderValue::to_str`] has it.
pub fn visible_ascii(value: &[u8]) -> Option<&str> {
    if value
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

/// The fields of a [`RequestFields`], in order.
#[derive(Debug)]
pub enum Iter<'a> {
    Head {
        head: &'a [u8],
        spans: std::slice::Iter<'a, (Span, Span)>,
    },
    Map(header::Iter<'a, HeaderValue>),
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Head { head, spans } => spans
                .next()
                .map(|&(name, value)| (name.bytes(head), value.bytes(head))),
            Iter::Map(fields) => fields
                .next()
                .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same fields both ways: parsed from `wire`, and in a header map.
    fn both(wire: &[u8]) -> [RequestFields; 2] {
        let mut slots = [httparse::EMPTY_HEADER; 8];
        let mut parsed = httparse::Request::new(&mut slots);
        assert!(parsed.parse(wire).unwrap().is_complete());
        let spans = FieldSpans::record(wire, parsed.headers);
        let mut map = HeaderMap::new();
        for header in parsed.headers.iter() {
            map.append(
                header::HeaderName::from_bytes(header.name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(header.value).unwrap(),
            );
        }
        let head = RequestFields::Head {
            head: Bytes::copy_from_slice(wire),
            spans,
        };
        [head, RequestFields::Map(map)]
    }

    #[test]
    fn lookups_match_any_case_and_keep_the_order() {
        let wire = b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\n\
                     accept: */*\r\nx-forwarded-for: 2.2.2.2 \r\nCookie: k=\xff\r\n\r\n";
        for fields in both(wire) {
            assert_eq!(fields.len(), 5);
            assert_eq!(fields.get("host"), Some(&b"a"[..]));
            assert!(fields.contains("accept") && !fields.contains("accep"));
            let all: Vec<_> = fields.get_all("x-forwarded-for").collect();
            assert_eq!(all, [&b"1.1.1.1"[..], b"2.2.2.2"]);
            assert_eq!(fields.get("cookie").and_then(visible_ascii), None);
            assert_eq!(fields.get("host").and_then(visible_ascii), Some("a"));
            assert_eq!(fields.iter().count(), 5);
        }
    }

    #[test]
    fn visible_ascii_is_what_header_values_call_text() {
        for value in [
            &b"plain"[..],
            b"tab\there",
            b"",
            b"\x7f",
            b"caf\xc3\xa9",
            b"~ !",
        ] {
            let expected = HeaderValue::from_bytes(value)
                .ok()
                .and_then(|v| v.to_str().ok().map(str::to_string));
            assert_eq!(
                visible_ascii(value).map(str::to_string),
                expected,
                "{value:?}"
            );
        }
    }
}
