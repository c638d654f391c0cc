//! What the driver does with each frame a client sends: a new stream's head to a task of its
//! own, data and trailers to their stream, SETTINGS and WINDOW_UPDATE to the windows,
//! RST_STREAM and GOAWAY to the streams they end, and the protocol's errors to
//! [`ConnError`]s.

use bytes::{Bytes, BytesMut};

use super::driver::{conn_error, Block, ConnError, Driver, Phase, PING_PAYLOAD};
use super::request::{Refusal, Section};
use super::stream;
use super::{frame, lock, Conn, Reason, StreamState, MAX_STREAMS, MAX_WINDOW};
use crate::http2::frame::Frame;
use tokio::time::Instant;

/// The largest frame lbhost accepts (the RFC's minimum, which every peer supports).
const MAX_FRAME: u32 = frame::DEFAULT_MAX_FRAME_SIZE;
/// CONTINUATION frames one header block may take: a flood of tiny or empty ones is cut short.
const MAX_CONTINUATIONS: u32 = 64;

impl Driver {
    /// Handles every whole frame read.
    pub(super) fn frames(&mut self) -> Result<(), ConnError> {
        if self.phase == Phase::Handshake && !self.preface()? {
            return Ok(());
        }
        loop {
            let frame = match frame::read(&mut self.read, MAX_FRAME) {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(()),
                // A stream's own fault (the bad frame is consumed): only it is reset.
                Err(e) if e.stream().is_some() => {
                    let id = e.stream().unwrap_or(0);
                    let mut conn = lock(&self.conn);
                    if conn.streams.contains_key(&id) {
                        conn.reset(id, e.reason());
                    } else {
                        frame::write_rst_stream(&mut conn.out, id, e.reason());
                    }
                    glitch(&mut conn)?;
                    continue;
                }
                Err(e) => return Err(conn_error(e.reason(), e.to_string())),
            };
            if self.phase == Phase::Handshake {
                if !matches!(frame, Frame::Settings { ack: false, .. }) {
                    return Err(conn_error(
                        Reason::PROTOCOL_ERROR,
                        "the client's first frame is not SETTINGS",
                    ));
                }
                self.phase = Phase::Serving;
                self.timer
                    .as_mut()
                    .reset(Instant::now() + self.ping_interval);
            }
            self.frame(frame)?;
        }
    }

    /// Takes the client preface off the read buffer once it is there; false until then.
    fn preface(&mut self) -> Result<bool, ConnError> {
        if self.preface_read {
            return Ok(true);
        }
        let n = self.read.len().min(frame::PREFACE.len());
        if self.read[..n] != frame::PREFACE[..n] {
            return Err(conn_error(Reason::PROTOCOL_ERROR, "not the HTTP/2 preface"));
        }
        if n < frame::PREFACE.len() {
            return Ok(false);
        }
        let _ = self.read.split_to(n);
        self.preface_read = true;
        Ok(true)
    }

    fn frame(&mut self, frame: Frame) -> Result<(), ConnError> {
        let max_block = self.max_block();
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
            block.frames += 1;
            if block.bytes.len() + fragment.len() > max_block {
                return Err(conn_error(
                    Reason::ENHANCE_YOUR_CALM,
                    "header block over twice limits.max_header_bytes",
                ));
            }
            if block.frames > MAX_CONTINUATIONS {
                return Err(conn_error(
                    Reason::ENHANCE_YOUR_CALM,
                    "header block in too many CONTINUATION frames",
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
                    if fragment.len() > self.max_block() {
                        return Err(conn_error(
                            Reason::ENHANCE_YOUR_CALM,
                            "header block over twice limits.max_header_bytes",
                        ));
                    }
                    self.block = Some(Block {
                        stream,
                        end_stream,
                        bytes: BytesMut::from(&fragment[..]),
                        frames: 0,
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
                    self.timer
                        .as_mut()
                        .reset(Instant::now() + self.ping_interval);
                }
            }
            Frame::GoAway { .. } => self.peer_going_away = true,
            Frame::WindowUpdate { stream, increment } => self.window_update(stream, increment)?,
            Frame::RstStream { stream, .. } => {
                if self.is_idle(stream) {
                    return Err(conn_error(
                        Reason::PROTOCOL_ERROR,
                        "RST_STREAM on an idle stream",
                    ));
                }
                let mut conn = lock(&self.conn);
                if let Some(s) = conn.streams.get_mut(&stream) {
                    if s.reset.is_none() {
                        // The client ended a stream before its response was out.
                        let unanswered = !s.sent_end;
                        s.reset = Some(Reason::CANCEL);
                        s.wake();
                        conn.settle(stream);
                        if unanswered {
                            glitch(&mut conn)?;
                        }
                    }
                }
            }
            Frame::PushPromise { .. } => {
                return Err(conn_error(
                    Reason::PROTOCOL_ERROR,
                    "PUSH_PROMISE from a client",
                ))
            }
            Frame::Priority { .. } | Frame::Unknown { .. } => {}
        }
        Ok(())
    }

    /// The compressed header block a client may send: twice the decoded limit, as HPACK's
    /// literals may be longer than what they decode to (never-Huffman long values).
    fn max_block(&self) -> usize {
        self.max_header_list.saturating_mul(2)
    }

    /// Whether `id` names a stream the client has not opened yet.
    fn is_idle(&self, id: u32) -> bool {
        id > self.last_id
    }

    /// A whole header block: a new stream's request head, or a stream's trailers.
    fn headers(&mut self, id: u32, block: &[u8], end_stream: bool) -> Result<(), ConnError> {
        if id.is_multiple_of(2) {
            return Err(conn_error(
                Reason::PROTOCOL_ERROR,
                "HEADERS on a server-initiated stream id",
            ));
        }
        let mut guard = lock(&self.conn);
        let conn = &mut *guard;
        let trailers = !self.is_idle(id);
        let mut section = Section::new(trailers, self.max_header_list);
        // Decoded whatever the stream's state: the HPACK table must follow every block.
        self.decoder
            .decode(block, &mut |name, value| section.field(name, value))
            .map_err(|e| conn_error(Reason::COMPRESSION_ERROR, e.to_string()))?;
        if trailers {
            let Some(s) = conn.streams.get_mut(&id) else {
                // A stream already over (reset, or answered and let go of) may still see the
                // trailers the client sent meanwhile; a new request may not reuse its id.
                if !end_stream || section.into_trailers().is_err() {
                    return Err(conn_error(
                        Reason::PROTOCOL_ERROR,
                        "HEADERS on a closed stream",
                    ));
                }
                return Ok(());
            };
            if s.reset.is_some() {
                return Ok(());
            }
            if s.recv_end {
                conn.reset(id, Reason::STREAM_CLOSED);
                return glitch(conn);
            }
            let outcome = if end_stream {
                section.into_trailers().map_err(|_| "malformed trailers")
            } else {
                Err("trailers without END_STREAM")
            };
            match outcome.and_then(|t| {
                s.trailers = Some(t);
                s.end()
            }) {
                Ok(()) => {
                    s.wake();
                    conn.settle(id);
                }
                Err(why) => {
                    tracing::debug!(peer = %self.peer, stream = id, why, "HTTP/2 request reset");
                    conn.reset(id, Reason::PROTOCOL_ERROR);
                    glitch(conn)?;
                }
            }
            return Ok(());
        }
        self.last_id = id;
        if self.going_away || conn.failed {
            // Past the GOAWAY's last stream: ignored (RFC 9113 §6.8).
            return Ok(());
        }
        if conn.open >= MAX_STREAMS {
            frame::write_rst_stream(&mut conn.out, id, Reason::REFUSED_STREAM);
            return glitch(conn);
        }
        let (parts, expected) = match section.into_request() {
            Ok(request) => request,
            Err(Refusal::Malformed(why)) => {
                tracing::debug!(peer = %self.peer, stream = id, why, "malformed HTTP/2 request");
                frame::write_rst_stream(&mut conn.out, id, Reason::PROTOCOL_ERROR);
                return glitch(conn);
            }
            Err(Refusal::TooLarge) => {
                stream::refuse_too_large(conn, id, end_stream);
                return glitch(conn);
            }
        };
        conn.streams
            .insert(id, StreamState::new(conn.peer_window, end_stream, expected));
        conn.open += 1;
        drop(guard);
        let (task, body) = stream::Handle::pair(&self.conn, id);
        tokio::spawn(stream::run(
            task,
            body,
            parts,
            self.proxy.clone(),
            self.peer,
            self.secure,
        ));
        Ok(())
    }

    fn data(
        &mut self,
        id: u32,
        data: Bytes,
        flow_len: u32,
        end_stream: bool,
    ) -> Result<(), ConnError> {
        if self.is_idle(id) {
            return Err(conn_error(
                Reason::PROTOCOL_ERROR,
                "DATA on a stream not opened",
            ));
        }
        let mut guard = lock(&self.conn);
        let conn = &mut *guard;
        if !conn.recv_window.receive(flow_len) {
            return Err(conn_error(
                Reason::FLOW_CONTROL_ERROR,
                "DATA past the connection's window",
            ));
        }
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let Some(s) = conn.streams.get_mut(&id) else {
            // A stream already over: its credit goes back.
            conn.release_connection(flow_len);
            return Ok(());
        };
        if s.reset.is_some() {
            conn.release_connection(flow_len);
            return Ok(());
        }
        if s.recv_end {
            conn.release_connection(flow_len);
            conn.reset(id, Reason::STREAM_CLOSED);
            return glitch(conn);
        }
        if !s.recv_window.receive(flow_len) {
            conn.release_connection(flow_len);
            conn.reset(id, Reason::FLOW_CONTROL_ERROR);
            return glitch(conn);
        }
        s.received += u64::from(len);
        if s.expected.is_some_and(|e| s.received > e) {
            conn.release_connection(flow_len);
            conn.reset(id, Reason::PROTOCOL_ERROR);
            return glitch(conn);
        }
        // Padding is nobody's to read: its credit goes back with the next update.
        s.recv_window.note(flow_len - len);
        let empty = data.is_empty();
        if !empty {
            s.data.push_back(data);
        }
        let ended = if end_stream { s.end() } else { Ok(()) };
        s.wake();
        conn.release_connection(flow_len - len);
        if ended.is_err() {
            conn.reset(id, Reason::PROTOCOL_ERROR);
            return glitch(conn);
        }
        conn.settle(id);
        if empty && !end_stream {
            // An empty DATA frame moves nothing forward (a flood of them is a known attack).
            return glitch(conn);
        }
        Ok(())
    }

    fn settings(&mut self, params: &[(u16, u32)]) -> Result<(), ConnError> {
        let mut guard = lock(&self.conn);
        let conn = &mut *guard;
        for &(id, value) in params {
            match id {
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
                            if let Some(w) = s.task_waker.take() {
                                w.wake();
                            }
                        }
                    }
                }
                frame::setting::MAX_FRAME_SIZE => conn.peer_max_frame = value,
                // lbhost's encoder uses no dynamic table: any size suits it. lbhost never
                // pushes, and the rest is advice.
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
                if let Some(w) = s.task_waker.take() {
                    w.wake();
                }
            }
            return Ok(());
        }
        if self.is_idle(id) {
            return Err(conn_error(
                Reason::PROTOCOL_ERROR,
                "WINDOW_UPDATE on an idle stream",
            ));
        }
        if let Some(s) = conn.streams.get_mut(&id) {
            s.send_window += i64::from(increment);
            if s.send_window > MAX_WINDOW {
                conn.reset(id, Reason::FLOW_CONTROL_ERROR);
            } else if let Some(w) = s.task_waker.take() {
                w.wake();
            }
        }
        Ok(())
    }
}

/// Counts a glitch on `conn`; past the allowance, the connection ends with ENHANCE_YOUR_CALM.
fn glitch(conn: &mut Conn) -> Result<(), ConnError> {
    conn.glitch()
        .map_err(|why| conn_error(Reason::ENHANCE_YOUR_CALM, why))
}

impl StreamState {
    /// The client ended its side: the body must be as long as `content-length` said.
    fn end(&mut self) -> Result<(), &'static str> {
        match self.expected {
            Some(e) if e != self.received => Err("body not as long as content-length"),
            _ => {
                self.recv_end = true;
                Ok(())
            }
        }
    }
}
