//! The routing step of a request: which route and pool take it (the table's compiled routes),
//! the path as the route rewrites it, and the 404 for a request no route takes.

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::Instant;

use http::{Response, StatusCode};

use super::service::{Service, Table};
use super::{access_line, local_response, Access, Proxy, ProxyBody};
use crate::config::Config;
use crate::request::ClientHead;
use crate::routes::{host_of, rewrite, RequestView};
use crate::text::bounded;

/// The route name the access log shows when no route matched and `default_pool` took it.
const DEFAULT_ROUTE: &str = "default_pool";

/// The route and pool of `head` in `table`, the head's target rewritten as the route says;
/// `None` when no route takes it (and there is no `default_pool`).
pub(super) fn route<'t>(table: &'t Table, head: &mut ClientHead) -> Option<(&'t str, &'t Service)> {
    // HTTP/2 clients and absolute-form targets name the host in the URI; others in `Host`.
    // Looked up only when a route matches on it: ~700 instructions per request otherwise.
    let authority = if !table.routes_by_host() {
        Cow::Borrowed("")
    } else if let Some(authority) = head.uri.authority() {
        host_of(authority.as_str().as_bytes())
    } else {
        host_of(head.fields.get("host").unwrap_or_default())
    };
    let view = RequestView {
        host: &authority,
        path: head.uri.path(),
        method: head.method.as_str(),
        fields: &head.fields,
    };
    let (route, service) = table.route(&view)?;
    let Some(route) = route else {
        return Some((DEFAULT_ROUTE, service));
    };
    if route.strip_prefix.is_some() {
        if let Some(target) = rewrite(route, head.uri.path(), head.uri.query()) {
            let mut parts = head.uri.clone().into_parts();
            if let Ok(target) = http::uri::PathAndQuery::try_from(target) {
                parts.path_and_query = Some(target);
                if let Ok(uri) = http::Uri::from_parts(parts) {
                    head.uri = uri;
                }
            }
        }
    }
    Some((&route.name, service))
}

impl Proxy {
    /// 404 for a request no route takes: counted (`lbhost_unrouted_requests_total`, and
    /// `lbhost_requests_total{pool="none", backend="none"}`) and logged.
    pub(super) fn unrouted(
        &self,
        config: &Config,
        head: &ClientHead,
        client_ip: IpAddr,
        started: Instant,
    ) -> Response<ProxyBody> {
        let status = StatusCode::NOT_FOUND;
        self.metrics.unrouted.inc();
        self.metrics
            .request("none", "none", &head.method, status, started);
        let path = head.uri.path_and_query().map_or("/", |p| p.as_str());
        tracing::debug!(%client_ip, path = %bounded(path), "404: no route takes the request");
        if config.access_log {
            access_line(&Access::unrouted(
                &head.method,
                path,
                status,
                client_ip,
                started,
            ));
        }
        local_response(status)
    }
}
