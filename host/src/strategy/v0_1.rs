//! The 0.1.0 contract (`wit/v0_1/strategy.wit`), still loaded unchanged: its generated bindings,
//! served by the same host state as 0.2.0's, and the conversions between the two.
//!
//! A 0.1.0 strategy sees what it saw before: no clock, no response fields, no reports. Its
//! imports are provided under their own versioned names (`lb:strategy/http@0.1.0`), so one linker
//! serves both versions.

use wasmtime::component::Resource;

use super::bindings::{self, GuestState, RequestHandle, WitIp};

wasmtime::component::bindgen!({
    path: "../wit/v0_1/strategy.wit",
    world: "balancer",
    with: { "lb:strategy/http.request": crate::strategy::bindings::RequestHandle },
    imports: { default: trappable },
});

pub(super) use exports::lb::strategy::strategy::SelectContext;
pub(super) use lb::strategy::types::{Backend as WitBackend, IpAddress, Needs};

/// A 0.1.0 strategy's needs in 0.2.0's terms (the same three flags).
pub(super) fn needs(old: Needs) -> bindings::Needs {
    let mut needs = bindings::Needs::empty();
    if old.contains(Needs::IN_FLIGHT) {
        needs |= bindings::Needs::IN_FLIGHT;
    }
    if old.contains(Needs::LATENCY) {
        needs |= bindings::Needs::LATENCY;
    }
    if old.contains(Needs::FEEDBACK) {
        needs |= bindings::Needs::FEEDBACK;
    }
    needs
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

    fn drop(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<()> {
        Ok(())
    }
}
