//! A client connection's socket and read buffer. The connection's loop and the body of the
//! request in progress both read it (the body while the proxy streams it to a backend), from
//! the connection's one task, so the lock around it is never contended.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use tokio::io::AsyncWrite as _;
use tokio::net::TcpStream;

use crate::buffers;
use crate::wire::Chunked;

/// `100 Continue`, sent when the body of an `Expect: 100-continue` request is first read.
pub(super) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Where the body of the request in progress stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reading {
    /// No body, or all of it was read: the next bytes start a new request.
    Done,
    /// `Content-Length`, this much left.
    Length(u64),
    Chunked(Chunked),
    /// Malformed, or the client went away: the connection cannot carry another request.
    Failed,
}

/// The socket and what was read from it but not used yet.
#[derive(Debug)]
pub(super) struct Io {
    pub stream: TcpStream,
    pub buf: BytesMut,
    pub body: Reading,
    /// How much of [`CONTINUE`] is still to be written before the body is read (0: none).
    pub continue_left: usize,
}

/// Shared by the connection's loop and its request body.
pub(super) type Shared = Arc<Mutex<Io>>;

/// The connection, locked (a poisoned lock still holds a usable socket).
pub(super) fn lock(shared: &Shared) -> MutexGuard<'_, Io> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Io {
    pub(super) fn new(stream: TcpStream, buf: BytesMut) -> Self {
        Io {
            stream,
            buf,
            body: Reading::Done,
            continue_left: 0,
        }
    }

    /// Reads what the socket has into the buffer; `Ok(0)` at end of stream. `wanted` (what the
    /// reader knows is still to come) sizes the read. An empty buffer is first taken from the
    /// worker's spares ([`buffers`]).
    pub(super) fn poll_fill(
        &mut self,
        cx: &mut Context<'_>,
        wanted: u64,
    ) -> Poll<io::Result<usize>> {
        buffers::poll_read(&mut self.stream, &mut self.buf, cx, wanted)
    }

    /// Gives an empty read buffer to the worker's spares, for whichever connection reads next.
    pub(super) fn release_buffer(&mut self) {
        buffers::release_read(&mut self.buf);
    }

    /// Writes what is left of `100 Continue`, if anything.
    pub(super) fn poll_continue(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.continue_left > 0 {
            let from = CONTINUE.len() - self.continue_left;
            let n = ready!(Pin::new(&mut self.stream).poll_write(cx, &CONTINUE[from..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.continue_left -= n;
        }
        Poll::Ready(Ok(()))
    }
}
