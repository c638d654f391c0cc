//! The backend pool: the current set of backends and their live state (in-flight, health,
//! passive ejection, circuit breakers) and which of them strategies may choose.
//!
//! The set is rebuilt whole and swapped ([`ArcSwap`]) on reload; the request path only loads it.
//! Every change that a strategy must hear about (membership, weight, eligibility) bumps one
//! generation number, which worker threads compare against to refresh their guest instance.
//!
//! Eligibility ([`Pool::refresh`]): a backend is *admissible* when it is up (active health) and
//! its circuit lets requests through (closed, or half-open with a probe left); it is *eligible*
//! when admissible and not passively ejected. Panic rule: if no backend with a weight above 0
//! is eligible but some are admissible, ejections are ignored and every admissible backend is
//! eligible — traffic goes to backends that merely failed real requests rather than nowhere.
//! Backends down by active checks or with an open circuit stay out even then.

mod backend;
mod circuit;
mod passive;
mod report;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use arc_swap::ArcSwap;

pub use backend::{Backend, InFlight};
pub use circuit::CircuitState;
pub use report::{Admitted, Failure, Outcome};

use crate::config::BackendConfig;

/// An immutable backend set; indices into `backends` are what strategies answer with.
#[derive(Debug, Default)]
pub struct BackendSet {
    /// The backends, in config order.
    pub backends: Vec<Arc<Backend>>,
}

/// The pool: the current [`BackendSet`] and a generation that changes with anything a strategy
/// sees.
#[derive(Debug)]
pub struct Pool {
    /// Its name in the config (`default` without `pools`).
    name: Arc<str>,
    set: ArcSwap<BackendSet>,
    generation: AtomicU64,
    /// Held while eligibility is recomputed, so an older computation never overwrites a newer
    /// one.
    refresh_lock: Mutex<()>,
    /// Held while deciding an ejection, so `max_ejected_percent` holds under concurrency.
    eject_lock: Mutex<()>,
    /// Whether the last refresh applied the panic rule.
    panic: AtomicBool,
}

impl Pool {
    /// A pool with the configured backends, all eligible until health checks say otherwise.
    pub fn new(configs: &[BackendConfig]) -> Arc<Self> {
        Pool::named(crate::config::DEFAULT_POOL, configs)
    }

    /// The pool `name` with the configured backends, all eligible until health checks say
    /// otherwise.
    pub fn named(name: &str, configs: &[BackendConfig]) -> Arc<Self> {
        let name: Arc<str> = Arc::from(name);
        let backends = configs
            .iter()
            .map(|c| Arc::new(Backend::of_pool(c, Arc::clone(&name))))
            .collect();
        Arc::new(Pool {
            name,
            set: ArcSwap::from_pointee(BackendSet { backends }),
            generation: AtomicU64::new(1),
            refresh_lock: Mutex::new(()),
            eject_lock: Mutex::new(()),
            panic: AtomicBool::new(false),
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The current set.
    pub fn load(&self) -> Arc<BackendSet> {
        self.set.load_full()
    }

    /// Replaces the set with `configs`, keeping the live state (health, in-flight, pooled
    /// connections) of backends whose address stays.
    pub fn update(&self, configs: &[BackendConfig]) {
        let old = self.load();
        let backends = configs
            .iter()
            .map(
                |c| match old.backends.iter().find(|b| b.address == c.address) {
                    Some(b)
                        if b.weight == c.weight
                            && b.labels == c.labels
                            && b.tls == c.tls
                            && b.protocol == c.protocol =>
                    {
                        Arc::clone(b)
                    }
                    Some(b) => Arc::new(b.reconfigured(c)),
                    None => Arc::new(Backend::of_pool(c, Arc::clone(&self.name))),
                },
            )
            .collect();
        self.set.store(Arc::new(BackendSet { backends }));
        self.refresh();
        self.bump();
    }

    /// Recomputes every backend's eligibility (see the module docs) and bumps the generation if
    /// any changed. Call it after anything eligibility depends on changed.
    pub fn refresh(&self) {
        let _serial = self
            .refresh_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let set = self.load();
        let now = clock_ms();
        let admissible = |b: &Backend| b.is_up() && b.circuit().lets_through();
        let available = |b: &Backend| admissible(b) && !b.passive().is_ejected(now);
        let panic = !set.backends.iter().any(|b| b.weight > 0 && available(b))
            && set.backends.iter().any(|b| b.weight > 0 && admissible(b));
        let mut changed = false;
        for b in &set.backends {
            let eligible = if panic { admissible(b) } else { available(b) };
            changed |= b.set_eligible(eligible);
        }
        if self.panic.swap(panic, Ordering::AcqRel) != panic {
            if panic {
                tracing::warn!(
                    "panic mode: every available backend is ejected; ignoring ejections until one is back"
                );
            } else {
                tracing::info!("panic mode over");
            }
        }
        if changed {
            self.bump();
        }
    }

    /// Whether the panic rule is in force (every admissible backend is ejected).
    pub fn is_panic(&self) -> bool {
        self.panic.load(Ordering::Acquire)
    }

    /// The generation: changes whenever membership, a weight or an eligibility changes.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Records that something a strategy sees has changed.
    pub fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// Milliseconds since the process started, on the monotonic clock: the time base of ejections
/// and circuits.
pub(crate) fn clock_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    u64::try_from(START.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
