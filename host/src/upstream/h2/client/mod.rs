//! lbhost's own HTTP/2 client for backends (RFC 9113), in place of the h2 crate's: one
//! connection's state under one lock, shared by the requests on it ([`Stream`]) and the task that
//! reads and writes its socket ([`Driver`]).
//!
//! A request encodes its head straight into the connection's outgoing bytes (HPACK without a
//! dynamic table, as HAProxy sends, so no table to keep in step) and waits for its response on
//! its stream; the driver decodes what the backend sends, hands each stream its head, data and
//! trailers, and gives flow-control credit back as the bodies are read.

mod body;
mod driver;
mod head;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use rustc_hash::FxHashMap;

pub(crate) use body::{RequestBody, ResponseBody};
pub(crate) use driver::{handshake, Driver};

use crate::http2::frame::{self, Reason};
use crate::http2::hpack::Encoder;
use crate::http2::RecvWindow;

/// How much a backend may send on one stream, and on the connection, before lbhost's client has
/// read it. A stream's window covers a 64 KiB-per-round-trip backend many times over; the
/// connection's lets several large responses stream at once.
pub(crate) const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
pub(crate) const CONNECTION_WINDOW: u32 = 8 * 1024 * 1024;
/// The largest response head a backend may send, as HPACK counts it (name + value + 32 a field).
pub(crate) const MAX_HEADER_LIST: u32 = 16 * 1024;
/// Frames lbhost accepts (the RFC's minimum, which every peer supports).
const MAX_FRAME: u32 = frame::DEFAULT_MAX_FRAME_SIZE;
/// The window HTTP/2 starts every stream and the connection with (RFC 9113 §6.9.2).
const DEFAULT_WINDOW: u32 = 65_535;
/// The largest window RFC 9113 §6.9.1 allows.
const MAX_WINDOW: i64 = (1 << 31) - 1;
/// Request bytes queued for the socket past which senders wait for the driver to write.
const OUT_LIMIT: usize = 1024 * 1024;
/// The last stream id a client may use.
const LAST_STREAM_ID: u32 = (1 << 31) - 1;

/// Why a stream gave no (whole) response.
#[derive(Clone, Debug, thiserror::Error)]
pub(crate) enum StreamError {
    /// The backend did not process the request (`REFUSED_STREAM`, or a `GOAWAY` below it): it
    /// may go elsewhere whatever its method (RFC 9113 §8.7).
    #[error("refused unprocessed: {0}")]
    Refused(String),
    /// The backend reset the stream.
    #[error("reset by the backend: {0}")]
    Reset(Reason),
    /// The connection failed or closed.
    #[error("connection lost: {0}")]
    Lost(String),
    /// The backend's response broke HTTP/2's rules for a message (RFC 9113 §8.1.1).
    #[error("malformed response: {0}")]
    Malformed(&'static str),
}

/// A request head ready for HTTP/2: method, target (scheme, authority, path) and the regular
/// fields already HPACK-encoded, as the proxy wrote them (`upstream::H2Head`), without a
/// header map in between.
#[derive(Debug)]
pub(crate) struct RequestHead {
    pub(crate) method: http::Method,
    pub(crate) uri: http::Uri,
    /// The regular fields as an HPACK block ([`Encoder`]'s: no dynamic table, so it may be
    /// sent after any pseudo-fields on any connection).
    pub(crate) fields: Vec<u8>,
}

impl RequestHead {
    /// The head of `parts` (its header map encoded).
    #[cfg(test)]
    pub(crate) fn from_parts(parts: &http::request::Parts) -> Self {
        let mut fields = Vec::new();
        Encoder::fields(&mut fields, &parts.headers);
        RequestHead {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            fields,
        }
    }
}

/// Why a request could not start on a connection.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// The connection takes no new stream (GOAWAY, failed, or out of stream ids).
    #[error("the HTTP/2 connection takes no new stream: {0}")]
    Closed(String),
    /// The head cannot be sent (no authority or path).
    #[error("cannot go over HTTP/2: {0}")]
    Invalid(&'static str),
}

/// One connection's state, shared by its requests and its driver.
#[derive(Debug)]
struct Conn {
    /// Frames to write, appended by requests and the driver; the driver takes them.
    out: BytesMut,
    /// The driver's task, woken when `out` gains bytes or the connection's handles are gone.
    driver: Option<Waker>,
    /// Senders waiting for `out` to shrink below [`OUT_LIMIT`].
    out_waiters: Vec<Waker>,
    streams: FxHashMap<u32, StreamState>,
    next_id: u32,
    /// Why no new stream may start, once one may not.
    closed: Option<String>,
    /// The connection failed: every stream failed with it.
    failed: bool,
    /// What lbhost may still send on the connection (the peer's window).
    send_window: i64,
    /// What the backend may still send on the connection, and what was read since the last
    /// WINDOW_UPDATE.
    recv_window: RecvWindow,
    /// The peer's SETTINGS: its initial stream window and largest frame.
    peer_window: u32,
    peer_max_frame: u32,
    /// The `H2Conn`s (the pool's handles) for it: at 0 with no stream left, the driver closes it.
    handles: usize,
    /// Where a head's HPACK block is put together.
    block: Vec<u8>,
}

/// One stream's state.
#[derive(Debug)]
struct StreamState {
    /// The response head, once it came (taken by the request).
    head: Option<http::response::Parts>,
    head_taken: bool,
    data: VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
    /// The backend ended its side (END_STREAM).
    recv_end: bool,
    /// lbhost ended its side.
    sent_end: bool,
    error: Option<StreamError>,
    /// What lbhost may still send on it, and what the backend may still send.
    send_window: i64,
    recv_window: RecvWindow,
    /// `content-length` of the response, and the DATA bytes counted against it.
    expected: Option<u64>,
    received: u64,
    recv_waker: Option<Waker>,
    send_waker: Option<Waker>,
    /// [`Stream`] handles to it: at 0 it goes, reset if unfinished.
    handles: u8,
    /// The request was a HEAD: the response's `content-length` announces no body.
    head_request: bool,
}

impl StreamState {
    fn new(send_window: u32, end: bool, head_request: bool) -> Self {
        StreamState {
            head: None,
            head_taken: false,
            data: VecDeque::new(),
            trailers: None,
            recv_end: false,
            sent_end: end,
            error: None,
            send_window: i64::from(send_window),
            recv_window: RecvWindow::new(STREAM_WINDOW),
            expected: None,
            received: 0,
            recv_waker: None,
            send_waker: None,
            handles: 1,
            head_request,
        }
    }

    fn wake(&mut self) {
        if let Some(w) = self.recv_waker.take() {
            w.wake();
        }
        if let Some(w) = self.send_waker.take() {
            w.wake();
        }
    }

    /// Fails the stream with `error` (the first cause stays).
    fn fail(&mut self, error: StreamError) {
        if self.error.is_none() {
            self.error = Some(error);
        }
        self.wake();
    }
}

impl Conn {
    fn wake_driver(&mut self) {
        if let Some(w) = &self.driver {
            w.wake_by_ref();
        }
    }

    /// Gives `n` bytes of the connection's window back to the backend once half of it is used.
    fn release_connection(&mut self, n: u32) {
        if let Some(credit) = self.recv_window.release(n) {
            frame::write_window_update(&mut self.out, 0, credit);
            self.wake_driver();
        }
    }

    /// Takes the connection out of use for new streams.
    fn close(&mut self, why: String) {
        if self.closed.is_none() {
            self.closed = Some(why);
        }
    }

    /// Fails every stream: the connection is gone.
    fn fail_all(&mut self, why: &str) {
        self.close(why.to_owned());
        self.failed = true;
        for stream in self.streams.values_mut() {
            stream.fail(StreamError::Lost(why.to_owned()));
        }
        for w in self.out_waiters.drain(..) {
            w.wake();
        }
    }
}

/// Locks `conn`; a panic elsewhere leaves a state that is still consistent enough to fail.
fn lock(conn: &Mutex<Conn>) -> MutexGuard<'_, Conn> {
    conn.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A handle to one connection, for starting requests on it.
#[derive(Debug)]
pub(crate) struct Connection {
    conn: Arc<Mutex<Conn>>,
}

impl Clone for Connection {
    fn clone(&self) -> Self {
        lock(&self.conn).handles += 1;
        Connection {
            conn: Arc::clone(&self.conn),
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let mut conn = lock(&self.conn);
        conn.handles -= 1;
        if conn.handles == 0 {
            conn.wake_driver();
        }
    }
}

impl Connection {
    /// A new connection's state, with the client preface, lbhost's SETTINGS and the connection
    /// window's first update queued; the [`Driver`] for it runs its socket.
    fn new() -> Self {
        let mut out = BytesMut::with_capacity(16 * 1024);
        out.extend_from_slice(frame::PREFACE);
        frame::write_settings(
            &mut out,
            &[
                (frame::setting::ENABLE_PUSH, 0),
                (frame::setting::INITIAL_WINDOW_SIZE, STREAM_WINDOW),
                (frame::setting::MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST),
            ],
        );
        frame::write_window_update(&mut out, 0, CONNECTION_WINDOW - DEFAULT_WINDOW);
        Connection {
            conn: Arc::new(Mutex::new(Conn {
                out,
                driver: None,
                out_waiters: Vec::new(),
                streams: FxHashMap::default(),
                next_id: 1,
                closed: None,
                failed: false,
                send_window: i64::from(DEFAULT_WINDOW),
                recv_window: RecvWindow::new(CONNECTION_WINDOW),
                peer_window: DEFAULT_WINDOW,
                peer_max_frame: frame::DEFAULT_MAX_FRAME_SIZE,
                handles: 1,
                block: Vec::new(),
            })),
        }
    }

    /// Whether a new stream may start on it.
    pub(crate) fn is_open(&self) -> bool {
        lock(&self.conn).closed.is_none()
    }

    /// Starts a request: its head goes out (with END_STREAM when `end`, a request without a
    /// body). Its response comes on the returned stream.
    pub(crate) fn send_request(&self, head: &RequestHead, end: bool) -> Result<Stream, SendError> {
        let authority = head
            .uri
            .authority()
            .ok_or(SendError::Invalid("no authority"))?;
        let path = head
            .uri
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str);
        let scheme = head.uri.scheme_str().unwrap_or("http");
        let mut guard = lock(&self.conn);
        let conn = &mut *guard;
        if let Some(why) = &conn.closed {
            return Err(SendError::Closed(why.clone()));
        }
        let id = conn.next_id;
        if id >= LAST_STREAM_ID {
            conn.close("out of stream ids".to_owned());
            return Err(SendError::Closed("out of stream ids".to_owned()));
        }
        conn.next_id += 2;
        let block = &mut conn.block;
        block.clear();
        Encoder::field(block, b":method", head.method.as_str().as_bytes(), false);
        Encoder::field(block, b":scheme", scheme.as_bytes(), false);
        Encoder::field(block, b":authority", authority.as_str().as_bytes(), false);
        Encoder::field(block, b":path", path.as_bytes(), false);
        block.extend_from_slice(&head.fields);
        frame::write_headers(&mut conn.out, id, block, end, conn.peer_max_frame);
        conn.streams.insert(
            id,
            StreamState::new(conn.peer_window, end, head.method == http::Method::HEAD),
        );
        conn.wake_driver();
        Ok(Stream {
            conn: Arc::clone(&self.conn),
            id,
        })
    }
}

/// A request's stream: its response head, then its body ([`ResponseBody`]); the request body
/// goes out on it too ([`RequestBody`]). Dropping the last handle before both sides ended
/// resets it (`CANCEL`).
#[derive(Debug)]
pub(crate) struct Stream {
    conn: Arc<Mutex<Conn>>,
    id: u32,
}

impl Stream {
    /// Another handle to the same stream.
    pub(crate) fn another(&self) -> Stream {
        let mut conn = lock(&self.conn);
        if let Some(s) = conn.streams.get_mut(&self.id) {
            s.handles += 1;
        }
        Stream {
            conn: Arc::clone(&self.conn),
            id: self.id,
        }
    }

    /// The response head, once it came.
    pub(crate) fn poll_response(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<http::response::Parts, StreamError>> {
        let mut conn = lock(&self.conn);
        let Some(s) = conn.streams.get_mut(&self.id) else {
            return Poll::Ready(Err(StreamError::Lost("stream gone".to_owned())));
        };
        if let Some(head) = s.head.take() {
            s.head_taken = true;
            return Poll::Ready(Ok(head));
        }
        if let Some(e) = &s.error {
            return Poll::Ready(Err(e.clone()));
        }
        s.recv_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Sends as much of `data` as the windows allow (all of it, then END_STREAM when `end`);
    /// ready once all of it is queued.
    fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        data: &mut Bytes,
        end: bool,
    ) -> Poll<Result<(), StreamError>> {
        let mut guard = lock(&self.conn);
        let conn = &mut *guard;
        loop {
            let Some(s) = conn.streams.get_mut(&self.id) else {
                return Poll::Ready(Err(StreamError::Lost("stream gone".to_owned())));
            };
            if let Some(e) = &s.error {
                return Poll::Ready(Err(e.clone()));
            }
            if s.sent_end {
                return Poll::Ready(Ok(()));
            }
            if conn.out.len() >= OUT_LIMIT {
                conn.out_waiters.push(cx.waker().clone());
                return Poll::Pending;
            }
            if data.is_empty() {
                if end {
                    frame::write_data(&mut conn.out, self.id, &[], true);
                    s.sent_end = true;
                    conn.wake_driver();
                }
                return Poll::Ready(Ok(()));
            }
            let room = s
                .send_window
                .min(conn.send_window)
                .min(i64::from(conn.peer_max_frame));
            if room <= 0 {
                s.send_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let n = usize::try_from(room).unwrap_or(usize::MAX).min(data.len());
            let chunk = data.split_to(n);
            let last = end && data.is_empty();
            frame::write_data(&mut conn.out, self.id, &chunk, last);
            let sent = i64::try_from(n).unwrap_or(i64::MAX);
            s.send_window -= sent;
            conn.send_window -= sent;
            if last {
                s.sent_end = true;
            }
            conn.wake_driver();
        }
    }

    /// Sends `trailers`, ending lbhost's side.
    fn send_trailers(&mut self, trailers: &HeaderMap) -> Result<(), StreamError> {
        let mut guard = lock(&self.conn);
        let conn = &mut *guard;
        let Some(s) = conn.streams.get_mut(&self.id) else {
            return Err(StreamError::Lost("stream gone".to_owned()));
        };
        if let Some(e) = &s.error {
            return Err(e.clone());
        }
        s.sent_end = true;
        let block = &mut conn.block;
        block.clear();
        Encoder::fields(block, trailers);
        frame::write_headers(&mut conn.out, self.id, block, true, conn.peer_max_frame);
        conn.wake_driver();
        Ok(())
    }

    /// Resets the stream with `reason` (the request body failed).
    fn reset(&mut self, reason: Reason) {
        let mut conn = lock(&self.conn);
        let failed = conn.failed;
        if let Some(s) = conn.streams.get_mut(&self.id) {
            if s.error.is_none() && !(s.recv_end && s.sent_end) {
                s.fail(StreamError::Reset(reason));
                if !failed {
                    frame::write_rst_stream(&mut conn.out, self.id, reason);
                    conn.wake_driver();
                }
            }
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let mut guard = lock(&self.conn);
        let conn = &mut *guard;
        let Some(s) = conn.streams.get_mut(&self.id) else {
            return;
        };
        s.handles -= 1;
        if s.handles > 0 {
            return;
        }
        let Some(s) = conn.streams.remove(&self.id) else {
            return;
        };
        // What the backend sent that nobody will read goes back to the connection's window.
        let unread: usize = s.data.iter().map(Bytes::len).sum();
        let finished = s.recv_end && s.sent_end;
        if !conn.failed {
            if !finished && s.error.is_none() {
                frame::write_rst_stream(&mut conn.out, self.id, Reason::CANCEL);
                conn.wake_driver();
            }
            conn.release_connection(u32::try_from(unread).unwrap_or(u32::MAX));
        }
        if conn.handles == 0 && conn.streams.is_empty() {
            conn.wake_driver();
        }
    }
}
