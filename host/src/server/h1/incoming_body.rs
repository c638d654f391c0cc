//! The body of a client's request, read from its connection as the proxy streams it on
//! ([`crate::http1::BodyDecoder`]). The first read of an `Expect: 100-continue` body sends
//! `100 Continue`.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::conn::{lock, Shared};
use crate::body::BoxError;
use crate::http1::BodyDecoder;

/// A request body; `None` inside when the request has none (then nothing is shared).
#[derive(Debug)]
pub(super) struct IncomingBody(Option<Shared>);

impl IncomingBody {
    pub(super) fn empty() -> Self {
        IncomingBody(None)
    }

    /// The body of the request whose head was just read from `conn`.
    pub(super) fn new(conn: Shared) -> Self {
        IncomingBody(Some(conn))
    }
}

impl Body for IncomingBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some(shared) = &self.0 else {
            return Poll::Ready(None);
        };
        let mut guard = lock(shared);
        let conn = &mut *guard;
        if let Err(e) = ready!(conn.poll_continue(cx)) {
            conn.body = BodyDecoder::Failed;
            return Poll::Ready(Some(Err(format!("client request body: {e}").into())));
        }
        conn.body
            .poll_frame(&mut conn.wire, cx)
            .map_err(|e| format!("client request body: {e}").into())
    }

    fn is_end_stream(&self) -> bool {
        self.0.as_ref().is_none_or(|conn| lock(conn).body.is_done())
    }

    fn size_hint(&self) -> SizeHint {
        self.0
            .as_ref()
            .map_or(SizeHint::with_exact(0), |conn| lock(conn).body.size_hint())
    }
}
