//! Hand-written TCP backends, for what a real HTTP server would not do on purpose (close idle
//! connections early, answer halfway, swallow requests), and one that records the bytes it
//! gets.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A listener on a free loopback port whose connections are served by a test's own code.
#[derive(Debug)]
pub struct RawBackend {
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
}

impl RawBackend {
    /// Starts accepting; each connection is counted and handed to `serve` in a task of its own.
    pub async fn start<F, Fut>(serve: F) -> RawBackend
    where
        F: Fn(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let accepted = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(serve(stream));
            }
        });
        RawBackend { addr, accepted }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://` + its address.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

/// A backend that keeps every byte each connection brings, as it came, and answers each
/// request it can read whole (a `Content-Length` or chunked body) with `200` and `ok`.
#[derive(Debug)]
pub struct RecordingBackend {
    raw: RawBackend,
    connections: Arc<Mutex<Vec<Recorded>>>,
}

/// What one connection brought.
#[derive(Clone, Debug, Default)]
pub struct Recorded {
    /// Every byte, in order.
    pub bytes: Vec<u8>,
    /// The peer closed the connection (or it failed).
    pub ended: bool,
}

impl Recorded {
    /// The bytes as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

impl RecordingBackend {
    pub async fn start() -> RecordingBackend {
        let connections: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let all = Arc::clone(&connections);
        let raw = RawBackend::start(move |stream| record(stream, Arc::clone(&all))).await;
        RecordingBackend { raw, connections }
    }

    /// `http://` + its address.
    pub fn url(&self) -> String {
        self.raw.url()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.raw.accepted()
    }

    /// What each connection brought so far, in the order they were accepted.
    pub fn connections(&self) -> Vec<Recorded> {
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Everything every connection brought, as text (lossy), in order.
    pub fn received(&self) -> String {
        self.connections().iter().map(Recorded::text).collect()
    }
}

async fn record(mut stream: TcpStream, all: Arc<Mutex<Vec<Recorded>>>) {
    let index = {
        let mut all = all.lock().unwrap_or_else(PoisonError::into_inner);
        all.push(Recorded::default());
        all.len() - 1
    };
    let mut pending = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(n @ 1..) => n,
            _ => {
                all.lock().unwrap_or_else(PoisonError::into_inner)[index].ended = true;
                return;
            }
        };
        all.lock().unwrap_or_else(PoisonError::into_inner)[index]
            .bytes
            .extend_from_slice(&buf[..n]);
        pending.extend_from_slice(&buf[..n]);
        while let Some(length) = request_length(&pending) {
            pending.drain(..length);
            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
            if stream.write_all(answer).await.is_err() {
                return;
            }
        }
    }
}

/// The length of the request at the start of `bytes`, once it is all there: a head, then a
/// body of its `Content-Length`, or chunked (extensions and trailers skipped) when it has a
/// `Transfer-Encoding`.
fn request_length(bytes: &[u8]) -> Option<usize> {
    let find = |from: usize, what: &[u8]| {
        bytes
            .get(from..)?
            .windows(what.len())
            .position(|w| w == what)
            .map(|at| from + at)
    };
    let body = find(0, b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&bytes[..body]).to_ascii_lowercase();
    let field = |name: &str| {
        head.split("\r\n")
            .filter_map(|line| line.split_once(':'))
            .find(|(n, _)| n.trim() == name)
            .map(|(_, value)| value.trim().to_string())
    };
    if field("transfer-encoding").is_some() {
        let mut at = body;
        loop {
            let line_end = find(at, b"\r\n")?;
            let line = String::from_utf8_lossy(&bytes[at..line_end]);
            let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
            at = line_end + 2;
            if size == 0 {
                while !bytes.get(at..)?.starts_with(b"\r\n") {
                    at = find(at, b"\r\n")? + 2;
                }
                return (bytes.len() >= at + 2).then_some(at + 2);
            }
            at += size + 2;
            if bytes.len() < at {
                return None;
            }
        }
    }
    let length: usize = field("content-length").map_or(Some(0), |v| v.parse().ok())?;
    (bytes.len() >= body + length).then_some(body + length)
}
