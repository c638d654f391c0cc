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

mod dispatch;

use super::{frame, lock, Conn, Connection, Reason, MAX_HEADER_LIST};
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
}
