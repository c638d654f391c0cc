//! The request being routed: read from the host on demand, or from a test value natively.

use std::cell::RefCell;
use std::net::IpAddr;

use crate::testing::TestRequest;

/// The request being routed. Every getter asks the host, so read only what you need and keep
/// the value if you need it twice.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    inner: Inner<'a>,
}

#[derive(Clone, Copy)]
enum Inner<'a> {
    #[cfg(target_arch = "wasm32")]
    Host(&'a crate::__glue::WitRequest),
    /// A test request, and where the fields put on its response go.
    Test(&'a TestRequest, &'a RefCell<Vec<(String, String)>>),
}

impl std::fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method())
            .field("path", &self.path())
            .finish_non_exhaustive()
    }
}

impl<'a> Request<'a> {
    #[cfg(target_arch = "wasm32")]
    #[inline]
    pub(crate) fn host(request: &'a crate::__glue::WitRequest) -> Self {
        Request {
            inner: Inner::Host(request),
        }
    }

    pub(crate) fn test(
        request: &'a TestRequest,
        response_headers: &'a RefCell<Vec<(String, String)>>,
    ) -> Self {
        Request {
            inner: Inner::Test(request, response_headers),
        }
    }

    /// Puts the field `name: value` on the response to this request, if the backend this
    /// `select` chooses answers it (a `Set-Cookie` that pins the client, say). Needs
    /// [`crate::Needs::response_headers`]. The host refuses framing and hop-by-hop names,
    /// values that are not visible text, and more than 8 fields or 8 KiB per request: any of
    /// them is a fault (the request is served by the host's fallback, without the fields).
    pub fn add_response_header(&self, name: &str, value: &str) {
        match self.inner {
            #[cfg(target_arch = "wasm32")]
            Inner::Host(r) => r.add_response_header(name, value),
            Inner::Test(_, out) => out.borrow_mut().push((name.to_string(), value.to_string())),
        }
    }

    /// The method, e.g. `GET`.
    pub fn method(&self) -> String {
        match self.inner {
            #[cfg(target_arch = "wasm32")]
            Inner::Host(r) => r.method(),
            Inner::Test(t, _) => t.method.clone(),
        }
    }

    /// The path without the query, e.g. `/api/users`.
    pub fn path(&self) -> String {
        match self.inner {
            #[cfg(target_arch = "wasm32")]
            Inner::Host(r) => r.path(),
            Inner::Test(t, _) => t.path.clone(),
        }
    }

    /// The query string without `?`, if any.
    pub fn query(&self) -> Option<String> {
        match self.inner {
            #[cfg(target_arch = "wasm32")]
            Inner::Host(r) => r.query(),
            Inner::Test(t, _) => t.query.clone(),
        }
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<String> {
        match self.inner {
            #[cfg(target_arch = "wasm32")]
            Inner::Host(r) => r.header(name),
            Inner::Test(t, _) => t
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone()),
        }
    }

    /// The value of cookie `name`.
    pub fn cookie(&self, name: &str) -> Option<String> {
        match self.inner {
            #[cfg(target_arch = "wasm32")]
            Inner::Host(r) => r.cookie(name),
            Inner::Test(t, _) => t
                .cookies
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone()),
        }
    }

    /// The client's address (the host resolves trusted proxies; it cannot be spoofed).
    pub fn client_ip(&self) -> IpAddr {
        match self.inner {
            #[cfg(target_arch = "wasm32")]
            Inner::Host(r) => crate::__glue::ip_from_wit(r.client_ip()),
            Inner::Test(t, _) => t.client_ip,
        }
    }

    /// A stable 64-bit hash of the client's address: what IP-affinity strategies hash on.
    pub fn client_ip_hash(&self) -> u64 {
        crate::hash::ip_key(self.client_ip())
    }
}
