//! Host side of the WIT contract: generated bindings and the `request` resource the guest reads.

use std::net::IpAddr;

use wasmtime::component::Resource;
use wasmtime::{ResourceLimiter, StoreLimits};

use crate::request::{visible_ascii, ClientHead};

wasmtime::component::bindgen!({
    path: "../wit",
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

pub(super) use exports::lb::strategy::strategy::SelectContext;
pub(super) use lb::strategy::types::{Backend as WitBackend, IpAddress, Needs};

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
}

impl RequestData {
    /// `GET /` from 0.0.0.0: what a store holds while no request is lent to it.
    fn placeholder() -> Box<Self> {
        Box::new(RequestData {
            head: ClientHead::empty(),
            client_ip: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
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

impl lb::strategy::types::Host for GuestState {}
impl lb::strategy::http::Host for GuestState {}

impl lb::strategy::http::HostRequest for GuestState {
    fn method(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<String> {
        Ok(self.head()?.method.to_string())
    }

    fn path(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<String> {
        Ok(self.head()?.uri.path().to_string())
    }

    fn query(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<Option<String>> {
        Ok(self.head()?.uri.query().map(str::to_string))
    }

    fn header(
        &mut self,
        _: Resource<RequestHandle>,
        name: String,
    ) -> wasmtime::Result<Option<String>> {
        // Matched in any case, as header maps do.
        Ok(self
            .head()?
            .fields
            .get(&name)
            .and_then(visible_ascii)
            .map(str::to_string))
    }

    fn cookie(
        &mut self,
        _: Resource<RequestHandle>,
        name: String,
    ) -> wasmtime::Result<Option<String>> {
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

    fn client_ip(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<IpAddress> {
        self.host_call()?;
        Ok(match self.request.client_ip {
            IpAddr::V4(v4) => IpAddress::Ipv4(u32::from(v4)),
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                IpAddress::Ipv6(((bits >> 64) as u64, bits as u64))
            }
        })
    }

    fn drop(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<()> {
        // The guest never owns a request: nothing to free.
        Ok(())
    }
}
