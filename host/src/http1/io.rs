//! A connection's stream and the bytes read from it but not used yet: the one I/O wrapper of
//! both roles (a client's connection in `server::h1`, a backend's in `upstream`).

use std::io;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::AsyncRead;

use super::buffers;

/// A stream and its read buffer.
#[derive(Debug)]
pub(crate) struct Io<S> {
    pub(crate) stream: S,
    /// Read from `stream`, not consumed yet.
    pub(crate) buf: BytesMut,
}

impl<S: AsyncRead + Unpin> Io<S> {
    pub(crate) fn new(stream: S, buf: BytesMut) -> Self {
        Io { stream, buf }
    }

    /// Reads what the stream has into the buffer; `Ok(0)` at end of stream. `wanted` (what the
    /// reader knows is still to come, 0 if nothing) sizes the read. An empty buffer is first
    /// taken from the worker's spares ([`buffers`]).
    pub(crate) fn poll_fill(
        &mut self,
        cx: &mut Context<'_>,
        wanted: u64,
    ) -> Poll<io::Result<usize>> {
        buffers::poll_read(&mut self.stream, &mut self.buf, cx, wanted)
    }

    /// [`Io::poll_fill`] as a future.
    pub(crate) async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx, 0)).await
    }

    /// Gives an empty read buffer to the worker's spares, for whichever connection reads next.
    pub(crate) fn release_buffer(&mut self) {
        buffers::release_read(&mut self.buf);
    }
}
