//! The host's own selector, used when a guest faults: round-robin over eligible backends.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::pool::BackendSet;

/// Round-robin over the usable backends — eligible, not excluded, weight above 0 — with even
/// shares: the cursor picks the k-th usable one (k = cursor modulo their count), so a backend
/// that is out does not hand its turns to its neighbour. It cannot fault: it answers `None`
/// only when no backend is usable. Two passes over the set, no allocation.
#[derive(Debug, Default)]
pub(super) struct Fallback {
    cursor: AtomicUsize,
}

impl Fallback {
    /// The next usable backend index.
    pub(super) fn pick(&self, set: &BackendSet, exclude: &[u32]) -> Option<usize> {
        let usable = |i: usize| {
            let b = &set.backends[i];
            b.is_eligible() && b.weight > 0 && !exclude.contains(&(i as u32))
        };
        let indices = 0..set.backends.len();
        let count = indices.clone().filter(|&i| usable(i)).count();
        if count == 0 {
            return None;
        }
        let k = self.cursor.fetch_add(1, Ordering::Relaxed) % count;
        // Eligibility can change between the passes: then the first usable one, if any.
        indices
            .clone()
            .filter(|&i| usable(i))
            .nth(k)
            .or_else(|| indices.clone().find(|&i| usable(i)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BackendConfig;
    use crate::pool::Pool;

    fn pool_of(weights: &[u32]) -> std::sync::Arc<Pool> {
        let configs: Vec<BackendConfig> = weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| BackendConfig {
                address: format!("127.0.0.1:{}", 9000 + i),
                weight,
                labels: Vec::new(),
                tls: None,
                protocol: Default::default(),
            })
            .collect();
        Pool::new(&configs)
    }

    fn shares(fallback: &Fallback, set: &BackendSet, exclude: &[u32], n: usize) -> Vec<usize> {
        let mut got = vec![0; set.backends.len()];
        for _ in 0..n {
            got[fallback.pick(set, exclude).expect("a usable backend")] += 1;
        }
        got
    }

    #[test]
    fn a_backend_that_is_out_does_not_give_its_turns_to_its_neighbour() {
        let pool = pool_of(&[1, 1, 1, 1]);
        let set = pool.load();
        set.backends[2].set_up(false);
        pool.refresh();
        let fallback = Fallback::default();
        assert_eq!(shares(&fallback, &set, &[], 600), [200, 200, 0, 200]);
        // Excluded and drained backends are skipped the same way.
        assert_eq!(shares(&fallback, &set, &[0], 600), [0, 300, 0, 300]);
        let drained = pool_of(&[1, 0, 1]);
        assert_eq!(shares(&fallback, &drained.load(), &[], 600), [300, 0, 300]);
    }

    #[test]
    fn nothing_usable_is_none() {
        let pool = pool_of(&[1, 1]);
        let set = pool.load();
        for b in &set.backends {
            b.set_up(false);
        }
        pool.refresh();
        assert_eq!(Fallback::default().pick(&set, &[]), None);
        assert_eq!(Fallback::default().pick(&BackendSet::default(), &[]), None);
    }
}
