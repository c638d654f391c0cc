//! A strategy built against the 0.1.0 contract (`wit/v0_1/strategy.wit`, the WIT as it was
//! before 0.2.0), written on the raw bindings like the call floor: lbhost must keep loading and
//! serving it unchanged. Without parameters it is the 0.1.0 call floor (round-robin over the
//! eligible backends, reading nothing), for the benchmark. With `"route_header": "NAME"` it also
//! asks for in-flight counts and feedback, and a request whose field NAME holds a backend index
//! goes there: the end-to-end test proves the request import, the columns and `on-response` of
//! 0.1.0 still work.

use std::cell::{Cell, RefCell};

#[allow(unsafe_code, missing_docs)]
mod bindings {
    wit_bindgen::generate!({ path: "../../../wit/v0_1/strategy.wit", world: "balancer" });
}

use bindings::exports::lb::strategy::strategy::Guest;
use bindings::lb::strategy::http::Request;
use bindings::lb::strategy::types::{Backend, Needs, SelectContext};

thread_local! {
    /// Indices of the backends that may be chosen (eligible, weight above 0).
    static ELIGIBLE: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    /// The field that names a backend index, if configured.
    static ROUTE_HEADER: RefCell<Option<String>> = const { RefCell::new(None) };
    /// Responses heard through `on-response`.
    static RESPONSES: Cell<u64> = const { Cell::new(0) };
}

struct V01;

impl Guest for V01 {
    fn configure(params: Vec<(String, String)>) -> Result<Needs, String> {
        let mut needs = Needs::empty();
        for (key, value) in params {
            if key != "route_header" {
                return Err(format!(
                    "strategy_config.{key}: unknown parameter (expected one of: route_header)"
                ));
            }
            ROUTE_HEADER.set(Some(value));
            needs = Needs::IN_FLIGHT | Needs::FEEDBACK;
        }
        Ok(needs)
    }

    fn backends_changed(backends: Vec<Backend>) {
        let eligible = (0u32..)
            .zip(&backends)
            .filter(|(_, b)| b.eligible && b.weight > 0)
            .map(|(i, _)| i)
            .collect();
        ELIGIBLE.set(eligible);
    }

    fn select(ctx: SelectContext, request: &Request) -> Option<u32> {
        let routed = ROUTE_HEADER.with_borrow(|name| {
            let name = name.as_deref()?;
            // A 0.1.0 host fills the columns asked for: a missing one is a broken contract.
            if ctx.in_flight.is_none() {
                return Some(u32::MAX);
            }
            request.header(name)?.parse::<u32>().ok()
        });
        ELIGIBLE.with_borrow(|eligible| {
            let excluded = ctx.exclude.unwrap_or_default();
            if let Some(index) = routed.filter(|i| eligible.contains(i) && !excluded.contains(i)) {
                return Some(index);
            }
            let n = eligible.len() as u64;
            (0..n)
                .map(|step| eligible[((ctx.sequence.wrapping_add(step)) % n) as usize])
                .find(|i| !excluded.contains(i))
        })
    }

    fn on_response(_backend: u32, _status: u16, _latency_us: u32) {
        RESPONSES.set(RESPONSES.get() + 1);
    }
}

// The generated export glue is unsafe code (raw canonical-ABI entry points).
#[allow(unsafe_code)]
const _: () = {
    bindings::export!(V01 with_types_in bindings);
};
