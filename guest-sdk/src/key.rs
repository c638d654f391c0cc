//! Where a hashing strategy takes its key from: the `"key"` parameter's syntax and extraction.

use std::fmt;
use std::str::FromStr;

use crate::hash::fnv1a64;
use crate::Request;

/// Which part of a request a hashing strategy hashes: the value of `strategy_config.key`.
///
/// | text | key |
/// | --- | --- |
/// | `client_ip` | the client's address (resolved through trusted proxies, never spoofable) |
/// | `header:NAME` | the first value of header `NAME` (case-insensitive) |
/// | `cookie:NAME` | the value of cookie `NAME` |
/// | `query:NAME` | the first value of query parameter `NAME`, as sent (not percent-decoded) |
/// | `path` | the path, without the query |
///
/// A header, cookie or query parameter that is absent or empty is *missing*: [`KeySource::hash`]
/// answers `None` and the strategy decides what to do (a fallback). The client IP and the path
/// are never missing. The same value gives the same hash on every node, whatever its source.
///
/// ```
/// use lbhost_sdk::KeySource;
/// let key: KeySource = "header:X-User".parse().unwrap();
/// assert_eq!(key, KeySource::Header("x-user".into()));
/// assert!("header:".parse::<KeySource>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// The client's address.
    ClientIp,
    /// A header, by its name in lower case.
    Header(String),
    /// A cookie, by its name (case-sensitive, as cookies are).
    Cookie(String),
    /// A query parameter, by its name (case-sensitive).
    Query(String),
    /// The path without the query.
    Path,
}

/// What `"key"` accepts, for error messages.
const EXPECTED: &str = "expected client_ip, path, header:NAME, cookie:NAME or query:NAME";

impl FromStr for KeySource {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "client_ip" => return Ok(KeySource::ClientIp),
            "path" => return Ok(KeySource::Path),
            _ => {}
        }
        let Some((kind, name)) = text.split_once(':') else {
            return Err(EXPECTED.to_string());
        };
        if name.is_empty() {
            return Err(format!("{kind}: needs a name after the colon ({EXPECTED})"));
        }
        match kind {
            "header" if name.bytes().all(is_token_byte) => {
                Ok(KeySource::Header(name.to_ascii_lowercase()))
            }
            "header" => Err(format!("{name:?} is not a valid header name")),
            "cookie" if name.bytes().all(is_token_byte) => Ok(KeySource::Cookie(name.to_string())),
            "cookie" => Err(format!("{name:?} is not a valid cookie name")),
            "query" if !name.contains(['&', '=', '#']) => Ok(KeySource::Query(name.to_string())),
            "query" => Err(format!("{name:?} is not a query parameter name")),
            _ => Err(EXPECTED.to_string()),
        }
    }
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::ClientIp => f.write_str("client_ip"),
            KeySource::Header(name) => write!(f, "header:{name}"),
            KeySource::Cookie(name) => write!(f, "cookie:{name}"),
            KeySource::Query(name) => write!(f, "query:{name}"),
            KeySource::Path => f.write_str("path"),
        }
    }
}

impl KeySource {
    /// A stable 64-bit hash of this request's key, or `None` when the key is missing (see the
    /// type's documentation). Reads from the request only the one field it needs.
    pub fn hash(&self, request: &Request<'_>) -> Option<u64> {
        match self {
            KeySource::ClientIp => Some(request.client_ip_hash()),
            KeySource::Header(name) => non_empty(request.header(name)),
            KeySource::Cookie(name) => non_empty(request.cookie(name)),
            KeySource::Query(name) => {
                let query = request.query()?;
                non_empty(query_value(&query, name).map(str::to_string))
            }
            KeySource::Path => Some(fnv1a64(request.path().as_bytes())),
        }
    }

    /// Whether every request has this key (client IP and path do; the others may be missing).
    pub fn always_present(&self) -> bool {
        matches!(self, KeySource::ClientIp | KeySource::Path)
    }
}

fn non_empty(value: Option<String>) -> Option<u64> {
    value
        .filter(|v| !v.is_empty())
        .map(|v| fnv1a64(v.as_bytes()))
}

/// The first value of parameter `name` in `query` (`a=1&b=2`), as written. A parameter without
/// `=` has the empty value.
pub fn query_value<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// RFC 9110 `tchar`: what a header or cookie name may be made of.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::ip_key;
    use crate::testing::TestRequest;

    #[test]
    fn every_form_parses_and_prints_back() {
        for text in [
            "client_ip",
            "path",
            "header:x-user",
            "cookie:session",
            "query:id",
        ] {
            let key: KeySource = text.parse().unwrap();
            assert_eq!(key.to_string(), text);
        }
        assert_eq!(
            "header:X-User".parse::<KeySource>(),
            Ok(KeySource::Header("x-user".into()))
        );
        assert_eq!(
            "cookie:SID".parse::<KeySource>(),
            Ok(KeySource::Cookie("SID".into()))
        );
    }

    #[test]
    fn bad_forms_say_what_is_expected() {
        for text in [
            "",
            "ip",
            "header",
            "header:",
            "cookie:a b",
            "query:a=b",
            "body:x",
        ] {
            let err = text.parse::<KeySource>().unwrap_err();
            assert!(!err.is_empty(), "{text:?}");
        }
        assert!("ip".parse::<KeySource>().unwrap_err().contains("client_ip"));
        assert!("header:".parse::<KeySource>().unwrap_err().contains("name"));
    }

    #[test]
    fn extraction_reads_the_named_part_and_treats_empty_as_missing() {
        let request = TestRequest::default()
            .with_header("X-User", "alice")
            .with_cookie("sid", "s1")
            .with_path("/a/b")
            .with_query("x=1&id=42&id=43&flag");
        let fields = Default::default();
        let req = crate::Request::test(&request, &fields);
        let hash = |text: &str| text.parse::<KeySource>().unwrap().hash(&req);
        assert_eq!(hash("header:x-user"), Some(fnv1a64(b"alice")));
        assert_eq!(hash("cookie:sid"), Some(fnv1a64(b"s1")));
        assert_eq!(hash("query:id"), Some(fnv1a64(b"42")));
        assert_eq!(hash("path"), Some(fnv1a64(b"/a/b")));
        assert_eq!(hash("client_ip"), Some(ip_key(request.client_ip)));
        assert_eq!(hash("header:x-other"), None);
        assert_eq!(hash("cookie:SID"), None);
        assert_eq!(hash("query:flag"), None, "an empty value is missing");
        assert_eq!(hash("query:nope"), None);
        let no_query = TestRequest::default();
        let req = crate::Request::test(&no_query, &fields);
        assert_eq!("query:id".parse::<KeySource>().unwrap().hash(&req), None);
    }

    #[test]
    fn query_values_are_taken_as_written() {
        assert_eq!(query_value("a=1&b=2", "b"), Some("2"));
        assert_eq!(query_value("a=x%20y", "a"), Some("x%20y"));
        assert_eq!(query_value("a", "a"), Some(""));
        assert_eq!(query_value("ab=1", "a"), None);
        assert_eq!(query_value("", "a"), None);
    }
}
