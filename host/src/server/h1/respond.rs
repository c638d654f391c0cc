//! The response lbhost writes to an HTTP/1.1 client: status line, headers, and the body framed
//! as the client can read it (`Content-Length` when the size is known, chunked otherwise, or
//! until close for HTTP/1.0). A body that is ready at once goes out with the head in one write.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io::{self, IoSlice, Write as _};
use std::pin::Pin;
use std::task::Poll;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{Response, StatusCode, Version};
use http_body::Body;
use tokio::io::AsyncWrite;

use super::head::Exchange;
use super::io::{lock, Shared};
use crate::proxy::{local_response, ProxyBody};
use crate::wire::RawFields;

/// How the body goes out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// No body may follow (HEAD, 1xx, 204, 304).
    None,
    Length(u64),
    Chunked,
    /// Until the connection closes (HTTP/1.0 clients, size unknown).
    Close,
}

/// What the connection can do after the response.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Written {
    /// Another request may follow.
    KeepAlive,
    /// The connection must close (asked for, or the body was delimited by closing).
    Close,
    /// `101 Switching Protocols` went out: the connection is the tunnel's now.
    Upgraded,
}

/// Writes `response` to the client; `close`: say `connection: close` and end the connection
/// after it. An error means the connection is unusable (the client went away, or the body
/// failed halfway: the client sees a truncated body). `out` (the buffer for the head) comes
/// back for the next response. Owns what it uses, so the connection can keep the future in a
/// reused slot.
pub(super) async fn write(
    io: Shared,
    mut out: Vec<u8>,
    response: Response<ProxyBody>,
    exchange: Exchange,
    close: bool,
) -> (Vec<u8>, io::Result<Written>) {
    let written = write_to(&io, &mut out, response, &exchange, close).await;
    (out, written)
}

async fn write_to(
    io: &Shared,
    out: &mut Vec<u8>,
    response: Response<ProxyBody>,
    exchange: &Exchange,
    close: bool,
) -> io::Result<Written> {
    let (mut parts, mut body) = response.into_parts();
    let mut raw = body.take_fields();
    if raw.transfer_codings().is_some() && exchange.version == Version::HTTP_10 {
        // The body is still coded, and HTTP/1.0 has no Transfer-Encoding (RFC 9112 §6.1). The
        // backend's connection closes with its unread body.
        tracing::warn!(
            "502: the backend's response has a transfer coding an HTTP/1.0 client cannot take"
        );
        (parts, body) = local_response(StatusCode::BAD_GATEWAY).into_parts();
        raw = RawFields::default();
    }
    let status = parts.status;
    let headers = parts.headers;
    let framing = if status == StatusCode::SWITCHING_PROTOCOLS
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || exchange.head
    {
        Framing::None
    } else if let Some(length) = body
        .size_hint()
        .exact()
        .filter(|_| raw.transfer_codings().is_none())
    {
        Framing::Length(length)
    } else if exchange.version == Version::HTTP_11 {
        Framing::Chunked
    } else {
        Framing::Close
    };
    let close = close || framing == Framing::Close;
    out.clear();
    encode_head(out, status, &headers, &raw, framing, close, exchange);
    drop(raw);
    if status == StatusCode::SWITCHING_PROTOCOLS {
        write_all(io, &mut [IoSlice::new(out)]).await?;
        return Ok(Written::Upgraded);
    }
    // The head waits in `out` until the first frame or the end, unless the body is not ready.
    let mut head_sent = false;
    let mut chunk_line = [0u8; 20];
    loop {
        let next = if head_sent {
            poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        } else {
            match poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await {
                Poll::Ready(next) => next,
                Poll::Pending => {
                    write_all(io, &mut [IoSlice::new(out)]).await?;
                    out.clear();
                    head_sent = true;
                    continue;
                }
            }
        };
        let frame = match next {
            None => break,
            Some(Ok(frame)) => frame,
            Some(Err(e)) => {
                if !head_sent {
                    write_all(io, &mut [IoSlice::new(out)]).await?;
                }
                return Err(io::Error::other(e));
            }
        };
        let data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                if let (Framing::Chunked, Ok(trailers)) = (framing, frame.into_trailers()) {
                    if exchange.trailers {
                        out.extend_from_slice(b"0\r\n");
                        encode_fields(out, &trailers);
                        out.extend_from_slice(b"\r\n");
                        write_all(io, &mut [IoSlice::new(out)]).await?;
                        return Ok(if close {
                            Written::Close
                        } else {
                            Written::KeepAlive
                        });
                    }
                }
                continue;
            }
        };
        if data.is_empty() || framing == Framing::None {
            continue;
        }
        let last = body.is_end_stream();
        let mut pieces: [IoSlice<'_>; 4] = [IoSlice::new(&[]); 4];
        let mut count = 0;
        if !head_sent {
            pieces[0] = IoSlice::new(out);
            count = 1;
        }
        let line_length;
        if framing == Framing::Chunked {
            let mut line = &mut chunk_line[..];
            let _ = write!(line, "{:x}\r\n", data.len());
            line_length = 20 - line.len();
            pieces[count] = IoSlice::new(&chunk_line[..line_length]);
            pieces[count + 1] = IoSlice::new(&data);
            pieces[count + 2] = IoSlice::new(if last { b"\r\n0\r\n\r\n" } else { b"\r\n" });
            count += 3;
        } else {
            pieces[count] = IoSlice::new(&data);
            count += 1;
        }
        write_all(io, &mut pieces[..count]).await?;
        head_sent = true;
        out.clear();
        if last {
            return Ok(if close {
                Written::Close
            } else {
                Written::KeepAlive
            });
        }
    }
    match (framing, head_sent) {
        (Framing::Chunked, _) => out.extend_from_slice(b"0\r\n\r\n"),
        (_, true) => {
            return Ok(if close {
                Written::Close
            } else {
                Written::KeepAlive
            })
        }
        _ => {}
    }
    write_all(io, &mut [IoSlice::new(out)]).await?;
    Ok(if close {
        Written::Close
    } else {
        Written::KeepAlive
    })
}

/// Writes all of `pieces`.
async fn write_all(io: &Shared, mut pieces: &mut [IoSlice<'_>]) -> io::Result<()> {
    poll_fn(|cx| {
        let mut io = lock(io);
        while !pieces.is_empty() {
            let n = match Pin::new(&mut io.stream).poll_write_vectored(cx, pieces) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            IoSlice::advance_slices(&mut pieces, n);
        }
        Poll::Ready(Ok(()))
    })
    .await
}

/// The status line and the headers (those of the map, then the backend's `raw` ones), with
/// `date`, the framing and the connection's fate.
fn encode_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    raw: &RawFields,
    framing: Framing,
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
    let reframed = framing != Framing::None;
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
        Framing::Length(length) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(length).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => match raw.transfer_codings() {
            None => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
            Some(codings) => {
                out.extend_from_slice(b"transfer-encoding: ");
                out.extend_from_slice(codings);
                out.extend_from_slice(b", chunked\r\n");
            }
        },
        Framing::None | Framing::Close => {}
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

fn encode_fields(out: &mut Vec<u8>, headers: &HeaderMap) {
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
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(cached, text)| {
        if *cached != second || text.is_empty() {
            *cached = second;
            *text = Bytes::from(httpdate::fmt_http_date(now));
        }
        out.extend_from_slice(text);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The head `encode_head` writes, as text.
    fn head(
        status: StatusCode,
        headers: &HeaderMap,
        framing: Framing,
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
        encode_head(
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
        let text = head(ok, &headers, Framing::Length(2), false, v11);
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
        let text = head(ok, &headers, Framing::Length(2), false, v11);
        assert!(!text.contains("transfer-encoding"), "{text}");
        headers.insert(header::CONTENT_LENGTH, "7".parse().unwrap());
        let text = head(ok, &headers, Framing::None, false, v11);
        assert!(text.contains("content-length: 7\r\n"), "{text}");
        let text = head(
            StatusCode::BAD_GATEWAY,
            &HeaderMap::new(),
            Framing::Chunked,
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
            Framing::Length(0),
            false,
            Version::HTTP_10,
        );
        assert!(text.ends_with("connection: keep-alive\r\n\r\n"), "{text}");
    }
}
