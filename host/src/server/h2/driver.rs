//! A client connection's task: checks the preface and the client's first SETTINGS, reads frames
//! and hands them to [`dispatch`](super::dispatch), writes what the streams queued, PINGs the
//! client to notice one gone silent, and ends the connection: on the client's close, on a
//! protocol error (GOAWAY with its code), or gracefully once a GOAWAY went out (the worker
//! stops) or came in and no stream is left.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncWrite;
use tokio::time::{Instant, Sleep};

use super::{frame, lock, Conn, H2Settings, Reason, OUT_LIMIT, PONG_TIMEOUT};
use crate::http2::hpack::Decoder;
use crate::proxy::Proxy;
use crate::server::stream::ClientStream;

/// The payload of lbhost's keep-alive PINGs.
pub(super) const PING_PAYLOAD: [u8; 8] = *b"lbhost\0\0";
/// Bytes read from the socket at a time, at most.
const READ_CHUNK: usize = 64 * 1024;
/// The write buffer's capacity kept between writes, at most.
const KEPT_WRITE_CAPACITY: usize = 256 * 1024;
/// The HPACK dynamic table a client may use (SETTINGS_HEADER_TABLE_SIZE's default).
const TABLE_SIZE: usize = 4096;

/// Why the connection ends with an error: the code for the GOAWAY lbhost sends, and why.
pub(super) struct ConnError {
    pub(super) reason: Reason,
    pub(super) why: String,
}

pub(super) fn conn_error(reason: Reason, why: impl Into<String>) -> ConnError {
    ConnError {
        reason,
        why: why.into(),
    }
}

/// How far the connection got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// The preface is checked, then the client's SETTINGS must come first.
    Handshake,
    /// Serving streams.
    Serving,
}

/// A header block still coming in CONTINUATION frames: its stream, whether it ends the
/// stream, the bytes so far, and the frames it took.
pub(super) struct Block {
    pub(super) stream: u32,
    pub(super) end_stream: bool,
    pub(super) bytes: BytesMut,
    pub(super) frames: u32,
}

/// The task of one client connection.
pub(super) struct Driver {
    io: ClientStream,
    pub(super) conn: Arc<Mutex<Conn>>,
    pub(super) read: BytesMut,
    /// What is being written (taken from the connection's queue).
    writing: BytesMut,
    pub(super) decoder: Decoder,
    pub(super) block: Option<Block>,
    pub(super) phase: Phase,
    /// The 24 bytes of the client preface were read and checked.
    pub(super) preface_read: bool,
    /// The client's SETTINGS are due by then; later, when the next PING goes out, or (awaiting
    /// its PONG) when it is overdue.
    pub(super) timer: Pin<Box<Sleep>>,
    pub(super) awaiting_pong: bool,
    pub(super) ping_interval: Duration,
    /// The highest stream id the client opened.
    pub(super) last_id: u32,
    /// A GOAWAY went out: no new stream is taken, and the connection ends once none is left.
    pub(super) going_away: bool,
    /// The client sent GOAWAY: it opens no new stream.
    pub(super) peer_going_away: bool,
    pub(super) peer: SocketAddr,
    pub(super) secure: bool,
    pub(super) proxy: Arc<Proxy>,
    pub(super) max_header_list: usize,
}

impl Driver {
    pub(super) fn new(
        io: ClientStream,
        read: Bytes,
        peer: SocketAddr,
        secure: bool,
        proxy: Arc<Proxy>,
        settings: &H2Settings,
    ) -> Self {
        let mut buf = BytesMut::with_capacity(READ_CHUNK.max(read.len()));
        buf.extend_from_slice(&read);
        Driver {
            io,
            conn: Arc::new(Mutex::new(Conn::new(settings))),
            read: buf,
            writing: BytesMut::new(),
            decoder: Decoder::new(TABLE_SIZE),
            block: None,
            phase: Phase::Handshake,
            preface_read: false,
            timer: Box::pin(tokio::time::sleep(settings.handshake)),
            awaiting_pong: false,
            ping_interval: settings.ping_interval,
            last_id: 0,
            going_away: false,
            peer_going_away: false,
            peer,
            secure,
            proxy,
            max_header_list: settings.max_header_list,
        }
    }

    /// Whether a GOAWAY went out.
    pub(super) fn stopping(&self) -> bool {
        self.going_away
    }

    /// Sends a GOAWAY: the streams up to the last one opened finish, no new one is taken.
    pub(super) fn go_away(&mut self) {
        if self.going_away {
            return;
        }
        self.going_away = true;
        let mut conn = lock(&self.conn);
        frame::write_goaway(&mut conn.out, self.last_id, Reason::NO_ERROR, b"");
        conn.wake_driver();
    }

    /// Whether the client's output waits to be written past [`OUT_LIMIT`]: nothing more is read
    /// until it is written.
    fn backlogged(&self) -> bool {
        self.writing.len() >= OUT_LIMIT || lock(&self.conn).out.len() >= OUT_LIMIT
    }

    /// Ends the connection for `e`: a GOAWAY with its code (written if the socket takes it at
    /// once), every stream ended.
    fn fail(&mut self, cx: &mut Context<'_>, e: ConnError) -> Poll<Result<(), String>> {
        {
            let mut conn = lock(&self.conn);
            frame::write_goaway(&mut conn.out, self.last_id, e.reason, e.why.as_bytes());
            conn.fail_all();
        }
        if self.poll_write(cx).is_ready() {
            let _ = Pin::new(&mut self.io).poll_shutdown(cx);
        }
        Poll::Ready(Err(e.why))
    }

    /// The client is gone: every stream ends.
    fn lost(&mut self, why: Option<String>) -> Poll<Result<(), String>> {
        lock(&self.conn).fail_all();
        Poll::Ready(why.map_or(Ok(()), Err))
    }

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
                    // A large response's buffer is not kept for the connection's life.
                    self.writing = BytesMut::new();
                } else {
                    self.writing.clear();
                }
            }
        }
    }

    /// The handshake's deadline, then a PING every interval; an error once the SETTINGS or a
    /// PONG is late.
    fn timer(&mut self, cx: &mut Context<'_>) -> Result<(), String> {
        if self.timer.as_mut().poll(cx).is_pending() {
            return Ok(());
        }
        if self.phase == Phase::Handshake {
            return Err("no HTTP/2 SETTINGS in time".to_owned());
        }
        if self.awaiting_pong {
            return Err("no PONG to a keep-alive PING".to_owned());
        }
        // Buffers left empty go back, so that a connection idle for a PING interval holds
        // none (the read buffer comes back at the next read).
        if self.read.is_empty() {
            self.read = BytesMut::new();
        }
        if self.writing.is_empty() {
            self.writing = BytesMut::new();
        }
        let mut conn = lock(&self.conn);
        if conn.out.is_empty() {
            conn.out = BytesMut::new();
        }
        conn.block = Vec::new();
        frame::write_ping(&mut conn.out, false, PING_PAYLOAD);
        self.awaiting_pong = true;
        self.timer.as_mut().reset(Instant::now() + PONG_TIMEOUT);
        // Armed again: polled so that it wakes this task.
        let _ = self.timer.as_mut().poll(cx);
        Ok(())
    }

    /// Whether the connection is done: a GOAWAY went either way and no stream is left.
    fn done(&self) -> bool {
        (self.going_away || self.peer_going_away) && lock(&self.conn).streams.is_empty()
    }
}

impl Future for Driver {
    type Output = Result<(), String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            let mut progress = false;
            if !this.backlogged() {
                if !this.read.is_empty() && this.phase == Phase::Handshake {
                    // The preface (and maybe more) came with the handover from HTTP/1.1.
                    if let Err(e) = this.frames() {
                        return this.fail(cx, e);
                    }
                }
                if this.read.capacity() - this.read.len() < 1024 {
                    this.read.reserve(READ_CHUNK);
                }
                match tokio_util::io::poll_read_buf(Pin::new(&mut this.io), cx, &mut this.read) {
                    Poll::Ready(Ok(0)) => return this.lost(None),
                    Poll::Ready(Ok(_)) => {
                        progress = true;
                        if let Err(e) = this.frames() {
                            return this.fail(cx, e);
                        }
                    }
                    Poll::Ready(Err(e)) => return this.lost(Some(format!("reading: {e}"))),
                    Poll::Pending => {}
                }
            }
            if let Err(why) = this.timer(cx) {
                return this.lost(Some(why));
            }
            let backlogged = this.backlogged();
            match this.poll_write(cx) {
                Poll::Ready(Ok(())) => {
                    if this.done() {
                        let _ = Pin::new(&mut this.io).poll_shutdown(cx);
                        return Poll::Ready(Ok(()));
                    }
                    if backlogged {
                        // Written out: reading goes on.
                        progress = true;
                    }
                }
                Poll::Ready(Err(e)) => return this.lost(Some(format!("writing: {e}"))),
                Poll::Pending => {}
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }
}
