//! HTTP/1.1 towards clients, served by lbhost itself: one task per connection reads a request
//! head ([`crate::http1::parse_request`]), hands the request to the proxy with a body that reads
//! the rest from the socket as the proxy streams it on ([`incoming_body`]), and writes the
//! response ([`respond`]). Before
//! this, hyper's server did it: its dispatcher, buffers and per-message state were the largest
//! user-space cost per proxied request (BENCHMARKS.md).
//!
//! Buffers: a connection holds a read buffer only while bytes wait in it, and a response-head
//! buffer only while it writes; both come from a few spares per worker ([`crate::http1::buffers`]),
//! so hundreds of connections share a few warm buffers.
//!
//! Deadlines: a head must arrive within `header_read` of its first byte or the client gets 408;
//! a connection with no request in progress closes after `client_idle`. A connection idle for
//! between one and two [`PARK_AFTER`] is *parked*: the heap slots of its request and response
//! futures are freed too, and it waits as a bare socket (the task is ~0.9 KiB) until the
//! client sends more. A connection that starts with the HTTP/2 preface is handed back to be
//! served by HTTP/2. A connection that must close (asked to, refused head, unread body) sends
//! FIN after the response and reads and discards what the client still sends for up to
//! [`LINGER`] (a lingering close), so the client reads the answer instead of a reset.

mod conn;
mod incoming_body;
mod respond;

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use crate::server::stream::ClientStream;
use bytes::{Bytes, BytesMut};
use http::{Response, StatusCode};
use http_body_util::BodyExt as _;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, Sleep};

use super::client_io::Held;
use super::connection::{Counted, Settings};
use super::trim;
use super::Stop;
use crate::http1::{parse_request, BodyDecoder, Exchange, ParsedRequest};
use crate::proxy::{
    local_response, upgrade_pair, ClientUpgrade, Proxy, ProxyBody, UpgradeHandover,
};
use crate::request::ClientHead;
use conn::{lock, ClientConn, Shared, CONTINUE};
use incoming_body::IncomingBody;
use respond::Written;

/// The HTTP/2 prior-knowledge preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A keep-alive connection is parked once it has seen no new request for between one and two
/// of these. Checked by one timer per connection, re-armed every 50 ms while it is busy (a
/// timer per request cost more); shorter is better for memory while many connections are
/// being opened.
const PARK_AFTER: Duration = Duration::from_millis(50);

/// A closing connection reads and discards what the client still sends for at most this long
/// (nginx's `lingering_close` does the same, for up to 30 s).
const LINGER: Duration = Duration::from_secs(2);

/// A request body the proxy did not read (the answer came first) is read and discarded, to keep
/// the connection, if it ends within this much and this long; otherwise the connection closes.
const DRAIN_BYTES: usize = 64 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(1);

/// How a connection's HTTP/1.1 service ended.
pub(super) enum Ended {
    /// The connection is closed (or its socket dropped).
    Closed,
    /// It started with the HTTP/2 preface: the socket, and what was read from it.
    Http2(ClientStream, Bytes),
}

/// What the timer guards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    /// Serving: every [`PARK_AFTER`], whether a request came since the last time.
    Tick,
    /// Parked: `client_idle`.
    Idle,
    /// Part of a head is here: `header_read`, then 408.
    Head,
}

/// What came after the last exchange.
enum Next {
    /// A request head: its exchange is started (see [`Connection::begin`]).
    Request,
    Http2,
    /// The client closed, idled out, or the worker stops.
    Close,
    /// Answer this and close.
    Refuse(StatusCode),
}

/// What woke a connection waiting for a head.
enum Event {
    Read(std::io::Result<usize>),
    /// Parked: the socket has something.
    Readable,
    Stop,
    Timer,
}

/// One client connection's HTTP/1.1 state. `F`: the proxy's request future; `W`: the future
/// writing a response.
///
/// Both futures live on the heap, in slots reused by every request of the connection and freed
/// when it parks; they are built and polled by plain functions, never inside an async one, so
/// the connection's task does not also keep room for them (or for the request head): the task
/// of a parked connection stays small.
struct Connection<'a, 's, F, W> {
    io: Shared,
    in_flight: Slot<F>,
    writing: Slot<W>,
    /// The exchange in progress: what its response depends on, and where an upgraded
    /// connection goes.
    exchange: Exchange,
    handover: Option<UpgradeHandover>,
    timer: Pin<Box<Sleep>>,
    mode: Timer,
    parked: bool,
    requests: u32,
    requests_at_tick: u32,
    /// No head was read yet (the HTTP/2 preface is looked for).
    first: bool,
    /// The worker stops: the exchange in progress is the last.
    stopping: bool,
    stopped: watch::Receiver<Stop>,
    settings: &'s Settings,
    counted: &'a mut Counted<'s>,
}

/// A slot on the heap for one future at a time (see [`Connection`]).
type Slot<T> = Option<Pin<Box<Option<T>>>>;

/// Serves HTTP/1.1 on `stream` until it closes, idles out, turns into a tunnel or HTTP/2, or
/// the worker stops (`stopped`: the exchange in progress finishes, with `connection: close`;
/// an idle connection closes at once on [`Stop::Shutdown`], at its next request on
/// [`Stop::Handover`]). A tunnel it turns into holds a clone of `active` until it ends.
pub(super) async fn serve<'s>(
    stream: ClientStream,
    peer: SocketAddr,
    proxy: &Arc<Proxy>,
    settings: &'s Settings,
    stopped: &mut watch::Receiver<Stop>,
    counted: &mut Counted<'s>,
    active: &mpsc::Sender<Infallible>,
) -> Ended {
    let conn_secure = stream.is_tls();
    let mut conn = Connection {
        io: Arc::new(Mutex::new(ClientConn::new(stream, BytesMut::new()))),
        in_flight: None,
        writing: None,
        exchange: Exchange::refusal(),
        handover: None,
        timer: Box::pin(tokio::time::sleep(PARK_AFTER)),
        mode: Timer::Tick,
        parked: false,
        requests: 0,
        requests_at_tick: 0,
        first: true,
        stopping: false,
        stopped: stopped.clone(),
        settings,
        counted,
    };
    let mut stop = pin!(async {
        let _ = stopped.wait_for(|stop| stop.closes_idle()).await;
    });
    let secure = conn_secure;
    let handle = |head, body, upgrade| Arc::clone(proxy).handle(head, body, peer, secure, upgrade);
    loop {
        match conn.next_head(stop.as_mut(), &handle).await {
            Next::Request => {}
            Next::Close => return Ended::Closed,
            Next::Refuse(status) => {
                Box::pin(conn.refuse(status)).await;
                return Ended::Closed;
            }
            Next::Http2 => {
                return match conn.into_io() {
                    Some(io) => Ended::Http2(io.wire.stream, io.wire.buf.freeze()),
                    None => Ended::Closed,
                };
            }
        }
        match poll_fn(|cx| conn.poll_exchange(cx, respond::write)).await {
            Ok(Written::KeepAlive) => {
                if !conn.finish_body().await {
                    conn.close().await;
                    return Ended::Closed;
                }
            }
            Ok(Written::Close) => {
                conn.close().await;
                return Ended::Closed;
            }
            Ok(Written::Upgraded) => {
                if let Some(handover) = conn.handover.take() {
                    if let Some(io) = conn.into_io() {
                        let client =
                            super::client_io::Prefixed::new(io.wire.stream, io.wire.buf.freeze());
                        handover.hand_over(Box::new(Held::new(client, active.clone())));
                    }
                }
                return Ended::Closed;
            }
            Err(e) => {
                tracing::debug!(%peer, cause = %e, "client connection ended while answering");
                return Ended::Closed;
            }
        }
    }
}

impl<F, W> Connection<'_, '_, F, W>
where
    F: Future<Output = Result<Response<ProxyBody>, Infallible>>,
    W: Future<Output = (Vec<u8>, std::io::Result<Written>)>,
{
    /// Waits for the next request head under the deadlines, parking the connection when it
    /// idles; once it is here, starts its exchange with `handle`.
    async fn next_head<H>(
        &mut self,
        mut stop: Pin<&mut impl Future<Output = ()>>,
        handle: &H,
    ) -> Next
    where
        H: Fn(ClientHead, IncomingBody, Option<ClientUpgrade>) -> F,
    {
        loop {
            if let Some(next) = self.parse_buffered(handle) {
                return next;
            }
            let event = poll_fn(|cx| {
                let mut io = lock(&self.io);
                // With nothing of a head yet, the connection waits without a buffer: it reads
                // into one of the worker's spares once the socket is readable.
                let empty = io.wire.buf.is_empty();
                if empty {
                    io.wire.release_buffer();
                }
                let readable = !empty || io.wire.stream.poll_read_ready(cx).is_ready();
                if readable && self.parked {
                    return Poll::Ready(Event::Readable);
                }
                if readable {
                    if let Poll::Ready(read) = io.wire.poll_fill(cx, 0) {
                        return Poll::Ready(Event::Read(read));
                    }
                }
                drop(io);
                if !self.stopping && stop.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::Stop);
                }
                if self.timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::Timer);
                }
                Poll::Pending
            })
            .await;
            match event {
                Event::Read(Ok(0)) => return Next::Close,
                Event::Read(Ok(_)) => {}
                Event::Read(Err(e)) => {
                    tracing::debug!(cause = %e, "client connection failed");
                    return Next::Close;
                }
                Event::Readable => self.unpark(),
                Event::Stop => {
                    // Between requests: nothing is lost by closing now.
                    self.stopping = true;
                    return Next::Close;
                }
                Event::Timer => match self.mode {
                    Timer::Tick if self.requests != self.requests_at_tick => {
                        self.requests_at_tick = self.requests;
                        self.rearm(PARK_AFTER);
                    }
                    Timer::Tick => self.park(),
                    Timer::Idle => return Next::Close,
                    Timer::Head => return Next::Refuse(StatusCode::REQUEST_TIMEOUT),
                },
            }
        }
    }

    /// A complete head (or the HTTP/2 preface, or a refusal) from what was read, if it is there.
    fn parse_buffered<H>(&mut self, handle: &H) -> Option<Next>
    where
        H: Fn(ClientHead, IncomingBody, Option<ClientUpgrade>) -> F,
    {
        let mut io = lock(&self.io);
        if io.wire.buf.is_empty() {
            return None;
        }
        let seen = io.wire.buf.len().min(PREFACE.len());
        if self.first && PREFACE.starts_with(&io.wire.buf[..seen]) {
            if seen == PREFACE.len() {
                return Some(Next::Http2);
            }
        } else {
            match parse_request(&mut io.wire.buf, self.settings.max_header_bytes) {
                Ok(Some(head)) => {
                    drop(io);
                    self.first = false;
                    self.requests = self.requests.wrapping_add(1);
                    if self.mode == Timer::Head {
                        self.mode = Timer::Tick;
                        self.rearm(PARK_AFTER);
                    }
                    self.begin(head, handle);
                    return Some(Next::Request);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(cause = %e, "request head refused");
                    return Some(Next::Refuse(e.status()));
                }
            }
        }
        drop(io);
        // Part of a head: its deadline runs from now.
        if self.mode != Timer::Head {
            self.unpark();
            self.mode = Timer::Head;
            self.rearm(self.settings.header_read);
        }
        None
    }

    /// Starts the exchange of a request whose head was just read: its body reads from the
    /// connection, and the proxy's future goes in its slot.
    #[inline(never)]
    fn begin<H>(&mut self, head: ParsedRequest, handle: &H)
    where
        H: Fn(ClientHead, IncomingBody, Option<ClientUpgrade>) -> F,
    {
        let ParsedRequest {
            head,
            body,
            exchange,
            expect_continue,
        } = head;
        let body = {
            let mut io = lock(&self.io);
            io.body = body;
            io.continue_left = if expect_continue && !body.is_done() {
                CONTINUE.len()
            } else {
                0
            };
            if body.is_done() {
                // Free for other connections while this request is in flight.
                io.wire.release_buffer();
                IncomingBody::empty()
            } else {
                IncomingBody::new(Arc::clone(&self.io))
            }
        };
        let upgrade = if head.fields.contains("upgrade") {
            let (handover, upgrade) = upgrade_pair();
            self.handover = Some(handover);
            Some(upgrade)
        } else {
            self.handover = None;
            None
        };
        self.exchange = exchange;
        let slot = self.in_flight.get_or_insert_with(|| Box::pin(None));
        slot.set(Some(handle(head, body, upgrade)));
    }

    /// Drives the exchange in progress: the proxy's future, then the writing of its response
    /// (`write` builds that future). Ready with what the connection can do next.
    fn poll_exchange(
        &mut self,
        cx: &mut Context<'_>,
        write: impl FnOnce(Shared, Vec<u8>, Response<ProxyBody>, Exchange, bool) -> W,
    ) -> Poll<std::io::Result<Written>> {
        if let Some(slot) = &mut self.in_flight {
            if let Some(future) = slot.as_mut().as_pin_mut() {
                let Ok(response) = ready!(future.poll(cx));
                slot.set(None);
                self.stopping = self.stopping || self.stopped.borrow().stops();
                let close = !self.exchange.keep_alive || self.stopping || !self.body_finishable();
                let out = crate::http1::buffers::head_buffer();
                let writing = self.writing.get_or_insert_with(|| Box::pin(None));
                writing.set(Some(write(
                    Arc::clone(&self.io),
                    out,
                    response,
                    self.exchange,
                    close,
                )));
            }
        }
        let Some(future) = self
            .writing
            .as_mut()
            .and_then(|slot| slot.as_mut().as_pin_mut())
        else {
            return Poll::Ready(Err(std::io::Error::other("no exchange in progress")));
        };
        let (out, written) = ready!(future.poll(cx));
        if let Some(slot) = &mut self.writing {
            slot.set(None);
        }
        crate::http1::buffers::release_head(out);
        Poll::Ready(written)
    }

    /// The socket and what was read from it, for whoever serves the connection next (HTTP/2,
    /// a tunnel); `None` if a request body still shares it.
    fn into_io(self) -> Option<ClientConn> {
        let io = Arc::try_unwrap(self.io).ok()?;
        Some(
            io.into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    fn rearm(&mut self, after: Duration) {
        self.timer.as_mut().reset(Instant::now() + after);
    }

    /// Frees what an idle connection does not need (see the module docs).
    fn park(&mut self) {
        self.in_flight = None;
        self.writing = None;
        self.parked = true;
        self.counted.set_parked(true);
        trim::parked();
        self.mode = Timer::Idle;
        // It has been idle for at least PARK_AFTER already.
        self.rearm(self.settings.client_idle.saturating_sub(PARK_AFTER));
    }

    fn unpark(&mut self) {
        if self.parked {
            self.parked = false;
            self.counted.set_parked(false);
            self.mode = Timer::Tick;
            self.requests_at_tick = self.requests;
            self.rearm(PARK_AFTER);
        }
    }

    /// Whether what is left of the request body can still be read past to keep the connection
    /// (see [`Self::finish_body`]); when not, the response says `connection: close`.
    fn body_finishable(&self) -> bool {
        let io = lock(&self.io);
        match io.body {
            _ if io.body.is_done() => true,
            BodyDecoder::Failed => false,
            _ if io.continue_left > 0 => false,
            BodyDecoder::Length(left) => left <= DRAIN_BYTES as u64,
            BodyDecoder::Chunked(_) | BodyDecoder::UntilClose | BodyDecoder::Done => true,
        }
    }

    /// After a response that keeps the connection: whether what is left of the request body
    /// was read (or discarded, if it ended soon enough), so the next request can be read.
    async fn finish_body(&mut self) -> bool {
        if lock(&self.io).body.is_done() {
            return true;
        }
        // Not finishable: a client never told to send its body may or may not send it.
        if !self.body_finishable() {
            return false;
        }
        let mut rest = IncomingBody::new(Arc::clone(&self.io));
        let drained = tokio::time::timeout(DRAIN_TIME, async {
            let mut seen = 0;
            while let Some(frame) = rest.frame().await {
                let Ok(frame) = frame else { return false };
                seen += frame.data_ref().map_or(0, Bytes::len);
                if seen > DRAIN_BYTES {
                    return false;
                }
            }
            true
        })
        .await;
        drained.unwrap_or(false)
    }

    /// Answers `status` (a refused or timed-out head) and closes.
    async fn refuse(&mut self, status: StatusCode) {
        let response = local_response(status);
        let io = Arc::clone(&self.io);
        let head = crate::http1::buffers::head_buffer();
        let (head, written) = respond::write(io, head, response, Exchange::refusal(), true).await;
        crate::http1::buffers::release_head(head);
        if written.is_ok() {
            self.close().await;
        }
    }

    /// Sends FIN, then reads and discards what the client still sends until it closes too, for
    /// at most [`LINGER`].
    async fn close(&mut self) {
        let io = &self.io;
        let shut = poll_fn(|cx| {
            use tokio::io::AsyncWrite as _;
            Pin::new(&mut lock(io).wire.stream).poll_shutdown(cx)
        })
        .await;
        if shut.is_err() {
            return;
        }
        let _ = tokio::time::timeout(LINGER, async {
            loop {
                let read = poll_fn(|cx| lock(io).wire.poll_fill(cx, 0)).await;
                lock(io).wire.buf.clear();
                if !matches!(read, Ok(1..)) {
                    return;
                }
            }
        })
        .await;
    }
}
