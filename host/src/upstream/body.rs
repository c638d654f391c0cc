//! A backend's response body, read straight from its connection by whoever polls it. Read to its
//! end, it gives the connection back to the pool; dropped before, the connection closes with it
//! (the rest of the body must never be taken for the next response).

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tokio::net::TcpStream;

use super::conn::Conn;
use crate::proxy::BoxError;
use crate::wire::{Chunked, Decoded, Framing, RawFields};

/// The body of a response from a backend, and the header fields of its head on their way to the
/// client (see [`ResponseBody::take_fields`]).
#[derive(Debug)]
pub struct ResponseBody {
    state: State,
    fields: RawFields,
}

#[derive(Debug)]
enum State {
    /// Read whole with the head (the connection already went back): one frame.
    Buffered(Bytes),
    /// `Content-Length` bytes, this many left.
    Length {
        conn: Conn,
        left: u64,
        keep_alive: bool,
    },
    Chunked {
        conn: Conn,
        decoder: Chunked,
        keep_alive: bool,
    },
    UntilClose(Conn),
    /// `101 Switching Protocols`: no body; the connection goes to the tunnel.
    Upgrade(Conn),
    Done,
}

/// A backend connection after `101 Switching Protocols`: the socket, and what the backend sent
/// after the 101 head.
#[derive(Debug)]
pub struct Upgraded {
    pub io: TcpStream,
    pub read: BytesMut,
}

impl ResponseBody {
    /// The body that follows a head framed as `framing`, read from `conn`. A body that is
    /// already in the buffer is taken at once, and the connection released.
    /// `fields`: the head's fields to forward.
    pub(super) fn new(
        mut conn: Conn,
        framing: Framing,
        keep_alive: bool,
        fields: RawFields,
    ) -> Self {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => {
                if keep_alive {
                    conn.release();
                }
                State::Done
            }
            Framing::Length(n) if (conn.buf.len() as u64) >= n => {
                // n fits in the buffer, so in usize.
                let body = conn.buf.split_to(n as usize).freeze();
                if keep_alive {
                    conn.release();
                }
                State::Buffered(body)
            }
            Framing::Length(left) => State::Length {
                conn,
                left,
                keep_alive,
            },
            Framing::Chunked => State::Chunked {
                conn,
                decoder: Chunked::response(),
                keep_alive,
            },
            Framing::UntilClose => State::UntilClose(conn),
            Framing::Upgrade => State::Upgrade(conn),
        };
        ResponseBody { state, fields }
    }

    /// The header fields of the response head, as the backend sent them (without the hop-by-hop
    /// ones): the response's header map is left empty, so that an HTTP/1.1 client gets them
    /// copied as they are. Taken once; empty after.
    pub fn take_fields(&mut self) -> RawFields {
        std::mem::take(&mut self.fields)
    }

    /// The header fields of the response head, left in place (see [`ResponseBody::take_fields`]).
    pub fn fields(&self) -> &RawFields {
        &self.fields
    }

    /// The connection, if this is the body of a `101 Switching Protocols`.
    pub fn into_upgraded(self) -> Option<Upgraded> {
        match self.state {
            State::Upgrade(conn) => Some(Upgraded {
                io: conn.io,
                read: conn.buf,
            }),
            _ => None,
        }
    }

    /// Ends the body: its connection goes back to the pool if `keep_alive` allowed it and the
    /// body was framed to the grammar (a leniently framed one says the backend may frame the
    /// next one in a way lbhost reads differently).
    fn finish(&mut self) {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Length {
                conn,
                keep_alive: true,
                ..
            } => conn.release(),
            State::Chunked {
                conn,
                decoder,
                keep_alive: true,
            } => {
                if decoder.is_lenient() {
                    tracing::debug!("upstream connection closed: chunked body off the grammar");
                } else {
                    conn.release();
                }
            }
            _ => {}
        }
    }

    /// Fails the body: the connection is closed.
    fn fail(&mut self, error: impl Into<BoxError>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.state = State::Done;
        Poll::Ready(Some(Err(error.into())))
    }
}

fn cut_short() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the backend closed the connection before the end of the body",
    )
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Done | State::Upgrade(_) => return Poll::Ready(None),
                State::Buffered(body) => {
                    let body = std::mem::take(body);
                    this.state = State::Done;
                    return Poll::Ready(Some(Ok(Frame::data(body))));
                }
                State::Length { conn, left, .. } => {
                    if conn.buf.is_empty() {
                        match ready!(conn.poll_fill(cx, *left)) {
                            Ok(0) => return this.fail(cut_short()),
                            Ok(_) => {}
                            Err(e) => return this.fail(e),
                        }
                    }
                    let take = conn
                        .buf
                        .len()
                        .min(usize::try_from(*left).unwrap_or(usize::MAX));
                    let data = conn.buf.split_to(take).freeze();
                    *left -= take as u64;
                    if *left == 0 {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                State::Chunked { conn, decoder, .. } => match decoder.decode(&mut conn.buf) {
                    Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Decoded::Trailers(trailers)) => {
                        this.finish();
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                    }
                    Ok(Decoded::End) => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Ok(Decoded::NeedMore) => match ready!(conn.poll_fill(cx, decoder.left())) {
                        Ok(0) => return this.fail(cut_short()),
                        Ok(_) => {}
                        Err(e) => return this.fail(e),
                    },
                    Err(e) => return this.fail(e),
                },
                State::UntilClose(conn) => {
                    if !conn.buf.is_empty() {
                        let data = conn.buf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    match ready!(conn.poll_fill(cx, 0)) {
                        Ok(0) => {
                            this.state = State::Done;
                            return Poll::Ready(None);
                        }
                        Ok(_) => {}
                        Err(e) => return this.fail(e),
                    }
                }
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
            State::Length { left, .. } => SizeHint::with_exact(*left),
            State::Chunked { .. } | State::UntilClose(_) => SizeHint::default(),
        }
    }
}
