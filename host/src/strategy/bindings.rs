//! Host side of the WIT contract (`lb:strategy@0.2.0`): generated bindings and the `request`
//! resource the guest reads. The 0.1.0 contract's bindings (`super::v0_1`) share all of it.

use std::net::IpAddr;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use smallvec::SmallVec;
use wasmtime::component::Resource;
use wasmtime::{ResourceLimiter, StoreLimits};

use crate::request::{visible_ascii, ClientHead};

wasmtime::component::bindgen!({
    path: "../wit/strategy.wit",
    world: "balancer",
    with: { "lb:strategy/http.request": RequestHandle },
    // Every import may trap: a guest that calls the host too often in one call is stopped.
    imports: { default: trappable },
});

/// Host calls one guest call may make. Fuel pays for the guest's own instructions; this bounds
/// the time it can make the host spend for it (a legitimate strategy reads a few headers; at 256
/// copies of the largest allowed header the host works ~2 ms).
pub(super) const MAX_HOST_CALLS: u32 = 256;

/// The trap of a guest call that made more than [`MAX_HOST_CALLS`] host calls.
#[derive(Debug, thiserror::Error)]
#[error("more than {MAX_HOST_CALLS} host calls in one call")]
pub(super) struct HostCallBudget;

/// The trap of a guest call that put a field on the response it may not put there.
#[derive(Debug, thiserror::Error)]
#[error("add-response-header: {0}")]
pub(crate) struct BadResponseField(pub(crate) &'static str);

/// The fields a strategy put on a response: one kept inline (a `Set-Cookie`), so that putting it
/// allocates nothing beyond its value.
pub type ResponseFields = SmallVec<[(HeaderName, HeaderValue); 1]>;

/// Most fields one request's `select` may put on the response.
pub(crate) const MAX_RESPONSE_FIELDS: usize = 8;
/// Most bytes (names and values) one request's `select` may put on the response.
pub(crate) const MAX_RESPONSE_FIELD_BYTES: usize = 8 * 1024;

pub(super) use exports::lb::strategy::strategy::SelectContext;
pub(super) use lb::strategy::types::{Backend as WitBackend, IpAddress, Needs, Settings};

/// The type behind `resource request` on the host side. The guest only ever sees a borrow of the
/// one request lent to it for a `select` call; its data lives in [`GuestState::request`].
#[derive(Debug)]
#[allow(unreachable_pub)] // `bindgen!`'s `with` re-exports it.
pub struct RequestHandle;

/// What a store holds for its guest instance.
#[derive(Debug)]
pub(super) struct GuestState {
    /// The request lent to the guest for the current `select` call; between calls, an empty
    /// placeholder (host functions run only inside a call). Swapped in and out by pointer.
    pub request: Box<RequestData>,
    limits: StoreLimits,
    /// Set when the guest asked for more memory than its limit (so a trap is an out-of-memory).
    pub memory_denied: bool,
    /// Host calls made by the current guest call.
    pub host_calls: u32,
    /// What the guest asked for in `configure` (empty until then).
    pub needs: Needs,
}

impl GuestState {
    /// A state whose guest may use at most `memory_limit_bytes` of linear memory.
    pub(super) fn new(memory_limit_bytes: usize) -> Self {
        GuestState {
            request: RequestData::placeholder(),
            limits: wasmtime::StoreLimitsBuilder::new()
                .memory_size(memory_limit_bytes)
                .instances(4)
                .tables(8)
                .memories(2)
                .build(),
            memory_denied: false,
            host_calls: 0,
            needs: Needs::empty(),
        }
    }
}

impl ResourceLimiter for GuestState {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if !allowed {
            self.memory_denied = true;
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// The parts of a request a guest may read.
#[derive(Debug)]
pub struct RequestData {
    /// Method, target, fields (moved in for the call and back out after).
    pub head: ClientHead,
    /// The resolved client address (trusted proxies applied).
    pub client_ip: IpAddr,
    /// Fields the strategy put on the response in its last `select` (`add-response-header`):
    /// empty for strategies that put none, which is all that costs them.
    pub response_fields: ResponseFields,
    /// The canary side the request is on, while a canary runs ([`super::canary`]).
    pub canary: Option<super::canary::Tag>,
}

impl RequestData {
    /// `GET /` from 0.0.0.0: what a store holds while no request is lent to it.
    fn placeholder() -> Box<Self> {
        Box::new(RequestData {
            head: ClientHead::empty(),
            client_ip: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            response_fields: ResponseFields::new(),
            canary: None,
        })
    }

    /// A request from `client_ip` with head `head`, no response fields yet.
    pub fn new(head: ClientHead, client_ip: IpAddr) -> Box<Self> {
        Box::new(RequestData {
            head,
            client_ip,
            response_fields: ResponseFields::new(),
            canary: None,
        })
    }
}

impl GuestState {
    /// The lent request's head, counting one host call against [`MAX_HOST_CALLS`].
    fn head(&mut self) -> wasmtime::Result<&ClientHead> {
        self.host_call()?;
        Ok(&self.request.head)
    }

    fn host_call(&mut self) -> wasmtime::Result<()> {
        self.host_calls += 1;
        if self.host_calls > MAX_HOST_CALLS {
            return Err(HostCallBudget.into());
        }
        Ok(())
    }
}

impl GuestState {
    pub(super) fn request_method(&mut self) -> wasmtime::Result<String> {
        Ok(self.head()?.method.to_string())
    }

    pub(super) fn request_path(&mut self) -> wasmtime::Result<String> {
        Ok(self.head()?.uri.path().to_string())
    }

    pub(super) fn request_query(&mut self) -> wasmtime::Result<Option<String>> {
        Ok(self.head()?.uri.query().map(str::to_string))
    }

    pub(super) fn request_header(&mut self, name: &str) -> wasmtime::Result<Option<String>> {
        // Matched in any case, as header maps do.
        Ok(self
            .head()?
            .fields
            .get(name)
            .and_then(visible_ascii)
            .map(str::to_string))
    }

    pub(super) fn request_cookie(&mut self, name: &str) -> wasmtime::Result<Option<String>> {
        Ok(self
            .head()?
            .fields
            .get_all("cookie")
            .filter_map(visible_ascii)
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string()))
    }

    pub(super) fn request_client_ip(&mut self) -> wasmtime::Result<IpAddr> {
        self.host_call()?;
        Ok(self.request.client_ip)
    }

    /// `add-response-header`: checked, bounded, kept with the lent request.
    fn add_response_field(&mut self, name: &str, value: String) -> wasmtime::Result<()> {
        self.host_call()?;
        if !self.needs.contains(Needs::RESPONSE_HEADERS) {
            return Err(
                BadResponseField("configure did not ask for needs.response-headers").into(),
            );
        }
        let fields = &self.request.response_fields;
        if fields.len() >= MAX_RESPONSE_FIELDS {
            return Err(BadResponseField("more than 8 fields").into());
        }
        let used: usize = fields.iter().map(|(n, v)| n.as_str().len() + v.len()).sum();
        if used + name.len() + value.len() > MAX_RESPONSE_FIELD_BYTES {
            return Err(BadResponseField("more than 8 KiB of fields").into());
        }
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| BadResponseField("the name is not a field name"))?;
        if is_reserved(&name) {
            return Err(BadResponseField("framing and hop-by-hop fields are the host's").into());
        }
        if visible_ascii(value.as_bytes()).is_none() {
            return Err(BadResponseField("the value is not visible text").into());
        }
        // The string lifted from the guest becomes the value's buffer: no copy.
        let value = HeaderValue::from_maybe_shared(Bytes::from(value))
            .map_err(|_| BadResponseField("the value is not visible text"))?;
        self.request.response_fields.push((name, value));
        Ok(())
    }
}

/// Fields only the host writes: framing and hop-by-hop ones (names are lowercase here).
fn is_reserved(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "content-length"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-connection"
    )
}

/// A client address as the WIT's `ip-address` holds it: IPv4 as a number, IPv6 as two halves.
pub(super) enum WitIp {
    V4(u32),
    V6(u64, u64),
}

impl From<IpAddr> for WitIp {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => WitIp::V4(u32::from(v4)),
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                WitIp::V6((bits >> 64) as u64, bits as u64)
            }
        }
    }
}

impl lb::strategy::types::Host for GuestState {}
impl lb::strategy::http::Host for GuestState {}

impl lb::strategy::http::HostRequest for GuestState {
    fn method(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<String> {
        self.request_method()
    }

    fn path(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<String> {
        self.request_path()
    }

    fn query(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<Option<String>> {
        self.request_query()
    }

    fn header(
        &mut self,
        _: Resource<RequestHandle>,
        name: String,
    ) -> wasmtime::Result<Option<String>> {
        self.request_header(&name)
    }

    fn cookie(
        &mut self,
        _: Resource<RequestHandle>,
        name: String,
    ) -> wasmtime::Result<Option<String>> {
        self.request_cookie(&name)
    }

    fn client_ip(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<IpAddress> {
        Ok(match WitIp::from(self.request_client_ip()?) {
            WitIp::V4(bits) => IpAddress::Ipv4(bits),
            WitIp::V6(hi, lo) => IpAddress::Ipv6((hi, lo)),
        })
    }

    fn add_response_header(
        &mut self,
        _: Resource<RequestHandle>,
        name: String,
        value: String,
    ) -> wasmtime::Result<()> {
        self.add_response_field(&name, value)
    }

    fn drop(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<()> {
        // The guest never owns a request: nothing to free.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(needs: Needs) -> GuestState {
        let mut state = GuestState::new(1 << 20);
        state.needs = needs;
        state
    }

    fn refusal(state: &mut GuestState, name: &str, value: &str) -> String {
        let error = state
            .add_response_field(name, value.to_string())
            .expect_err("refused");
        error
            .downcast_ref::<BadResponseField>()
            .map(ToString::to_string)
            .unwrap_or_else(|| format!("{error:#}"))
    }

    #[test]
    fn response_fields_are_checked_and_bounded() {
        let mut s = state(Needs::RESPONSE_HEADERS);
        s.add_response_field("Set-Cookie", "a=1; Path=/".into())
            .unwrap();
        assert_eq!(s.request.response_fields.len(), 1);
        assert_eq!(s.request.response_fields[0].0, "set-cookie");
        for name in [
            "content-length",
            "Transfer-Encoding",
            "connection",
            "keep-alive",
            "te",
        ] {
            assert!(refusal(&mut s, name, "1").contains("hop-by-hop"), "{name}");
        }
        assert!(refusal(&mut s, "a b", "1").contains("not a field name"));
        assert!(refusal(&mut s, "x", "a\r\nb: c").contains("not visible text"));
        assert!(refusal(&mut s, "x", "caf\u{e9}").contains("not visible text"));
        assert!(refusal(&mut s, "x", &"v".repeat(9 * 1024)).contains("8 KiB"));
        for _ in 1..MAX_RESPONSE_FIELDS {
            s.add_response_field("x-ok", "1".into()).unwrap();
        }
        assert!(refusal(&mut s, "x-ok", "1").contains("more than 8 fields"));
    }

    #[test]
    fn response_fields_need_the_flag() {
        let mut s = state(Needs::FEEDBACK);
        assert!(refusal(&mut s, "set-cookie", "a=1").contains("needs.response-headers"));
        assert!(s.request.response_fields.is_empty());
    }
}
