//! The HTTP routes: plain, health, slow, echo, upload, download (WebSockets live in `ws`).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode, Uri};
use tokio::sync::watch;

use crate::{stopped, State};

/// A response body: in memory or streamed, never failing.
pub(crate) type ResponseBody = BoxBody<Bytes, Infallible>;

/// What every request handler gets: the backend's state and its stop signal.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub(crate) state: Arc<State>,
    pub(crate) stopping: watch::Receiver<bool>,
}

impl Ctx {
    /// The status that the normal routes answer with now.
    fn status(&self) -> StatusCode {
        status(self.state.status.load(Ordering::SeqCst))
    }

    /// A response with `x-backend` set.
    pub(crate) fn respond(&self, status: StatusCode, body: ResponseBody) -> Response<ResponseBody> {
        let mut response = Response::new(body);
        *response.status_mut() = status;
        if let Ok(name) = HeaderValue::from_str(&self.state.name) {
            response.headers_mut().insert("x-backend", name);
        }
        response
    }

    /// A text response.
    fn text(&self, status: StatusCode, text: impl Into<String>) -> Response<ResponseBody> {
        let mut response = self.respond(status, full(text.into()));
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }

    /// `<name>\n` with the configured status.
    fn hello(&self) -> Response<ResponseBody> {
        self.text(self.status(), format!("{}\n", self.state.name))
    }
}

pub(crate) async fn handle(
    ctx: Ctx,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    if req.uri().path() == "/health" {
        let status = status(ctx.state.health_status.load(Ordering::SeqCst));
        let body = if status.is_success() {
            "ok\n"
        } else {
            "unhealthy\n"
        };
        return Ok(ctx.text(status, body));
    }
    ctx.state.hits.fetch_add(1, Ordering::SeqCst);
    let delay = ctx.state.delay_us.load(Ordering::SeqCst);
    if delay > 0 {
        wait(&ctx, Duration::from_micros(delay)).await;
    }
    let response = match req.uri().path() {
        "/slow" => match query_u64(req.uri(), "ms") {
            Some(ms) => slow(ctx, Duration::from_millis(ms)).await,
            None => ctx.text(StatusCode::BAD_REQUEST, "usage: /slow?ms=N\n"),
        },
        "/echo" => echo(&ctx, &req),
        "/upload" => upload(&ctx, req).await,
        "/download" => match query_u64(req.uri(), "bytes") {
            Some(bytes) => {
                let mut response = ctx.respond(ctx.status(), Zeros { remaining: bytes }.boxed());
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                response
            }
            None => ctx.text(StatusCode::BAD_REQUEST, "usage: /download?bytes=N\n"),
        },
        "/ws" => crate::ws::accept(&ctx, req),
        _ => ctx.hello(),
    };
    Ok(response)
}

/// Answers like `/` after `delay`, unless the backend stops first.
async fn slow(ctx: Ctx, delay: Duration) -> Response<ResponseBody> {
    wait(&ctx, delay).await;
    ctx.hello()
}

/// Waits `delay`, or until the backend stops.
async fn wait(ctx: &Ctx, delay: Duration) {
    let mut stopping = ctx.stopping.clone();
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        () = stopped(&mut stopping) => {}
    }
}

/// The request line and headers as received, as JSON.
fn echo(ctx: &Ctx, req: &Request<Incoming>) -> Response<ResponseBody> {
    let mut headers: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (name, value) in req.headers() {
        headers
            .entry(name.as_str())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let json = serde_json::json!({
        "method": req.method().as_str(),
        "uri": req.uri().to_string(),
        "version": format!("{:?}", req.version()),
        "headers": headers,
    });
    let mut response = ctx.respond(ctx.status(), full(json.to_string()));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Counts the body frame by frame, keeping none of it.
async fn upload(ctx: &Ctx, req: Request<Incoming>) -> Response<ResponseBody> {
    let mut body = req.into_body();
    let mut received: u64 = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    received += data.len() as u64;
                }
            }
            Err(e) => {
                return ctx.text(
                    StatusCode::BAD_REQUEST,
                    format!("body broke off after {received} bytes: {e}\n"),
                )
            }
        }
    }
    ctx.text(ctx.status(), received.to_string())
}

/// The value of `key` in the query string, as a number.
fn query_u64(uri: &Uri, key: &str) -> Option<u64> {
    uri.query()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn full(body: impl Into<Bytes>) -> ResponseBody {
    Full::new(body.into()).boxed()
}

/// A body of `remaining` zero bytes, produced in 64 KiB slices of one static buffer.
struct Zeros {
    remaining: u64,
}

static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

impl Body for Zeros {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let len = self.remaining.min(ZEROS.len() as u64) as usize;
        self.remaining -= len as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&ZEROS[..len])))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
