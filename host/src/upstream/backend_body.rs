//! A backend's response body, read straight from its connection by whoever polls it
//! ([`crate::http1::BodyDecoder`]). Read to its end, it gives the connection back to the pool;
//! dropped before, the connection closes with it (the rest of the body must never be taken for
//! the next response).

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};

use super::conn::BackendConn;
use super::stream::BackendStream;
use crate::body::BoxError;
use crate::http1::{BodyDecoder, Chunked, Framing, RawFields};

/// The body of a response from a backend, and the header fields of its head on their way to the
/// client (see [`BackendBody::take_fields`]).
#[derive(Debug)]
pub(crate) struct BackendBody {
    state: State,
    fields: RawFields,
}

#[derive(Debug)]
enum State {
    /// Read whole with the head (the connection already went back): one frame.
    Buffered(Bytes),
    /// Being read from its connection.
    Reading {
        conn: Box<BackendConn>,
        decoder: BodyDecoder,
        /// The connection can carry another request once the body is read.
        keep_alive: bool,
    },
    /// `101 Switching Protocols`: no body; the connection goes to the tunnel.
    Upgrade(Box<BackendConn>),
    /// An HTTP/2 stream's body (and trailers); the stream's place on its connection is held
    /// until it ends.
    H2(
        super::h2::ResponseBody,
        #[allow(dead_code)] super::h2::StreamSlot,
    ),
    Done,
}

/// A backend connection after `101 Switching Protocols`: the stream, and what the backend sent
/// after the 101 head.
#[derive(Debug)]
pub(crate) struct Upgraded {
    pub io: BackendStream,
    pub read: BytesMut,
}

impl BackendBody {
    /// The body that follows a head framed as `framing`, read from `conn`. A body that is
    /// already in the buffer is taken at once, and the connection released.
    /// `fields`: the head's fields to forward.
    pub(super) fn new(
        mut conn: Box<BackendConn>,
        framing: Framing,
        keep_alive: bool,
        fields: RawFields,
    ) -> Self {
        let decoder = match framing {
            Framing::Empty => BodyDecoder::Done,
            Framing::Length(n) => BodyDecoder::length(n),
            Framing::Chunked => BodyDecoder::Chunked(Chunked::response()),
            Framing::UntilClose => BodyDecoder::UntilClose,
            Framing::Upgrade => {
                return BackendBody {
                    state: State::Upgrade(conn),
                    fields,
                }
            }
        };
        let state = match decoder {
            BodyDecoder::Done => {
                if keep_alive {
                    conn.release();
                }
                State::Done
            }
            BodyDecoder::Length(n) if (conn.wire.buf.len() as u64) >= n => {
                // n fits in the buffer, so in usize.
                let body = conn.wire.buf.split_to(n as usize).freeze();
                if keep_alive {
                    conn.release();
                }
                State::Buffered(body)
            }
            decoder => State::Reading {
                conn,
                decoder,
                keep_alive,
            },
        };
        BackendBody { state, fields }
    }

    /// The body of an HTTP/2 response, whose fields are in its response's header map.
    pub(super) fn h2(body: super::h2::ResponseBody, slot: super::h2::StreamSlot) -> Self {
        let state = if body.is_end_stream() {
            State::Done
        } else {
            State::H2(body, slot)
        };
        BackendBody {
            state,
            fields: RawFields::default(),
        }
    }

    /// The header fields of the response head, as the backend sent them (without the hop-by-hop
    /// ones): the response's header map is left empty, so that an HTTP/1.1 client gets them
    /// copied as they are. Taken once; empty after.
    pub(crate) fn take_fields(&mut self) -> RawFields {
        std::mem::take(&mut self.fields)
    }

    /// The header fields of the response head, left in place (see [`BackendBody::take_fields`]).
    pub(crate) fn fields(&self) -> &RawFields {
        &self.fields
    }

    /// The connection, if this is the body of a `101 Switching Protocols`.
    pub(crate) fn into_upgraded(self) -> Option<Upgraded> {
        match self.state {
            State::Upgrade(conn) => Some(Upgraded {
                io: conn.wire.stream,
                read: conn.wire.buf,
            }),
            _ => None,
        }
    }

    /// Ends the body once it was read whole: its connection goes back to the pool if
    /// `keep_alive` allowed it and the body was framed to the grammar (a leniently framed one
    /// says the backend may frame the next one in a way lbhost reads differently).
    fn finish(&mut self) {
        if let State::Reading {
            conn,
            decoder,
            keep_alive: true,
        } = std::mem::replace(&mut self.state, State::Done)
        {
            if decoder.is_lenient() {
                tracing::debug!("upstream connection closed: chunked body off the grammar");
            } else {
                conn.release();
            }
        }
    }
}

impl Body for BackendBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let (conn, decoder) = match &mut this.state {
            State::Done | State::Upgrade(_) => return Poll::Ready(None),
            State::Buffered(body) => {
                let body = std::mem::take(body);
                this.state = State::Done;
                return Poll::Ready(Some(Ok(Frame::data(body))));
            }
            State::Reading { conn, decoder, .. } => (conn, decoder),
            State::H2(body, _) => {
                let frame = ready!(Pin::new(body).poll_frame(cx));
                let end = match &frame {
                    None | Some(Err(_)) => true,
                    Some(Ok(_)) => false,
                };
                if end {
                    this.state = State::Done;
                } else if let State::H2(body, _) = &this.state {
                    if body.is_end_stream() {
                        this.state = State::Done;
                    }
                }
                return Poll::Ready(frame);
            }
        };
        let frame = ready!(decoder.poll_frame(&mut conn.wire, cx));
        match frame {
            Some(Err(e)) => {
                // The connection closes with the failed body.
                this.state = State::Done;
                Poll::Ready(Some(Err(e.into())))
            }
            Some(Ok(frame)) => {
                if decoder.is_done() {
                    this.finish();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            None => {
                this.finish();
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done | State::Upgrade(_))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state {
            State::Done | State::Upgrade(_) => SizeHint::with_exact(0),
            State::Buffered(body) => SizeHint::with_exact(body.len() as u64),
            State::Reading { decoder, .. } => decoder.size_hint(),
            State::H2(body, _) => body.size_hint(),
        }
    }
}
