//! A request body sent over HTTP/2 that keeps what it sent (up to [`REPLAY_LIMIT`]), so that a
//! stream the backend refused unprocessed (`REFUSED_STREAM`, or past a `GOAWAY`'s last stream)
//! can go to another backend even though part of the body was already read from the client.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use crate::body::{BoxError, UpstreamBody};

/// Bodies up to this size can be sent again after a refused stream (gRPC calls are mostly far
/// smaller); past it, the recording stops and a refused stream fails the request.
pub(crate) const REPLAY_LIMIT: usize = 64 * 1024;

/// One reader of a recorded request body: the frames recorded so far from its position, then the
/// rest of the client's body (recorded as it goes).
pub(crate) struct ReplayBody {
    shared: Arc<Mutex<Recording>>,
    /// The next frame this reader gives.
    next: usize,
}

impl std::fmt::Debug for ReplayBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayBody")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

struct Recording {
    /// The client's body, read on demand by whichever reader is ahead.
    inner: UpstreamBody,
    /// The frames read from `inner`, in order (while `overflowed` is false).
    frames: Vec<Recorded>,
    bytes: usize,
    /// More than [`REPLAY_LIMIT`] was read: nothing is kept, nothing can be replayed.
    overflowed: bool,
    /// `inner` ended (or failed).
    ended: bool,
}

enum Recorded {
    Data(Bytes),
    Trailers(HeaderMap),
}

impl ReplayBody {
    /// A recording reader of `inner`.
    pub(crate) fn new(inner: UpstreamBody) -> Self {
        ReplayBody {
            shared: Arc::new(Mutex::new(Recording {
                inner,
                frames: Vec::new(),
                bytes: 0,
                overflowed: false,
                ended: false,
            })),
            next: 0,
        }
    }

    /// A second reader from the start, if everything read so far was kept.
    pub(crate) fn replay(&self) -> Option<ReplayBody> {
        if lock(&self.shared).overflowed {
            return None;
        }
        Some(ReplayBody {
            shared: Arc::clone(&self.shared),
            next: 0,
        })
    }
}

fn lock(shared: &Mutex<Recording>) -> MutexGuard<'_, Recording> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Body for ReplayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let mut rec = lock(&this.shared);
        if rec.overflowed {
            // Only the reader that read past the limit goes on (`next` is usize::MAX for it).
            if this.next != usize::MAX {
                return Poll::Ready(Some(Err("the request body went to another attempt".into())));
            }
        } else if let Some(frame) = rec.frames.get(this.next) {
            this.next += 1;
            return Poll::Ready(Some(Ok(match frame {
                Recorded::Data(data) => Frame::data(data.clone()),
                Recorded::Trailers(trailers) => Frame::trailers(trailers.clone()),
            })));
        }
        if rec.ended {
            return Poll::Ready(None);
        }
        let polled = Pin::new(&mut rec.inner).poll_frame(cx);
        let Poll::Ready(frame) = polled else {
            return Poll::Pending;
        };
        let frame = match frame {
            None => {
                rec.ended = true;
                return Poll::Ready(None);
            }
            Some(Err(e)) => {
                rec.ended = true;
                return Poll::Ready(Some(Err(e)));
            }
            Some(Ok(frame)) => frame,
        };
        if !rec.overflowed {
            let size = frame.data_ref().map_or(0, Bytes::len);
            if rec.bytes + size > REPLAY_LIMIT {
                rec.overflowed = true;
                rec.frames = Vec::new();
                // This reader streams on; any other can no longer.
                this.next = usize::MAX;
            } else {
                rec.bytes += size;
                let kept = if let Some(data) = frame.data_ref() {
                    Recorded::Data(data.clone())
                } else if let Some(trailers) = frame.trailers_ref() {
                    Recorded::Trailers(trailers.clone())
                } else {
                    return Poll::Ready(Some(Ok(frame)));
                };
                rec.frames.push(kept);
                this.next = rec.frames.len();
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        let rec = lock(&self.shared);
        if rec.overflowed {
            return rec.ended || rec.inner.is_end_stream();
        }
        self.next >= rec.frames.len() && (rec.ended || rec.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let rec = lock(&self.shared);
        if self.next == 0 && rec.frames.is_empty() {
            return rec.inner.size_hint();
        }
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::body::HeldBody;
    use http_body_util::BodyExt;

    /// A client body of a few chunks.
    struct Chunks(VecDeque<Bytes>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(self.get_mut().0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    fn body(chunks: Vec<Bytes>) -> UpstreamBody {
        let held = HeldBody::new(Chunks(chunks.into()));
        held.next_attempt().expect("a fresh body")
    }

    #[tokio::test]
    async fn a_second_reader_gets_the_same_bytes() {
        let first = ReplayBody::new(body(vec![Bytes::from("ab"), Bytes::from("cd")]));
        let again = first.replay().expect("kept");
        let sent = first.collect().await.unwrap().to_bytes();
        assert_eq!(sent, "abcd");
        let resent = again.collect().await.unwrap().to_bytes();
        assert_eq!(resent, "abcd");
    }

    #[tokio::test]
    async fn past_the_limit_nothing_is_replayed() {
        let big = Bytes::from(vec![b'x'; REPLAY_LIMIT + 1]);
        let first = ReplayBody::new(body(vec![Bytes::from("ab"), big]));
        let again = first.replay().expect("nothing read yet");
        let sent = first.collect().await.unwrap().to_bytes();
        assert_eq!(sent.len(), REPLAY_LIMIT + 3);
        assert!(again.collect().await.is_err());
    }
}
