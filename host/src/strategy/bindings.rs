//! Host side of the WIT contract: generated bindings and the `request` resource the guest reads.

use std::net::IpAddr;

use wasmtime::component::Resource;
use wasmtime::{ResourceLimiter, StoreLimits};

wasmtime::component::bindgen!({
    path: "../wit",
    world: "balancer",
    with: { "lb:strategy/http.request": RequestHandle },
});

pub use exports::lb::strategy::strategy::SelectContext;
pub use lb::strategy::types::{Backend as WitBackend, IpAddress, Needs};

/// The type behind `resource request` on the host side. The guest only ever sees a borrow of the
/// one request lent to it for a `select` call; its data lives in [`GuestState::request`].
#[derive(Debug)]
pub struct RequestHandle;

/// What a store holds for its guest instance.
#[derive(Debug)]
pub struct GuestState {
    /// The request lent to the guest for the current `select` call, if any.
    pub request: Option<Box<RequestData>>,
    limits: StoreLimits,
    /// Set when the guest asked for more memory than its limit (so a trap is an out-of-memory).
    pub memory_denied: bool,
    /// The current call's deadline in epoch ticks.
    pub deadline_ticks: u64,
    /// How often the current call's deadline was extended (its thread was descheduled).
    pub extensions: u32,
    /// Thread CPU time at the current call's last deadline expiry.
    pub cpu_mark: Option<std::time::Duration>,
}

impl GuestState {
    /// A state whose guest may use at most `memory_limit_bytes` of linear memory.
    pub fn new(memory_limit_bytes: usize) -> Self {
        GuestState {
            request: None,
            limits: wasmtime::StoreLimitsBuilder::new()
                .memory_size(memory_limit_bytes)
                .instances(4)
                .tables(8)
                .memories(2)
                .build(),
            memory_denied: false,
            deadline_ticks: 1,
            extensions: 0,
            cpu_mark: None,
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
    /// Method, URI, headers (moved in for the call and back out after).
    pub parts: http::request::Parts,
    /// The resolved client address (trusted proxies applied).
    pub client_ip: IpAddr,
}

impl GuestState {
    fn parts(&self) -> Option<&http::request::Parts> {
        self.request.as_ref().map(|r| &r.parts)
    }
}

impl lb::strategy::types::Host for GuestState {}
impl lb::strategy::http::Host for GuestState {}

impl lb::strategy::http::HostRequest for GuestState {
    fn method(&mut self, _: Resource<RequestHandle>) -> String {
        self.parts()
            .map(|p| p.method.to_string())
            .unwrap_or_default()
    }

    fn path(&mut self, _: Resource<RequestHandle>) -> String {
        self.parts()
            .map(|p| p.uri.path().to_string())
            .unwrap_or_default()
    }

    fn query(&mut self, _: Resource<RequestHandle>) -> Option<String> {
        self.parts()?.uri.query().map(str::to_string)
    }

    fn header(&mut self, _: Resource<RequestHandle>, name: String) -> Option<String> {
        let value = self.parts()?.headers.get(name.as_str())?;
        value.to_str().ok().map(str::to_string)
    }

    fn cookie(&mut self, _: Resource<RequestHandle>, name: String) -> Option<String> {
        self.parts()?
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }

    fn client_ip(&mut self, _: Resource<RequestHandle>) -> IpAddress {
        match self.request.as_ref().map(|r| r.client_ip) {
            Some(IpAddr::V4(v4)) => IpAddress::Ipv4(u32::from(v4)),
            Some(IpAddr::V6(v6)) => {
                let bits = u128::from(v6);
                IpAddress::Ipv6(((bits >> 64) as u64, bits as u64))
            }
            None => IpAddress::Ipv4(0),
        }
    }

    fn drop(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<()> {
        // The guest never owns a request: nothing to free.
        Ok(())
    }
}
