//! The wasmtime engine, linker and epoch ticker, built once per process.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{
    Config as EngineConfig, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store,
};

use super::bindings::{Balancer, GuestState};
use super::LoadError;
use crate::config::Sandbox;

/// How often the epoch advances. A guest call is interrupted after its deadline plus at most one
/// tick. 250 µs keeps the 1 ms default deadline accurate to a quarter while the ticker thread
/// wakes 4,000 times a second (its CPU cost is measured in BENCHMARKS.md).
pub const EPOCH_TICK: Duration = Duration::from_micros(250);

/// Deadline for the hooks that may rebuild tables (`configure`, `backends-changed`).
pub const HOOK_DEADLINE: Duration = Duration::from_millis(200);

/// Most guest instances alive at once (a warm one per worker per loaded strategy, plus trials).
const MAX_INSTANCES: u32 = 256;

/// Engine, linker and limits shared by every strategy.
pub struct Runtime {
    pub(super) engine: Engine,
    pub(super) linker: Linker<GuestState>,
    memory_limit_bytes: usize,
    select_ticks: u64,
    hook_ticks: u64,
    stop_ticker: Arc<AtomicBool>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("memory_limit_bytes", &self.memory_limit_bytes)
            .field("select_ticks", &self.select_ticks)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Builds the engine (epoch interruption, pooling allocator) and starts the epoch ticker.
    pub fn new(sandbox: &Sandbox) -> Result<Arc<Self>, LoadError> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(MAX_INSTANCES)
            .total_core_instances(MAX_INSTANCES * 2)
            .total_memories(MAX_INSTANCES * 2)
            .total_tables(MAX_INSTANCES * 2)
            .max_memory_size(sandbox.memory_limit_bytes);
        let mut config = EngineConfig::new();
        config
            .epoch_interruption(true)
            .max_wasm_stack(512 * 1024)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| LoadError::Engine(e.to_string()))?;
        let mut linker = Linker::new(&engine);
        Balancer::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .map_err(|e| LoadError::Engine(e.to_string()))?;
        let stop_ticker = Arc::new(AtomicBool::new(false));
        let ticker_engine = engine.clone();
        let stop = Arc::clone(&stop_ticker);
        std::thread::Builder::new()
            .name("lbhost-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticker_engine.increment_epoch();
                }
            })
            .map_err(|e| LoadError::Engine(format!("starting the epoch ticker: {e}")))?;
        Ok(Arc::new(Runtime {
            engine,
            linker,
            memory_limit_bytes: sandbox.memory_limit_bytes,
            select_ticks: ticks(sandbox.deadline),
            hook_ticks: ticks(HOOK_DEADLINE),
            stop_ticker,
        }))
    }

    /// A fresh store with the memory limit installed and a hook deadline armed.
    pub(super) fn new_store(&self) -> Store<GuestState> {
        let mut store = Store::new(&self.engine, GuestState::new(self.memory_limit_bytes));
        store.limiter(|state| state);
        store.set_epoch_deadline(self.hook_ticks);
        store
    }

    /// Arms the deadline for one `select` call.
    pub(super) fn arm_select(&self, store: &mut Store<GuestState>) {
        store.set_epoch_deadline(self.select_ticks);
    }

    /// Arms the deadline for one hook call.
    pub(super) fn arm_hook(&self, store: &mut Store<GuestState>) {
        store.set_epoch_deadline(self.hook_ticks);
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

/// Whole ticks covering `deadline` (at least one).
fn ticks(deadline: Duration) -> u64 {
    (deadline.as_nanos().div_ceil(EPOCH_TICK.as_nanos()) as u64).max(1)
}
