//! Per-thread warm instances, one per strategy slot: every pool has a [`super::Strategies`] of
//! its own (its slot), and a worker thread keeps one warm instance for each slot it served,
//! so requests of pools that alternate on a thread never rebuild each other's instance.
//!
//! A slot that is dropped (its pool was removed by a reload) is retired: each thread drops its
//! instances of retired slots the next time it takes one (one relaxed load when none retired).

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread::LocalKey;

use rustc_hash::FxHashMap;

use super::instance::Warm;

/// One thread's instances, by slot.
#[derive(Default)]
pub(super) struct Warms {
    by_slot: FxHashMap<u64, Option<Warm>>,
    /// How many retirements this thread has applied.
    seen_retired: usize,
}

/// Slots dropped so far, in order.
static RETIRED: Mutex<Vec<u64>> = Mutex::new(Vec::new());
/// `RETIRED.len()`, read without the lock.
static RETIRED_COUNT: AtomicUsize = AtomicUsize::new(0);
/// The next slot's id.
static NEXT_SLOT: AtomicU64 = AtomicU64::new(1);

/// A new slot's id.
pub(super) fn new_slot() -> u64 {
    NEXT_SLOT.fetch_add(1, Ordering::Relaxed)
}

/// Marks `slot` gone: threads drop their instances of it.
pub(super) fn retire(slot: u64) {
    let mut retired = RETIRED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    retired.push(slot);
    RETIRED_COUNT.store(retired.len(), Ordering::Release);
}

/// Runs `f` on this thread's instance of `slot` in `key` (`None` until built).
pub(super) fn with<R>(
    key: &'static LocalKey<RefCell<Warms>>,
    slot: u64,
    f: impl FnOnce(&mut Option<Warm>) -> R,
) -> R {
    key.with(|cell| {
        let mut warms = cell.borrow_mut();
        let retired = RETIRED_COUNT.load(Ordering::Acquire);
        if retired != warms.seen_retired {
            let gone = RETIRED
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for slot in gone.iter().skip(warms.seen_retired.min(gone.len())) {
                warms.by_slot.remove(slot);
            }
            warms.seen_retired = gone.len();
        }
        f(warms.by_slot.entry(slot).or_default())
    })
}
