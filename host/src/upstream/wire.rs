//! HTTP/1.1 on the wire towards backends: the request head lbhost writes, the response head it
//! reads, and how the response body is delimited (RFC 9112 §6).

use std::mem::MaybeUninit;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode, Version};

/// A response head longer than this is refused (hyper's client allows ~400 KiB; real backends
/// send a few hundred bytes).
pub const MAX_HEAD: usize = 64 * 1024;
/// Headers per response head or trailer block (hyper's default).
const MAX_HEADERS: usize = 100;
/// A chunk-size line (with its extensions) longer than this is refused.
const MAX_CHUNK_LINE: usize = 4096;

/// What is wrong with what a backend sent.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("malformed response head: {0}")]
    Head(httparse::Error),
    #[error("response head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("invalid header in response: {0}")]
    Header(String),
    #[error("invalid Content-Length in response")]
    ContentLength,
    #[error("malformed chunked body")]
    Chunked,
    #[error("101 Switching Protocols to a request that asked for no upgrade")]
    UnaskedUpgrade,
}

/// How the request body goes on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestFraming {
    /// No body.
    Empty,
    /// Exactly this many bytes, as `Content-Length` says.
    Length(u64),
    /// `Transfer-Encoding: chunked`: the size was not known up front.
    Chunked,
}

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

/// A request head for a backend, written header by header, then [`RequestHead::finish`]ed
/// with the framing its body needs.
#[derive(Debug)]
pub struct RequestHead {
    buf: BytesMut,
    method: Method,
    /// The value of a `Content-Length` header written, if any.
    length: Option<u64>,
    upgrade: bool,
}

/// A finished request head, ready for the wire (and again, if the request must go again).
#[derive(Debug)]
pub struct Outgoing {
    pub bytes: BytesMut,
    pub framing: RequestFraming,
    pub method: Method,
    /// Whether it asks for an upgrade (so a 101 is expected).
    pub upgrade: bool,
}

/// A header value being written by [`RequestHead::header_with`].
pub struct Value<'a>(&'a mut BytesMut);

impl Value<'_> {
    /// Appends `piece` (no CR or LF) to the value.
    pub fn push(&mut self, piece: &[u8]) {
        debug_assert!(!piece.iter().any(|&b| b == b'\r' || b == b'\n'));
        self.0.put_slice(piece);
    }
}

impl RequestHead {
    /// The request line: `method target HTTP/1.1` (`target` in origin form).
    pub fn new(method: &Method, target: &str) -> Self {
        let mut buf = BytesMut::with_capacity(512);
        buf.put_slice(method.as_str().as_bytes());
        buf.put_u8(b' ');
        buf.put_slice(target.as_bytes());
        buf.put_slice(b" HTTP/1.1\r\n");
        RequestHead {
            buf,
            method: method.clone(),
            length: None,
            upgrade: false,
        }
    }

    /// One header line. `name` is a lowercase header name and `value` a valid header value (as
    /// from a `HeaderMap`): neither may hold CR or LF. `Transfer-Encoding` is for
    /// [`RequestHead::finish`] to write.
    pub fn header(&mut self, name: &str, value: &[u8]) {
        debug_assert!(!value.iter().any(|&b| b == b'\r' || b == b'\n'));
        match name {
            "content-length" => self.length = Some(parse_length(value).unwrap_or(0)),
            "upgrade" => self.upgrade = true,
            _ => {}
        }
        self.buf.put_slice(name.as_bytes());
        self.buf.put_slice(b": ");
        self.buf.put_slice(value);
        self.buf.put_slice(b"\r\n");
    }

    /// One header line whose value `write` puts together from pieces (no buffer of its own).
    /// The same rules as for [`RequestHead::header`] apply; it must not be `Content-Length` or
    /// `Upgrade`.
    pub fn header_with(&mut self, name: &str, write: impl FnOnce(&mut Value<'_>)) {
        debug_assert!(!matches!(name, "content-length" | "upgrade"));
        self.buf.put_slice(name.as_bytes());
        self.buf.put_slice(b": ");
        write(&mut Value(&mut self.buf));
        self.buf.put_slice(b"\r\n");
    }

    /// The head, closed with the framing header `body` needs (a `Content-Length` the client
    /// sent is kept; otherwise the body's exact size, or chunked).
    pub fn finish<B: http_body::Body>(mut self, body: &B) -> Outgoing {
        let framing = match self.length {
            Some(0) => RequestFraming::Empty,
            Some(length) => RequestFraming::Length(length),
            None if body.is_end_stream() => {
                // As hyper does: methods that normally carry a body say it is empty.
                if matches!(self.method, Method::POST | Method::PUT | Method::PATCH) {
                    self.buf.put_slice(b"content-length: 0\r\n");
                }
                RequestFraming::Empty
            }
            None => match body.size_hint().exact() {
                Some(length) => {
                    self.buf.put_slice(b"content-length: ");
                    self.buf.put_slice(length.to_string().as_bytes());
                    self.buf.put_slice(b"\r\n");
                    RequestFraming::Length(length)
                }
                None => {
                    self.buf.put_slice(b"transfer-encoding: chunked\r\n");
                    RequestFraming::Chunked
                }
            },
        };
        self.buf.put_slice(b"\r\n");
        Outgoing {
            bytes: self.buf,
            framing,
            method: self.method,
            upgrade: self.upgrade,
        }
    }
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
        let (length, code, version) = {
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
            (length, parsed.code.unwrap_or(0), parsed.version)
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
        // Parsed again from the frozen head, so the header values can share its buffer (cheaper
        // than keeping where each one sits in a table as large as the header limit).
        let bytes = buf.split_to(length).freeze();
        let mut slots = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut []);
        config
            .parse_response_with_uninit_headers(&mut parsed, &bytes, &mut slots)
            .map_err(WireError::Head)?;
        let mut headers = HeaderMap::with_capacity(parsed.headers.len());
        for h in parsed.headers.iter() {
            let name = HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|e| WireError::Header(e.to_string()))?;
            let value = HeaderValue::from_maybe_shared(bytes.slice_ref(h.value))
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

/// Decimal digits only, no sign, no overflow.
fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
    })
}

/// One step of decoding a chunked body.
#[derive(Debug, PartialEq)]
pub enum Decoded {
    Data(Bytes),
    Trailers(HeaderMap),
    /// The buffer holds no complete next piece: read more.
    NeedMore,
    /// The last chunk (and its trailers, if any) was read.
    End,
}

/// Where a chunked body's decoder is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Chunked {
    /// Before a chunk-size line.
    #[default]
    Size,
    /// Inside a chunk's data, with this much of it left.
    Data(u64),
    /// After a chunk's data, before its CRLF.
    DataEnd,
    /// After the last chunk: trailer fields, then an empty line.
    Trailers,
    Done,
}

impl Chunked {
    /// How much of the current chunk's data is still to come (0 outside data).
    pub fn left(&self) -> u64 {
        match self {
            Chunked::Data(left) => *left,
            _ => 0,
        }
    }

    /// Decodes the next piece from `buf`, consuming what it used.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, WireError> {
        loop {
            match *self {
                Chunked::Size => {
                    let Some(end) = buf.iter().position(|&b| b == b'\n') else {
                        return if buf.len() > MAX_CHUNK_LINE {
                            Err(WireError::Chunked)
                        } else {
                            Ok(Decoded::NeedMore)
                        };
                    };
                    let size = chunk_size(&buf[..end])?;
                    buf.advance(end + 1);
                    *self = if size == 0 {
                        Chunked::Trailers
                    } else {
                        Chunked::Data(size)
                    };
                }
                Chunked::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let data = buf.split_to(take).freeze();
                    let left = left - take as u64;
                    *self = if left == 0 {
                        Chunked::DataEnd
                    } else {
                        Chunked::Data(left)
                    };
                    return Ok(Decoded::Data(data));
                }
                Chunked::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(WireError::Chunked);
                    }
                    buf.advance(2);
                    *self = Chunked::Size;
                }
                Chunked::Trailers => {
                    if buf.starts_with(b"\r\n") {
                        buf.advance(2);
                        *self = Chunked::Done;
                        return Ok(Decoded::End);
                    }
                    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    let (length, fields) = match httparse::parse_headers(buf, &mut slots) {
                        Ok(httparse::Status::Complete(done)) => done,
                        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => {
                            return Ok(Decoded::NeedMore)
                        }
                        _ => return Err(WireError::Chunked),
                    };
                    let mut trailers = HeaderMap::with_capacity(fields.len());
                    for field in fields.iter() {
                        let name = HeaderName::from_bytes(field.name.as_bytes())
                            .map_err(|_| WireError::Chunked)?;
                        let value =
                            HeaderValue::from_bytes(field.value).map_err(|_| WireError::Chunked)?;
                        trailers.append(name, value);
                    }
                    buf.advance(length);
                    *self = Chunked::Done;
                    return Ok(Decoded::Trailers(trailers));
                }
                Chunked::Done => return Ok(Decoded::End),
            }
        }
    }
}

/// The size on a chunk-size line (hex, then optional `;extensions`, then CR).
fn chunk_size(line: &[u8]) -> Result<u64, WireError> {
    let line = line.strip_suffix(b"\r").ok_or(WireError::Chunked)?;
    let digits = line
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return Err(WireError::Chunked);
    }
    digits.iter().try_fold(0u64, |n, &d| {
        let digit = (d as char).to_digit(16).ok_or(WireError::Chunked)?;
        Ok(n * 16 + u64::from(digit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Empty, Full};

    fn head(raw: &[u8], method: &Method) -> Result<Option<Head>, WireError> {
        parse_head(&mut BytesMut::from(raw), method, false)
    }

    fn finished(method: Method, headers: &[(&str, &str)], body: &impl http_body::Body) -> Outgoing {
        let mut head = RequestHead::new(&method, "/a?b=1");
        for (name, value) in headers {
            head.header(name, value.as_bytes());
        }
        head.finish(body)
    }

    #[test]
    fn request_head_carries_the_framing_its_body_needs() {
        let get = finished(Method::GET, &[("host", "example")], &Empty::<Bytes>::new());
        assert_eq!(
            &get.bytes[..],
            b"GET /a?b=1 HTTP/1.1\r\nhost: example\r\n\r\n"
        );
        assert_eq!(get.framing, RequestFraming::Empty);

        let post = finished(Method::POST, &[], &Empty::<Bytes>::new());
        assert_eq!(
            &post.bytes[..],
            b"POST /a?b=1 HTTP/1.1\r\ncontent-length: 0\r\n\r\n"
        );

        let sized = finished(Method::PUT, &[], &Full::new(Bytes::from("abc")));
        assert_eq!(
            &sized.bytes[..],
            b"PUT /a?b=1 HTTP/1.1\r\ncontent-length: 3\r\n\r\n"
        );
        assert_eq!(sized.framing, RequestFraming::Length(3));

        let declared = finished(
            Method::PUT,
            &[("content-length", "7")],
            &Full::new(Bytes::from("abc")),
        );
        assert_eq!(
            &declared.bytes[..],
            b"PUT /a?b=1 HTTP/1.1\r\ncontent-length: 7\r\n\r\n"
        );
        assert_eq!(declared.framing, RequestFraming::Length(7));

        let upgrade = finished(
            Method::GET,
            &[("upgrade", "websocket")],
            &Empty::<Bytes>::new(),
        );
        assert!(upgrade.upgrade);
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

    #[test]
    fn chunked_bodies_decode_across_any_split() {
        let wire = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-sum: 9\r\n\r\n";
        for split in 0..wire.len() {
            let mut decoder = Chunked::default();
            let mut buf = BytesMut::from(&wire[..split]);
            let mut data = Vec::new();
            let mut trailers = None;
            let mut fed = false;
            loop {
                match decoder.decode(&mut buf).unwrap() {
                    Decoded::Data(d) => data.extend_from_slice(&d),
                    Decoded::Trailers(t) => trailers = Some(t),
                    Decoded::NeedMore => {
                        assert!(!fed, "split at {split}: stuck");
                        buf.extend_from_slice(&wire[split..]);
                        fed = true;
                    }
                    Decoded::End => break,
                }
            }
            assert_eq!(data, b"hello world", "split at {split}");
            assert_eq!(trailers.unwrap()["x-sum"], "9", "split at {split}");
        }
    }

    #[test]
    fn malformed_chunks_are_refused() {
        for wire in [
            &b"zz\r\n"[..],
            b"5\r\nhelloXX",
            b"5\n",
            b"1234567890abcdef0\r\n",
        ] {
            let mut decoder = Chunked::default();
            let mut buf = BytesMut::from(wire);
            let result = loop {
                match decoder.decode(&mut buf) {
                    Ok(Decoded::Data(_)) => continue,
                    other => break other,
                }
            };
            assert!(result.is_err(), "{:?}", String::from_utf8_lossy(wire));
        }
    }
}
