//! `/ws`: the WebSocket handshake over hyper's upgrade API, then an echo loop.

use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION,
    UPGRADE,
};
use hyper::upgrade::OnUpgrade;
use hyper::{HeaderMap, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use crate::routes::{Ctx, ResponseBody};
use crate::stopped;

/// Answers `101 Switching Protocols` to a WebSocket handshake and echoes every text and binary
/// message on the upgraded connection until the client closes it or the backend stops.
pub(crate) fn accept(ctx: &Ctx, mut req: Request<Incoming>) -> Response<ResponseBody> {
    let Some(key) = handshake_key(req.headers()) else {
        let mut response = ctx.respond(
            StatusCode::BAD_REQUEST,
            http_body_util::Full::from("expected a WebSocket upgrade (version 13)\n").boxed(),
        );
        response
            .headers_mut()
            .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        return response;
    };
    let accept_key = derive_accept_key(key.as_bytes());
    let upgrade = hyper::upgrade::on(&mut req);
    let mut stopping = ctx.stopping.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = echo(upgrade) => {}
            () = stopped(&mut stopping) => {}
        }
    });

    let mut response = ctx.respond(
        StatusCode::SWITCHING_PROTOCOLS,
        Empty::new().map_err(|never| match never {}).boxed(),
    );
    let headers = response.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(value) = HeaderValue::from_str(&accept_key) {
        headers.insert(SEC_WEBSOCKET_ACCEPT, value);
    }
    response
}

/// The client's `Sec-WebSocket-Key`, if this is a version 13 upgrade request.
fn handshake_key(headers: &HeaderMap) -> Option<&HeaderValue> {
    let has_token = |name, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value
                .to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    let version_13 = headers
        .get(SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    if has_token(UPGRADE, "websocket") && has_token(CONNECTION, "upgrade") && version_13 {
        headers.get(SEC_WEBSOCKET_KEY)
    } else {
        None
    }
}

async fn echo(upgrade: OnUpgrade) -> anyhow::Result<()> {
    let io = TokioIo::new(upgrade.await?);
    let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
    // Pings and the closing handshake are answered by tungstenite itself; the stream ends once
    // the connection is closed.
    while let Some(message) = ws.next().await {
        let message = message?;
        if message.is_text() || message.is_binary() {
            ws.send(message).await?;
        }
    }
    Ok(())
}
