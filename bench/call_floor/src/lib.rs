//! The cheapest strategy the contract allows, for the benchmark (`bench/run.sh --lbs
//! lbhost,lbhost-floor,lbhost-native`): round-robin over the eligible backends written straight
//! on the WIT bindings, without the SDK, reading nothing from the request. What it costs per
//! request against `lbhost-native` (no guest call at all) is the price of the call itself:
//! wasmtime's component call path, the borrowed request handle and the host's bookkeeping.
//! What `round_robin.wasm` costs beyond it is the SDK's and the strategy's.
//!
//! Parameters turn on one 0.2.0 addition each, to price it against the plain floor:
//! `"clock": true` (`needs.clock`: the host's clock per call), `"set_cookie": true` (a
//! `Set-Cookie` put on every response), `"feedback": true` (`on-response` after every response)
//! and `"report": "NAME"` (with feedback: the value of response field NAME passed along).

use std::cell::RefCell;

#[allow(unsafe_code, missing_docs)]
mod bindings {
    wit_bindgen::generate!({ path: "../../wit/strategy.wit", world: "balancer" });
}

use bindings::exports::lb::strategy::strategy::Guest;
use bindings::lb::strategy::http::Request;
use bindings::lb::strategy::types::{Backend, Needs, SelectContext, Settings};

thread_local! {
    /// Indices of the backends that may be chosen (eligible, weight above 0).
    static ELIGIBLE: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    /// Whether every `select` puts a `Set-Cookie` on the response.
    static SET_COOKIE: RefCell<bool> = const { RefCell::new(false) };
}

struct CallFloor;

impl Guest for CallFloor {
    fn configure(params: Vec<(String, String)>) -> Result<Settings, String> {
        let mut settings = Settings {
            needs: Needs::empty(),
            report_header: None,
        };
        for (key, value) in params {
            let on = value == "true";
            match key.as_str() {
                "clock" if on => settings.needs |= Needs::CLOCK,
                "set_cookie" if on => {
                    settings.needs |= Needs::RESPONSE_HEADERS;
                    SET_COOKIE.set(true);
                }
                "feedback" if on => settings.needs |= Needs::FEEDBACK,
                "report" => settings.report_header = Some(value),
                "clock" | "set_cookie" | "feedback" => {}
                _ => {
                    return Err(format!(
                        "strategy_config.{key}: unknown parameter (expected one of: clock, set_cookie, feedback, report)"
                    ))
                }
            }
        }
        Ok(settings)
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
        if SET_COOKIE.with_borrow(|on| *on) {
            request.add_response_header("set-cookie", "lbfloor=1; Path=/");
        }
        ELIGIBLE.with_borrow(|eligible| {
            let excluded = ctx.exclude.unwrap_or_default();
            let n = eligible.len() as u64;
            (0..n)
                .map(|step| eligible[((ctx.sequence.wrapping_add(step)) % n) as usize])
                .find(|i| !excluded.contains(i))
        })
    }

    fn on_response(_backend: u32, _status: u16, _latency_us: u32, _report: Option<String>) {}
}

// The generated export glue is unsafe code (raw canonical-ABI entry points).
#[allow(unsafe_code)]
const _: () = {
    bindings::export!(CallFloor with_types_in bindings);
};
