//! A stream's two bodies: the response's as it arrives ([`ResponseBody`], giving the backend
//! window back as it is read) and the request's as the backend's window allows
//! ([`RequestBody`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::{frame, lock, Reason, Stream, StreamError};
use crate::body::BoxError;

/// A response body: DATA, then trailers if any. Reading it gives the window back to the
/// backend, half a window at a time.
#[derive(Debug)]
pub(crate) struct ResponseBody {
    stream: Stream,
    /// The bytes `content-length` says are left, when it said.
    left: Option<u64>,
    done: bool,
}

impl ResponseBody {
    /// The body of `stream`, whose head came.
    pub(crate) fn new(stream: Stream) -> Self {
        let left = lock(&stream.conn)
            .streams
            .get(&stream.id)
            .and_then(|s| s.expected);
        let mut body = ResponseBody {
            stream,
            left,
            done: false,
        };
        body.done = body.ended();
        if body.done {
            body.left = Some(0);
        }
        body
    }

    /// Whether everything the backend will send was read.
    fn ended(&self) -> bool {
        let conn = lock(&self.stream.conn);
        conn.streams.get(&self.stream.id).is_none_or(|s| {
            s.recv_end && s.data.is_empty() && s.trailers.is_none() && s.error.is_none()
        })
    }
}

impl Body for ResponseBody {
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
        if let Some(e) = &s.error {
            this.done = true;
            // A reset with NO_ERROR ends the body (RFC 9113 §8.1: the backend needs no more of
            // the request).
            if matches!(e, StreamError::Reset(r) if *r == Reason::NO_ERROR) {
                return Poll::Ready(None);
            }
            return Poll::Ready(Some(Err(e.clone().into())));
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

/// Sends a request body on its stream as the backend's window opens, then its trailers or
/// END_STREAM.
pub(crate) struct RequestBody<B> {
    body: B,
    stream: Stream,
    /// What the body gave that is not sent yet.
    pending: Bytes,
    pending_end: bool,
}

impl<B> RequestBody<B> {
    pub(crate) fn new(body: B, stream: Stream) -> Self {
        RequestBody {
            body,
            stream,
            pending: Bytes::new(),
            pending_end: false,
        }
    }
}

impl<B> Future for RequestBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Output = Result<(), BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            if !this.pending.is_empty() || this.pending_end {
                match ready!(this
                    .stream
                    .poll_send(cx, &mut this.pending, this.pending_end))
                {
                    Ok(()) => {}
                    Err(StreamError::Reset(r)) if r == Reason::NO_ERROR => {
                        return Poll::Ready(Ok(()))
                    }
                    Err(e) => return Poll::Ready(Err(e.into())),
                }
                if this.pending_end {
                    return Poll::Ready(Ok(()));
                }
            }
            let frame = match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => frame,
                Poll::Ready(Some(Err(e))) => {
                    this.stream.reset(Reason::INTERNAL_ERROR);
                    return Poll::Ready(Err(e.into()));
                }
                Poll::Ready(None) => {
                    this.pending_end = true;
                    continue;
                }
                Poll::Pending => {
                    // A backend that reset the stream (or answered whole and ended it) wants
                    // no more of the body.
                    let conn = lock(&this.stream.conn);
                    return match conn.streams.get(&this.stream.id) {
                        Some(s) if s.error.is_none() => Poll::Pending,
                        Some(s) if matches!(s.error, Some(StreamError::Reset(r)) if r == Reason::NO_ERROR) => {
                            Poll::Ready(Ok(()))
                        }
                        Some(s) => Poll::Ready(Err(s
                            .error
                            .clone()
                            .unwrap_or(StreamError::Lost("stream gone".to_owned()))
                            .into())),
                        None => Poll::Ready(Err("the HTTP/2 stream is gone".into())),
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
                        this.stream.send_trailers(&trailers)?;
                        return Poll::Ready(Ok(()));
                    }
                }
            }
        }
    }
}
