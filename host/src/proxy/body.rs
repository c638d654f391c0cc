//! The body lbhost sends to clients: a backend's streamed body, or a short local answer.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use pin_project_lite::pin_project;

use crate::pool::InFlight;

/// The error type of [`ProxyBody`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project! {
    /// A response body. A backend's body streams through frame by frame and keeps the backend's
    /// in-flight count until it ends or the client goes away.
    #[project = ProxyBodyProj]
    pub enum ProxyBody {
        Upstream {
            #[pin]
            body: Incoming,
            in_flight: InFlight,
        },
        Local {
            #[pin]
            body: Full<Bytes>,
        },
    }
}

impl ProxyBody {
    /// A backend's body, counted in flight until it ends.
    pub fn upstream(body: Incoming, in_flight: InFlight) -> Self {
        ProxyBody::Upstream { body, in_flight }
    }

    /// A short local body.
    pub fn local(text: impl Into<Bytes>) -> Self {
        ProxyBody::Local {
            body: Full::new(text.into()),
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            ProxyBodyProj::Upstream { body, .. } => body.poll_frame(cx).map_err(Into::into),
            ProxyBodyProj::Local { body } => body.poll_frame(cx).map_err(|never| match never {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream { body, .. } => body.is_end_stream(),
            ProxyBody::Local { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream { body, .. } => body.size_hint(),
            ProxyBody::Local { body } => body.size_hint(),
        }
    }
}
