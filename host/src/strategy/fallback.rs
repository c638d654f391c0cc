//! The host's own selector, used when a guest faults: round-robin over eligible backends.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::pool::BackendSet;

/// Round-robin over eligible, non-excluded backends with a weight above 0. It cannot fault: it
/// answers `None` only when no backend is usable.
#[derive(Debug, Default)]
pub struct Fallback {
    cursor: AtomicUsize,
}

impl Fallback {
    /// The next usable backend index.
    pub fn pick(&self, set: &BackendSet, exclude: &[u32]) -> Option<usize> {
        let n = set.backends.len();
        if n == 0 {
            return None;
        }
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        (0..n).map(|step| (start + step) % n).find(|&i| {
            let b = &set.backends[i];
            b.is_eligible() && b.weight > 0 && !exclude.contains(&(i as u32))
        })
    }
}
