//! The response head a backend sends, and how the body after it is delimited (RFC 9112 §6).

use std::mem::MaybeUninit;

use bytes::{Buf, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode, Version};

use super::spans::FieldSpans;
use super::{parse_length, WireError, MAX_HEAD, MAX_HEADERS};

/// How the response body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 204, 304).
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the backend closes the connection.
    UntilClose,
    /// `101 Switching Protocols`: the connection now carries another protocol.
    Upgrade,
}

/// A parsed response head.
#[derive(Debug)]
pub struct Head {
    pub response: Response<()>,
    pub framing: Framing,
    /// Whether the connection can carry another request after this response.
    pub keep_alive: bool,
}

/// The response head at the start of `buf`, consumed from it, once it is all there
/// (`Ok(None)` until then). Interim 1xx answers other than 101 are skipped.
pub fn parse_head(
    buf: &mut BytesMut,
    method: &Method,
    asked_upgrade: bool,
) -> Result<Option<Head>, WireError> {
    let config = httparse::ParserConfig::default();
    loop {
        let (length, code, version, spans) = {
            let mut slots = [const { MaybeUninit::uninit() }; MAX_HEADERS];
            let mut parsed = httparse::Response::new(&mut []);
            let length =
                match config.parse_response_with_uninit_headers(&mut parsed, buf, &mut slots) {
                    Ok(httparse::Status::Complete(length)) if length > MAX_HEAD => {
                        return Err(WireError::HeadTooLarge)
                    }
                    Ok(httparse::Status::Complete(length)) => length,
                    Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
                        return Err(WireError::HeadTooLarge)
                    }
                    Ok(httparse::Status::Partial) => return Ok(None),
                    Err(httparse::Error::TooManyHeaders) => return Err(WireError::HeadTooLarge),
                    Err(e) => return Err(WireError::Head(e)),
                };
            let spans = FieldSpans::record(buf, parsed.headers);
            (length, parsed.code.unwrap_or(0), parsed.version, spans)
        };
        if (100..200).contains(&code) && code != 101 {
            buf.advance(length);
            continue;
        }
        let status =
            StatusCode::from_u16(code).map_err(|_| WireError::Head(httparse::Error::Status))?;
        let version = match version {
            Some(0) => Version::HTTP_10,
            _ => Version::HTTP_11,
        };
        // The header values share the frozen head's buffer.
        let bytes = buf.split_to(length).freeze();
        let mut headers = HeaderMap::with_capacity(spans.len());
        for (name, value) in spans.fields(&bytes) {
            let name =
                HeaderName::from_bytes(name).map_err(|e| WireError::Header(e.to_string()))?;
            let value = HeaderValue::from_maybe_shared(value)
                .map_err(|e| WireError::Header(e.to_string()))?;
            headers.append(name, value);
        }
        let (framing, delimited_keep_alive) = framing(method, status, &headers, asked_upgrade)?;
        let keep_alive = delimited_keep_alive && persistent(version, &headers);
        let mut response = Response::new(());
        *response.status_mut() = status;
        // The backend's HTTP version only decides whether its connection stays open; the
        // client is answered in its own protocol (hyper would answer HTTP/1.0 and close).
        *response.version_mut() = Version::HTTP_11;
        *response.headers_mut() = headers;
        return Ok(Some(Head {
            response,
            framing,
            keep_alive,
        }));
    }
}

/// How the body of a response to `method` with `status` and `headers` is delimited, and whether
/// that framing leaves the connection usable afterwards.
fn framing(
    method: &Method,
    status: StatusCode,
    headers: &HeaderMap,
    asked_upgrade: bool,
) -> Result<(Framing, bool), WireError> {
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return if asked_upgrade {
            Ok((Framing::Upgrade, false))
        } else {
            Err(WireError::UnaskedUpgrade)
        };
    }
    if *method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok((Framing::Empty, true));
    }
    if headers.contains_key(header::TRANSFER_ENCODING) {
        let chunked = headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        // Both framings at once is a smuggling vector: use chunked, then close (RFC 9112 §6.3).
        let alone = !headers.contains_key(header::CONTENT_LENGTH);
        return Ok(if chunked {
            (Framing::Chunked, alone)
        } else {
            (Framing::UntilClose, false)
        });
    }
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        // A list of equal values is one value (RFC 9110 §8.6); differing ones are an error.
        for part in value.as_bytes().split(|&b| b == b',') {
            let n = parse_length(part.trim_ascii()).ok_or(WireError::ContentLength)?;
            if length.is_some_and(|l| l != n) {
                return Err(WireError::ContentLength);
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(n) => (Framing::Length(n), true),
        None => (Framing::UntilClose, false),
    })
}

/// Whether the connection stays open after this message (HTTP/1.1 unless `close`; HTTP/1.0 only
/// with `keep-alive`).
fn persistent(version: Version, headers: &HeaderMap) -> bool {
    let has = |token: &str| {
        headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if version == Version::HTTP_10 {
        has("keep-alive")
    } else {
        !has("close")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &[u8], method: &Method) -> Result<Option<Head>, WireError> {
        parse_head(&mut BytesMut::from(raw), method, false)
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        let h = head(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            &Method::GET,
        )
        .unwrap()
        .unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Length(5), true));
        assert_eq!(h.response.headers()["content-length"], "5");

        let h = head(
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
            &Method::HEAD,
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.framing, Framing::Empty);

        let h = head(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            &Method::GET,
        )
        .unwrap()
        .unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Chunked, true));

        let h = head(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            &Method::GET,
        )
        .unwrap()
        .unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Chunked, false));

        let h = head(
            b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
            &Method::GET,
        )
        .unwrap()
        .unwrap();
        assert!(!h.keep_alive, "HTTP/1.0 without keep-alive closes");

        let h = head(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
            &Method::GET,
        )
        .unwrap()
        .unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::UntilClose, false));

        let h = head(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\n",
            &Method::GET,
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.framing, Framing::Length(2));
    }

    #[test]
    fn bad_response_heads_are_refused() {
        for raw in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n",
            b"NOT HTTP\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        ] {
            assert!(
                head(raw, &Method::GET).is_err(),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        let mut huge = b"HTTP/1.1 200 OK\r\nx: ".to_vec();
        huge.resize(MAX_HEAD + 1, b'a');
        assert!(matches!(
            head(&huge, &Method::GET),
            Err(WireError::HeadTooLarge)
        ));
    }

    #[test]
    fn interim_answers_are_skipped_and_partial_heads_wait() {
        let mut buf = BytesMut::from(&b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No"[..]);
        assert!(parse_head(&mut buf, &Method::GET, false).unwrap().is_none());
        buf.extend_from_slice(b" Content\r\n\r\nrest");
        let h = parse_head(&mut buf, &Method::GET, false).unwrap().unwrap();
        assert_eq!(h.response.status(), 204);
        assert_eq!(&buf[..], b"rest");
    }
}
