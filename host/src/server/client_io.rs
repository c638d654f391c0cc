//! The client socket with lbhost's own HTTP/1.1 read timeouts.
//!
//! hyper's header timeout closes the connection silently and also bounds keep-alive idle time.
//! lbhost wants two separate limits, and a clear answer for a slow client:
//! - a request head must arrive within `header_read` of its first byte, or the client gets
//!   `408 Request Timeout` and the connection closes;
//! - a keep-alive connection with no request in progress closes after `client_idle`.
//!
//! HTTP/2 connections (seen by their preface) are left to HTTP/2's own keep-alive.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

const TIMEOUT_408: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";

/// Shared between a connection's socket and its service: whether a request head is awaited.
#[derive(Debug)]
pub struct ConnState {
    awaiting_head: AtomicBool,
    /// The connection became a tunnel (101): no HTTP deadlines apply any more.
    upgraded: AtomicBool,
}

impl ConnState {
    /// A new connection awaits its first request head.
    pub fn new() -> Arc<Self> {
        Arc::new(ConnState {
            awaiting_head: AtomicBool::new(true),
            upgraded: AtomicBool::new(false),
        })
    }

    /// The service got a request: its head is complete.
    pub fn head_received(&self) {
        self.awaiting_head.store(false, Ordering::Relaxed);
    }

    /// The response (body included) is done: the next bytes from the client start a new head.
    pub fn response_done(&self) {
        if !self.upgraded.load(Ordering::Relaxed) {
            self.awaiting_head.store(true, Ordering::Relaxed);
        }
    }

    /// The connection switched protocols: it is a tunnel from now on.
    pub fn upgraded(&self) {
        self.upgraded.store(true, Ordering::Relaxed);
        self.awaiting_head.store(false, Ordering::Relaxed);
    }

    fn awaiting_head(&self) -> bool {
        self.awaiting_head.load(Ordering::Relaxed)
    }
}

/// What the read deadline currently guards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for a head with no byte of it yet: `client_idle`.
    Idle,
    /// Part of a head has arrived: `header_read`, then 408.
    Head,
    /// A request is in progress (or the connection is HTTP/2): no deadline.
    Busy,
}

/// A client TCP stream enforcing the head and idle deadlines described in the module docs.
pub struct ClientIo {
    stream: TcpStream,
    state: Arc<ConnState>,
    header_read: Duration,
    client_idle: Duration,
    /// What `deadline` guards now.
    phase: Phase,
    first_read: bool,
    /// Seen the HTTP/2 preface: HTTP/2's keep-alive applies, not these deadlines.
    http2: bool,
    deadline: Pin<Box<Sleep>>,
}

impl ClientIo {
    /// Wraps `stream`.
    pub fn new(
        stream: TcpStream,
        state: Arc<ConnState>,
        header_read: Duration,
        client_idle: Duration,
    ) -> Self {
        ClientIo {
            stream,
            state,
            header_read,
            client_idle,
            phase: Phase::Idle,
            first_read: true,
            http2: false,
            deadline: Box::pin(tokio::time::sleep(client_idle)),
        }
    }
}

impl AsyncRead for ClientIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.stream).poll_read(cx, buf);
        let got = buf.filled().len() > before;
        if this.first_read && got {
            this.first_read = false;
            this.http2 = buf.filled()[before..].starts_with(b"PRI * HTTP/2.0");
        }
        // Which deadline applies now.
        let awaiting = !this.http2 && this.state.awaiting_head();
        let phase = match (awaiting, this.phase, got) {
            (false, _, _) => Phase::Busy,
            (true, Phase::Busy, false) => Phase::Idle,
            (true, Phase::Busy | Phase::Idle, true) => Phase::Head,
            (true, phase, _) => phase,
        };
        if phase != this.phase || (phase == Phase::Idle && got) {
            let wait = match phase {
                Phase::Head => this.header_read,
                _ => this.client_idle,
            };
            this.deadline.as_mut().reset(Instant::now() + wait);
            this.phase = phase;
        }
        if result.is_pending() && phase != Phase::Busy {
            ready!(this.deadline.as_mut().poll(cx));
            if phase == Phase::Head {
                // Best effort: the client may be gone already.
                let _ = this.stream.try_write(TIMEOUT_408);
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request head timeout",
                )));
            }
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "idle keep-alive connection",
            )));
        }
        result
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

pin_project_lite::pin_project! {
    /// A response body that tells the connection when it is done (dropped after its last frame),
    /// so the idle deadline starts only then: a long download is not an idle connection.
    pub struct TrackedBody<B> {
        #[pin]
        inner: B,
        state: Arc<ConnState>,
    }

    impl<B> PinnedDrop for TrackedBody<B> {
        fn drop(this: Pin<&mut Self>) {
            this.state.response_done();
        }
    }
}

impl<B> TrackedBody<B> {
    /// Wraps `inner`, reporting to `state` when dropped.
    pub fn new(inner: B, state: Arc<ConnState>) -> Self {
        TrackedBody { inner, state }
    }
}

impl<B: http_body::Body> http_body::Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
