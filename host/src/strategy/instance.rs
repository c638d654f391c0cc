//! A warm guest instance and the calls into it, each under a deadline.

use std::time::Duration;

use wasmtime::component::Resource;
use wasmtime::{Store, Trap};

use super::bindings::{
    Balancer, GuestState, HostCallBudget, Needs, RequestData, SelectContext, WitBackend,
};
use super::loader::Loaded;
use super::runtime::Runtime;
use super::Fault;
use crate::pool::BackendSet;
use crate::text::bounded_owned;

/// One instance of a loaded strategy, owned by one worker thread.
pub(super) struct Warm {
    /// The [`Loaded::id`] this instance was built from.
    pub strategy_id: u64,
    /// What the guest asked for in `configure`.
    pub needs: Needs,
    /// The pool generation last pushed through `backends-changed` (0: never).
    pub seen_generation: u64,
    store: Store<GuestState>,
    bindings: Balancer,
    /// Reused per call so `select` allocates nothing on the host side.
    ctx: SelectContext,
}

impl Warm {
    /// Instantiates `loaded` and runs `configure` with its parameters.
    pub(super) fn new(runtime: &Runtime, loaded: &Loaded) -> Result<Self, Fault> {
        let mut store = runtime.new_store();
        let bindings = loaded
            .pre
            .instantiate(&mut store)
            .map_err(|e| classify(&store, e))?;
        runtime.arm_hook(&mut store);
        let needs = bindings
            .lb_strategy_strategy()
            .call_configure(&mut store, &loaded.params)
            .map_err(|e| classify(&store, e))?
            .map_err(|reason| Fault::Refused(bounded_owned(reason)))?;
        Ok(Warm {
            strategy_id: loaded.id,
            needs,
            seen_generation: 0,
            store,
            bindings,
            ctx: SelectContext {
                sequence: 0,
                random: 0,
                in_flight: None,
                latency_ewma_us: None,
                exclude: None,
            },
        })
    }

    /// Pushes the backend set to the guest.
    pub(super) fn backends_changed(
        &mut self,
        runtime: &Runtime,
        set: &BackendSet,
        generation: u64,
    ) -> Result<(), Fault> {
        let list: Vec<WitBackend> = set
            .backends
            .iter()
            .map(|b| WitBackend {
                key: b.key,
                address: b.address.clone(),
                weight: b.weight,
                eligible: b.is_eligible(),
                labels: b.labels.clone(),
            })
            .collect();
        runtime.arm_hook(&mut self.store);
        self.bindings
            .lb_strategy_strategy()
            .call_backends_changed(&mut self.store, &list)
            .map_err(|e| classify(&self.store, e))?;
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
        self.ctx.sequence = sequence;
        self.ctx.random = random;
        fill(
            &mut self.ctx.in_flight,
            self.needs.contains(Needs::IN_FLIGHT),
            set.backends.iter().map(|b| b.in_flight()),
        );
        fill(
            &mut self.ctx.latency_ewma_us,
            self.needs.contains(Needs::LATENCY),
            set.backends.iter().map(|b| b.latency_ewma_us()),
        );
        fill(
            &mut self.ctx.exclude,
            !exclude.is_empty(),
            exclude.iter().copied(),
        );
        // Lend the request by swapping boxes with the store's placeholder, and swap back after.
        let placeholder = std::mem::replace(&mut self.store.data_mut().request, request);
        runtime.arm_select(&mut self.store);
        let result = self.bindings.lb_strategy_strategy().call_select(
            &mut self.store,
            &self.ctx,
            Resource::new_borrow(0),
        );
        let request = std::mem::replace(&mut self.store.data_mut().request, placeholder);
        (request, result.map_err(|e| classify(&self.store, e)))
    }

    /// Tells the guest how a backend answered.
    pub(super) fn on_response(
        &mut self,
        runtime: &Runtime,
        backend: u32,
        status: u16,
        latency: Duration,
    ) -> Result<(), Fault> {
        runtime.arm_select(&mut self.store);
        let micros = u32::try_from(latency.as_micros()).unwrap_or(u32::MAX);
        self.bindings
            .lb_strategy_strategy()
            .call_on_response(&mut self.store, backend, status, micros)
            .map_err(|e| classify(&self.store, e))
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
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel | Trap::Interrupt) => Fault::Timeout,
        Some(Trap::StackOverflow) => Fault::Trap("stack overflow".into()),
        Some(Trap::UnreachableCodeReached) => Fault::Trap("guest panicked (unreachable)".into()),
        Some(trap) => Fault::Trap(bounded_owned(trap.to_string())),
        None => Fault::Trap(bounded_owned(format!("{error:#}"))),
    }
}
