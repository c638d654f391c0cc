//! The body of a client's request, read from the connection as the proxy streams it on:
//! `Content-Length` bytes or chunked (trailers included), nothing past its end. The first read
//! of an `Expect: 100-continue` body sends `100 Continue`.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::io::{lock, Reading, Shared};
use crate::proxy::BoxError;
use crate::wire::Decoded;

/// A request body; `None` inside when the request has none (then nothing is shared).
#[derive(Debug)]
pub(super) struct RequestBody(Option<Shared>);

impl RequestBody {
    pub(super) fn empty() -> Self {
        RequestBody(None)
    }

    /// The body of the request whose head was just read from `io`.
    pub(super) fn new(io: Shared) -> Self {
        RequestBody(Some(io))
    }
}

/// Why a request body could not be read to its end.
fn failed(why: &str) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    Poll::Ready(Some(Err(format!("client request body: {why}").into())))
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some(shared) = &self.0 else {
            return Poll::Ready(None);
        };
        let mut io = lock(shared);
        if let Err(e) = ready!(io.poll_continue(cx)) {
            io.body = Reading::Failed;
            return failed(&e.to_string());
        }
        loop {
            let wanted = match &mut io.body {
                Reading::Done => return Poll::Ready(None),
                Reading::Failed => return failed("the connection failed"),
                Reading::Length(left) => {
                    let left = *left;
                    if !io.buf.is_empty() {
                        let take = io
                            .buf
                            .len()
                            .min(usize::try_from(left).unwrap_or(usize::MAX));
                        let data = io.buf.split_to(take).freeze();
                        let left = left - take as u64;
                        io.body = if left == 0 {
                            Reading::Done
                        } else {
                            Reading::Length(left)
                        };
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    left
                }
                Reading::Chunked(decoder) => {
                    let mut decoder = *decoder;
                    let decoded = decoder.decode(&mut io.buf);
                    io.body = Reading::Chunked(decoder);
                    match decoded {
                        Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                        Ok(Decoded::Trailers(trailers)) => {
                            return Poll::Ready(Some(Ok(Frame::trailers(trailers))))
                        }
                        Ok(Decoded::End) => {
                            io.body = Reading::Done;
                            return Poll::Ready(None);
                        }
                        Ok(Decoded::NeedMore) => decoder.left(),
                        Err(_) => {
                            io.body = Reading::Failed;
                            return failed("malformed chunked encoding");
                        }
                    }
                }
            };
            match ready!(io.poll_fill(cx, wanted)) {
                Ok(0) => {
                    io.body = Reading::Failed;
                    return failed("the client closed the connection before its end");
                }
                Ok(_) => {}
                Err(e) => {
                    io.body = Reading::Failed;
                    return failed(&e.to_string());
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0
            .as_ref()
            .is_none_or(|io| lock(io).body == Reading::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.0.as_ref().map(|io| lock(io).body) {
            None | Some(Reading::Done) => SizeHint::with_exact(0),
            Some(Reading::Length(left)) => SizeHint::with_exact(left),
            Some(Reading::Chunked(_) | Reading::Failed) => SizeHint::default(),
        }
    }
}
