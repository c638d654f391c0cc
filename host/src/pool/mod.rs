//! The backend pool: the current set of backends and their live state (in-flight, health).
//!
//! The set is rebuilt whole and swapped ([`ArcSwap`]) on reload; the request path only loads it.
//! Every change that a strategy must hear about (membership, weight, eligibility) bumps one
//! generation number, which worker threads compare against to refresh their guest instance.

mod backend;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

pub use backend::{Backend, InFlight};

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
    set: ArcSwap<BackendSet>,
    generation: AtomicU64,
}

impl Pool {
    /// A pool with the configured backends, all eligible until health checks say otherwise.
    pub fn new(configs: &[BackendConfig]) -> Arc<Self> {
        let backends = configs.iter().map(|c| Arc::new(Backend::new(c))).collect();
        Arc::new(Pool {
            set: ArcSwap::from_pointee(BackendSet { backends }),
            generation: AtomicU64::new(1),
        })
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
                    Some(b) if b.weight == c.weight && b.labels == c.labels => Arc::clone(b),
                    Some(b) => Arc::new(b.reconfigured(c)),
                    None => Arc::new(Backend::new(c)),
                },
            )
            .collect();
        self.set.store(Arc::new(BackendSet { backends }));
        self.bump();
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
