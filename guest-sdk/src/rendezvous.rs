//! Rendezvous (highest-random-weight) hashing, precomputed into a table for O(1) lookups.

use crate::hash::{combine, mix64};
use crate::{BackendSet, Backends};

/// Most `buckets × backends` score computations spent building one table.
const BUILD_BUDGET: u64 = 1 << 22;
/// Bucket counts: enough for an even spread, bounded by the build budget.
const MAX_BUCKETS: u64 = 1 << 16;
const MIN_BUCKETS: u64 = 1 << 10;

/// Maps a key to a backend by rendezvous hashing: every backend scores every bucket from its
/// stable key, and the best score wins. Precomputed per bucket, so a lookup is O(1) whatever the
/// number of backends.
///
/// Properties: every lbhost node builds the same table for the same backend set (scores come
/// from the backends' stable keys); when a backend leaves, only the buckets it won move; shares
/// follow the weights with a spread of about `sqrt(share / buckets)`, under 0.2 % of all keys
/// for a handful of backends (a hash ring with 160 points per backend spreads about ±8 %).
#[derive(Clone, Debug, Default)]
pub struct RendezvousTable {
    /// The winning backend of each bucket; empty when no backend is eligible.
    winners: Vec<usize>,
    /// Eligible backends with their keys and weights, for second choices on retries.
    eligible: Vec<(usize, u64, u32)>,
    /// Whether all eligible weights are equal (then scores compare as integers).
    uniform: bool,
}

impl RendezvousTable {
    /// Builds the table over the eligible backends with a weight above 0.
    pub fn new(set: &BackendSet) -> Self {
        let eligible: Vec<(usize, u64, u32)> = set
            .eligible()
            .iter()
            .map(|&i| (i, set.all()[i].key, set.all()[i].weight))
            .collect();
        if eligible.is_empty() {
            return RendezvousTable::default();
        }
        let uniform = eligible.iter().all(|e| e.2 == eligible[0].2);
        let n = eligible.len() as u64;
        let buckets = (BUILD_BUDGET / n)
            .clamp(MIN_BUCKETS, MAX_BUCKETS)
            .next_power_of_two()
            .min(MAX_BUCKETS);
        let mut table = RendezvousTable {
            winners: Vec::new(),
            eligible,
            uniform,
        };
        table.winners = (0..buckets)
            .map(|bucket| table.best(bucket, |_| true).unwrap_or(0))
            .collect();
        table
    }

    /// The backend for `key`, skipping backends that are not candidates for this request
    /// (already tried): then the next-best score for the key's bucket wins.
    pub fn lookup(&self, key: u64, backends: &Backends<'_>) -> Option<usize> {
        if self.winners.is_empty() {
            return None;
        }
        let bucket = mix64(key) & (self.winners.len() as u64 - 1);
        let winner = self.winners[bucket as usize];
        if backends.is_candidate(winner) {
            return Some(winner);
        }
        self.best(bucket, |i| backends.is_candidate(i))
    }

    /// Number of buckets.
    pub fn buckets(&self) -> usize {
        self.winners.len()
    }

    /// The highest-scoring eligible backend for `bucket` among those `allowed`.
    fn best(&self, bucket: u64, allowed: impl Fn(usize) -> bool) -> Option<usize> {
        let candidates = self.eligible.iter().filter(|e| allowed(e.0));
        if self.uniform {
            candidates
                .max_by_key(|&&(_, key, _)| combine(key, bucket))
                .map(|e| e.0)
        } else {
            // Weighted rendezvous: score = -weight / ln(u), u uniform in (0, 1).
            candidates
                .map(|&(i, key, weight)| {
                    let u = ((combine(key, bucket) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                    (i, -f64::from(weight) / u.ln())
                })
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|e| e.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::backend;

    fn set(n: usize) -> BackendSet {
        BackendSet::new(
            (0..n)
                .map(|i| backend(&format!("127.0.0.1:{}", 40000 + i)))
                .collect(),
        )
    }

    fn view(set: &BackendSet) -> Backends<'_> {
        Backends {
            set,
            sequence: 0,
            random: 0,
            in_flight: &[],
            latency_ewma_us: &[],
            now_ms: None,
            exclude: &[],
        }
    }

    #[test]
    fn shares_are_even_and_removal_moves_only_the_removed_backends_keys() {
        let full = set(3);
        let table = RendezvousTable::new(&full);
        let mut counts = [0usize; 3];
        let before: Vec<usize> = (0..30_000u64)
            .map(|k| {
                let b = table.lookup(mix64(k), &view(&full)).unwrap();
                counts[b] += 1;
                b
            })
            .collect();
        for c in counts {
            assert!(
                (c as f64 / 30_000.0 - 1.0 / 3.0).abs() < 0.015,
                "{counts:?}"
            );
        }
        let mut backends = full.all().to_vec();
        backends[1].eligible = false;
        let reduced = BackendSet::new(backends);
        let table = RendezvousTable::new(&reduced);
        for (k, &was) in before.iter().enumerate() {
            let now = table.lookup(mix64(k as u64), &view(&reduced)).unwrap();
            if was != 1 {
                assert_eq!(now, was);
            } else {
                assert_ne!(now, 1);
            }
        }
    }

    #[test]
    fn weights_shape_the_shares() {
        let backends = vec![backend("a:1").weight(1), backend("b:1").weight(3)];
        let s = BackendSet::new(backends);
        let table = RendezvousTable::new(&s);
        let heavy = (0..20_000u64)
            .filter(|&k| table.lookup(mix64(k), &view(&s)) == Some(1))
            .count();
        assert!((heavy as f64 / 20_000.0 - 0.75).abs() < 0.03, "{heavy}");
    }
}
