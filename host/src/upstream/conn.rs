//! One open connection to a backend: the stream (TCP, or TLS over TCP) and the bytes read from
//! it but not used yet.
//!
//! A connection has no task of its own. The request that leases it writes and reads it
//! directly, and the response body reads the rest. Nothing polls it while it sits idle in the
//! pool, so [`BackendConn::is_alive`] checks, before each reuse, whether the backend closed it meanwhile.

use std::pin::Pin;

use bytes::BytesMut;
use tokio::time::{Instant, Sleep};

use super::counts::ConnectionMark;
use super::stream::BackendStream;
use super::tls::Alpn;
use crate::http1::{buffers, Io};

/// A connection to one backend.
#[derive(Debug)]
pub(super) struct BackendConn {
    /// The stream and what was read from it but not used yet.
    pub(super) wire: Io<BackendStream>,
    pub(super) mark: ConnectionMark,
    /// The pool key of the backend it goes to, with the TLS settings it was made with
    /// ([`super::pool_key`]).
    pub(super) backend: u64,
    /// The protocol negotiated by ALPN over TLS.
    #[allow(dead_code)] // Read once a protocol other than HTTP/1.1 can be negotiated.
    pub(super) alpn: Alpn,
    /// Whether it has carried a request before this one.
    pub(super) reused: bool,
    /// The response deadline's timer, kept from request to request (absent while a request
    /// holds it). Moving a registered timer's deadline later is one atomic operation in tokio's
    /// time driver; registering a new timer and removing it again per request takes its lock
    /// twice (~0.9 µs of a request's ~25 here).
    pub(super) timer: Option<Pin<Box<Sleep>>>,
}

impl BackendConn {
    pub(super) fn new(io: BackendStream, mark: ConnectionMark, backend: u64, alpn: Alpn) -> Self {
        BackendConn {
            wire: Io::new(io, BytesMut::new()),
            mark,
            backend,
            alpn,
            reused: false,
            timer: None,
        }
    }

    /// The connection's timer, taken out of it and set to fire at `deadline`.
    pub(super) fn take_timer(&mut self, deadline: Instant) -> Pin<Box<Sleep>> {
        match self.timer.take() {
            Some(mut timer) => {
                timer.as_mut().reset(deadline);
                timer
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        }
    }

    /// Whether the backend can still be sent a request on it: not closed, and nothing unasked
    /// for arrived (see [`BackendStream::is_alive`]).
    pub(super) fn is_alive(&mut self) -> bool {
        self.wire.buf.is_empty() && self.wire.stream.is_alive()
    }

    /// Frees the read buffer (of an idle connection: it holds nothing unread).
    pub(super) fn drop_buffer(&mut self) {
        self.wire.buf = BytesMut::new();
    }

    /// Gives the connection back to this thread's idle pool, if it is fit for another request.
    pub(super) fn release(mut self: Box<Self>) {
        if !self.wire.buf.is_empty() {
            // Bytes after the end of the response: the backend is not speaking HTTP/1.1 right.
            tracing::debug!("upstream connection closed: bytes after the response");
            return;
        }
        // An idle connection holds no buffer: the next response reads into one of the worker's
        // spares, warm from the last read of any connection (a long body's large one is freed).
        if self.wire.buf.capacity() > 2 * buffers::READ_MIN {
            self.drop_buffer();
        }
        self.wire.release_buffer();
        self.reused = true;
        super::idle::put(self);
    }
}
