//! The request head lbhost writes to a backend, and the framing of the body after it.

use http::Method;

use super::codings_before_chunked;
use crate::http1::buffers;

/// How the request body goes on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestFraming {
    /// No body.
    Empty,
    /// Exactly this many bytes, as `Content-Length` says.
    Length(u64),
    /// `Transfer-Encoding: chunked`: the size was not known up front.
    Chunked,
}

/// A request head for a backend, written header by header, then [`RequestHeadBuilder::finish`]ed
/// with the framing its body needs.
///
/// Built in a `Vec`: its `extend_from_slice` inlines the short fixed pieces (`": "`, `"\r\n"`)
/// that `BytesMut::put_slice` turns into a call each (~1,100 instructions per request, measured
/// with callgrind).
#[derive(Debug)]
pub(crate) struct RequestHeadBuilder {
    buf: Vec<u8>,
    method: Method,
    upgrade: bool,
    /// It says `connection: close`.
    close: bool,
    /// The client's `Transfer-Encoding` values, joined (see [`RequestHeadBuilder::transfer_encoding`]);
    /// empty (no allocation) for nearly every request.
    codings: Vec<u8>,
}

/// A finished request head, ready for the wire (and again, if the request must go again). Its
/// buffer goes back to the worker's spares when it is dropped.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub bytes: Vec<u8>,
    pub framing: RequestFraming,
    pub method: Method,
    /// Whether it asks for an upgrade (so a 101 is expected).
    pub upgrade: bool,
    /// It says `connection: close`: its connection carries nothing after the response.
    pub close: bool,
}

/// A header value being written by [`RequestHeadBuilder::header_with`].
pub(crate) struct Value<'a>(&'a mut Vec<u8>);

impl<'a> Value<'a> {
    /// A value written at the end of `buf`.
    pub(crate) fn new(buf: &'a mut Vec<u8>) -> Self {
        Value(buf)
    }

    /// Appends `piece` (no CR or LF) to the value.
    pub(crate) fn push(&mut self, piece: &[u8]) {
        debug_assert!(!piece.iter().any(|&b| b == b'\r' || b == b'\n'));
        self.0.extend_from_slice(piece);
    }
}

impl RequestHeadBuilder {
    /// The request line: `method target HTTP/1.1`. `target` is the path and query of the
    /// request, or `*`: a path that is empty (as in the absolute-form `http://host?q`) is `/`
    /// in origin form (RFC 9112 §3.2.1).
    pub(crate) fn new(method: &Method, target: &str) -> Self {
        // A spare head buffer (warm, no allocation) when there is one.
        let mut buf = buffers::head_buffer();
        buf.reserve(512);
        buf.extend_from_slice(method.as_str().as_bytes());
        buf.push(b' ');
        if !target.starts_with('/') && target != "*" {
            buf.push(b'/');
        }
        buf.extend_from_slice(target.as_bytes());
        buf.extend_from_slice(b" HTTP/1.1\r\n");
        RequestHeadBuilder {
            buf,
            method: method.clone(),
            upgrade: false,
            close: false,
            codings: Vec::new(),
        }
    }

    /// `connection: close`: the connection closes after the response (a health probe's, which
    /// must find out whether the backend still accepts new connections).
    pub(crate) fn close_connection(&mut self) {
        self.buf.extend_from_slice(b"connection: close\r\n");
        self.close = true;
    }

    /// Notes a `Transfer-Encoding` field of the client's request (the field itself is
    /// hop-by-hop): the codings it names before the final `chunked` go to the backend in the
    /// `Transfer-Encoding` that [`RequestHeadBuilder::finish`] writes, the body still coded with them.
    pub(crate) fn transfer_encoding(&mut self, value: &[u8]) {
        // The usual `chunked` alone leaves nothing to pass on: nothing is kept (no allocation).
        if self.codings.is_empty() && value.trim_ascii().eq_ignore_ascii_case(b"chunked") {
            return;
        }
        if !self.codings.is_empty() {
            self.codings.extend_from_slice(b", ");
        }
        self.codings.extend_from_slice(value);
    }

    /// One header line. `name` is a header name (a token, in any case) and `value` a valid
    /// header value: neither may hold CR or LF. The framing fields (`Content-Length`,
    /// `Transfer-Encoding`) are for [`RequestHeadBuilder::finish`] to write.
    pub(crate) fn header(&mut self, name: &[u8], value: &[u8]) {
        debug_assert!(!name.iter().chain(value).any(|&b| b == b'\r' || b == b'\n'));
        if name.len() == 7 && name.eq_ignore_ascii_case(b"upgrade") {
            self.upgrade = true;
        }
        self.buf.reserve(name.len() + value.len() + b": \r\n".len());
        self.buf.extend_from_slice(name);
        self.buf.extend_from_slice(b": ");
        self.buf.extend_from_slice(value);
        self.buf.extend_from_slice(b"\r\n");
    }

    /// One header line whose value `write` puts together from pieces (no buffer of its own).
    /// The same rules as for [`RequestHeadBuilder::header`] apply; it must not be `Content-Length` or
    /// `Upgrade`.
    pub(crate) fn header_with(&mut self, name: &str, write: impl FnOnce(&mut Value<'_>)) {
        debug_assert!(!matches!(name, "content-length" | "upgrade"));
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.extend_from_slice(b": ");
        write(&mut Value(&mut self.buf));
        self.buf.extend_from_slice(b"\r\n");
    }

    /// The head, closed with the framing header `body` needs: its exact size (a client's
    /// `Content-Length`, as the body reports it), or chunked; chunked after the client's other
    /// transfer codings, if it named any.
    pub(crate) fn finish<B: http_body::Body>(mut self, body: &B) -> Outgoing {
        let codings = if self.codings.is_empty() {
            Vec::new()
        } else {
            codings_before_chunked([&self.codings[..]])
        };
        let framing = if !codings.is_empty() {
            self.buf.extend_from_slice(b"transfer-encoding: ");
            self.buf.extend_from_slice(&codings);
            self.buf.extend_from_slice(b", chunked\r\n");
            RequestFraming::Chunked
        } else if body.is_end_stream() {
            // As hyper does: methods that normally carry a body say it is empty.
            if matches!(self.method, Method::POST | Method::PUT | Method::PATCH) {
                self.buf.extend_from_slice(b"content-length: 0\r\n");
            }
            RequestFraming::Empty
        } else if let Some(length) = body.size_hint().exact() {
            self.buf.extend_from_slice(b"content-length: ");
            self.buf
                .extend_from_slice(itoa::Buffer::new().format(length).as_bytes());
            self.buf.extend_from_slice(b"\r\n");
            RequestFraming::Length(length)
        } else {
            self.buf
                .extend_from_slice(b"transfer-encoding: chunked\r\n");
            RequestFraming::Chunked
        };
        self.buf.extend_from_slice(b"\r\n");
        Outgoing {
            bytes: self.buf,
            framing,
            method: self.method,
            upgrade: self.upgrade,
            close: self.close,
        }
    }
}

impl Drop for Outgoing {
    fn drop(&mut self) {
        buffers::release_head(std::mem::take(&mut self.bytes));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{Empty, Full};

    fn finished(method: Method, headers: &[(&str, &str)], body: &impl http_body::Body) -> Outgoing {
        let mut head = RequestHeadBuilder::new(&method, "/a?b=1");
        for (name, value) in headers {
            head.header(name.as_bytes(), value.as_bytes());
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

        let upgrade = finished(
            Method::GET,
            &[("upgrade", "websocket")],
            &Empty::<Bytes>::new(),
        );
        assert!(upgrade.upgrade);
    }

    #[test]
    fn an_empty_path_is_a_slash_and_an_asterisk_stays() {
        for (target, line) in [
            ("?x=1", "GET /?x=1 HTTP/1.1\r\n"),
            ("", "GET / HTTP/1.1\r\n"),
            ("/a", "GET /a HTTP/1.1\r\n"),
            ("*", "GET * HTTP/1.1\r\n"),
        ] {
            let head = RequestHeadBuilder::new(&Method::GET, target).finish(&Empty::<Bytes>::new());
            assert!(head.bytes.starts_with(line.as_bytes()), "{target:?}");
        }
    }

    #[test]
    fn the_clients_transfer_codings_go_before_chunked() {
        let mut head = RequestHeadBuilder::new(&Method::POST, "/");
        head.transfer_encoding(b"gzip");
        head.transfer_encoding(b"deflate , chunked");
        // A body that is not streamed is still sent chunked: it is coded.
        let out = head.finish(&Full::new(Bytes::from("abc")));
        assert_eq!(
            &out.bytes[..],
            b"POST / HTTP/1.1\r\ntransfer-encoding: gzip, deflate, chunked\r\n\r\n"
        );
        assert_eq!(out.framing, RequestFraming::Chunked);

        let mut head = RequestHeadBuilder::new(&Method::POST, "/");
        head.transfer_encoding(b"chunked");
        let out = head.finish(&Full::new(Bytes::from("abc")));
        assert_eq!(out.framing, RequestFraming::Length(3));
    }
}
