//! A client connection's socket, read buffer and the state of the request body in progress.
//! The connection's loop and the body of the request in progress both read it (the body while
//! the proxy streams it to a backend), from the connection's one task, so the lock around it is
//! never contended.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use tokio::io::AsyncWrite as _;
use tokio::net::TcpStream;

use crate::http1::{BodyDecoder, Io};

/// `100 Continue`, sent when the body of an `Expect: 100-continue` request is first read.
pub(super) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A client connection.
#[derive(Debug)]
pub(super) struct ClientConn {
    /// The socket and what was read from it but not used yet.
    pub(super) wire: Io<TcpStream>,
    /// The body of the request in progress ([`BodyDecoder::Done`] between requests).
    pub(super) body: BodyDecoder,
    /// How much of [`CONTINUE`] is still to be written before the body is read (0: none).
    pub(super) continue_left: usize,
}

/// Shared by the connection's loop and its request body.
pub(super) type Shared = Arc<Mutex<ClientConn>>;

/// The connection, locked (a poisoned lock still holds a usable socket).
pub(super) fn lock(shared: &Shared) -> MutexGuard<'_, ClientConn> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ClientConn {
    pub(super) fn new(stream: TcpStream, buf: BytesMut) -> Self {
        ClientConn {
            wire: Io::new(stream, buf),
            body: BodyDecoder::Done,
            continue_left: 0,
        }
    }

    /// Writes what is left of `100 Continue`, if anything.
    pub(super) fn poll_continue(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.continue_left > 0 {
            let from = CONTINUE.len() - self.continue_left;
            let n = ready!(Pin::new(&mut self.wire.stream).poll_write(cx, &CONTINUE[from..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.continue_left -= n;
        }
        Poll::Ready(Ok(()))
    }
}
