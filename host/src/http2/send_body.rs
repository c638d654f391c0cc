//! A body sent on its HTTP/2 stream as the peer's flow-control window opens: after a chunk went
//! out, the next is read only once the stream has room again, so at most one chunk waits in
//! h2's buffer; then the trailers or an empty frame end the stream.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::Body;

use crate::body::BoxError;

/// Sends `body` on `stream` until it ends; a failed body resets the stream.
pub(crate) struct SendBody<B> {
    body: B,
    stream: h2::SendStream<Bytes>,
    /// A chunk went out: the next waits for room in the window. (The first chunk does not:
    /// a body of one chunk, the usual response, goes out without a look at the window.)
    sent: bool,
}

impl<B> SendBody<B> {
    pub(crate) fn new(body: B, stream: h2::SendStream<Bytes>) -> Self {
        SendBody {
            body,
            stream,
            sent: false,
        }
    }
}

impl<B> Future for SendBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Output = Result<(), BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            if this.sent {
                // Room for one byte is enough to send the next chunk whole (h2 splits it into
                // frames as the window opens).
                this.stream.reserve_capacity(1);
                while this.stream.capacity() == 0 {
                    match ready!(this.stream.poll_capacity(cx)) {
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Poll::Ready(Err(e.into())),
                        None => return Poll::Ready(Err("the HTTP/2 stream closed".into())),
                    }
                }
                this.sent = false;
            }
            let frame = match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => frame,
                Poll::Ready(Some(Err(e))) => {
                    this.stream.send_reset(h2::Reason::INTERNAL_ERROR);
                    return Poll::Ready(Err(e.into()));
                }
                Poll::Ready(None) => {
                    this.stream.send_data(Bytes::new(), true)?;
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending => {
                    // While the body waits, a reset by the peer ends the wait.
                    return match this.stream.poll_reset(cx) {
                        Poll::Ready(Ok(reason)) => {
                            Poll::Ready(Err(format!("the peer reset the stream: {reason}").into()))
                        }
                        Poll::Ready(Err(e)) => Poll::Ready(Err(e.into())),
                        Poll::Pending => Poll::Pending,
                    };
                }
            };
            match frame.into_data() {
                Ok(data) => {
                    let end = this.body.is_end_stream();
                    if data.is_empty() && !end {
                        continue;
                    }
                    this.stream.send_data(data, end)?;
                    if end {
                        return Poll::Ready(Ok(()));
                    }
                    this.sent = true;
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        this.stream.send_trailers(trailers)?;
                        return Poll::Ready(Ok(()));
                    }
                }
            }
        }
    }
}
