//! The admin listener: metrics, status and health of the balancer itself, a status page, and
//! reload and strategy switches. Binds loopback by default and is separate from client traffic.
//!
//! | route | what |
//! | --- | --- |
//! | `GET /` | the status page (one self-contained HTML file polling `/status`) |
//! | `GET /status` | the balancer's state as JSON ([`status`]) |
//! | `GET /metrics` | Prometheus text exposition ([`scrape`]) |
//! | `GET /healthz` | `ok` while lbhost serves; 503 `draining` from SIGTERM on |
//! | `POST /reload` | re-read the config file |
//! | `POST /strategy` | switch to a strategy of `strategies_dir`, put one in shadow or canary, promote or abort |
//!
//! The two `POST` routes change the balancer: [`auth`] says who may call them.

mod auth;
mod certificates;
mod page;
mod rollout;
mod scrape;
mod status;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::{header, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;

use crate::proxy::{local_response, Proxy, ProxyBody};
use crate::reload::{ReloadError, Reloader};
use crate::text::bounded;

/// Largest admin request body read (a strategy switch is a few bytes).
const MAX_ADMIN_BODY: usize = 64 * 1024;

/// What every admin request can reach.
#[derive(Debug)]
struct Admin {
    proxy: Arc<Proxy>,
    reloader: Arc<Reloader>,
    scraper: scrape::Scraper,
    /// When the admin listener started (about when lbhost started).
    started: std::time::Instant,
    /// The address the admin listener is bound to (loopback or not decides who may `POST`).
    address: SocketAddr,
    /// Set on SIGTERM: `GET /healthz` fails from then on (see `drain_delay`).
    draining: Arc<AtomicBool>,
}

/// Serves the admin API on `listener` until the task is dropped. `GET /healthz` fails once
/// `draining` is set.
pub(crate) async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    reloader: Arc<Reloader>,
    draining: Arc<AtomicBool>,
) {
    let address = match listener.local_addr() {
        Ok(address) => address,
        Err(_) => proxy.config.load().admin,
    };
    let admin = Arc::new(Admin {
        address,
        draining,
        proxy,
        reloader,
        scraper: scrape::Scraper::default(),
        started: std::time::Instant::now(),
    });
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let admin = Arc::clone(&admin);
        tokio::spawn(async move {
            let service = service_fn(move |request| route(Arc::clone(&admin), request));
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn route(
    admin: Arc<Admin>,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let changes = matches!(
        (request.method(), request.uri().path()),
        (&Method::POST, "/reload" | "/strategy")
    );
    if changes {
        let token_file = admin.proxy.config.load().admin_token_file.clone();
        let verdict = auth::authorize(request.headers(), admin.address, token_file.as_deref());
        if let Err(refusal) = verdict {
            return Ok(refused(&admin, refusal, request.uri().path()));
        }
    }
    let response = match (request.method(), request.uri().path()) {
        (&Method::POST, "/reload") => outcome(admin.reloader.reload_config("admin").await),
        (&Method::POST, "/strategy") => switch_strategy(&admin.reloader, request).await,
        (&Method::GET, "/healthz") if admin.draining.load(Ordering::Relaxed) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "draining\n".into(),
        ),
        (&Method::GET, "/healthz") => text(StatusCode::OK, "text/plain", "ok\n".into()),
        (&Method::GET, "/metrics") => text(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            admin.scraper.render(&admin.proxy),
        ),
        (&Method::GET, "/status") => text(
            StatusCode::OK,
            "application/json",
            status::status(&admin.proxy, &admin.reloader, admin.started),
        ),
        (&Method::GET, "/" | "/index.html") => page::response(),
        (
            _,
            "/" | "/index.html" | "/healthz" | "/metrics" | "/status" | "/reload" | "/strategy",
        ) => local_response(StatusCode::METHOD_NOT_ALLOWED),
        _ => local_response(StatusCode::NOT_FOUND),
    };
    Ok(response)
}

/// The body of `POST /strategy`. Unknown fields are refused, as in the config file: a typo
/// must not switch strategies with its parameters silently dropped.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SwitchRequest {
    /// A file of `strategies_dir`, with or without `.wasm`; required unless `abort`.
    name: Option<String>,
    /// Its `strategy_config`; the running one when absent.
    config: Option<serde_json::Map<String, serde_json::Value>>,
    /// `active` (the default): switch to it; `shadow`: ask it on `sample` of the requests
    /// after the active strategy decided, record its answers, never use them.
    mode: Option<String>,
    /// Shadow only: the share of requests it is asked about (default 0.1).
    sample: Option<f64>,
    /// `true`: end the canary and the shadow (only the one `mode` names, if given).
    abort: Option<bool>,
    /// The pool whose strategy changes (default: the main pool: `default_pool`, else
    /// `default`, else the first); the others keep theirs.
    pool: Option<String>,
    /// `true`: make the canary (or, with none, the shadow; `mode` picks) the active strategy.
    promote: Option<bool>,
    /// Canary only: its share of clients (default 0.05), or a schedule of `steps` every
    /// `step_every`; the client `key` (`client_ip`, `header:NAME`, `cookie:NAME`); the
    /// `rollback` rule ([`crate::config::RollbackConfig`]).
    share: Option<f64>,
    steps: Option<Vec<f64>>,
    step_every: Option<String>,
    key: Option<String>,
    rollback: Option<serde_json::Value>,
}

/// What a `POST /strategy` asks for.
enum StrategyChange {
    Switch(String, Option<Vec<(String, String)>>, Option<String>),
    Shadow(String, Option<Vec<(String, String)>>, f64, Option<String>),
    Canary(rollout::CanaryChange),
    Promote(Option<crate::reload::Rollout>, Option<String>),
    Abort(Option<crate::reload::Rollout>, Option<String>),
}

impl SwitchRequest {
    fn into_change(self) -> Result<StrategyChange, String> {
        if self.promote == Some(true) {
            return Ok(StrategyChange::Promote(
                rollout::which(self.mode.as_deref())?,
                self.pool,
            ));
        }
        if self.abort == Some(true) {
            return Ok(StrategyChange::Abort(
                rollout::which(self.mode.as_deref())?,
                self.pool,
            ));
        }
        if self.mode.as_deref() == Some("canary") {
            return rollout::CanaryChange::new(self).map(StrategyChange::Canary);
        }
        let canary_only = [
            self.share.is_some(),
            self.steps.is_some(),
            self.step_every.is_some(),
            self.key.is_some(),
            self.rollback.is_some(),
        ];
        if canary_only.contains(&true) {
            return Err(
                "share, steps, step_every, key, rollback: only with \"mode\": \"canary\"".into(),
            );
        }
        let name = self.name.ok_or("name: required (or \"abort\": true)")?;
        let pool = self.pool;
        let params = self.config.map(crate::config::params);
        match self.mode.as_deref() {
            None | Some("active") if self.sample.is_none() => {
                Ok(StrategyChange::Switch(name, params, pool))
            }
            None | Some("active") => Err("sample: only with \"mode\": \"shadow\"".into()),
            Some("shadow") => Ok(StrategyChange::Shadow(
                name,
                params,
                self.sample.unwrap_or(0.1),
                pool,
            )),
            Some(other) => Err(bounded(&format!(
                "mode: {other:?} is not one of active, shadow, canary"
            ))
            .into_owned()),
        }
    }
}

/// `POST /strategy` with `{"name": "ip_hash"}` (a file of `strategies_dir`) and optionally
/// `"config": {...}` (its `strategy_config`); a bare name as the body works too. With
/// `"mode": "shadow", "sample": 0.1` it goes in shadow instead; with `"mode": "canary"` in
/// canary ([`rollout`]); `{"promote": true}` makes the canary or the shadow active and
/// `{"abort": true}` ends them. Any other field is refused with 400 naming it, and nothing
/// changes.
async fn switch_strategy(reloader: &Reloader, request: Request<Incoming>) -> Response<ProxyBody> {
    let body = match http_body_util::Limited::new(request.into_body(), MAX_ADMIN_BODY)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => return json_error(StatusCode::PAYLOAD_TOO_LARGE, "body too large"),
    };
    let body = String::from_utf8_lossy(&body);
    let change = if body.trim_start().starts_with('{') {
        match serde_json::from_str::<SwitchRequest>(&body).map_err(|e| e.to_string()) {
            Ok(switch) => switch.into_change(),
            Err(e) => Err(e),
        }
    } else {
        Ok(StrategyChange::Switch(body.trim().to_string(), None, None))
    };
    let change = match change {
        Ok(change) => change,
        // It quotes the request (an unknown field's name): bounded.
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &bounded(&e)),
    };
    let (name, params, sample, pool) = match change {
        StrategyChange::Abort(which, pool) => {
            return match reloader.abort(pool.as_deref(), which) {
                Ok((canary, shadow)) => text(
                    StatusCode::OK,
                    "application/json",
                    json!({"result": "applied", "canary_ended": canary, "shadow_ended": shadow})
                        .to_string()
                        + "\n",
                ),
                Err(e) => json_error(StatusCode::BAD_REQUEST, &e.to_string()),
            };
        }
        StrategyChange::Promote(which, pool) => {
            return rollout::promote(reloader, pool.as_deref(), which)
        }
        StrategyChange::Canary(change) => return change.apply(reloader).await,
        StrategyChange::Switch(name, params, pool) => (name, params, None, pool),
        StrategyChange::Shadow(name, params, sample, pool) => (name, params, Some(sample), pool),
    };
    // A pool that does not exist is the request's mistake: refused before anything is tried.
    if let Err(e) = reloader.service(pool.as_deref()) {
        return json_error(StatusCode::BAD_REQUEST, &e.to_string());
    }
    let path = match reloader.strategy_by_name(&name) {
        Ok(path) => path,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    match sample {
        Some(sample) => outcome(
            reloader
                .shadow_strategy(pool.as_deref(), path, params, sample)
                .await,
        ),
        None => outcome(
            reloader
                .switch_strategy(pool.as_deref(), path, params, "admin")
                .await,
        ),
    }
}

/// The answer to a mutating request that [`auth`] refused; counted and logged, without the
/// token.
fn refused(admin: &Admin, refusal: auth::Refusal, route: &str) -> Response<ProxyBody> {
    admin
        .proxy
        .metrics
        .admin_refused
        .with_label_values(&[refusal.reason()])
        .inc();
    tracing::warn!(route, reason = refusal.reason(), "admin request refused");
    let (status, message) = match refusal {
        auth::Refusal::Unauthorized => (
            StatusCode::UNAUTHORIZED,
            "this endpoint needs `Authorization: Bearer <token>` (admin_token_file)",
        ),
        auth::Refusal::NoToken => (
            StatusCode::FORBIDDEN,
            "the admin listener is not on loopback and no admin_token_file is set",
        ),
        auth::Refusal::TokenUnavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the admin token file cannot be read",
        ),
    };
    let mut response = json_error(status, message);
    if refusal == auth::Refusal::Unauthorized {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"lbhost-admin\""),
        );
    }
    response
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
        Err(ReloadError::Conflict(reason)) => json_error(StatusCode::CONFLICT, &reason),
        Err(e) => json_error(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()),
    }
}

/// `{"result": "refused", "error": reason}`. Whatever `reason` quotes (the request, a guest's
/// message) was bounded where it was quoted.
fn json_error(status: StatusCode, reason: &str) -> Response<ProxyBody> {
    text(
        status,
        "application/json",
        json!({"result": "refused", "error": reason}).to_string() + "\n",
    )
}

/// A response lbhost makes itself; never cached (it is a snapshot of live state).
fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::local(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}
