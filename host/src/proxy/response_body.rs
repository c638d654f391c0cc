//! The body lbhost sends to clients: a backend's streamed body, or a short local answer.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;

use crate::body::BoxError;
use crate::http1::{BadField, RawFields};
use crate::pool::InFlight;
use crate::upstream::BackendBody;

/// A response body. A backend's body streams through frame by frame and keeps the backend's
/// in-flight count until it ends or the client goes away.
#[derive(Debug)]
pub(crate) enum ProxyBody {
    /// A backend's body.
    Upstream(Relayed),
    /// A short local body.
    Local(Full<Bytes>),
}

/// A backend's body on its way to the client. Read to its end, it gives the upstream connection
/// back to the pool; dropped before (the client went away, the stream failed), the connection
/// closes with it.
#[derive(Debug)]
pub(crate) struct Relayed {
    body: BackendBody,
    /// Held until the backend's body has been read whole (or is dropped): the backend is done
    /// then, even if the client has yet to receive the last bytes.
    in_flight: Option<InFlight>,
}

impl ProxyBody {
    /// A backend's body, counted in flight until it has been read whole or is dropped.
    pub(crate) fn upstream(body: BackendBody, in_flight: InFlight) -> Self {
        ProxyBody::Upstream(Relayed {
            body,
            in_flight: Some(in_flight),
        })
    }

    /// A short local body.
    pub(crate) fn local(text: impl Into<Bytes>) -> Self {
        ProxyBody::Local(Full::new(text.into()))
    }

    /// The backend's header fields that belong in the response head with the ones in its header
    /// map (see [`BackendBody::take_fields`]); none for a local body. Taken once.
    pub(crate) fn take_fields(&mut self) -> RawFields {
        match self {
            ProxyBody::Upstream(relayed) => relayed.body.take_fields(),
            ProxyBody::Local(_) => RawFields::default(),
        }
    }
}

/// `response` with the backend's fields moved into its header map, for a writer that has no use
/// for them in wire form (HTTP/2). A field the `http` types refuse fails the response, and so
/// does a transfer coding other than chunked: HTTP/2 has no way to say the body carries it.
pub(crate) fn with_header_map(
    mut response: Response<ProxyBody>,
) -> Result<Response<ProxyBody>, BadField> {
    let fields = response.body_mut().take_fields();
    if fields.transfer_codings().is_some() {
        return Err(BadField::TransferCoding);
    }
    if !fields.is_empty() {
        let map = fields.header_map()?;
        let headers = response.headers_mut();
        if headers.is_empty() {
            // The usual case: no field was added to the backend's (one map, not two).
            *headers = map;
        } else {
            // Appended, not replacing: a field the strategy added (`Set-Cookie`) and the
            // backend's of the same name both go out.
            let mut last = None;
            for (name, value) in map {
                if let Some(name) = name {
                    last = Some(name);
                }
                if let Some(name) = &last {
                    headers.append(name.clone(), value);
                }
            }
        }
    }
    Ok(response)
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ProxyBody::Upstream(relayed) => {
                let frame = Pin::new(&mut relayed.body).poll_frame(cx);
                if relayed.body.is_end_stream() {
                    relayed.in_flight = None;
                }
                frame
            }
            ProxyBody::Local(body) => Pin::new(body)
                .poll_frame(cx)
                .map_err(|never| match never {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream(relayed) => relayed.body.is_end_stream(),
            ProxyBody::Local(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream(relayed) => relayed.body.size_hint(),
            ProxyBody::Local(body) => body.size_hint(),
        }
    }
}
