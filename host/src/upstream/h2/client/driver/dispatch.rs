//! What the driver does with each frame a backend sends: a stream's head, data and trailers to
//! its stream, SETTINGS and WINDOW_UPDATE to the windows, GOAWAY and RST_STREAM to the streams
//! they end, and the protocol's errors to [`ConnError`]s.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::super::head::Section;
use super::super::{frame, lock, Conn, Reason, StreamError, StreamState, MAX_FRAME, MAX_WINDOW};
use super::{conn_error, Block, ConnError, Driver, MAX_BLOCK, PING_PAYLOAD};
use crate::http2::content_length;
use crate::http2::frame::Frame;

impl<T: AsyncRead + AsyncWrite + Unpin> Driver<T> {
    /// Handles every whole frame read.
    pub(super) fn frames(&mut self) -> Result<(), ConnError> {
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
        if !conn.recv_window.receive(flow_len) {
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
        if !s.recv_window.receive(flow_len) {
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
        s.recv_window.note(flow_len - len);
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
