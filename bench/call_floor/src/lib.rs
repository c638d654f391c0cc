//! The cheapest strategy the contract allows, for the benchmark (`bench/run.sh --lbs
//! lbhost,lbhost-floor,lbhost-native`): round-robin over the eligible backends written straight
//! on the WIT bindings, without the SDK, reading nothing from the request. What it costs per
//! request against `lbhost-native` (no guest call at all) is the price of the call itself:
//! wasmtime's component call path, the borrowed request handle and the host's bookkeeping.
//! What `round_robin.wasm` costs beyond it is the SDK's and the strategy's.

use std::cell::RefCell;

#[allow(unsafe_code, missing_docs)]
mod bindings {
    wit_bindgen::generate!({ path: "../../wit", world: "balancer" });
}

use bindings::exports::lb::strategy::strategy::Guest;
use bindings::lb::strategy::http::Request;
use bindings::lb::strategy::types::{Backend, Needs, SelectContext};

thread_local! {
    /// Indices of the backends that may be chosen (eligible, weight above 0).
    static ELIGIBLE: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

struct CallFloor;

impl Guest for CallFloor {
    fn configure(params: Vec<(String, String)>) -> Result<Needs, String> {
        match params.first() {
            Some((key, _)) => Err(format!(
                "strategy_config.{key}: call_floor takes no parameters"
            )),
            None => Ok(Needs::empty()),
        }
    }

    fn backends_changed(backends: Vec<Backend>) {
        let eligible = (0u32..)
            .zip(&backends)
            .filter(|(_, b)| b.eligible && b.weight > 0)
            .map(|(i, _)| i)
            .collect();
        ELIGIBLE.set(eligible);
    }

    fn select(ctx: SelectContext, _request: &Request) -> Option<u32> {
        ELIGIBLE.with_borrow(|eligible| {
            let excluded = ctx.exclude.unwrap_or_default();
            let n = eligible.len() as u64;
            (0..n)
                .map(|step| eligible[((ctx.sequence.wrapping_add(step)) % n) as usize])
                .find(|i| !excluded.contains(i))
        })
    }

    fn on_response(_backend: u32, _status: u16, _latency_us: u32) {}
}

// The generated export glue is unsafe code (raw canonical-ABI entry points).
#[allow(unsafe_code)]
const _: () = {
    bindings::export!(CallFloor with_types_in bindings);
};
