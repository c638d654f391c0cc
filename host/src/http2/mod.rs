//! What lbhost's HTTP/2 server (client connections) and client (backend connections) share, on
//! the h2 crate: a stream's incoming body ([`RecvBody`]), an outgoing body sent as the peer's
//! window opens ([`SendBody`]), keep-alive PINGs ([`KeepAlive`]), and the fields HTTP/2 forbids.

pub(crate) mod frame;
pub(crate) mod hpack;
mod keep_alive;
mod recv_body;
mod send_body;

use http::header::{self, HeaderMap, HeaderName};

pub(crate) use keep_alive::KeepAlive;
pub(crate) use recv_body::RecvBody;
pub(crate) use send_body::SendBody;

/// Whether `name` is a connection-specific field, which HTTP/2 forbids (RFC 9113 §8.2.2): `te`
/// counts unless its value is `trailers`, which the caller checks.
pub(crate) fn is_connection_specific(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::UPGRADE
        || name == header::TRANSFER_ENCODING
        || name == header::TE
        || matches!(name.as_str(), "keep-alive" | "proxy-connection")
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
}
