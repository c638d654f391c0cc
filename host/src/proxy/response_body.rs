//! The body lbhost sends to clients: a backend's streamed body, or a short local answer.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;

use super::grpc::CallEnd;
use crate::body::BoxError;
use crate::http1::{BadField, RawFields};
use crate::pool::InFlight;
use crate::upstream::BackendBody;

/// A response body. A backend's body streams through frame by frame and keeps the backend's
/// in-flight count until it ends or the client goes away.
// Not boxed: nearly every response is a backend's, and a box would cost each one an allocation.
#[allow(clippy::large_enum_variant)]
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
    /// A gRPC call's response: its end is watched for the `grpc-status` (see [`GrpcWatch`]).
    grpc: Option<GrpcWatch>,
}

/// The body of a gRPC response, on its way: its trailers' `grpc-status` settles the call
/// ([`CallEnd`]), and a backend stream that fails ends it with `UNAVAILABLE` trailers instead.
#[derive(Debug)]
struct GrpcWatch {
    /// `None` once settled.
    end: Option<Box<CallEnd>>,
    /// The body ended with lbhost's trailers.
    done: bool,
}

impl ProxyBody {
    /// A backend's body, counted in flight until it has been read whole or is dropped.
    pub(crate) fn upstream(body: BackendBody, in_flight: InFlight) -> Self {
        ProxyBody::Upstream(Relayed {
            body,
            in_flight: Some(in_flight),
            grpc: None,
        })
    }

    /// Makes this a gRPC response's body, settled by `end` when its trailers come. No effect on
    /// a local body.
    pub(crate) fn watch_grpc(&mut self, end: CallEnd) {
        if let ProxyBody::Upstream(relayed) = self {
            relayed.grpc = Some(GrpcWatch {
                end: Some(Box::new(end)),
                done: false,
            });
        }
    }

    /// The end of the gRPC call this body is watched for, if not settled yet.
    pub(crate) fn grpc_end(&mut self) -> Option<&mut CallEnd> {
        match self {
            ProxyBody::Upstream(Relayed {
                grpc: Some(watch), ..
            }) => watch.end.as_deref_mut(),
            _ => None,
        }
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
                if let Some(watch) = &mut relayed.grpc {
                    return poll_grpc(&mut relayed.body, &mut relayed.in_flight, watch, cx);
                }
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
            ProxyBody::Upstream(relayed) => {
                relayed.grpc.as_ref().is_some_and(|w| w.done) || relayed.body.is_end_stream()
            }
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

/// [`ProxyBody::poll_frame`] for a gRPC response: settles the call with the trailers' status, or
/// with `UNAVAILABLE` (sent as trailers) when the backend's stream fails.
fn poll_grpc(
    body: &mut BackendBody,
    in_flight: &mut Option<InFlight>,
    watch: &mut GrpcWatch,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    if watch.done {
        return Poll::Ready(None);
    }
    let frame = std::task::ready!(Pin::new(&mut *body).poll_frame(cx));
    let settled = match &frame {
        Some(Ok(frame)) => frame.trailers_ref().map(super::grpc::status_in),
        Some(Err(e)) => {
            tracing::debug!(cause = %e, "the backend's gRPC stream failed; ending it with UNAVAILABLE");
            watch.done = true;
            Some(Some(super::grpc::UNAVAILABLE))
        }
        None => Some(None),
    };
    if let Some(status) = settled {
        *in_flight = None;
        if let Some(end) = watch.end.take() {
            end.finish(status);
        }
    } else if body.is_end_stream() {
        *in_flight = None;
    }
    match frame {
        Some(Err(_)) => Poll::Ready(Some(Ok(Frame::trailers(
            super::grpc::failed_stream_trailers(),
        )))),
        frame => Poll::Ready(frame),
    }
}
