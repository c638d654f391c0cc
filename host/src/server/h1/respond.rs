//! The response lbhost writes to an HTTP/1.1 client: status line, headers, and the body framed
//! as the client can read it (`Content-Length` when the size is known, chunked otherwise, or
//! until close for HTTP/1.0). A body that is ready at once goes out with the head in one write.

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::Poll;

use http::{Response, StatusCode, Version};
use http_body::Body;
use tokio::io::AsyncWrite;

use super::conn::{lock, Shared};
use crate::http1::{
    encode_fields, encode_response_head, ChunkLine, Exchange, RawFields, ResponseFraming,
    CHUNK_END, FINAL_CHUNK_END, LAST_CHUNK,
};
use crate::proxy::{local_response, ProxyBody};

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
        ResponseFraming::None
    } else if let Some(length) = body
        .size_hint()
        .exact()
        .filter(|_| raw.transfer_codings().is_none())
    {
        ResponseFraming::Length(length)
    } else if exchange.version == Version::HTTP_11 {
        ResponseFraming::Chunked
    } else {
        ResponseFraming::Close
    };
    let close = close || framing == ResponseFraming::Close;
    out.clear();
    encode_response_head(out, status, &headers, &raw, framing, close, exchange);
    drop(raw);
    if status == StatusCode::SWITCHING_PROTOCOLS {
        write_all(io, &mut [IoSlice::new(out)]).await?;
        return Ok(Written::Upgraded);
    }
    // The head waits in `out` until the first frame or the end, unless the body is not ready.
    let mut head_sent = false;
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
                if let (ResponseFraming::Chunked, Ok(trailers)) = (framing, frame.into_trailers()) {
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
        if data.is_empty() || framing == ResponseFraming::None {
            continue;
        }
        let last = body.is_end_stream();
        let mut pieces: [IoSlice<'_>; 4] = [IoSlice::new(&[]); 4];
        let mut count = 0;
        if !head_sent {
            pieces[0] = IoSlice::new(out);
            count = 1;
        }
        let line;
        if framing == ResponseFraming::Chunked {
            line = ChunkLine::new(data.len());
            pieces[count] = IoSlice::new(line.as_bytes());
            pieces[count + 1] = IoSlice::new(&data);
            pieces[count + 2] = IoSlice::new(if last { FINAL_CHUNK_END } else { CHUNK_END });
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
        (ResponseFraming::Chunked, _) => out.extend_from_slice(LAST_CHUNK),
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
            let n = match Pin::new(&mut io.wire.stream).poll_write_vectored(cx, pieces) {
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
