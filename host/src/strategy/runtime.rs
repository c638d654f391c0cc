//! The wasmtime engine and linker, built once per process, and the limits every guest call runs
//! under.
//!
//! Time is bounded with fuel: the guest pays about one unit per wasm instruction (bulk-memory
//! instructions pay per byte), each call starts with a budget worth `sandbox.deadline`
//! ([`FUEL_PER_MS`]), and a guest that spends it traps where it stands. The host calls a guest
//! can make in one call are capped too ([`super::bindings::MAX_HOST_CALLS`]), so everything a
//! guest can make the CPU do is paid for.
//!
//! There is no timer thread. An epoch ticker (the earlier design) had to wake every millisecond
//! while calls happened, preempting the worker on its core: it cost ~9 % of lbhost's CPU per
//! request under load (BENCHMARKS.md). Fuel also cannot be fooled by a descheduled worker: a busy
//! machine never makes a good strategy miss its deadline.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{
    Config as EngineConfig, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store,
};

use super::bindings::{Balancer, GuestState};
use super::compiler::EngineSettings;
use super::LoadError;
use crate::config::{QuarantineConfig, Sandbox};

/// Fuel a guest may burn per millisecond of its deadline. Measured on the 2-core EPYC VM lbhost is
/// benchmarked on: a tight integer loop compiled from Rust burns ~8.5 units/ns, a multiply-add
/// loop ~7.5, code that misses caches less. At 6 per ns a runaway loop stops within about 0.7–1 ms
/// of a 1 ms deadline and memory-bound code may run a few times longer; a slower machine
/// stretches both. `cargo run --release -p lbhost --example fuel_calibration` measures it again.
pub const FUEL_PER_MS: u64 = 6_000_000;

/// Deadline for the hooks that may rebuild tables (`configure`, `backends-changed`).
pub(super) const HOOK_DEADLINE: Duration = Duration::from_millis(100);

/// Most guest instances alive at once (a warm one per worker per loaded strategy, plus trials).
const MAX_INSTANCES: u32 = 256;

/// Engine, linker and limits shared by every strategy.
pub struct Runtime {
    pub(super) engine: Engine,
    /// What `engine` was built from (a compiling child builds the same).
    pub(super) settings: EngineSettings,
    pub(super) linker: Linker<GuestState>,
    /// Fuel for one `select` or `on-response` call.
    select_fuel: u64,
    /// Fuel for one hook call.
    hook_fuel: u64,
    /// Quarantine rule for every strategy loaded here.
    pub(super) quarantine: QuarantineConfig,
    /// Fuel budgets and memory limits apply (always, outside benchmarks).
    sandboxed: bool,
    /// Components compiled lately, by content hash: pools that run the same file compile it
    /// once ([`super::loader`]).
    pub(super) compiled:
        std::sync::Mutex<std::collections::HashMap<String, wasmtime::component::Component>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("memory_limit_bytes", &self.settings.memory_limit_bytes)
            .field("select_fuel", &self.select_fuel)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Builds the engine (fuel, pooling allocator).
    pub fn new(sandbox: &Sandbox) -> Result<Arc<Self>, LoadError> {
        Self::build(sandbox, true)
    }

    /// A runtime with no fuel budget and no memory limit. For benchmarks only, to price the
    /// sandbox: a guest that loops would hang its worker here.
    pub fn new_unsandboxed_for_benchmarks(sandbox: &Sandbox) -> Result<Arc<Self>, LoadError> {
        Self::build(sandbox, false)
    }

    fn build(sandbox: &Sandbox, sandboxed: bool) -> Result<Arc<Self>, LoadError> {
        let settings = EngineSettings {
            fuel: sandboxed,
            memory_limit_bytes: sandbox.memory_limit_bytes,
        };
        if on_demand_instances() {
            tracing::warn!("{ON_DEMAND_ENV}=1: guest instances are not pooled (profiling only)");
        }
        let config = engine_config(settings);
        let engine = Engine::new(&config).map_err(|e| LoadError::Engine(e.to_string()))?;
        let mut linker = Linker::new(&engine);
        Balancer::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .map_err(|e| LoadError::Engine(e.to_string()))?;
        super::v0_1::Balancer::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .map_err(|e| LoadError::Engine(e.to_string()))?;
        Ok(Arc::new(Runtime {
            engine,
            settings,
            linker,
            select_fuel: fuel(sandbox.deadline),
            hook_fuel: fuel(HOOK_DEADLINE),
            quarantine: sandbox.quarantine.clone(),
            sandboxed,
            compiled: std::sync::Mutex::default(),
        }))
    }

    /// A fresh store with the memory limit installed and a hook's budget armed.
    pub(super) fn new_store(&self) -> Store<GuestState> {
        let mut store = Store::new(
            &self.engine,
            GuestState::new(self.settings.memory_limit_bytes),
        );
        if self.sandboxed {
            store.limiter(|state| state);
        }
        self.arm(&mut store, self.hook_fuel);
        store
    }

    /// Arms the budget for one `select` (or `on-response`) call.
    pub(super) fn arm_select(&self, store: &mut Store<GuestState>) {
        self.arm(store, self.select_fuel);
    }

    /// Arms the budget for one hook call.
    pub(super) fn arm_hook(&self, store: &mut Store<GuestState>) {
        self.arm(store, self.hook_fuel);
    }

    fn arm(&self, store: &mut Store<GuestState>, fuel: u64) {
        store.data_mut().host_calls = 0;
        if self.sandboxed {
            // Fails only on an engine without fuel, which a sandboxed runtime never is.
            let _ = store.set_fuel(fuel);
        }
    }
}

/// The engine configuration for `settings`: fuel, stack, the pooling allocator (or, for
/// profiling only, plain allocation: see [`ON_DEMAND_ENV`]).
pub(super) fn engine_config(settings: EngineSettings) -> EngineConfig {
    let mut config = EngineConfig::new();
    config
        .consume_fuel(settings.fuel)
        .max_wasm_stack(512 * 1024);
    if on_demand_instances() {
        return config;
    }
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(MAX_INSTANCES)
        .total_core_instances(MAX_INSTANCES * 2)
        .total_memories(MAX_INSTANCES * 2)
        .total_tables(MAX_INSTANCES * 2)
        .max_memory_size(settings.memory_limit_bytes);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// `LBHOST_ON_DEMAND_INSTANCES=1` allocates guest instances one by one instead of from the
/// pooling allocator's slots, whose address space reservation (hundreds of GiB, virtual)
/// valgrind cannot map. For `bench/run.sh --instructions`; the memory limit still holds (the store's
/// limiter), only instantiation is slower.
pub(super) const ON_DEMAND_ENV: &str = "LBHOST_ON_DEMAND_INSTANCES";

fn on_demand_instances() -> bool {
    std::env::var_os(ON_DEMAND_ENV).is_some_and(|v| v == "1")
}

/// The fuel worth `deadline`.
fn fuel(deadline: Duration) -> u64 {
    let micros = u64::try_from(deadline.as_micros()).unwrap_or(u64::MAX);
    micros.saturating_mul(FUEL_PER_MS / 1000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuel_scales_with_the_deadline_and_never_overflows() {
        assert_eq!(fuel(Duration::from_millis(1)), FUEL_PER_MS);
        assert_eq!(fuel(Duration::from_micros(250)), FUEL_PER_MS / 4);
        assert_eq!(fuel(Duration::ZERO), 1);
        assert_eq!(fuel(Duration::MAX), u64::MAX);
    }
}
