//! Gives memory freed by parked connections back to the operating system.
//!
//! glibc's allocator keeps freed memory for reuse and only returns the top of its heaps. A burst
//! of connections that then go idle frees ~20 KiB each when they are parked, scattered between
//! the small allocations that stay: without help, RSS stays at the burst's peak (1,000 idle
//! connections opened at once: 19.6 KiB each instead of ~4). So once a second, if at least
//! [`MIN_PARKS`] connections were parked since the last time, `malloc_trim(0)` releases the
//! free pages wherever they are. Under steady load connections are not parked and nothing runs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Connections parked since start (wrapping): a park frees ~20 KiB.
static PARKED: AtomicU64 = AtomicU64::new(0);

/// Parks (~20 KiB each) that make a trim worth its cost (~1 ms per 100 MiB of heap).
const MIN_PARKS: u64 = 64;
/// How often the parks are looked at.
const INTERVAL: Duration = Duration::from_secs(1);

/// Counts one parked connection.
pub(super) fn parked() {
    PARKED.fetch_add(1, Ordering::Relaxed);
}

/// Trims every [`INTERVAL`] when enough connections were parked meanwhile. Runs until dropped.
pub(super) async fn run() {
    let mut seen = PARKED.load(Ordering::Relaxed);
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let parked = PARKED.load(Ordering::Relaxed);
        if parked.wrapping_sub(seen) < MIN_PARKS {
            continue;
        }
        seen = parked;
        let started = Instant::now();
        let released = release_free_memory();
        tracing::debug!(
            released,
            took_us = started.elapsed().as_micros() as u64,
            "trimmed the heap"
        );
    }
}

/// Returns free heap pages to the OS; whether any were released.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn release_free_memory() -> bool {
    // SAFETY: malloc_trim has no preconditions; it takes the allocator's own locks.
    unsafe { libc::malloc_trim(0) != 0 }
}

/// Other allocators return memory by themselves (or not at all): nothing to do.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() -> bool {
    false
}
