//! The admin listener: metrics, status and health of the balancer itself. Binds loopback by
//! default and is separate from client traffic.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use http::{header, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use tokio::net::TcpListener;

use crate::proxy::{local_response, Proxy, ProxyBody};

/// Serves the admin API on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, proxy: Arc<Proxy>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let proxy = Arc::clone(&proxy);
        tokio::spawn(async move {
            let service = service_fn(move |request| route(Arc::clone(&proxy), request));
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn route(
    proxy: Arc<Proxy>,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let response = match (request.method(), request.uri().path()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "text/plain", "ok\n".into()),
        (&Method::GET, "/metrics") => text(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            proxy.metrics.render(),
        ),
        (&Method::GET, "/status") => text(StatusCode::OK, "application/json", status(&proxy)),
        (_, "/healthz" | "/metrics" | "/status") => local_response(StatusCode::METHOD_NOT_ALLOWED),
        _ => local_response(StatusCode::NOT_FOUND),
    };
    Ok(response)
}

/// The balancer's state as JSON.
fn status(proxy: &Proxy) -> String {
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
