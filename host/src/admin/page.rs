//! `GET /`: the status page. One self-contained HTML file (inline CSS and script, no external
//! assets) that renders `/status` and polls it every 2 s; request rates are computed in the
//! browser from two polls.

use http::{header, HeaderValue, Response};

use crate::proxy::ProxyBody;

/// The page, compiled into the binary.
const PAGE: &str = include_str!("page.html");

/// The page may run its own inline script and style and fetch from this origin; nothing else.
const POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                      connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
                      frame-ancestors 'none'";

/// `200` with the page.
pub(super) fn response() -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::local(PAGE));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_is_self_contained() {
        for external in ["src=\"http", "href=\"http", "@import", "url(http", "//cdn"] {
            assert!(!PAGE.contains(external), "the page loads {external}");
        }
        assert!(PAGE.contains("fetch('/status'"));
    }
}
