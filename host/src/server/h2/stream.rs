//! One client stream's task: the request through the proxy (its body read as it comes,
//! [`RequestBody`]), then the response's head and body out as the client's windows allow
//! ([`SendResponse`]). A client that resets the stream first cancels the request (the proxy's
//! future is dropped).

use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{request, Method, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};

use super::{frame, lock, Conn, Reason, OUT_LIMIT};
use crate::body::BoxError;
use crate::http1::date_value;
use crate::http2::hpack::Encoder;
use crate::http2::strip_connection_fields;
use crate::proxy::{local_response, with_header_map, Proxy, ProxyBody};
use crate::request::ClientHead;

/// The stream was reset or its connection is gone.
#[derive(Debug)]
struct Gone;

/// A handle to one stream: the stream's task holds one, its request body another. When the last
/// goes, so does the stream (reset first if unfinished).
#[derive(Debug)]
pub(super) struct Handle {
    conn: Arc<Mutex<Conn>>,
    id: u32,
}

impl Handle {
    /// The two handles of a new stream (its state counts two).
    pub(super) fn pair(conn: &Arc<Mutex<Conn>>, id: u32) -> (Handle, Handle) {
        let handle = || Handle {
            conn: Arc::clone(conn),
            id,
        };
        (handle(), handle())
    }

    /// Ready once the stream is reset (by the client, or with its connection).
    fn poll_reset(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut conn = lock(&self.conn);
        let Some(s) = conn.streams.get_mut(&self.id) else {
            return Poll::Ready(());
        };
        if s.reset.is_some() {
            return Poll::Ready(());
        }
        match &s.task_waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => s.task_waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Sends the response head (with END_STREAM when `end`).
    fn send_head(&self, status: StatusCode, headers: &HeaderMap, end: bool) -> Result<(), Gone> {
        let mut guard = lock(&self.conn);
        let conn = &mut *guard;
        let Some(s) = conn.streams.get_mut(&self.id) else {
            return Err(Gone);
        };
        if s.reset.is_some() {
            return Err(Gone);
        }
        let block = &mut conn.block;
        block.clear();
        Encoder::field(block, b":status", status.as_str().as_bytes(), false);
        Encoder::fields(block, headers);
        frame::write_headers(&mut conn.out, self.id, block, end, conn.peer_max_frame);
        if end {
            s.sent_end = true;
            conn.answered += 1;
            conn.settle(self.id);
        }
        conn.wake_driver();
        Ok(())
    }

    /// Sends as much of `data` as the windows allow (all of it, then END_STREAM when `end`);
    /// ready once all of it is queued.
    fn poll_send(
        &self,
        cx: &mut Context<'_>,
        data: &mut Bytes,
        end: bool,
    ) -> Poll<Result<(), Gone>> {
        let mut guard = lock(&self.conn);
        let conn = &mut *guard;
        loop {
            let Some(s) = conn.streams.get_mut(&self.id) else {
                return Poll::Ready(Err(Gone));
            };
            if s.reset.is_some() {
                return Poll::Ready(Err(Gone));
            }
            if s.sent_end {
                return Poll::Ready(Ok(()));
            }
            if conn.out.len() >= OUT_LIMIT {
                conn.out_waiters.push(cx.waker().clone());
                return Poll::Pending;
            }
            if data.is_empty() {
                if end {
                    frame::write_data(&mut conn.out, self.id, &[], true);
                    s.sent_end = true;
                    conn.answered += 1;
                    conn.settle(self.id);
                    conn.wake_driver();
                }
                return Poll::Ready(Ok(()));
            }
            let room = s
                .send_window
                .min(conn.send_window)
                .min(i64::from(conn.peer_max_frame));
            if room <= 0 {
                s.task_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let n = usize::try_from(room).unwrap_or(usize::MAX).min(data.len());
            let chunk = data.split_to(n);
            let last = end && data.is_empty();
            frame::write_data(&mut conn.out, self.id, &chunk, last);
            let sent = i64::try_from(n).unwrap_or(i64::MAX);
            s.send_window -= sent;
            conn.send_window -= sent;
            if last {
                s.sent_end = true;
                conn.answered += 1;
                conn.settle(self.id);
            }
            conn.wake_driver();
        }
    }

    /// Sends `trailers`, ending lbhost's side.
    fn send_trailers(&self, trailers: &HeaderMap) -> Result<(), Gone> {
        let mut guard = lock(&self.conn);
        let conn = &mut *guard;
        let Some(s) = conn.streams.get_mut(&self.id) else {
            return Err(Gone);
        };
        if s.reset.is_some() {
            return Err(Gone);
        }
        s.sent_end = true;
        let block = &mut conn.block;
        block.clear();
        Encoder::fields(block, trailers);
        frame::write_headers(&mut conn.out, self.id, block, true, conn.peer_max_frame);
        conn.answered += 1;
        conn.settle(self.id);
        conn.wake_driver();
        Ok(())
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let mut guard = lock(&self.conn);
        let conn = &mut *guard;
        let Some(s) = conn.streams.get_mut(&self.id) else {
            return;
        };
        s.handles -= 1;
        if s.handles > 0 {
            return;
        }
        let Some(s) = conn.streams.remove(&self.id) else {
            return;
        };
        if !s.closed {
            conn.open -= 1;
        }
        if conn.failed {
            return;
        }
        if !s.finished() {
            // An unfinished response is cancelled; after a whole response, the rest of the
            // request is not needed (RFC 9113 §8.1).
            let reason = if s.sent_end {
                Reason::NO_ERROR
            } else {
                Reason::CANCEL
            };
            frame::write_rst_stream(&mut conn.out, self.id, reason);
        }
        // What the client sent that nobody will read goes back to the connection's window.
        let unread: usize = s.data.iter().map(Bytes::len).sum();
        conn.release_connection(u32::try_from(unread).unwrap_or(u32::MAX));
        conn.wake_driver();
    }
}

/// Answers a request whose head is larger than `limits.max_header_bytes` with 431, as
/// HTTP/1.1 does; the rest of its request is not read.
pub(super) fn refuse_too_large(conn: &mut Conn, id: u32, end_stream: bool) {
    let block = &mut conn.block;
    block.clear();
    Encoder::field(block, b":status", b"431", false);
    Encoder::field(block, b"content-length", b"0", false);
    frame::write_headers(&mut conn.out, id, block, true, conn.peer_max_frame);
    if !end_stream {
        frame::write_rst_stream(&mut conn.out, id, Reason::NO_ERROR);
    }
    conn.wake_driver();
}

/// One stream's task (see the module's documentation).
pub(super) async fn run(
    task: Handle,
    body: Handle,
    head: request::Parts,
    proxy: Arc<Proxy>,
    peer: SocketAddr,
    secure: bool,
) {
    let response = if head.method == Method::CONNECT {
        // lbhost is no forward proxy, over HTTP/1.1 (see `h1`) or HTTP/2.
        drop(body);
        local_response(StatusCode::METHOD_NOT_ALLOWED)
    } else {
        let body = RequestBody::new(body);
        let head = ClientHead::from_parts(head);
        // Boxed: the proxy's future is several KiB, which spawning the stream's task would
        // copy whole (~1,000 instructions a request, against a box's ~150).
        let mut answer = Box::pin(proxy.handle(head, body, peer, secure, None));
        let answered = poll_fn(|cx| {
            // The reset first: a stream the client reset at once (rapid reset) never starts
            // its request.
            if task.poll_reset(cx).is_ready() {
                return Poll::Ready(None);
            }
            match answer.as_mut().poll(cx) {
                Poll::Ready(Ok(response)) => Poll::Ready(Some(response)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        let Some(response) = answered else {
            tracing::debug!(%peer, "HTTP/2 stream reset by the client before its response");
            return;
        };
        response
    };
    let (mut parts, body) = http2_head(response).into_parts();
    strip_connection_fields(&mut parts.headers);
    if !parts.headers.contains_key(header::DATE) {
        if let Some(date) = date_value() {
            parts.headers.insert(header::DATE, date);
        }
    }
    let end = body.is_end_stream();
    if !end {
        if let Some(length) = body.size_hint().exact() {
            if !parts.headers.contains_key(header::CONTENT_LENGTH) {
                parts
                    .headers
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
            }
        }
    }
    if task.send_head(parts.status, &parts.headers, end).is_err() {
        tracing::debug!(%peer, "HTTP/2 stream reset before its response head");
        return;
    }
    if !end {
        if let Err(e) = SendResponse::new(body, task).await {
            tracing::debug!(%peer, cause = %e, "HTTP/2 response body not sent whole");
        }
    }
}

/// `response` with all its fields in its header map, as the head is encoded from there (a
/// backend's arrive in wire form, see [`ProxyBody::take_fields`]).
fn http2_head(response: Response<ProxyBody>) -> Response<ProxyBody> {
    match with_header_map(response) {
        Ok(response) => response,
        Err(e) => {
            tracing::warn!(cause = %e, "502: the backend's response head has a field HTTP/2 cannot carry");
            local_response(StatusCode::BAD_GATEWAY)
        }
    }
}

/// A request body: DATA, then trailers if any. Reading it gives the window back to the client,
/// half a window at a time.
#[derive(Debug)]
pub(crate) struct RequestBody {
    stream: Handle,
    /// The bytes `content-length` says are left, when it said.
    left: Option<u64>,
    done: bool,
}

impl RequestBody {
    fn new(stream: Handle) -> Self {
        let conn = lock(&stream.conn);
        let (left, done) = conn.streams.get(&stream.id).map_or((Some(0), true), |s| {
            if s.recv_end && s.trailers.is_none() {
                // The whole body is here: its length is known, with `content-length` or not.
                let here: usize = s.data.iter().map(Bytes::len).sum();
                (Some(here as u64), here == 0)
            } else {
                (s.expected, false)
            }
        });
        drop(conn);
        RequestBody { stream, left, done }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let id = this.stream.id;
        let mut guard = lock(&this.stream.conn);
        let conn = &mut *guard;
        let Some(s) = conn.streams.get_mut(&id) else {
            this.done = true;
            return Poll::Ready(Some(Err("the HTTP/2 stream is gone".into())));
        };
        if let Some(data) = s.data.pop_front() {
            let n = u32::try_from(data.len()).unwrap_or(u32::MAX);
            if !s.recv_end {
                if let Some(credit) = s.recv_window.release(n) {
                    frame::write_window_update(&mut conn.out, id, credit);
                    conn.wake_driver();
                }
            }
            conn.release_connection(n);
            if let Some(left) = &mut this.left {
                *left = left.saturating_sub(data.len() as u64);
            }
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if let Some(trailers) = s.trailers.take() {
            this.done = true;
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        if s.recv_end {
            this.done = true;
            return Poll::Ready(None);
        }
        if s.reset.is_some() {
            this.done = true;
            return Poll::Ready(Some(Err("the client reset the HTTP/2 stream".into())));
        }
        s.recv_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        self.left
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

/// Sends a response body on its stream as the client's windows open, then its trailers or
/// END_STREAM; a failed body resets the stream.
struct SendResponse<B> {
    body: B,
    stream: Handle,
    /// What the body gave that is not sent yet.
    pending: Bytes,
    pending_end: bool,
}

impl<B> SendResponse<B> {
    fn new(body: B, stream: Handle) -> Self {
        SendResponse {
            body,
            stream,
            pending: Bytes::new(),
            pending_end: false,
        }
    }
}

impl<B> Future for SendResponse<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Output = Result<(), BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            if !this.pending.is_empty() || this.pending_end {
                if ready!(this
                    .stream
                    .poll_send(cx, &mut this.pending, this.pending_end))
                .is_err()
                {
                    return Poll::Ready(Err("the stream was reset".into()));
                }
                if this.pending_end {
                    return Poll::Ready(Ok(()));
                }
            }
            let frame = match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => frame,
                Poll::Ready(Some(Err(e))) => {
                    let mut conn = lock(&this.stream.conn);
                    conn.reset(this.stream.id, Reason::INTERNAL_ERROR);
                    return Poll::Ready(Err(e.into()));
                }
                Poll::Ready(None) => {
                    this.pending_end = true;
                    continue;
                }
                Poll::Pending => {
                    // While the body waits, a reset by the client ends the wait.
                    return match this.stream.poll_reset(cx) {
                        Poll::Ready(()) => Poll::Ready(Err("the client reset the stream".into())),
                        Poll::Pending => Poll::Pending,
                    };
                }
            };
            match frame.into_data() {
                Ok(data) => {
                    this.pending = data;
                    this.pending_end = this.body.is_end_stream();
                    if this.pending.is_empty() && !this.pending_end {
                        continue;
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        if this.stream.send_trailers(&trailers).is_err() {
                            return Poll::Ready(Err("the stream was reset".into()));
                        }
                        return Poll::Ready(Ok(()));
                    }
                }
            }
        }
    }
}
