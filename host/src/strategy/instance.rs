//! A warm guest instance and the calls into it, each under a deadline. A 0.1.0 component is
//! called through its own bindings ([`super::v0_1`]) with the same host state.

use std::time::Duration;

use http::header::HeaderName;
use wasmtime::component::Resource;
use wasmtime::{Store, Trap};

use super::bindings::{
    BadResponseField, Balancer, BalancerPre, GuestState, HostCallBudget, Needs, RequestData,
    SelectContext, Settings, WitBackend,
};
use super::loader::Loaded;
use super::runtime::Runtime;
use super::{v0_1, Fault};
use crate::pool::BackendSet;
use crate::text::{bounded, bounded_owned};

/// A compiled strategy of either contract version, ready to instantiate.
pub(super) enum Pre {
    /// `lb:strategy@0.2.0`.
    V0_2(BalancerPre<GuestState>),
    /// `lb:strategy@0.1.0`.
    V0_1(v0_1::BalancerPre<GuestState>),
}

/// An instance's exports, by contract version, each with the context reused per call so that
/// `select` allocates nothing on the host side.
enum Guest {
    V0_2(Balancer, SelectContext),
    V0_1(v0_1::Balancer, v0_1::SelectContext),
}

/// One instance of a loaded strategy, owned by one worker thread.
pub(super) struct Warm {
    /// The [`Loaded::id`] this instance was built from.
    pub strategy_id: u64,
    /// What the guest asked for in `configure`.
    pub needs: Needs,
    /// The response field whose value goes to `on-response` (`settings.report-header`).
    pub report_header: Option<HeaderName>,
    /// The pool generation last pushed through `backends-changed` (0: never).
    pub seen_generation: u64,
    store: Store<GuestState>,
    guest: Guest,
}

impl Warm {
    /// Instantiates `loaded` and runs `configure` with its parameters.
    pub(super) fn new(runtime: &Runtime, loaded: &Loaded) -> Result<Self, Fault> {
        let mut store = runtime.new_store();
        let (guest, settings) = match &loaded.pre {
            Pre::V0_2(pre) => {
                let bindings = pre
                    .instantiate(&mut store)
                    .map_err(|e| classify(&store, e))?;
                runtime.arm_hook(&mut store);
                let settings = bindings
                    .lb_strategy_strategy()
                    .call_configure(&mut store, &loaded.params)
                    .map_err(|e| classify(&store, e))?;
                let ctx = SelectContext {
                    sequence: 0,
                    random: 0,
                    in_flight: None,
                    latency_ewma_us: None,
                    exclude: None,
                    now_ms: None,
                };
                (Guest::V0_2(bindings, ctx), settings)
            }
            Pre::V0_1(pre) => {
                let bindings = pre
                    .instantiate(&mut store)
                    .map_err(|e| classify(&store, e))?;
                runtime.arm_hook(&mut store);
                let settings = bindings
                    .lb_strategy_strategy()
                    .call_configure(&mut store, &loaded.params)
                    .map_err(|e| classify(&store, e))?
                    .map(|needs| Settings {
                        needs: v0_1::needs(needs),
                        report_header: None,
                    });
                let ctx = v0_1::SelectContext {
                    sequence: 0,
                    random: 0,
                    in_flight: None,
                    latency_ewma_us: None,
                    exclude: None,
                };
                (Guest::V0_1(bindings, ctx), settings)
            }
        };
        let settings = settings.map_err(|reason| Fault::Refused(bounded_owned(reason)))?;
        let report_header = match settings.report_header {
            None => None,
            Some(name) => Some(HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                Fault::Refused(format!(
                    "settings.report-header: {:?} is not a field name",
                    bounded(&name)
                ))
            })?),
        };
        store.data_mut().needs = settings.needs;
        Ok(Warm {
            strategy_id: loaded.id,
            needs: settings.needs,
            report_header,
            seen_generation: 0,
            store,
            guest,
        })
    }

    /// Pushes the backend set to the guest.
    pub(super) fn backends_changed(
        &mut self,
        runtime: &Runtime,
        set: &BackendSet,
        generation: u64,
    ) -> Result<(), Fault> {
        runtime.arm_hook(&mut self.store);
        let called = match &self.guest {
            Guest::V0_2(bindings, _) => {
                let list: Vec<WitBackend> = set
                    .backends
                    .iter()
                    .map(|b| WitBackend {
                        key: b.key,
                        address: b.address.clone(),
                        weight: b.weight,
                        eligible: b.is_eligible(),
                        labels: b.labels.clone(),
                        eligible_since_ms: b.eligible_since_ms(),
                    })
                    .collect();
                bindings
                    .lb_strategy_strategy()
                    .call_backends_changed(&mut self.store, &list)
            }
            Guest::V0_1(bindings, _) => {
                let list: Vec<v0_1::WitBackend> = set
                    .backends
                    .iter()
                    .map(|b| v0_1::WitBackend {
                        key: b.key,
                        address: b.address.clone(),
                        weight: b.weight,
                        eligible: b.is_eligible(),
                        labels: b.labels.clone(),
                    })
                    .collect();
                bindings
                    .lb_strategy_strategy()
                    .call_backends_changed(&mut self.store, &list)
            }
        };
        called.map_err(|e| classify(&self.store, e))?;
        self.seen_generation = generation;
        Ok(())
    }

    /// Asks the guest for a backend. The request is lent to the guest for the call and always
    /// handed back, whatever happened.
    pub(super) fn select(
        &mut self,
        runtime: &Runtime,
        set: &BackendSet,
        sequence: u64,
        random: u64,
        exclude: &[u32],
        request: Box<RequestData>,
    ) -> (Box<RequestData>, Result<Option<u32>, Fault>) {
        /// Fills the columns both versions share.
        macro_rules! columns {
            ($ctx:expr) => {{
                $ctx.sequence = sequence;
                $ctx.random = random;
                fill(
                    &mut $ctx.in_flight,
                    self.needs.contains(Needs::IN_FLIGHT),
                    set.backends.iter().map(|b| b.in_flight()),
                );
                fill(
                    &mut $ctx.latency_ewma_us,
                    self.needs.contains(Needs::LATENCY),
                    set.backends.iter().map(|b| b.latency_ewma_us()),
                );
                fill(
                    &mut $ctx.exclude,
                    !exclude.is_empty(),
                    exclude.iter().copied(),
                );
            }};
        }
        // Lend the request by swapping boxes with the store's placeholder, and swap back after.
        let placeholder = std::mem::replace(&mut self.store.data_mut().request, request);
        runtime.arm_select(&mut self.store);
        let result = match &mut self.guest {
            Guest::V0_2(bindings, ctx) => {
                columns!(ctx);
                ctx.now_ms = self
                    .needs
                    .contains(Needs::CLOCK)
                    .then(crate::pool::clock_ms);
                bindings.lb_strategy_strategy().call_select(
                    &mut self.store,
                    ctx,
                    Resource::new_borrow(0),
                )
            }
            Guest::V0_1(bindings, ctx) => {
                columns!(ctx);
                bindings.lb_strategy_strategy().call_select(
                    &mut self.store,
                    ctx,
                    Resource::new_borrow(0),
                )
            }
        };
        let request = std::mem::replace(&mut self.store.data_mut().request, placeholder);
        (request, result.map_err(|e| classify(&self.store, e)))
    }

    /// Tells the guest how a backend answered, and what it reported (`report`: the value of
    /// the `report-header` field, already checked to be short visible text).
    pub(super) fn on_response(
        &mut self,
        runtime: &Runtime,
        backend: u32,
        status: u16,
        latency: Duration,
        report: Option<&str>,
    ) -> Result<(), Fault> {
        runtime.arm_select(&mut self.store);
        let micros = u32::try_from(latency.as_micros()).unwrap_or(u32::MAX);
        let called = match &self.guest {
            Guest::V0_2(bindings, _) => bindings.lb_strategy_strategy().call_on_response(
                &mut self.store,
                backend,
                status,
                micros,
                report,
            ),
            Guest::V0_1(bindings, _) => bindings.lb_strategy_strategy().call_on_response(
                &mut self.store,
                backend,
                status,
                micros,
            ),
        };
        called.map_err(|e| classify(&self.store, e))
    }
}

/// Sets an optional column to `values` when `wanted` (reusing its buffer), `None` otherwise: an
/// absent list costs the guest no allocation.
fn fill(column: &mut Option<Vec<u32>>, wanted: bool, values: impl Iterator<Item = u32>) {
    if !wanted {
        *column = None;
        return;
    }
    let list = column.get_or_insert_with(Vec::new);
    list.clear();
    list.extend(values);
}

/// Names what went wrong in a failed guest call. An error's text can carry the guest's own
/// words (names from its component): it is bounded.
fn classify(store: &Store<GuestState>, error: wasmtime::Error) -> Fault {
    if store.data().memory_denied {
        return Fault::OutOfMemory;
    }
    if error.downcast_ref::<HostCallBudget>().is_some() {
        return Fault::HostCallLimit;
    }
    if let Some(bad) = error.downcast_ref::<BadResponseField>() {
        return Fault::Trap(bad.to_string());
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel | Trap::Interrupt) => Fault::Timeout,
        Some(Trap::StackOverflow) => Fault::Trap("stack overflow".into()),
        Some(Trap::UnreachableCodeReached) => Fault::Trap("guest panicked (unreachable)".into()),
        Some(trap) => Fault::Trap(bounded_owned(trap.to_string())),
        None => Fault::Trap(bounded_owned(format!("{error:#}"))),
    }
}
