//! lbhost's own HTTP/2 server for client connections (h2c with prior knowledge, h2 agreed by
//! ALPN), on the same frame and HPACK modules as its HTTP/2 client for backends: one
//! connection's state under one lock, shared by the task that reads and writes its socket
//! ([`driver`]) and a task per stream, which runs the proxy and sends the response
//! ([`stream`]).
//!
//! Against hostile clients: at most [`MAX_STREAMS`] streams open at once (the next is refused),
//! header blocks bounded in bytes and frames, heads over `limits.max_header_bytes` answered 431,
//! a client's own output bounded (lbhost reads no more while [`OUT_LIMIT`] bytes wait for it:
//! SETTINGS and PING floods stop themselves), and "glitches" — streams the client reset before
//! their response, malformed requests, refused streams, empty DATA frames — tolerated only up
//! to [`GLITCH_ALLOWANCE`] more than the streams answered, then GOAWAY `ENHANCE_YOUR_CALM`
//! (rapid reset, CVE-2023-44487).

mod dispatch;
mod driver;
mod request;
mod stream;

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use rustc_hash::FxHashMap;
use tokio::sync::watch;

use super::stream::ClientStream;
use super::Stop;
use crate::http2::frame::{self, Reason};
use crate::http2::RecvWindow;
use crate::proxy::Proxy;

#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use request::outcome as request_outcome;

/// A client's PONG may come this late before its connection is given up.
const PONG_TIMEOUT: Duration = Duration::from_secs(20);
/// Flow-control windows: what a client may send on one stream, and on the connection, before
/// lbhost has read it.
const STREAM_WINDOW: u32 = 1024 * 1024;
const CONNECTION_WINDOW: u32 = 1024 * 1024;
/// Streams one client may have open at once.
const MAX_STREAMS: usize = 200;
/// Bytes queued for the client past which lbhost reads no more from it and responses wait.
const OUT_LIMIT: usize = 1024 * 1024;
/// Glitches a connection may have beyond the streams it had answered.
const GLITCH_ALLOWANCE: u64 = 100;
/// The window HTTP/2 starts every stream and the connection with (RFC 9113 §6.9.2).
const DEFAULT_WINDOW: u32 = 65_535;
/// The largest window RFC 9113 §6.9.1 allows.
const MAX_WINDOW: i64 = (1 << 31) - 1;

/// How client connections are spoken to over HTTP/2; built once per worker.
#[derive(Debug)]
pub(super) struct H2Settings {
    /// The client's SETTINGS must come within this.
    handshake: Duration,
    /// A PING goes to the client this often.
    ping_interval: Duration,
    /// The largest request head, as HPACK counts it (name + value + 32 a field).
    max_header_list: usize,
}

impl H2Settings {
    pub(super) fn new(header_read: Duration, client_idle: Duration, max_header_bytes: u32) -> Self {
        H2Settings {
            handshake: header_read,
            ping_interval: client_idle,
            max_header_list: max_header_bytes as usize,
        }
    }
}

/// Serves HTTP/2 on `io`, whose first bytes (`read`, the preface among them) were read already,
/// until the client closes the connection or it fails; once `stopped` says so, with a GOAWAY.
pub(super) async fn serve(
    io: ClientStream,
    read: Bytes,
    peer: SocketAddr,
    secure: bool,
    proxy: &Arc<Proxy>,
    settings: &H2Settings,
    stopped: &mut watch::Receiver<Stop>,
) -> Result<(), String> {
    let mut stop = std::pin::pin!(stopped.wait_for(|stop| stop.stops()));
    let mut driver = driver::Driver::new(io, read, peer, secure, Arc::clone(proxy), settings);
    std::future::poll_fn(|cx| {
        if !driver.stopping() && stop.as_mut().poll(cx).is_ready() {
            driver.go_away();
        }
        std::pin::Pin::new(&mut driver).poll(cx)
    })
    .await
}

/// One connection's state, shared by its driver and its streams' tasks.
#[derive(Debug)]
struct Conn {
    /// Frames to write, appended by the streams and the driver; the driver takes them.
    out: BytesMut,
    /// The driver's task, woken when `out` gains bytes.
    driver: Option<Waker>,
    /// Streams' tasks waiting for `out` to shrink below [`OUT_LIMIT`].
    out_waiters: Vec<Waker>,
    streams: FxHashMap<u32, StreamState>,
    /// Streams neither closed nor reset (what [`MAX_STREAMS`] bounds).
    open: usize,
    /// The connection failed or the client left: every stream ended with it.
    failed: bool,
    /// What lbhost may still send on the connection (the client's window).
    send_window: i64,
    /// What the client may still send on the connection, and what was read since the last
    /// WINDOW_UPDATE.
    recv_window: RecvWindow,
    /// The client's SETTINGS: its initial stream window and largest frame.
    peer_window: u32,
    peer_max_frame: u32,
    /// Streams whose response went out whole, and glitches (see the module's documentation).
    answered: u64,
    glitches: u64,
    /// Where a head's HPACK block is put together.
    block: Vec<u8>,
}

/// One stream's state.
#[derive(Debug)]
struct StreamState {
    /// Request DATA not read yet, then its trailers.
    data: VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
    /// The client ended its side (END_STREAM).
    recv_end: bool,
    /// lbhost ended its side.
    sent_end: bool,
    /// The stream was reset (by either side), or the connection is gone.
    reset: Option<Reason>,
    /// No longer counted in [`Conn::open`].
    closed: bool,
    /// What lbhost may still send on it, and what the client may still send.
    send_window: i64,
    recv_window: RecvWindow,
    /// The request's `content-length`, and the DATA bytes counted against it.
    expected: Option<u64>,
    received: u64,
    /// The request body's reader, and the stream's task (waiting for the proxy, the windows
    /// or a reset).
    recv_waker: Option<Waker>,
    task_waker: Option<Waker>,
    /// Handles to it ([`stream::Handle`]): at 0 it goes, reset if unfinished.
    handles: u8,
}

impl StreamState {
    fn new(send_window: u32, recv_end: bool, expected: Option<u64>) -> Self {
        StreamState {
            data: VecDeque::new(),
            trailers: None,
            recv_end,
            sent_end: false,
            reset: None,
            closed: false,
            send_window: i64::from(send_window),
            recv_window: RecvWindow::new(STREAM_WINDOW),
            expected: if recv_end { Some(0) } else { expected },
            received: 0,
            recv_waker: None,
            task_waker: None,
            handles: 2,
        }
    }

    fn wake(&mut self) {
        if let Some(w) = self.recv_waker.take() {
            w.wake();
        }
        if let Some(w) = self.task_waker.take() {
            w.wake();
        }
    }

    /// Whether it still counts against [`MAX_STREAMS`] but is over.
    fn finished(&self) -> bool {
        self.reset.is_some() || (self.recv_end && self.sent_end)
    }
}

impl Conn {
    fn new(settings: &H2Settings) -> Self {
        let mut out = BytesMut::with_capacity(16 * 1024);
        frame::write_settings(
            &mut out,
            &[
                (frame::setting::MAX_CONCURRENT_STREAMS, MAX_STREAMS as u32),
                (frame::setting::INITIAL_WINDOW_SIZE, STREAM_WINDOW),
                (
                    frame::setting::MAX_HEADER_LIST_SIZE,
                    u32::try_from(settings.max_header_list).unwrap_or(u32::MAX),
                ),
            ],
        );
        frame::write_window_update(&mut out, 0, CONNECTION_WINDOW - DEFAULT_WINDOW);
        Conn {
            out,
            driver: None,
            out_waiters: Vec::new(),
            streams: FxHashMap::default(),
            open: 0,
            failed: false,
            send_window: i64::from(DEFAULT_WINDOW),
            recv_window: RecvWindow::new(CONNECTION_WINDOW),
            peer_window: DEFAULT_WINDOW,
            peer_max_frame: frame::DEFAULT_MAX_FRAME_SIZE,
            answered: 0,
            glitches: 0,
            block: Vec::new(),
        }
    }

    fn wake_driver(&mut self) {
        if let Some(w) = &self.driver {
            w.wake_by_ref();
        }
    }

    /// Gives `n` bytes of the connection's window back to the client once half of it is used.
    fn release_connection(&mut self, n: u32) {
        if let Some(credit) = self.recv_window.release(n) {
            frame::write_window_update(&mut self.out, 0, credit);
            self.wake_driver();
        }
    }

    /// Takes stream `id` out of [`Conn::open`] once it is over.
    fn settle(&mut self, id: u32) {
        if let Some(s) = self.streams.get_mut(&id) {
            if !s.closed && s.finished() {
                s.closed = true;
                self.open -= 1;
            }
        }
    }

    /// Resets stream `id` with `reason`, telling the client.
    fn reset(&mut self, id: u32, reason: Reason) {
        if let Some(s) = self.streams.get_mut(&id) {
            if s.reset.is_none() {
                s.reset = Some(reason);
                s.wake();
                frame::write_rst_stream(&mut self.out, id, reason);
                self.wake_driver();
            }
        }
        self.settle(id);
    }

    /// Counts a glitch: an error once there are [`GLITCH_ALLOWANCE`] more than answers.
    fn glitch(&mut self) -> Result<(), &'static str> {
        self.glitches += 1;
        if self.glitches > self.answered + GLITCH_ALLOWANCE {
            return Err("too many streams reset, refused or malformed");
        }
        Ok(())
    }

    /// Ends every stream: the connection is gone.
    fn fail_all(&mut self) {
        self.failed = true;
        for s in self.streams.values_mut() {
            if s.reset.is_none() {
                s.reset = Some(Reason::CANCEL);
            }
            if !s.closed {
                s.closed = true;
            }
            s.wake();
        }
        self.open = 0;
        for w in self.out_waiters.drain(..) {
            w.wake();
        }
    }
}

/// Locks `conn`; a panic elsewhere leaves a state that is still consistent enough to fail.
fn lock(conn: &Mutex<Conn>) -> MutexGuard<'_, Conn> {
    conn.lock().unwrap_or_else(PoisonError::into_inner)
}
