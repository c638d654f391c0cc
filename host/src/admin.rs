//! The admin listener: metrics, status and health of the balancer itself. Binds loopback by
//! default and is separate from client traffic.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use http::{header, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use tokio::net::TcpListener;

use crate::proxy::{local_response, Proxy, ProxyBody};
use crate::reload::{ReloadError, Reloader};

/// Largest admin request body read (a strategy switch is a few bytes).
const MAX_ADMIN_BODY: usize = 64 * 1024;

/// Serves the admin API on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, proxy: Arc<Proxy>, reloader: Arc<Reloader>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let proxy = Arc::clone(&proxy);
        let reloader = Arc::clone(&reloader);
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                route(Arc::clone(&proxy), Arc::clone(&reloader), request)
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn route(
    proxy: Arc<Proxy>,
    reloader: Arc<Reloader>,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let response = match (request.method(), request.uri().path()) {
        (&Method::POST, "/reload") => outcome(reloader.reload_config("admin").await),
        (&Method::POST, "/strategy") => switch_strategy(&reloader, request).await,
        (&Method::GET, "/healthz") => text(StatusCode::OK, "text/plain", "ok\n".into()),
        (&Method::GET, "/metrics") => text(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            proxy.metrics.render(),
        ),
        (&Method::GET, "/status") => text(
            StatusCode::OK,
            "application/json",
            status(&proxy, &reloader),
        ),
        (_, "/healthz" | "/metrics" | "/status" | "/reload" | "/strategy") => {
            local_response(StatusCode::METHOD_NOT_ALLOWED)
        }
        _ => local_response(StatusCode::NOT_FOUND),
    };
    Ok(response)
}

/// `POST /strategy` with `{"name": "ip_hash"}` (a file of `strategies_dir`) and optionally
/// `"config": {...}` (its `strategy_config`); a bare name as the body works too.
async fn switch_strategy(reloader: &Reloader, request: Request<Incoming>) -> Response<ProxyBody> {
    let body = match http_body_util::Limited::new(request.into_body(), MAX_ADMIN_BODY)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => return json_error(StatusCode::PAYLOAD_TOO_LARGE, "body too large"),
    };
    let text = String::from_utf8_lossy(&body);
    let (name, params) = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Object(map)) => {
            let Some(name) = map.get("name").and_then(|n| n.as_str()) else {
                return json_error(StatusCode::BAD_REQUEST, "expected {\"name\": \"...\"}");
            };
            let params = match map.get("config") {
                None => None,
                Some(serde_json::Value::Object(config)) => Some(
                    config
                        .iter()
                        .map(|(k, v)| match v {
                            serde_json::Value::String(s) => (k.clone(), s.clone()),
                            other => (k.clone(), other.to_string()),
                        })
                        .collect(),
                ),
                Some(_) => {
                    return json_error(StatusCode::BAD_REQUEST, "config: expected an object")
                }
            };
            (name.to_string(), params)
        }
        _ => (text.trim().to_string(), None),
    };
    let path = match reloader.strategy_by_name(&name) {
        Ok(path) => path,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    outcome(reloader.switch_strategy(path, params, "admin").await)
}

/// 200 `{"result":"applied"}`, or 422 with the reason.
fn outcome(result: Result<(), ReloadError>) -> Response<ProxyBody> {
    match result {
        Ok(()) => text(
            StatusCode::OK,
            "application/json",
            json!({"result": "applied"}).to_string() + "\n",
        ),
        Err(ReloadError::BadRequest(reason)) => json_error(StatusCode::BAD_REQUEST, &reason),
        Err(e) => json_error(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()),
    }
}

fn json_error(status: StatusCode, reason: &str) -> Response<ProxyBody> {
    text(
        status,
        "application/json",
        json!({"result": "refused", "error": reason}).to_string() + "\n",
    )
}

/// The balancer's state as JSON.
fn status(proxy: &Proxy, reloader: &Reloader) -> String {
    let set = proxy.pool.load();
    let active = proxy.strategies.active();
    let backends: Vec<_> = set
        .backends
        .iter()
        .map(|b| {
            json!({
                "address": b.address,
                "key": format!("{:016x}", b.key),
                "weight": b.weight,
                "labels": b.labels.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
                "up": b.is_up(),
                "eligible": b.is_eligible(),
                "in_flight": b.in_flight(),
                "latency_ewma_us": b.latency_ewma_us(),
            })
        })
        .collect();
    let loaded_at = active
        .loaded_at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    json!({
        "backends": backends,
        "strategy": {
            "name": active.name,
            "path": active.path,
            "sha256": active.sha256,
            "loaded_at_unix": loaded_at,
        },
        "reload": reloader.status(),
    })
    .to_string()
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::local(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}
