//! Strategy selection: the active wasm strategy, a warm instance per worker thread, faults and
//! the fallback that serves when a guest misbehaves.

mod bindings;
mod canary;
mod compiler;
mod fallback;
mod instance;
mod loader;
mod quarantine;
mod runtime;
mod shadow;
mod slots;
mod v0_1;
mod window;

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};

pub use bindings::{RequestData, ResponseFields};
pub use canary::{Canary, CanaryError, CanaryState, CanaryStatus, Side, Tag};
pub use compiler::{child_main as compile_child_main, compile_in_child_process, EngineSettings};
pub use loader::{sha256_hex, Loaded};
pub use quarantine::FaultStatus;
pub use runtime::{Runtime, FUEL_PER_MS};
pub use shadow::{BadSample, Shadow, ShadowStatus};
pub use window::Figures;

use fallback::Fallback;
use instance::Warm;

use crate::metrics::Metrics;
use crate::pool::{BackendSet, Pool};

/// Why a strategy file was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("not a WebAssembly file")]
    NotWasm,
    #[error("this is a core wasm module, not a component: build the strategy crate with `lbhost strategy build` (it wraps the module), or wrap it with `wasm-tools component new`")]
    CoreModule,
    #[error("invalid component: {0}")]
    Invalid(String),
    #[error("imports `{0}`, which lbhost does not provide (strategies may import only the lb:strategy@0.2.0 or @0.1.0 interfaces: no WASI, no ambient authority)")]
    Import(String),
    #[error(
        "not an lb:strategy@0.2.0 (or 0.1.0) strategy: it does not export lb:strategy/strategy@0.2.0 ({0})"
    )]
    World(String),
    #[error("configure refused strategy_config: {0}")]
    Configure(String),
    #[error("the strategy failed when first run: {0}")]
    Trial(String),
    #[error("wasm engine: {0}")]
    Engine(String),
}

/// A guest call that did not produce a usable answer. Text from the guest in it is bounded
/// ([`crate::text::bounded`]).
#[derive(Debug, Clone, thiserror::Error)]
pub enum Fault {
    #[error("trap: {0}")]
    Trap(String),
    #[error("deadline exceeded")]
    Timeout,
    #[error(
        "more than {} host calls in one call (the limit per call)",
        bindings::MAX_HOST_CALLS
    )]
    HostCallLimit,
    #[error("memory limit exceeded")]
    OutOfMemory,
    #[error("answered backend {0}, which is out of range, ineligible or excluded")]
    BadAnswer(u32),
    #[error("configure refused: {0}")]
    Refused(String),
    /// Not a call: the strategy is quarantined and was not asked.
    #[error("strategy quarantined")]
    Quarantined,
}

impl Fault {
    /// A short label for metrics (`lbhost_strategy_faults_total{kind}`) and `/status`.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Trap(_) => "trap",
            Fault::Timeout => "timeout",
            Fault::HostCallLimit => "host_call_limit",
            Fault::OutOfMemory => "out_of_memory",
            Fault::BadAnswer(_) => "bad_answer",
            Fault::Refused(_) => "refused",
            Fault::Quarantined => "quarantined",
        }
    }

    /// Why the fallback served: `quarantine` when the strategy was not asked, `fault` otherwise
    /// (`lbhost_strategy_fallbacks_total{reason}`).
    pub fn fallback_reason(&self) -> &'static str {
        match self {
            Fault::Quarantined => "quarantine",
            _ => "fault",
        }
    }
}

/// The longest value of a strategy's `report-header` field passed to it; a longer one is
/// passed as absent.
pub const MAX_REPORT_BYTES: usize = 256;

/// The outcome of one selection.
#[derive(Debug)]
pub enum Choice {
    /// The strategy chose this backend index.
    Strategy(usize),
    /// The strategy faulted; the fallback chose this backend index.
    Fallback(usize, Fault),
    /// No backend can take the request (the strategy said none, or none is eligible).
    Unavailable,
}

/// The active strategy, swappable at run time, and the per-thread instances that run it.
pub struct Strategies {
    runtime: Arc<Runtime>,
    active: ArcSwap<Loaded>,
    fallback: Fallback,
    /// Benchmark baseline only: route with the host's round-robin and never call the guest
    /// (environment `LBHOST_BENCH_NATIVE_SELECTOR=1`), to measure what the wasm call costs.
    native_baseline: bool,
    /// Where faults are counted (`lbhost_strategy_faults_total`, and `/status` reads it back);
    /// `None` until [`Strategies::with_metrics`] (benchmarks run without).
    metrics: Option<Arc<Metrics>>,
    /// A strategy asked on a sampled share of requests, never used ([`shadow`]).
    shadow: ArcSwapOption<Shadow>,
    /// Whether `shadow` is set: one plain load on the request path when it is not.
    shadow_on: std::sync::atomic::AtomicBool,
    /// A strategy routing a share of the clients ([`canary`]); kept after it ends, for
    /// `/status`.
    canary: ArcSwapOption<Canary>,
    /// Whether a canary runs: one plain load on the request path when none does.
    canary_on: std::sync::atomic::AtomicBool,
    /// Which of a worker thread's warm instances are this slot's ([`slots`]).
    slot: u64,
}

impl Drop for Strategies {
    fn drop(&mut self) {
        slots::retire(self.slot);
    }
}

impl std::fmt::Debug for Strategies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Strategies")
            .field("active", &self.active.load().name)
            .finish_non_exhaustive()
    }
}

thread_local! {
    /// This worker thread's instance of the active strategy, built on first use and after a
    /// fault or a swap.
    static WARM: RefCell<slots::Warms> = RefCell::new(slots::Warms::default());
}

impl Strategies {
    /// Starts with `loaded` active.
    pub fn new(runtime: Arc<Runtime>, loaded: Loaded) -> Self {
        let native_baseline =
            std::env::var_os("LBHOST_BENCH_NATIVE_SELECTOR").is_some_and(|v| v == "1");
        if native_baseline {
            tracing::warn!(
                "LBHOST_BENCH_NATIVE_SELECTOR=1: the strategy is not called (benchmark baseline)"
            );
        }
        Strategies {
            runtime,
            active: ArcSwap::from_pointee(loaded),
            fallback: Fallback::default(),
            native_baseline,
            metrics: None,
            shadow: ArcSwapOption::empty(),
            shadow_on: std::sync::atomic::AtomicBool::new(false),
            slot: slots::new_slot(),
            canary: ArcSwapOption::empty(),
            canary_on: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Counts faults in `metrics` from now on.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The runtime strategies are loaded with.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// The active strategy.
    pub fn active(&self) -> Arc<Loaded> {
        self.active.load_full()
    }

    /// Makes `loaded` the active strategy; requests already inside the old one finish there.
    pub fn swap(&self, loaded: Loaded) {
        self.active.store(Arc::new(loaded));
    }

    /// [`Strategies::swap`] for a strategy that was loaded as a shadow or a canary.
    pub fn swap_shared(&self, loaded: Arc<Loaded>) {
        self.active.store(loaded);
    }

    /// Chooses a backend of `set` for `request`, never trusting the guest: a fault or an
    /// unusable answer is served by the fallback. The request is handed back, with the fields
    /// the strategy put on the response ([`RequestData::response_fields`]) when it chose, none
    /// otherwise (each selection starts without the last one's).
    /// Then, on a first attempt, the shadow strategy (if any) is asked about a sampled share
    /// ([`shadow`]).
    pub fn select(
        &self,
        pool: &Pool,
        set: &BackendSet,
        exclude: &[u32],
        mut request: Box<RequestData>,
    ) -> (Box<RequestData>, Choice) {
        request.response_fields.clear();
        let (mut request, choice) = self.choose(pool, set, exclude, request);
        if !matches!(choice, Choice::Strategy(_)) {
            request.response_fields.clear();
        }
        (request, choice)
    }

    fn choose(
        &self,
        pool: &Pool,
        set: &BackendSet,
        exclude: &[u32],
        request: Box<RequestData>,
    ) -> (Box<RequestData>, Choice) {
        let canary =
            !self.native_baseline && self.canary_on.load(std::sync::atomic::Ordering::Relaxed);
        let request = if canary {
            match self.route_canary(pool, set, exclude, request) {
                (request, Some(choice)) => return (request, choice),
                (request, None) => request,
            }
        } else {
            request
        };
        let (request, choice) = self.select_active(pool, set, exclude, request);
        if canary {
            self.after_active(&request, &choice);
        }
        if !exclude.is_empty()
            || self.native_baseline
            || !self.shadow_on.load(std::sync::atomic::Ordering::Relaxed)
        {
            return (request, choice);
        }
        (self.after_select(pool, set, request, &choice), choice)
    }

    /// The active strategy's choice (or the fallback's).
    fn select_active(
        &self,
        pool: &Pool,
        set: &BackendSet,
        exclude: &[u32],
        request: Box<RequestData>,
    ) -> (Box<RequestData>, Choice) {
        if self.native_baseline {
            let choice = match self.fallback.pick(set, exclude) {
                Some(i) => Choice::Strategy(i),
                None => Choice::Unavailable,
            };
            return (request, choice);
        }
        let loaded = self.active.load();
        self.select_on(&WARM, &loaded, pool, set, exclude, request)
    }

    /// `loaded`'s choice on this thread's instance of it in `warms` (the active strategy's or
    /// the canary's), or the fallback's when it is quarantined or faults.
    fn select_on(
        &self,
        warms: &'static std::thread::LocalKey<RefCell<slots::Warms>>,
        loaded: &Loaded,
        pool: &Pool,
        set: &BackendSet,
        exclude: &[u32],
        request: Box<RequestData>,
    ) -> (Box<RequestData>, Choice) {
        if loaded.faults.is_quarantined() {
            return (request, self.fall_back(set, exclude, Fault::Quarantined));
        }
        let generation = pool.generation();
        // Taken before the instance is made ready, so a call that faults there counts as one.
        let sequence = next_sequence(loaded);
        let (request, answer) = slots::with(warms, self.slot, |warm| {
            let instance = match self.ready(warm, loaded, set, generation) {
                Ok(instance) => instance,
                Err(fault) => return (request, Err(fault)),
            };
            let (request, answer) = instance.select(
                &self.runtime,
                set,
                sequence,
                fastrand::u64(..),
                exclude,
                request,
            );
            if answer.is_err() {
                // A trapped instance cannot be entered again: rebuild on next use.
                *warm = None;
            }
            (request, answer)
        });
        let choice = match answer {
            Ok(Some(i)) if is_usable(set, exclude, i) => Choice::Strategy(i as usize),
            Ok(Some(i)) => {
                slots::with(warms, self.slot, |warm| *warm = None);
                self.fault(loaded, set, exclude, Fault::BadAnswer(i))
            }
            Ok(None) => Choice::Unavailable,
            Err(fault) => self.fault(loaded, set, exclude, fault),
        };
        (request, choice)
    }

    /// Fault status of the active strategy, for the admin API.
    pub fn fault_status(&self) -> FaultStatus {
        self.active.load().faults.status()
    }

    /// Records `fault` of a `select` (maybe quarantining the strategy) and serves with the
    /// fallback.
    fn fault(&self, loaded: &Loaded, set: &BackendSet, exclude: &[u32], fault: Fault) -> Choice {
        self.record_fault(loaded, &fault);
        self.fall_back(set, exclude, fault)
    }

    /// The one place a fault of any guest call is recorded: the module's fault log line,
    /// `/status` and quarantine ([`quarantine::FaultTracker`]), and
    /// `lbhost_strategy_faults_total{kind}`.
    fn record_fault(&self, loaded: &Loaded, fault: &Fault) {
        let calls = loaded.sequence.load(std::sync::atomic::Ordering::Relaxed);
        loaded.faults.record(&loaded.name, calls, fault);
        if let Some(metrics) = &self.metrics {
            metrics.strategy_fault(fault.kind());
        }
    }

    /// Tells the active strategy (and the shadow) how a backend answered, if it asked to know.
    /// `field` looks up a field of the response by name; it is asked only for a strategy's
    /// `report-header`.
    pub fn feedback<'r>(
        &self,
        backend: usize,
        status: u16,
        latency: Duration,
        field: impl Fn(&http::HeaderName) -> Option<&'r [u8]>,
    ) {
        self.feedback_for(None, backend, status, latency, field);
    }

    /// [`Strategies::feedback`] for a request on side `tag` of a canary: the strategy that
    /// chose its backend hears of it.
    pub fn feedback_for<'r>(
        &self,
        tag: Option<Tag>,
        backend: usize,
        status: u16,
        latency: Duration,
        field: impl Fn(&http::HeaderName) -> Option<&'r [u8]>,
    ) {
        if self.shadow_on.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok(index) = u32::try_from(backend) {
                self.shadow_feedback(index, status, latency, &field);
            }
        }
        if tag.is_some_and(|t| t.side() == Side::Canary) {
            if let Ok(index) = u32::try_from(backend) {
                self.canary_feedback(index, status, latency, field);
            }
            return;
        }
        // This thread's instance knows whether its strategy asked (most do not): then the
        // active strategy is not even loaded.
        let wanted = slots::with(&WARM, self.slot, |warm| {
            warm.as_ref()
                .is_some_and(|w| w.needs.contains(bindings::Needs::FEEDBACK))
        });
        if !wanted {
            return;
        }
        let loaded = self.active.load();
        slots::with(&WARM, self.slot, |warm| {
            let Some(instance) = warm.as_mut().filter(|w| w.strategy_id == loaded.id) else {
                return;
            };
            let Ok(backend) = u32::try_from(backend) else {
                return;
            };
            let report = instance
                .report_header
                .as_ref()
                .and_then(field)
                .filter(|value| value.len() <= MAX_REPORT_BYTES)
                .and_then(crate::request::visible_ascii);
            if let Err(fault) =
                instance.on_response(&self.runtime, backend, status, latency, report)
            {
                *warm = None;
                self.record_fault(&loaded, &fault);
            }
        });
    }

    /// This thread's instance of `loaded`, built and given the current backend set if needed.
    fn ready<'w>(
        &self,
        warm: &'w mut Option<Warm>,
        loaded: &Loaded,
        set: &BackendSet,
        generation: u64,
    ) -> Result<&'w mut Warm, Fault> {
        if warm.as_ref().is_none_or(|w| w.strategy_id != loaded.id) {
            *warm = None;
            *warm = Some(Warm::new(&self.runtime, loaded)?);
        }
        let stale = warm
            .as_ref()
            .is_some_and(|w| w.seen_generation != generation);
        if stale {
            if let Some(Err(fault)) = warm
                .as_mut()
                .map(|w| w.backends_changed(&self.runtime, set, generation))
            {
                // A trapped instance cannot be entered again: rebuild on next use.
                *warm = None;
                return Err(fault);
            }
        }
        // Built above when missing, so this is always Some.
        warm.as_mut()
            .ok_or_else(|| Fault::Trap("no instance was built".into()))
    }

    fn fall_back(&self, set: &BackendSet, exclude: &[u32], fault: Fault) -> Choice {
        match self.fallback.pick(set, exclude) {
            Some(i) => Choice::Fallback(i, fault),
            None => Choice::Unavailable,
        }
    }
}

/// The strategy's next global sequence number.
fn next_sequence(loaded: &Loaded) -> u64 {
    loaded
        .sequence
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Whether index `i` names an eligible backend of `set` that was not already tried.
fn is_usable(set: &BackendSet, exclude: &[u32], i: u32) -> bool {
    set.backends
        .get(i as usize)
        .is_some_and(|b| b.is_eligible() && b.weight > 0)
        && !exclude.contains(&i)
}
