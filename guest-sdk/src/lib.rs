//! Write lbhost load-balancing strategies in Rust.
//!
//! A strategy is a type that implements [`Strategy`] and is exported with [`export_strategy!`].
//! Build it for `wasm32-unknown-unknown` and wrap it into a component (`cargo xtask strategies`
//! does both for the crates of this repository); lbhost loads the `.wasm` file.
//!
//! ```
//! use lbhost_sdk::{Backends, Params, Request, Strategy};
//!
//! /// Rotates over the eligible backends, exactly, across all worker threads.
//! struct RoundRobin;
//!
//! impl Strategy for RoundRobin {
//!     fn configure(params: &Params) -> Result<Self, String> {
//!         params.allow_only(&[])?;
//!         Ok(RoundRobin)
//!     }
//!
//!     fn select(&mut self, backends: &Backends<'_>, _request: &Request<'_>) -> Option<usize> {
//!         backends.rotate(backends.sequence())
//!     }
//! }
//!
//! lbhost_sdk::export_strategy!(RoundRobin);
//! ```
//!
//! The same logic runs natively under `cargo test` through [`testing::Harness`].
#![deny(missing_docs)]

mod backends;
pub mod hash;
mod key;
mod least_request;
pub mod maglev;
mod p2c;
mod params;
mod rendezvous;
mod request;
pub mod ring;
mod slow_start;
pub mod testing;
mod weighted;

pub use backends::{Backend, BackendSet, Backends};
pub use key::{query_value, KeySource};
pub use least_request::LeastRequest;
pub use maglev::MaglevTable;
pub use p2c::power_of_two_choices;
pub use params::Params;
pub use rendezvous::RendezvousTable;
pub use request::Request;
pub use ring::HashRing;
pub use slow_start::{SlowStart, SLOW_START_PARAMS};
pub use weighted::SmoothWeighted;

use std::time::Duration;

/// What a strategy asks the host to provide beyond the defaults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// Fill [`Backends::in_flight`] on every call (otherwise it reads 0).
    pub in_flight: bool,
    /// Fill [`Backends::latency_ewma_us`] on every call.
    pub latency: bool,
    /// Call [`Strategy::on_response`] after every backend response.
    pub feedback: bool,
    /// Fill [`Backends::now_ms`] on every call, so that [`Backends::eligible_for_ms`] tells how
    /// long each backend has been eligible (slow start).
    pub clock: bool,
    /// Let [`Strategy::select`] put fields on the response ([`Request::add_response_header`]).
    pub response_headers: bool,
}

/// A load-balancing strategy.
///
/// The host creates one instance per worker thread: keep state that must be global (a rotation
/// cursor) out of `self` and derive it from [`Backends::sequence`] instead.
pub trait Strategy: 'static {
    /// Builds the strategy from the config's `strategy_config`. An `Err` refuses the strategy and
    /// its message is shown to the operator, so name the parameter: `"header: must not be empty"`.
    fn configure(params: &Params) -> Result<Self, String>
    where
        Self: Sized;

    /// What the host should provide per call. Default: nothing (each column costs a copy).
    fn needs(&self) -> Needs {
        Needs::default()
    }

    /// Called on start and whenever the backend set or a backend's eligibility changes. Rebuild
    /// lookup tables here, not in [`Strategy::select`]. Default: nothing.
    fn backends_changed(&mut self, _backends: &BackendSet) {}

    /// Chooses a backend for `request`: an index into the backend set, or `None` (the client gets
    /// 503). Must return a backend for which [`Backends::is_candidate`] holds; anything else is
    /// treated by the host as a fault and the request is served by its fallback.
    fn select(&mut self, backends: &Backends<'_>, request: &Request<'_>) -> Option<usize>;

    /// Feedback after a backend answered, if [`Strategy::needs`] asked for it: the backend index,
    /// the status (0 when the backend failed without one) and the time to the response head.
    fn on_response(&mut self, _backend: usize, _status: u16, _latency: Duration) {}

    /// A response header in which backends report a value of their own (a load, say), asked
    /// once after [`Strategy::configure`]. Its value in each response reaches
    /// [`Strategy::on_report`] (with [`Needs::feedback`]). Default: none (the host looks for no
    /// field).
    fn report_header(&self) -> Option<String> {
        None
    }

    /// The value backend `backend` reported in the [`Strategy::report_header`] field of a
    /// response (visible text of at most 256 bytes), just before [`Strategy::on_response`] for
    /// that response. Default: nothing.
    fn on_report(&mut self, _backend: usize, _report: &str) {}
}

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod __glue;

/// Exports a [`Strategy`] type as the component's implementation of the `lb:strategy` world.
///
/// Use it once per crate, at the top level: `lbhost_sdk::export_strategy!(MyStrategy);`. On
/// targets other than wasm32 it expands to nothing, so the crate still builds and tests natively.
#[macro_export]
macro_rules! export_strategy {
    ($strategy:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            ::std::thread_local! {
                static STATE: ::std::cell::RefCell<
                    ::std::option::Option<$crate::__glue::State<$strategy>>,
                > = const { ::std::cell::RefCell::new(::std::option::Option::None) };
            }
            struct __LbhostStrategy;
            impl $crate::__glue::Guest for __LbhostStrategy {
                fn configure(
                    params: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::std::result::Result<$crate::__glue::WitSettings, ::std::string::String>
                {
                    $crate::__glue::configure(&STATE, params)
                }
                fn backends_changed(backends: ::std::vec::Vec<$crate::__glue::WitBackend>) {
                    $crate::__glue::backends_changed(&STATE, backends)
                }
                fn select(
                    ctx: $crate::__glue::WitContext,
                    request: &$crate::__glue::WitRequest,
                ) -> ::std::option::Option<u32> {
                    $crate::__glue::select(&STATE, ctx, request)
                }
                fn on_response(
                    backend: u32,
                    status: u16,
                    latency_us: u32,
                    report: ::std::option::Option<::std::string::String>,
                ) {
                    $crate::__glue::on_response(&STATE, backend, status, latency_us, report)
                }
            }
            $crate::__glue::bindings::__export_balancer!(
                __LbhostStrategy with_types_in $crate::__glue::bindings
            );
        };
    };
}
