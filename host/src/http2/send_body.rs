//! A body sent on its HTTP/2 stream as the peer's flow-control window opens: the body is read
//! only when the stream has room, so at most one chunk waits in h2's buffer; then the trailers
//! or an empty frame end the stream.

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
}

impl<B> SendBody<B> {
    pub(crate) fn new(body: B, stream: h2::SendStream<Bytes>) -> Self {
        SendBody { body, stream }
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
            // Room for one byte is enough to send the next chunk whole (h2 splits it into
            // frames as the window opens).
            this.stream.reserve_capacity(1);
            if this.stream.capacity() == 0 {
                loop {
                    match ready!(this.stream.poll_capacity(cx)) {
                        Some(Ok(0)) => {}
                        Some(Ok(_)) => break,
                        Some(Err(e)) => return Poll::Ready(Err(e.into())),
                        None => return Poll::Ready(Err("the HTTP/2 stream closed".into())),
                    }
                }
            } else if let Poll::Ready(reset) = this.stream.poll_reset(cx) {
                return Poll::Ready(Err(match reset {
                    Ok(reason) => format!("the backend reset the stream: {reason}").into(),
                    Err(e) => e.into(),
                }));
            }
            let frame = match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                Some(Err(e)) => {
                    this.stream.send_reset(h2::Reason::INTERNAL_ERROR);
                    return Poll::Ready(Err(e.into()));
                }
                None => {
                    this.stream.send_data(Bytes::new(), true)?;
                    return Poll::Ready(Ok(()));
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
