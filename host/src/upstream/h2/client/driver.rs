//! A backend connection's task: reads frames and hands each stream what is its own, writes what
//! the requests queued, answers SETTINGS and PINGs, PINGs the backend itself to notice one gone
//! silent, and closes the connection once no request can use it any more.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};

use super::head::Section;
use super::{
    frame, lock, Conn, Connection, Reason, StreamError, StreamState, MAX_FRAME, MAX_HEADER_LIST,
    MAX_WINDOW,
};
use crate::http2::content_length;
use crate::http2::frame::Frame;
use crate::http2::hpack::Decoder;

/// The payload of lbhost's keep-alive PINGs.
const PING_PAYLOAD: [u8; 8] = *b"lbhost\0\0";
/// The largest header block (HEADERS and its CONTINUATIONs, as HPACK sent them) taken.
const MAX_BLOCK: usize = 2 * MAX_HEADER_LIST as usize;
/// Bytes read from the socket at a time, at most.
const READ_CHUNK: usize = 64 * 1024;
/// The write buffer's capacity kept between writes, at most.
const KEPT_WRITE_CAPACITY: usize = 256 * 1024;
/// The HPACK dynamic table a backend may use (SETTINGS_HEADER_TABLE_SIZE's default).
const TABLE_SIZE: usize = 4096;

/// Why the connection ended with an error: the code for the GOAWAY lbhost sends, and why.
struct ConnError {
    reason: Reason,
    why: String,
}

fn conn_error(reason: Reason, why: impl Into<String>) -> ConnError {
    ConnError {
        reason,
        why: why.into(),
    }
}

/// Starts HTTP/2 on `io`: a handle for requests and the task that must run for them to be
/// answered. The driver PINGs the backend every `interval` and ends the connection when a
/// PONG is `timeout` late.
pub(crate) fn handshake<T>(
    io: T,
    interval: Duration,
    timeout: Duration,
) -> (Connection, Driver<T>) {
    let connection = Connection::new();
    let driver = Driver {
        io,
        conn: Arc::clone(&connection.conn),
        read: BytesMut::with_capacity(READ_CHUNK),
        writing: BytesMut::new(),
        decoder: Decoder::new(TABLE_SIZE),
        block: None,
        timer: Box::pin(tokio::time::sleep(interval)),
        awaiting_pong: false,
        interval,
        timeout,
        peer_max_streams: None,
        closing: false,
    };
    (connection, driver)
}

/// A header block still coming in CONTINUATION frames: its stream, whether it ends the
/// stream, and the bytes so far.
struct Block {
    stream: u32,
    end_stream: bool,
    bytes: BytesMut,
}

/// The task of one connection (see [`handshake`]).
pub(crate) struct Driver<T> {
    io: T,
    conn: Arc<Mutex<Conn>>,
    read: BytesMut,
    /// What is being written (taken from the connection's queue).
    writing: BytesMut,
    decoder: Decoder,
    block: Option<Block>,
    /// When the next PING goes out, or (awaiting its PONG) when it is overdue.
    timer: Pin<Box<Sleep>>,
    awaiting_pong: bool,
    interval: Duration,
    timeout: Duration,
    /// The backend's MAX_CONCURRENT_STREAMS, once its SETTINGS came (unlimited if it said none).
    peer_max_streams: Option<u32>,
    /// A GOAWAY is written: the connection ends once it is out.
    closing: bool,
}

impl<T> std::fmt::Debug for Driver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver").finish_non_exhaustive()
    }
}

impl<T> Driver<T> {
    /// The streams the backend lets lbhost open at once, once it said (`u32::MAX`: no limit).
    pub(crate) fn max_concurrent_streams(&self) -> Option<u32> {
        self.peer_max_streams
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Future for Driver<T> {
    type Output = Result<(), String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            let mut progress = false;
            if !this.closing {
                match tokio_util::io::poll_read_buf(Pin::new(&mut this.io), cx, &mut this.read) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(this.fail(None, "the backend closed the connection"))
                    }
                    Poll::Ready(Ok(_)) => {
                        progress = true;
                        if let Err(e) = this.frames() {
                            let _ = this.fail(Some(e.reason), &e.why);
                            // The GOAWAY goes out if it can at once; the connection ends anyway.
                            let _ = this.poll_write(cx);
                            return Poll::Ready(Err(e.why));
                        }
                        if this.read.capacity() - this.read.len() < 1024 {
                            this.read.reserve(READ_CHUNK);
                        }
                    }
                    Poll::Ready(Err(e)) => {
                        return Poll::Ready(this.fail(None, &format!("reading: {e}")))
                    }
                    Poll::Pending => {}
                }
            }
            match this.keep_alive(cx) {
                Ok(()) => {}
                Err(why) => return Poll::Ready(this.fail(None, &why)),
            }
            match this.poll_write(cx) {
                Poll::Ready(Ok(())) => {
                    if this.closing {
                        let _ = Pin::new(&mut this.io).poll_shutdown(cx);
                        return Poll::Ready(Ok(()));
                    }
                }
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(this.fail(None, &format!("writing: {e}")))
                }
                Poll::Pending => {}
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Driver<T> {
    /// Writes what is queued; ready once all of it is written and flushed. Registers this task
    /// to be woken when more is queued.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        loop {
            if self.writing.is_empty() {
                let mut conn = lock(&self.conn);
                match &conn.driver {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => conn.driver = Some(cx.waker().clone()),
                }
                if conn.out.is_empty() {
                    if !self.closing && conn.handles == 0 && conn.streams.is_empty() {
                        // Nobody can use the connection any more: it ends.
                        frame::write_goaway(&mut conn.out, 0, Reason::NO_ERROR, b"");
                        conn.close("closed as unused".to_owned());
                        self.closing = true;
                        continue;
                    }
                    drop(conn);
                    return Pin::new(&mut self.io).poll_flush(cx);
                }
                std::mem::swap(&mut self.writing, &mut conn.out);
                for w in conn.out_waiters.drain(..) {
                    w.wake();
                }
            }
            match Pin::new(&mut self.io).poll_write(cx, &self.writing) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()))
                }
                Poll::Ready(Ok(n)) => self.writing.advance(n),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
            if self.writing.is_empty() {
                if self.writing.capacity() > KEPT_WRITE_CAPACITY {
                    // A large upload's buffer is not kept for the connection's life.
                    self.writing = BytesMut::new();
                } else {
                    // Keep the (empty) buffer's capacity for the next swap.
                    self.writing.clear();
                }
            }
        }
    }

    /// Fails the connection (with a GOAWAY carrying `reason`, if any, queued): every stream
    /// on it fails, and no new one starts.
    fn fail(&mut self, reason: Option<Reason>, why: &str) -> Result<(), String> {
        let mut conn = lock(&self.conn);
        if let Some(reason) = reason {
            frame::write_goaway(&mut conn.out, 0, reason, why.as_bytes());
        }
        conn.fail_all(why);
        Err(why.to_owned())
    }

    /// Sends a PING every `interval`; an error once its PONG is `timeout` late.
    fn keep_alive(&mut self, cx: &mut Context<'_>) -> Result<(), String> {
        if self.timer.as_mut().poll(cx).is_pending() {
            return Ok(());
        }
        if self.awaiting_pong {
            return Err("no PONG to a keep-alive PING".to_owned());
        }
        let mut conn = lock(&self.conn);
        frame::write_ping(&mut conn.out, false, PING_PAYLOAD);
        self.awaiting_pong = true;
        self.timer.as_mut().reset(Instant::now() + self.timeout);
        // Armed again: polled so that it wakes this task.
        let _ = self.timer.as_mut().poll(cx);
        Ok(())
    }

    /// Handles every whole frame read.
    fn frames(&mut self) -> Result<(), ConnError> {
        loop {
            let frame = match frame::read(&mut self.read, MAX_FRAME) {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(()),
                // A stream's own fault (the bad frame is consumed): only it is reset.
                Err(e) if e.stream().is_some() => {
                    let id = e.stream().unwrap_or(0);
                    let mut conn = lock(&self.conn);
                    if let Some(s) = conn.streams.get_mut(&id) {
                        s.fail(StreamError::Reset(e.reason()));
                    }
                    frame::write_rst_stream(&mut conn.out, id, e.reason());
                    continue;
                }
                Err(e) => return Err(conn_error(e.reason(), e.to_string())),
            };
            self.frame(frame)?;
        }
    }

    fn frame(&mut self, frame: Frame) -> Result<(), ConnError> {
        if let Some(block) = &mut self.block {
            // Nothing but the header block's CONTINUATIONs may come until it ends.
            let Frame::Continuation {
                stream,
                fragment,
                end_headers,
            } = frame
            else {
                return Err(conn_error(
                    Reason::PROTOCOL_ERROR,
                    "a frame inside a header block",
                ));
            };
            if stream != block.stream {
                return Err(conn_error(
                    Reason::PROTOCOL_ERROR,
                    "CONTINUATION on another stream",
                ));
            }
            if block.bytes.len() + fragment.len() > MAX_BLOCK {
                return Err(conn_error(
                    Reason::ENHANCE_YOUR_CALM,
                    "header block larger than 32 KiB",
                ));
            }
            block.bytes.extend_from_slice(&fragment);
            if end_headers {
                if let Some(block) = self.block.take() {
                    self.headers(block.stream, &block.bytes, block.end_stream)?;
                }
            }
            return Ok(());
        }
        match frame {
            Frame::Headers {
                stream,
                fragment,
                end_stream,
                end_headers,
            } => {
                if end_headers {
                    self.headers(stream, &fragment, end_stream)?;
                } else {
                    if fragment.len() > MAX_BLOCK {
                        return Err(conn_error(
                            Reason::ENHANCE_YOUR_CALM,
                            "header block larger than 32 KiB",
                        ));
                    }
                    self.block = Some(Block {
                        stream,
                        end_stream,
                        bytes: BytesMut::from(&fragment[..]),
                    });
                }
            }
            Frame::Continuation { .. } => {
                return Err(conn_error(
                    Reason::PROTOCOL_ERROR,
                    "CONTINUATION without HEADERS",
                ))
            }
            Frame::Data {
                stream,
                data,
                flow_len,
                end_stream,
            } => self.data(stream, data, flow_len, end_stream)?,
            Frame::Settings { ack, params } => {
                if !ack {
                    self.settings(&params)?;
                }
            }
            Frame::Ping { ack, payload } => {
                if !ack {
                    frame::write_ping(&mut lock(&self.conn).out, true, payload);
                } else if payload == PING_PAYLOAD && self.awaiting_pong {
                    self.awaiting_pong = false;
                    self.timer.as_mut().reset(Instant::now() + self.interval);
                }
            }
            Frame::GoAway {
                last_stream,
                reason,
                ..
            } => {
                let mut conn = lock(&self.conn);
                conn.close(format!("the backend sent GOAWAY ({reason})"));
                for (&id, s) in &mut conn.streams {
                    if id > last_stream {
                        s.fail(StreamError::Refused(format!(
                            "GOAWAY ({reason}) below stream {id}"
                        )));
                    }
                }
            }
            Frame::WindowUpdate { stream, increment } => self.window_update(stream, increment)?,
            Frame::RstStream { stream, reason } => {
                let mut conn = lock(&self.conn);
                let idle = stream >= conn.next_id;
                match conn.streams.get_mut(&stream) {
                    Some(s) if reason == Reason::REFUSED_STREAM => {
                        s.fail(StreamError::Refused("REFUSED_STREAM".to_owned()));
                    }
                    Some(s) => s.fail(StreamError::Reset(reason)),
                    None if idle => {
                        return Err(conn_error(
                            Reason::PROTOCOL_ERROR,
                            "RST_STREAM on an idle stream",
                        ))
                    }
                    None => {}
                }
            }
            Frame::PushPromise { .. } => {
                return Err(conn_error(
                    Reason::PROTOCOL_ERROR,
                    "PUSH_PROMISE although push is disabled",
                ))
            }
            Frame::Priority { .. } | Frame::Unknown { .. } => {}
        }
        Ok(())
    }

    /// A whole header block: a stream's response head (after any 1xx), or its trailers.
    fn headers(&mut self, id: u32, block: &[u8], end_stream: bool) -> Result<(), ConnError> {
        let mut guard = lock(&self.conn);
        let conn = &mut *guard;
        let trailers = conn
            .streams
            .get(&id)
            .is_some_and(|s| s.head.is_some() || s.head_taken);
        let mut section = Section::new(trailers);
        // Decoded whatever the stream's state: the HPACK table must follow every block.
        self.decoder
            .decode(block, &mut |name, value| section.field(name, value))
            .map_err(|e| conn_error(Reason::COMPRESSION_ERROR, e.to_string()))?;
        let Some(s) = conn.streams.get_mut(&id) else {
            if id.is_multiple_of(2) || id >= conn.next_id {
                return Err(conn_error(
                    Reason::PROTOCOL_ERROR,
                    "HEADERS on a stream lbhost did not open",
                ));
            }
            // A stream lbhost already let go of.
            return Ok(());
        };
        if s.recv_end || s.error.is_some() {
            return Ok(());
        }
        let outcome = if trailers {
            if !end_stream {
                Err("trailers without END_STREAM")
            } else {
                section.into_trailers().map(|t| {
                    s.trailers = Some(t);
                })
            }
        } else {
            match section.into_head() {
                Ok((status, _)) if status == http::StatusCode::SWITCHING_PROTOCOLS => {
                    Err("101 over HTTP/2")
                }
                Ok((status, _)) if status.is_informational() => {
                    if end_stream {
                        Err("END_STREAM on a 1xx head")
                    } else {
                        // A 100 Continue or 103 Early Hints: the final head follows.
                        return Ok(());
                    }
                }
                Ok((status, headers)) => content_length(&headers).map(|length| {
                    let bodiless = s.head_request
                        || status == http::StatusCode::NO_CONTENT
                        || status == http::StatusCode::NOT_MODIFIED;
                    s.expected = if bodiless { None } else { length };
                    let (mut parts, ()) = http::Response::new(()).into_parts();
                    parts.status = status;
                    parts.version = http::Version::HTTP_2;
                    parts.headers = headers;
                    s.head = Some(parts);
                }),
                Err(e) => Err(e),
            }
        };
        match outcome {
            Ok(()) => {
                if end_stream {
                    if let Err(e) = s.end() {
                        malformed(conn, id, e);
                        return Ok(());
                    }
                }
                if let Some(s) = conn.streams.get_mut(&id) {
                    s.wake();
                }
            }
            Err(e) => malformed(conn, id, e),
        }
        Ok(())
    }

    fn data(
        &mut self,
        id: u32,
        data: bytes::Bytes,
        flow_len: u32,
        end_stream: bool,
    ) -> Result<(), ConnError> {
        let mut guard = lock(&self.conn);
        let conn = &mut *guard;
        conn.recv_window -= i64::from(flow_len);
        if conn.recv_window < 0 {
            return Err(conn_error(
                Reason::FLOW_CONTROL_ERROR,
                "DATA past the connection's window",
            ));
        }
        let idle = id.is_multiple_of(2) || id >= conn.next_id;
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let Some(s) = conn.streams.get_mut(&id) else {
            if idle {
                return Err(conn_error(
                    Reason::PROTOCOL_ERROR,
                    "DATA on a stream lbhost did not open",
                ));
            }
            conn.release_connection(flow_len);
            return Ok(());
        };
        if s.recv_end || s.error.is_some() {
            conn.release_connection(flow_len);
            return Ok(());
        }
        if s.head.is_none() && !s.head_taken {
            conn.release_connection(flow_len);
            malformed(conn, id, "DATA before the response head");
            return Ok(());
        }
        s.recv_window -= i64::from(flow_len);
        if s.recv_window < 0 {
            s.fail(StreamError::Reset(Reason::FLOW_CONTROL_ERROR));
            frame::write_rst_stream(&mut conn.out, id, Reason::FLOW_CONTROL_ERROR);
            conn.release_connection(flow_len);
            return Ok(());
        }
        s.received += u64::from(len);
        if s.expected.is_some_and(|e| s.received > e) {
            conn.release_connection(flow_len);
            malformed(conn, id, "DATA past content-length");
            return Ok(());
        }
        // Padding is nobody's to read: its credit goes back with the next update.
        s.recv_unacked = s.recv_unacked.saturating_add(flow_len - len);
        if !data.is_empty() {
            s.data.push_back(data);
        }
        let ended = if end_stream { s.end() } else { Ok(()) };
        s.wake();
        conn.release_connection(flow_len - len);
        if let Err(e) = ended {
            malformed(conn, id, e);
        }
        Ok(())
    }

    fn settings(&mut self, params: &[(u16, u32)]) -> Result<(), ConnError> {
        let mut guard = lock(&self.conn);
        let conn = &mut *guard;
        self.peer_max_streams.get_or_insert(u32::MAX);
        for &(id, value) in params {
            match id {
                frame::setting::MAX_CONCURRENT_STREAMS => self.peer_max_streams = Some(value),
                frame::setting::INITIAL_WINDOW_SIZE => {
                    let delta = i64::from(value) - i64::from(conn.peer_window);
                    conn.peer_window = value;
                    for s in conn.streams.values_mut() {
                        s.send_window += delta;
                        if s.send_window > MAX_WINDOW {
                            return Err(conn_error(
                                Reason::FLOW_CONTROL_ERROR,
                                "SETTINGS_INITIAL_WINDOW_SIZE overflows a window",
                            ));
                        }
                        if delta > 0 {
                            if let Some(w) = s.send_waker.take() {
                                w.wake();
                            }
                        }
                    }
                }
                frame::setting::MAX_FRAME_SIZE => conn.peer_max_frame = value,
                // lbhost's encoder uses no dynamic table: any size suits it.
                frame::setting::HEADER_TABLE_SIZE => {}
                // The rest is advice, or not for a client.
                _ => {}
            }
        }
        frame::write_settings_ack(&mut conn.out);
        Ok(())
    }

    fn window_update(&mut self, id: u32, increment: u32) -> Result<(), ConnError> {
        let mut guard = lock(&self.conn);
        let conn = &mut *guard;
        if id == 0 {
            conn.send_window += i64::from(increment);
            if conn.send_window > MAX_WINDOW {
                return Err(conn_error(
                    Reason::FLOW_CONTROL_ERROR,
                    "WINDOW_UPDATE past 2^31-1",
                ));
            }
            for s in conn.streams.values_mut() {
                if let Some(w) = s.send_waker.take() {
                    w.wake();
                }
            }
            return Ok(());
        }
        if let Some(s) = conn.streams.get_mut(&id) {
            s.send_window += i64::from(increment);
            if s.send_window > MAX_WINDOW {
                s.fail(StreamError::Reset(Reason::FLOW_CONTROL_ERROR));
                frame::write_rst_stream(&mut conn.out, id, Reason::FLOW_CONTROL_ERROR);
            } else if let Some(w) = s.send_waker.take() {
                w.wake();
            }
        }
        Ok(())
    }
}

/// Fails stream `id` for a malformed response and resets it (RFC 9113 §8.1.1).
fn malformed(conn: &mut Conn, id: u32, why: &'static str) {
    if let Some(s) = conn.streams.get_mut(&id) {
        s.fail(StreamError::Malformed(why));
    }
    frame::write_rst_stream(&mut conn.out, id, Reason::PROTOCOL_ERROR);
}

impl StreamState {
    /// The backend ended its side: the body must be as long as `content-length` said.
    fn end(&mut self) -> Result<(), &'static str> {
        match self.expected {
            Some(e) if e != self.received => Err("body shorter than content-length"),
            _ => {
                self.recv_end = true;
                Ok(())
            }
        }
    }
}
