//! What lbhost's HTTP/2 server (client connections) and client (backend connections) share: the
//! frame codec ([`frame`]), HPACK ([`hpack`]), the fields HTTP/2 forbids, and `content-length`.

pub(crate) mod frame;
pub(crate) mod hpack;
mod recv_window;

use http::header::{self, HeaderMap, HeaderName};

pub(crate) use recv_window::RecvWindow;

/// Whether `name` is a connection-specific field, which HTTP/2 forbids (RFC 9113 §8.2.2): `te`
/// counts unless its value is `trailers`, which the caller checks.
pub(crate) fn is_connection_specific(name: &HeaderName) -> bool {
    is_connection_specific_name(name.as_str().as_bytes())
}

/// [`is_connection_specific`] for a name in lower case, as bytes.
pub(crate) fn is_connection_specific_name(name: &[u8]) -> bool {
    matches!(
        name,
        b"connection"
            | b"upgrade"
            | b"transfer-encoding"
            | b"te"
            | b"keep-alive"
            | b"proxy-connection"
    )
}

/// Removes the connection-specific fields from a head about to go out over HTTP/2 (h2 refuses
/// a head that has one); `te: trailers` stays.
pub(crate) fn strip_connection_fields(headers: &mut HeaderMap) {
    let found = headers.keys().any(|name| {
        is_connection_specific(name)
            && !(name == header::TE && headers.get_all(header::TE).iter().all(|v| v == "trailers"))
    });
    if !found {
        return;
    }
    for name in [
        header::CONNECTION,
        header::UPGRADE,
        header::TRANSFER_ENCODING,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(name);
    }
    if !headers.get_all(header::TE).iter().all(|v| v == "trailers") {
        headers.remove(header::TE);
    }
}

/// The `content-length` of a head, when it has one valid value (several equal ones count as one).
pub(crate) fn content_length(headers: &HeaderMap) -> Result<Option<u64>, &'static str> {
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for part in value.as_bytes().split(|&b| b == b',') {
            let part = part.trim_ascii();
            let n = std::str::from_utf8(part)
                .ok()
                .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|p| p.parse::<u64>().ok())
                .ok_or("invalid content-length")?;
            if length.is_some_and(|l| l != n) {
                return Err("content-length values disagree");
            }
            length = Some(n);
        }
    }
    Ok(length)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn connection_fields_go_and_te_trailers_stays() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert(header::SERVER, HeaderValue::from_static("x"));
        strip_connection_fields(&mut headers);
        let mut left: Vec<_> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["server", "te"]);

        headers.insert(header::TE, HeaderValue::from_static("gzip"));
        strip_connection_fields(&mut headers);
        let left: Vec<_> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["server"]);
    }

    #[test]
    fn content_lengths_that_agree_give_the_length_and_others_fail() {
        let lengths = |values: &[&'static str]| {
            let mut headers = HeaderMap::new();
            for v in values {
                headers.append(header::CONTENT_LENGTH, HeaderValue::from_static(v));
            }
            content_length(&headers)
        };
        assert_eq!(lengths(&[]), Ok(None));
        assert_eq!(lengths(&["10"]), Ok(Some(10)));
        assert_eq!(lengths(&["10", "10"]), Ok(Some(10)));
        assert_eq!(lengths(&["10, 10"]), Ok(Some(10)));
        assert!(lengths(&["10", "11"]).is_err());
        assert!(lengths(&["+10"]).is_err());
        assert!(lengths(&["10,"]).is_err());
        assert!(lengths(&["99999999999999999999999"]).is_err());
    }
}
