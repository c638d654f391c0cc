//! The wasmtime engine, linker and epoch ticker, built once per process.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{
    Config as EngineConfig, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store,
    UpdateDeadline,
};

use super::bindings::{Balancer, GuestState};
use super::LoadError;
use crate::config::{QuarantineConfig, Sandbox};

/// How often the epoch advances while strategies are being called. Each tick preempts a worker on
/// a busy core: at 250 µs that cost ~8 % of a core's time in context switches under load, at 1 ms
/// about a quarter of that (BENCHMARKS.md).
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// How often the epoch advances when no strategy has been called for [`IDLE_AFTER_TICKS`]: an idle
/// lbhost wakes 50 times a second. Each wakeup costs ~35 µs of CPU on this kind of VM (measured:
/// 200 wakeups/s took 0.75 % of a core), so idle ticking is kept rare. The first call after an idle
/// spell switches the ticker back to [`EPOCH_TICK`] within one idle tick, so a runaway guest's
/// first call after a quiet spell may run up to one idle tick longer than its deadline.
pub const IDLE_TICK: Duration = Duration::from_millis(20);
const IDLE_AFTER_TICKS: u32 = 100;

/// A deadline that expires while the guest got little CPU (its thread was descheduled) is
/// extended, at most this many times, so a busy machine does not turn slow scheduling into faults.
const MAX_EXTENSIONS: u32 = 8;

/// Deadline for the hooks that may rebuild tables (`configure`, `backends-changed`).
pub const HOOK_DEADLINE: Duration = Duration::from_millis(100);

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
    /// Set by every armed call, cleared by the ticker: tells it to tick fast.
    active: Arc<AtomicBool>,
    /// Quarantine rule for every strategy loaded here.
    pub(super) quarantine: QuarantineConfig,
    /// Deadlines and memory limits apply (always, outside benchmarks).
    sandboxed: bool,
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
        Self::build(sandbox, true)
    }

    /// A runtime with no epoch deadline and no memory limit. For benchmarks only, to price the
    /// sandbox: a guest that loops would hang its worker here.
    pub fn new_unsandboxed_for_benchmarks(sandbox: &Sandbox) -> Result<Arc<Self>, LoadError> {
        Self::build(sandbox, false)
    }

    fn build(sandbox: &Sandbox, sandboxed: bool) -> Result<Arc<Self>, LoadError> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(MAX_INSTANCES)
            .total_core_instances(MAX_INSTANCES * 2)
            .total_memories(MAX_INSTANCES * 2)
            .total_tables(MAX_INSTANCES * 2)
            .max_memory_size(sandbox.memory_limit_bytes);
        let mut config = EngineConfig::new();
        config
            .epoch_interruption(sandboxed)
            .max_wasm_stack(512 * 1024)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| LoadError::Engine(e.to_string()))?;
        let mut linker = Linker::new(&engine);
        Balancer::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .map_err(|e| LoadError::Engine(e.to_string()))?;
        let stop_ticker = Arc::new(AtomicBool::new(false));
        let active = Arc::new(AtomicBool::new(true));
        let ticker = Ticker {
            engine: engine.clone(),
            stop: Arc::clone(&stop_ticker),
            active: Arc::clone(&active),
        };
        std::thread::Builder::new()
            .name("lbhost-epoch".into())
            .spawn(move || ticker.run())
            .map_err(|e| LoadError::Engine(format!("starting the epoch ticker: {e}")))?;
        Ok(Arc::new(Runtime {
            engine,
            linker,
            memory_limit_bytes: sandbox.memory_limit_bytes,
            select_ticks: ticks(sandbox.deadline),
            hook_ticks: ticks(HOOK_DEADLINE),
            stop_ticker,
            active,
            quarantine: sandbox.quarantine.clone(),
            sandboxed,
        }))
    }

    /// A fresh store with the memory limit installed and a hook deadline armed.
    pub(super) fn new_store(&self) -> Store<GuestState> {
        let mut store = Store::new(&self.engine, GuestState::new(self.memory_limit_bytes));
        if self.sandboxed {
            store.limiter(|state| state);
            store.epoch_deadline_callback(on_deadline);
        }
        self.arm(&mut store, self.hook_ticks);
        store
    }

    /// Arms the deadline for one `select` (or `on-response`) call.
    pub(super) fn arm_select(&self, store: &mut Store<GuestState>) {
        self.arm(store, self.select_ticks);
    }

    /// Arms the deadline for one hook call.
    pub(super) fn arm_hook(&self, store: &mut Store<GuestState>) {
        self.arm(store, self.hook_ticks);
    }

    fn arm(&self, store: &mut Store<GuestState>, ticks: u64) {
        if !self.sandboxed {
            return;
        }
        // Read first: a store only when the ticker has cleared it keeps the line shared.
        if !self.active.load(Ordering::Relaxed) {
            self.active.store(true, Ordering::Relaxed);
        }
        let state = store.data_mut();
        state.deadline_ticks = ticks;
        state.extensions = 0;
        state.cpu_mark = None;
        store.set_epoch_deadline(ticks);
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

/// Advances the engine's epoch: every [`EPOCH_TICK`] while calls happen, every [`IDLE_TICK`]
/// after a quiet spell.
struct Ticker {
    engine: Engine,
    stop: Arc<AtomicBool>,
    active: Arc<AtomicBool>,
}

impl Ticker {
    fn run(self) {
        let mut quiet = 0u32;
        while !self.stop.load(Ordering::Relaxed) {
            let idle = quiet >= IDLE_AFTER_TICKS;
            std::thread::sleep(if idle { IDLE_TICK } else { EPOCH_TICK });
            self.engine.increment_epoch();
            if self.active.swap(false, Ordering::Relaxed) {
                quiet = 0;
            } else {
                quiet = quiet.saturating_add(1);
            }
        }
    }
}

/// Called by wasmtime when a call's epoch deadline passes (at least its deadline after the call
/// began). The first expiry notes the thread's CPU time and grants the deadline again; at the
/// next, a guest that used at least half of that time on the CPU is running away: trap. One whose thread was mostly
/// descheduled gets the deadline again, up to [`MAX_EXTENSIONS`] times. So a runaway guest stops
/// after about twice its deadline, and a busy machine does not make good guests fault.
fn on_deadline(
    mut ctx: wasmtime::StoreContextMut<'_, GuestState>,
) -> wasmtime::Result<UpdateDeadline> {
    let state = ctx.data_mut();
    let now = thread_cpu_time();
    let ticks = state.deadline_ticks.max(1);
    let window = EPOCH_TICK * u32::try_from(ticks - 1).unwrap_or(u32::MAX).max(1);
    let runaway = match (state.cpu_mark, now) {
        (Some(mark), Some(now)) => now.saturating_sub(mark) >= window / 2,
        // No CPU clock: trust the wall clock.
        (_, None) => true,
        (None, Some(_)) => false,
    };
    if runaway || state.extensions >= MAX_EXTENSIONS {
        return Err(wasmtime::Trap::Interrupt.into());
    }
    state.extensions += 1;
    state.cpu_mark = now;
    Ok(UpdateDeadline::Continue(ticks))
}

/// CPU time consumed by the calling thread.
fn thread_cpu_time() -> Option<Duration> {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .ok()
        .map(Duration::from)
}

/// Ticks such that at least `deadline` passes before the first expiry: the ticks covering it,
/// plus one because the next tick may come at once.
fn ticks(deadline: Duration) -> u64 {
    (deadline.as_nanos().div_ceil(EPOCH_TICK.as_nanos()) as u64).max(1) + 1
}
