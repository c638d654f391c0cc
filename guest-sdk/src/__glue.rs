//! The wasm side of the contract: generated bindings and the adapter from them to [`Strategy`].
//! Strategy authors never use this module directly; [`crate::export_strategy!`] does.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::{Backend, BackendSet, Backends, Params, Request, Strategy};

#[allow(missing_docs, unsafe_code)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit/strategy.wit",
        world: "balancer",
        pub_export_macro: true,
        export_macro_name: "__export_balancer",
        default_bindings_module: "lbhost_sdk::__glue::bindings",
    });
}

pub use bindings::exports::lb::strategy::strategy::Guest;
pub use bindings::lb::strategy::http::Request as WitRequest;
pub use bindings::lb::strategy::types::{
    Backend as WitBackend, IpAddress, Needs as WitNeeds, SelectContext as WitContext,
    Settings as WitSettings,
};

/// One instance's state: the strategy and the backend set it was last given.
pub struct State<S> {
    strategy: S,
    set: BackendSet,
}

/// Where [`crate::export_strategy!`] keeps an instance's state: a thread-local of the strategy's
/// own type, so that `select` calls the strategy directly (no `dyn`) and inlines it.
pub type Slot<S> = std::thread::LocalKey<RefCell<Option<State<S>>>>;

pub fn configure<S: Strategy>(
    slot: &'static Slot<S>,
    params: Vec<(String, String)>,
) -> Result<WitSettings, String> {
    let strategy = S::configure(&Params::new(params))?;
    let needs = strategy.needs();
    let mut flags = WitNeeds::empty();
    if needs.in_flight {
        flags |= WitNeeds::IN_FLIGHT;
    }
    if needs.latency {
        flags |= WitNeeds::LATENCY;
    }
    if needs.feedback {
        flags |= WitNeeds::FEEDBACK;
    }
    if needs.clock {
        flags |= WitNeeds::CLOCK;
    }
    if needs.response_headers {
        flags |= WitNeeds::RESPONSE_HEADERS;
    }
    let report_header = strategy.report_header();
    slot.set(Some(State {
        strategy,
        set: BackendSet::default(),
    }));
    Ok(WitSettings {
        needs: flags,
        report_header,
    })
}

pub fn backends_changed<S: Strategy>(slot: &'static Slot<S>, backends: Vec<WitBackend>) {
    let set = BackendSet::new(
        backends
            .into_iter()
            .map(|b| Backend {
                key: b.key,
                address: b.address,
                weight: b.weight,
                eligible: b.eligible,
                labels: b.labels,
                eligible_since_ms: b.eligible_since_ms,
            })
            .collect(),
    );
    slot.with_borrow_mut(|state| {
        if let Some(state) = state.as_mut() {
            state.strategy.backends_changed(&set);
            state.set = set;
        }
    });
}

pub fn select<S: Strategy>(
    slot: &'static Slot<S>,
    ctx: WitContext,
    request: &WitRequest,
) -> Option<u32> {
    slot.with_borrow_mut(|state| {
        let state = state.as_mut()?;
        let view = Backends {
            set: &state.set,
            sequence: ctx.sequence,
            random: ctx.random,
            in_flight: ctx.in_flight.as_deref().unwrap_or_default(),
            latency_ewma_us: ctx.latency_ewma_us.as_deref().unwrap_or_default(),
            exclude: ctx.exclude.as_deref().unwrap_or_default(),
            now_ms: ctx.now_ms,
        };
        let choice = state.strategy.select(&view, &Request::host(request))?;
        u32::try_from(choice).ok()
    })
}

pub fn on_response<S: Strategy>(
    slot: &'static Slot<S>,
    backend: u32,
    status: u16,
    latency_us: u32,
    report: Option<String>,
) {
    slot.with_borrow_mut(|state| {
        if let Some(state) = state.as_mut() {
            if let Some(report) = &report {
                state.strategy.on_report(backend as usize, report);
            }
            state.strategy.on_response(
                backend as usize,
                status,
                Duration::from_micros(u64::from(latency_us)),
            );
        }
    });
}

pub fn ip_from_wit(ip: IpAddress) -> IpAddr {
    match ip {
        IpAddress::Ipv4(bits) => IpAddr::V4(Ipv4Addr::from(bits)),
        IpAddress::Ipv6((hi, lo)) => {
            IpAddr::V6(Ipv6Addr::from((u128::from(hi) << 64) | u128::from(lo)))
        }
    }
}
