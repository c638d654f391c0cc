//! The body of a request or response on an HTTP/2 stream, then its trailers: each DATA frame
//! read gives its bytes back to the stream's and the connection's flow-control windows, so the
//! peer sends on as the body is read.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::header::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use super::content_length;
use crate::body::BoxError;

/// A body being read from its stream.
#[derive(Debug)]
pub(crate) struct RecvBody {
    recv: h2::RecvStream,
    /// The DATA frames ended: the trailers (if any) come next.
    data_done: bool,
    /// Bytes still to come, when the response had a `content-length` (h2 checks the DATA frames
    /// against it).
    left: Option<u64>,
}

impl RecvBody {
    /// The body of a message whose head had `headers`.
    pub(crate) fn new(recv: h2::RecvStream, headers: &HeaderMap) -> Self {
        let left = if recv.is_end_stream() {
            Some(0)
        } else {
            content_length(headers).ok().flatten()
        };
        RecvBody {
            recv,
            data_done: false,
            left,
        }
    }
}

impl Body for RecvBody {
    type Data = Bytes;
    type Error = BoxError;

    /// The next DATA frame, then the trailers, then `None`. A `RST_STREAM` with `NO_ERROR` ends
    /// the body early without failing it (the peer answered before reading the whole request,
    /// RFC 9113 §8.1).
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if !this.data_done {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    // Fails only on a stream already closed, whose window no longer matters.
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    if let Some(left) = &mut this.left {
                        *left = left.saturating_sub(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) => return Poll::Ready(ended_early(e)),
                None => this.data_done = true,
            }
        }
        match ready!(this.recv.poll_trailers(cx)) {
            Ok(trailers) => Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t)))),
            Err(e) => Poll::Ready(ended_early(e)),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.left
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

fn ended_early(e: h2::Error) -> Option<Result<Frame<Bytes>, BoxError>> {
    if e.reason() == Some(h2::Reason::NO_ERROR) {
        None
    } else {
        Some(Err(e.into()))
    }
}
