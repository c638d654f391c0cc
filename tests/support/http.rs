//! The client side: a keep-alive HTTP client, request bodies, and raw bytes over TCP.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{HeaderMap, Request, Response, StatusCode, Version};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one request may take, head and body, before the test fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`send_raw`] waits for the server to answer and close.
const RAW_WAIT: Duration = Duration::from_secs(5);

/// A request body: in memory or streamed.
pub type RequestBody = BoxBody<Bytes, Infallible>;

/// A response read to the end.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first value of header `name`, if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON; panics showing the body when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }
}

/// An HTTP client that keeps connections alive between requests (one pool per `Http`).
/// Every request fails the test after 30 s.
#[derive(Clone, Debug)]
pub struct Http {
    client: Client<HttpConnector, RequestBody>,
}

impl Default for Http {
    fn default() -> Self {
        Http::new()
    }
}

impl Http {
    /// HTTP/1.1 with keep-alive.
    pub fn new() -> Self {
        Http {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// HTTP/2 over cleartext with prior knowledge (h2c).
    pub fn h2c() -> Self {
        Http {
            client: Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build_http(),
        }
    }

    /// `GET url`, read to the end.
    pub async fn get(&self, url: &str) -> Reply {
        self.get_with(url, &[]).await
    }

    /// `GET url` with extra headers (a name may repeat), read to the end.
    pub async fn get_with(&self, url: &str, headers: &[(&str, &str)]) -> Reply {
        let mut request = Request::get(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(empty())
            .unwrap_or_else(|e| panic!("building GET {url}: {e}"));
        self.send(request).await
    }

    /// Sends `request` and reads the response to the end; panics if either fails.
    pub async fn send(&self, request: Request<RequestBody>) -> Reply {
        let what = format!("{} {}", request.method(), request.uri());
        let exchange = async {
            let response = self.try_send(request).await?;
            let (head, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| format!("reading the body: {}", chain(&e)))?
                .to_bytes();
            Ok::<_, String>(Reply {
                status: head.status,
                version: head.version,
                headers: head.headers,
                body,
            })
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => panic!("{what}: {e}"),
            Err(_) => panic!("{what}: no complete answer within {REQUEST_TIMEOUT:?}"),
        }
    }

    /// Sends `request` and returns the response head with its body still streaming, or the
    /// error (with its causes) as text.
    pub async fn try_send(
        &self,
        request: Request<RequestBody>,
    ) -> Result<Response<Incoming>, String> {
        self.client.request(request).await.map_err(|e| chain(&e))
    }
}

/// `GET url` on a fresh connection. Use an [`Http`] for many requests.
pub async fn get(url: &str) -> Reply {
    Http::new().get(url).await
}

/// An empty request body.
pub fn empty() -> RequestBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A request body held in memory.
pub fn full(body: impl Into<Bytes>) -> RequestBody {
    Full::new(body.into()).boxed()
}

/// A streamed request body of `len` zero bytes, in 64 KiB frames of one static buffer (chunked
/// on the wire): nothing of it is held in the test's memory.
pub fn zeros(len: u64) -> RequestBody {
    const CHUNK: u64 = 64 * 1024;
    static ZEROS: [u8; CHUNK as usize] = [0; CHUNK as usize];
    let frames = (0..len.div_ceil(CHUNK)).map(move |i| {
        let n = (len - i * CHUNK).min(CHUNK) as usize;
        Ok(Frame::data(Bytes::from_static(&ZEROS[..n])))
    });
    StreamBody::new(futures_util::stream::iter(frames)).boxed()
}

/// Writes `bytes` to a new connection to `addr` and returns everything the server sends back
/// (lossy text) until it closes the connection, or for at most 5 s.
pub async fn send_raw(addr: SocketAddr, bytes: &[u8]) -> String {
    send_raw_for(addr, bytes, RAW_WAIT).await
}

/// [`send_raw`], waiting at most `wait` for the server to close. A server that closes early
/// (e.g. on an oversized header) is fine: its answer is still read.
pub async fn send_raw_for(addr: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    let deadline = tokio::time::Instant::now() + wait;
    let mut stream = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    let _ = tokio::time::timeout_at(deadline, stream.write_all(bytes)).await;
    let mut received = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(Ok(n @ 1..)) = tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
        received.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&received).into_owned()
}

/// An error and its causes on one line: hyper's errors say little without their sources.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
