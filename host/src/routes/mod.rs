//! Routes: which pool a request goes to. A route table is compiled once per config
//! ([`Router::new`]) into maps and a prefix tree ([`matcher`]) whose answer is, by
//! construction and by test, the first route in written order whose conditions all hold
//! ([`matches`], the reference).

mod matcher;
#[cfg(test)]
mod tests;

use std::borrow::Cow;

use crate::config::{HostMatch, PathMatch, RouteConfig, RouteMatch};

pub use matcher::Router;

/// What of a request routes look at.
#[derive(Clone, Copy)]
pub struct RequestView<'a> {
    /// The host, lower case, without a port (empty when the request names none, or when no
    /// route matches on it: see [`Router::matches_hosts`]).
    pub host: &'a str,
    /// The path, without the query.
    pub path: &'a str,
    /// The method as sent.
    pub method: &'a str,
    /// Looks a field up by lower-case name.
    pub fields: &'a dyn Fields,
}

impl std::fmt::Debug for RequestView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestView")
            .field("host", &self.host)
            .field("path", &self.path)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

/// A request's header fields, as routes read them.
pub trait Fields {
    /// The value of the first field named `name` (lower case), if any.
    fn field(&self, name: &str) -> Option<&[u8]>;
}

impl Fields for crate::request::RequestFields {
    fn field(&self, name: &str) -> Option<&[u8]> {
        self.get(name)
    }
}

/// Whether `route` takes `request`: the reference semantics the compiled [`Router`] keeps.
pub fn matches(route: &RouteMatch, request: &RequestView<'_>) -> bool {
    let host = match &route.host {
        None => true,
        Some(HostMatch::Exact(h)) => request.host == h,
        Some(HostMatch::Suffix(s)) => {
            request.host.len() > s.len() && request.host.ends_with(s.as_str())
        }
    };
    let path = match &route.path {
        None => true,
        Some(PathMatch::Prefix(p)) => request.path.starts_with(p.as_str()),
        Some(PathMatch::Exact(e)) => request.path == e,
    };
    host && path && rest_matches(route, request)
}

/// The conditions that are not indexed: method and fields.
fn rest_matches(route: &RouteMatch, request: &RequestView<'_>) -> bool {
    route.method.as_deref().is_none_or(|m| m == request.method)
        && route
            .headers
            .iter()
            .all(|(name, value)| request.fields.field(name) == Some(value.as_bytes()))
}

/// The first route of `routes` that takes `request`, trying them in order (the reference the
/// compiled [`Router`] is tested against, and the baseline of the benchmark).
pub fn first_match(routes: &[RouteConfig], request: &RequestView<'_>) -> Option<usize> {
    routes.iter().position(|r| matches(&r.matches, request))
}

/// `authority` (a `Host` value or a URI's authority) as routes compare it: lower case, the
/// port and any user info left out. Borrowed unless it has upper-case letters.
pub fn host_of(authority: &[u8]) -> Cow<'_, str> {
    // On bytes, one pass each: the `str` searches took ~700 instructions for `host:port`.
    let text = match authority.iter().rposition(|&b| b == b'@') {
        Some(at) => &authority[at + 1..],
        None => authority,
    };
    let host = if text.first() == Some(&b'[') {
        // An IPv6 literal: up to its closing bracket.
        text.iter()
            .position(|&b| b == b']')
            .map_or(text, |end| &text[..=end])
    } else {
        text.iter()
            .position(|&b| b == b':')
            .map_or(text, |colon| &text[..colon])
    };
    let host = host.strip_suffix(b".").unwrap_or(host);
    let Ok(host) = std::str::from_utf8(host) else {
        return Cow::Borrowed("");
    };
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// The path `route` forwards for `path` (and `query`, kept as is): `None` when it stays as it
/// is.
pub fn rewrite(route: &RouteConfig, path: &str, query: Option<&str>) -> Option<String> {
    let strip = route.strip_prefix.as_deref()?;
    let rest = path.strip_prefix(strip)?;
    let mut out = String::with_capacity(path.len() + 16);
    match route.prefix_rewrite.as_deref() {
        Some(replacement) => out.push_str(replacement),
        None if !rest.starts_with('/') => out.push('/'),
        None => {}
    }
    if out.ends_with('/') && rest.starts_with('/') {
        out.push_str(&rest[1..]);
    } else {
        out.push_str(rest);
    }
    if out.is_empty() {
        out.push('/');
    }
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    Some(out)
}
