//! The response head lbhost writes to an HTTP/1.1 client: status line, the fields (a local map
//! and a backend's raw ones), `date`, the framing its body goes out with and the connection's
//! fate.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{StatusCode, Version};

use super::{Exchange, RawFields};

/// How the body goes out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ResponseFraming {
    /// No body may follow (HEAD, 1xx, 204, 304).
    None,
    Length(u64),
    Chunked,
    /// Until the connection closes (HTTP/1.0 clients, size unknown).
    Close,
}

/// The status line and the headers (those of the map, then the backend's `raw` ones), with
/// `date`, the framing and the connection's fate.
pub(crate) fn encode_response_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    raw: &RawFields,
    framing: ResponseFraming,
    close: bool,
    exchange: &Exchange,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    // The framing written below replaces the one the headers may carry (a backend's chunked
    // body can go out with a length, and the other way round); without a body they stay.
    let reframed = framing != ResponseFraming::None;
    for (name, value) in headers {
        if reframed && (name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING) {
            continue;
        }
        field(out, name.as_str(), value.as_bytes());
    }
    // (A backend's `Transfer-Encoding` is not among the fields: it is hop-by-hop. Its codings
    // other than chunked are written with the framing below.)
    raw.write(out, !reframed);
    if !raw.has_date() && !headers.contains_key(header::DATE) {
        out.extend_from_slice(b"date: ");
        date(out);
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        ResponseFraming::Length(length) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(length).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        ResponseFraming::Chunked => match raw.transfer_codings() {
            None => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
            Some(codings) => {
                out.extend_from_slice(b"transfer-encoding: ");
                out.extend_from_slice(codings);
                out.extend_from_slice(b", chunked\r\n");
            }
        },
        ResponseFraming::None | ResponseFraming::Close => {}
    }
    if status == StatusCode::SWITCHING_PROTOCOLS {
        // The upgrade's own `connection: upgrade` is among the headers.
    } else if close {
        out.extend_from_slice(b"connection: close\r\n");
    } else if exchange.version == Version::HTTP_10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

pub(crate) fn encode_fields(out: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        field(out, name.as_str(), value.as_bytes());
    }
}

fn field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

thread_local! {
    /// The `date` value, formatted once per second per worker.
    static DATE: RefCell<(u64, Bytes)> = const { RefCell::new((0, Bytes::new())) };
}

/// Appends the current time as an HTTP date.
fn date(out: &mut Vec<u8>) {
    with_date(|text| out.extend_from_slice(text));
}

/// The current time as an HTTP date, for a `date` field (always ASCII: never `None`).
pub(crate) fn date_value() -> Option<HeaderValue> {
    with_date(|text| HeaderValue::from_maybe_shared(text.clone()).ok())
}

/// `use_date` of this second's HTTP date.
fn with_date<R>(use_date: impl FnOnce(&Bytes) -> R) -> R {
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(cached, text)| {
        if *cached != second || text.is_empty() {
            *cached = second;
            *text = Bytes::from(httpdate::fmt_http_date(now));
        }
        use_date(text)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The head `encode_response_head` writes, as text.
    fn head(
        status: StatusCode,
        headers: &HeaderMap,
        framing: ResponseFraming,
        close: bool,
        version: Version,
    ) -> String {
        let exchange = Exchange {
            version,
            keep_alive: true,
            head: false,
            trailers: false,
        };
        let mut out = Vec::new();
        encode_response_head(
            &mut out,
            status,
            headers,
            &RawFields::default(),
            framing,
            close,
            &exchange,
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn heads_say_the_framing_and_the_connection_fate() {
        let (ok, v11) = (StatusCode::OK, Version::HTTP_11);
        let mut headers = HeaderMap::new();
        headers.insert("x-a", "1".parse().unwrap());
        let text = head(ok, &headers, ResponseFraming::Length(2), false, v11);
        assert!(
            text.starts_with("HTTP/1.1 200 OK\r\nx-a: 1\r\ndate: "),
            "{text}"
        );
        assert!(
            text.ends_with(" GMT\r\ncontent-length: 2\r\n\r\n"),
            "{text}"
        );
        // A backend's framing is replaced, except on a response without a body.
        headers.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        let text = head(ok, &headers, ResponseFraming::Length(2), false, v11);
        assert!(!text.contains("transfer-encoding"), "{text}");
        headers.insert(header::CONTENT_LENGTH, "7".parse().unwrap());
        let text = head(ok, &headers, ResponseFraming::None, false, v11);
        assert!(text.contains("content-length: 7\r\n"), "{text}");
        let text = head(
            StatusCode::BAD_GATEWAY,
            &HeaderMap::new(),
            ResponseFraming::Chunked,
            true,
            v11,
        );
        assert!(
            text.contains("transfer-encoding: chunked\r\nconnection: close\r\n\r\n"),
            "{text}"
        );
        let text = head(
            ok,
            &HeaderMap::new(),
            ResponseFraming::Length(0),
            false,
            Version::HTTP_10,
        );
        assert!(text.ends_with("connection: keep-alive\r\n\r\n"), "{text}");
    }
}
