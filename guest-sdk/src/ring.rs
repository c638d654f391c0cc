//! A consistent-hash ring: when a backend leaves, only the keys it owned move.

use crate::hash::combine;
use crate::{BackendSet, Backends};

/// Ring points per unit of weight.
pub const DEFAULT_POINTS_PER_WEIGHT: u32 = 160;
/// The most points a ring holds (12 bytes each); weights are scaled down past it.
const MAX_POINTS: u64 = 1 << 18;

/// A consistent-hash ring over the eligible backends, built from their stable keys, so every
/// lbhost node builds the same ring for the same backend set. Removing a backend (or its going
/// down) moves only the keys it owned; the others keep their backend.
#[derive(Clone, Debug, Default)]
pub struct HashRing {
    /// Point hashes, ascending.
    hashes: Vec<u64>,
    /// `owners[i]` is the backend index owning `hashes[i]`.
    owners: Vec<usize>,
}

impl HashRing {
    /// Builds the ring with `points_per_weight` points per unit of weight for each eligible
    /// backend with a weight above 0.
    pub fn new(set: &BackendSet, points_per_weight: u32) -> Self {
        let wanted: u64 = set
            .eligible()
            .iter()
            .map(|&i| u64::from(set.all()[i].weight) * u64::from(points_per_weight))
            .sum();
        let mut points: Vec<(u64, usize)> = Vec::with_capacity(wanted.min(MAX_POINTS) as usize);
        for &i in set.eligible() {
            let b = &set.all()[i];
            let mut count = u64::from(b.weight) * u64::from(points_per_weight);
            if wanted > MAX_POINTS {
                count = (count * MAX_POINTS / wanted).max(1);
            }
            points.extend((0..count).map(|v| (combine(b.key, v), i)));
        }
        points.sort_unstable();
        HashRing {
            hashes: points.iter().map(|p| p.0).collect(),
            owners: points.iter().map(|p| p.1).collect(),
        }
    }

    /// The owner of `hash`: the first point at or after it, clockwise, skipping backends that
    /// are not candidates for this request (already tried). `None` when no candidate owns a point.
    pub fn lookup(&self, hash: u64, backends: &Backends<'_>) -> Option<usize> {
        if self.hashes.is_empty() {
            return None;
        }
        let start = self.hashes.partition_point(|&h| h < hash) % self.hashes.len();
        let first = self.owners[start];
        if backends.is_candidate(first) {
            return Some(first);
        }
        backends.first_candidate_from(&self.owners, start)
    }

    /// Number of points on the ring.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Whether the ring has no points (no eligible backend).
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }
}
