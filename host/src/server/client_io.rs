//! The client socket with lbhost's own HTTP/1.1 read timeouts.
//!
//! hyper's header timeout closes the connection silently and also bounds keep-alive idle time.
//! lbhost wants two separate limits, and a clear answer for a slow client:
//! - a request head must arrive within `header_read` of its first byte, or the client gets
//!   `408 Request Timeout` and the connection closes;
//! - a keep-alive connection with no request in progress closes after `client_idle`.
//!
//! HTTP/2 connections (seen by their preface) are left to HTTP/2's own keep-alive.
//!
//! It also lets a keep-alive connection be *parked*: between requests the connection can be taken
//! back from hyper (whose buffers and state cost ~20 KiB per connection) and wait as a bare socket
//! (see `connection.rs`). For that it keeps what hyper had read but not parsed (`prefix`), tells
//! whether everything written was flushed, and makes `shutdown` a no-op while parking.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

const TIMEOUT_408: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";

/// Shared between a connection's socket, its service and the task that drives it: where the
/// current exchange stands.
#[derive(Debug)]
pub struct ConnState {
    /// The last response is done (body included): the next bytes start a new head.
    awaiting_head: AtomicBool,
    /// The last request had no body, so nothing of it is left to read.
    request_read: AtomicBool,
    /// Everything written to the socket was flushed (hyper flushes its buffer before the io).
    flushed: AtomicBool,
    /// The connection became a tunnel (101): no HTTP deadlines apply any more.
    upgraded: AtomicBool,
    /// The driving task is taking the socket back from hyper: `shutdown` must not close it.
    parking: AtomicBool,
    /// Request heads received (wrapping): tells the driving task whether the connection idled.
    requests: AtomicU32,
}

impl ConnState {
    /// A new connection awaits its first request head.
    pub fn new() -> Arc<Self> {
        Arc::new(ConnState {
            awaiting_head: AtomicBool::new(true),
            request_read: AtomicBool::new(true),
            flushed: AtomicBool::new(true),
            upgraded: AtomicBool::new(false),
            parking: AtomicBool::new(false),
            requests: AtomicU32::new(0),
        })
    }

    /// The service got a request: its head is complete. `body_empty`: it has no body (so when
    /// its response is done, hyper has nothing left to read of it).
    pub fn head_received(&self, body_empty: bool) {
        self.awaiting_head.store(false, Ordering::Relaxed);
        self.request_read.store(body_empty, Ordering::Relaxed);
        // Only this connection's service writes it: no locked add needed.
        let requests = self.requests.load(Ordering::Relaxed);
        self.requests
            .store(requests.wrapping_add(1), Ordering::Relaxed);
    }

    /// How many request heads the connection received (wrapping).
    pub fn requests(&self) -> u32 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Whether hyper is between requests with nothing left to read or write: the last response
    /// was sent and flushed whole, the request had no body, the connection is not a tunnel.
    /// Then hyper may be let go of the socket (see `connection.rs`).
    pub fn between_requests(&self) -> bool {
        self.awaiting_head.load(Ordering::Relaxed)
            && self.request_read.load(Ordering::Relaxed)
            && self.flushed.load(Ordering::Relaxed)
            && !self.upgraded.load(Ordering::Relaxed)
    }

    /// While set, shutting the io down leaves the socket open (the connection is parked).
    pub fn set_parking(&self, parking: bool) {
        self.parking.store(parking, Ordering::Relaxed);
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
    /// Seen the HTTP/2 preface ([`ClientIo::sniff_http2`]): HTTP/2's keep-alive applies, not
    /// these deadlines.
    http2: bool,
    deadline: Pin<Box<Sleep>>,
    /// Bytes read from the socket that HTTP has not consumed yet (the protocol sniff, or a
    /// partial head hyper held when the connection was parked): read before the socket.
    prefix: Bytes,
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
            http2: false,
            deadline: Box::pin(tokio::time::sleep(client_idle)),
            prefix: Bytes::new(),
        }
    }

    /// Reads the first bytes (under the usual deadlines) and tells whether they are the HTTP/2
    /// prior-knowledge preface. The bytes are kept and read again by whoever serves the
    /// connection. `Ok(false)` also for a client that closed before sending anything.
    pub async fn sniff_http2(&mut self) -> io::Result<bool> {
        const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        let mut head = [0u8; PREFACE.len()];
        let mut filled = 0;
        while filled < head.len() {
            let n = std::future::poll_fn(|cx| {
                let mut buf = ReadBuf::new(&mut head[filled..]);
                ready!(Pin::new(&mut *self).poll_read(cx, &mut buf))?;
                Poll::Ready(Ok::<_, io::Error>(buf.filled().len()))
            })
            .await?;
            filled += n;
            if n == 0 || head[..filled] != PREFACE[..filled] {
                break;
            }
        }
        let http2 = head[..filled] == *PREFACE;
        self.http2 = http2;
        self.prefix = Bytes::copy_from_slice(&head[..filled]);
        Ok(http2)
    }

    /// Keeps `unread` (what hyper had buffered but not parsed) to be read first. Copied: the
    /// bytes hyper hands back share its whole read buffer, which is what parking frees.
    pub fn unread(&mut self, unread: Bytes) {
        self.prefix = if unread.is_empty() {
            Bytes::new()
        } else {
            Bytes::copy_from_slice(&unread)
        };
    }

    /// Waits, with no HTTP machinery attached, until the client sends something (or closes):
    /// `true`. `false` when a deadline passed first (the idle one; or, if part of a head is kept,
    /// the head one, answered with 408), or the socket failed.
    pub async fn wait_for_request(&mut self) -> bool {
        // The last exchange ended without another read, so the phase is set here.
        let phase = if self.prefix.is_empty() {
            Phase::Idle
        } else {
            Phase::Head
        };
        if self.phase != phase {
            let wait = match phase {
                Phase::Head => self.header_read,
                _ => self.client_idle,
            };
            self.phase = phase;
            self.deadline.as_mut().reset(Instant::now() + wait);
        }
        tokio::select! {
            ready = self.stream.readable() => ready.is_ok(),
            () = self.deadline.as_mut() => {
                if phase == Phase::Head {
                    let _ = self.stream.try_write(TIMEOUT_408);
                }
                false
            }
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
        let result = if this.prefix.is_empty() {
            Pin::new(&mut this.stream).poll_read(cx, buf)
        } else {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            Poll::Ready(Ok(()))
        };
        let got = buf.filled().len() > before;
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
        let this = self.get_mut();
        this.state.flushed.store(false, Ordering::Relaxed);
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.state.flushed.store(false, Ordering::Relaxed);
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_flush(cx);
        if let Poll::Ready(Ok(())) = result {
            this.state.flushed.store(true, Ordering::Relaxed);
        }
        result
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.state.parking.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_shutdown(cx)
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
