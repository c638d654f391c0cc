//! One request on one connection, driven by the request's own task: write the head, stream the
//! body (watching for an early answer meanwhile), read the response head.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::pin;
use std::task::Poll;

use bytes::{Buf, Bytes, BytesMut};
use http::Response;
use http_body::Body;
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::backend_body::BackendBody;
use super::conn::BackendConn;
use super::stream::BackendStream;
use super::UpstreamError;
use crate::body::UpstreamBody;
use crate::http1::{
    parse_response, ChunkLine, Outgoing, ParsedResponse, RequestFraming, CHUNK_END, LAST_CHUNK,
};

/// Why [`exchange`] did not get a response.
pub(super) enum ExchangeFailure {
    /// A reused connection failed before any of the request was written: it can go on another
    /// (with its body, unread). Never from a new connection.
    Unsent(UpstreamBody, UpstreamError),
    /// A reused connection was closed by the backend without a byte of answer to an idempotent
    /// request without a body: the backend closed it idle just as the request went out (the
    /// keep-alive race). It can go once more, on a new connection. Never from a new connection.
    Stale(UpstreamBody, UpstreamError),
    Failed(UpstreamError),
}

/// Sends `head` and `body` on `conn` and reads the response head, unless `deadline` passes
/// first ([`UpstreamError::TimedOut`]); the body reads on from `conn`.
pub(super) async fn exchange(
    mut conn: Box<BackendConn>,
    head: &Outgoing,
    body: UpstreamBody,
    deadline: Instant,
) -> Result<Response<BackendBody>, ExchangeFailure> {
    let mut timer = conn.take_timer(deadline);
    let answered = {
        let mut exchange = pin!(send_and_read(conn, head, body));
        // The exchange first, as `tokio::time::timeout` does: an answer that is there wins.
        poll_fn(|cx| match exchange.as_mut().poll(cx) {
            Poll::Ready(answered) => Poll::Ready(Some(answered)),
            Poll::Pending => timer.as_mut().poll(cx).map(|()| None),
        })
        .await
    };
    let Some(answered) = answered else {
        return Err(ExchangeFailure::Failed(UpstreamError::TimedOut));
    };
    let (mut conn, answer, complete) = answered?;
    conn.timer = Some(timer);
    conn.mark.answered();
    let (parts, ()) = answer.response.into_parts();
    let keep_alive = answer.keep_alive && complete && !head.close;
    let body = BackendBody::new(conn, answer.framing, keep_alive, answer.fields);
    Ok(Response::from_parts(parts, body))
}

/// The exchange itself: the connection back with the response head, and whether the whole
/// request went out.
async fn send_and_read(
    mut conn: Box<BackendConn>,
    head: &Outgoing,
    body: UpstreamBody,
) -> Result<(Box<BackendConn>, ParsedResponse, bool), ExchangeFailure> {
    if let Err(e) = conn.wire.stream.write_all(&head.bytes).await {
        let error = UpstreamError::Send(e);
        return Err(if conn.reused {
            ExchangeFailure::Unsent(body, error)
        } else {
            ExchangeFailure::Failed(error)
        });
    }
    // Whether the whole request went out, so the connection can carry another.
    let mut complete = true;
    // Kept for the keep-alive race (see [`ExchangeFailure::Stale`]).
    let mut resendable = None;
    if head.framing == RequestFraming::Empty {
        if conn.reused && head.method.is_idempotent() {
            resendable = Some(body);
        }
    } else {
        // Boxed: only requests with a body need its state, and every request's future would
        // carry it otherwise.
        complete = Box::pin(upload(&mut conn, body, head.framing))
            .await
            .map_err(ExchangeFailure::Failed)?;
    }
    let mut received = !conn.wire.buf.is_empty();
    let answer = loop {
        // (Usually nothing has arrived yet when the request is sent: the first read comes first.)
        if !conn.wire.buf.is_empty() {
            match parse_response(&mut conn.wire.buf, &head.method, head.upgrade) {
                Ok(Some(head)) => break head,
                Ok(None) => {}
                Err(e) => return Err(ExchangeFailure::Failed(UpstreamError::Invalid(e))),
            }
        }
        let error = match conn.wire.fill().await {
            Ok(0) => UpstreamError::Closed,
            Ok(_) => {
                received = true;
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => UpstreamError::Receive(e),
            Err(e) => return Err(ExchangeFailure::Failed(UpstreamError::Receive(e))),
        };
        return Err(match resendable {
            Some(body) if !received => ExchangeFailure::Stale(body, error),
            _ => ExchangeFailure::Failed(error),
        });
    };
    Ok((conn, answer, complete))
}

/// Streams `body` to the backend framed as `framing`. Resolves `true` once it is all sent, or
/// `false` when the backend began to answer before (the answer is then in `conn.wire.buf`, and the
/// rest of the body is not sent).
async fn upload(
    conn: &mut BackendConn,
    body: UpstreamBody,
    framing: RequestFraming,
) -> Result<bool, UpstreamError> {
    let buf = &mut conn.wire.buf;
    match &mut conn.wire.stream {
        BackendStream::Plain(tcp) => {
            let (reader, writer) = tcp.split();
            upload_halves(reader, writer, buf, body, framing).await
        }
        // A TLS session reads and writes through one state: its halves share it by a lock.
        BackendStream::Tls(tls) => {
            let (reader, writer) = tokio::io::split(tls.as_mut());
            upload_halves(reader, writer, buf, body, framing).await
        }
    }
}

/// [`upload`] over the two halves of the connection's stream; `buf` is its read buffer.
async fn upload_halves<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    mut reader: R,
    mut writer: W,
    buf: &mut BytesMut,
    body: UpstreamBody,
    framing: RequestFraming,
) -> Result<bool, UpstreamError> {
    let send = send_body(&mut writer, body, framing);
    tokio::pin!(send);
    loop {
        if buf.capacity() == buf.len() {
            buf.reserve(8 * 1024);
        }
        tokio::select! {
            biased;
            sent = &mut send => return sent.map(|()| true),
            read = reader.read_buf(buf) => match read {
                Ok(0) => return Err(UpstreamError::Closed),
                Ok(_) => {
                    // Only a whole head counts as an early answer; a few bytes could be junk.
                    let mut probe = buf.clone();
                    if matches!(parse_response(&mut probe, &http::Method::GET, true), Ok(Some(_)) | Err(_)) {
                        return Ok(false);
                    }
                }
                Err(e) => return Err(UpstreamError::Receive(e)),
            },
        }
    }
}

/// Writes the frames of `body`, with chunk framing when `framing` asks for it.
async fn send_body<W: AsyncWrite + Unpin>(
    writer: &mut W,
    mut body: UpstreamBody,
    framing: RequestFraming,
) -> Result<(), UpstreamError> {
    let chunked = framing == RequestFraming::Chunked;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(UpstreamError::Body)?;
        let Ok(data) = frame.into_data() else {
            // Trailers: not forwarded (hyper did not either).
            continue;
        };
        if data.is_empty() {
            continue;
        }
        let written = if chunked {
            write_chunk(writer, data).await
        } else {
            writer.write_all(&data).await
        };
        written.map_err(UpstreamError::Send)?;
        if body.is_end_stream() {
            break;
        }
    }
    if chunked {
        writer
            .write_all(LAST_CHUNK)
            .await
            .map_err(UpstreamError::Send)?;
    }
    writer.flush().await.map_err(UpstreamError::Send)
}

/// One chunk, written in one vectored call when the socket takes it all.
async fn write_chunk<W: AsyncWrite + Unpin>(writer: &mut W, data: Bytes) -> io::Result<()> {
    let line = ChunkLine::new(data.len());
    let mut chunk = Buf::chain(line.as_bytes(), data).chain(CHUNK_END);
    writer.write_all_buf(&mut chunk).await
}
