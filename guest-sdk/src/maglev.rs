//! Maglev consistent hashing (Eisenbud et al., NSDI 2016), with an optional bound on load.

use crate::hash::{combine, mix64};
use crate::{BackendSet, Backends};

/// Envoy's and the paper's default table size.
pub const DEFAULT_TABLE_SIZE: u64 = 65_537;
/// The largest table built (4 MB of entries): enough for 10,000 backends at 100 slots each.
pub const MAX_TABLE_SIZE: u64 = 1_000_003;
/// Slots per backend at least, so that shares stay within about 1 % of their weight.
const MIN_SLOTS_PER_BACKEND: u64 = 100;
/// Salt of a backend's `skip` hash (its `offset` hash has none).
const SKIP_SALT: u64 = 0x6d61_676c_6576_736b;

/// A Maglev lookup table over the eligible backends with a weight above 0: a prime number of
/// slots, each owned by one backend, filled from per-backend permutations of the slots derived
/// from the backends' stable keys.
///
/// Properties: the same backend set gives the same table on every lbhost node, whatever the
/// order of the backends in the config; a backend owns a share of the slots proportional to its
/// weight (Envoy's weighted fill); when one of N backends leaves, its slots move and only a
/// little more (the paper measures a few percent of the rest for N in the hundreds); a lookup is
/// one multiplication and one read.
#[derive(Clone, Debug, Default)]
pub struct MaglevTable {
    /// The backend index owning each slot; empty when no backend is eligible.
    slots: Vec<u32>,
}

impl MaglevTable {
    /// Builds the table with [`MaglevTable::size_for`]`(min_size, set.len())` slots. The size
    /// counts every backend of the set, eligible or not, so that a backend going down or up
    /// never changes it (a new size would move almost every key).
    pub fn new(set: &BackendSet, min_size: u64) -> Self {
        let mut entries: Vec<Fill> = set
            .eligible()
            .iter()
            .map(|&i| {
                let b = &set.all()[i];
                (i, b.key, b.weight)
            })
            .map(|(index, key, weight)| Fill {
                index: index as u32,
                key,
                weight: u64::from(weight),
                offset: 0,
                skip: 0,
                target: 0,
            })
            .collect();
        if entries.is_empty() {
            return MaglevTable::default();
        }
        // The fill order decides ties between backends: take it from the stable keys, not from
        // the config's order, so that every node builds the same table.
        entries.sort_unstable_by_key(|e| e.key);
        let size = MaglevTable::size_for(min_size, set.len());
        let max_weight = entries.iter().map(|e| e.weight).max().unwrap_or(1);
        for e in &mut entries {
            e.offset = mix64(e.key) % size;
            e.skip = combine(e.key, SKIP_SALT) % (size - 1) + 1;
            e.target = max_weight;
        }
        const EMPTY: u32 = u32::MAX;
        let mut slots = vec![EMPTY; size as usize];
        let mut filled = 0u64;
        // Round k gives a turn to each backend whose weight has earned one: a backend of the
        // largest weight every round, one of a third of it every third round. A turn takes the
        // backend's next preferred slot that is still free.
        let mut round = 1u64;
        while filled < size {
            for e in &mut entries {
                if filled == size {
                    break;
                }
                if round * e.weight < e.target {
                    continue;
                }
                e.target += max_weight;
                while slots[e.offset as usize] != EMPTY {
                    e.offset = next(e.offset, e.skip, size);
                }
                slots[e.offset as usize] = e.index;
                e.offset = next(e.offset, e.skip, size);
                filled += 1;
            }
            round += 1;
        }
        MaglevTable { slots }
    }

    /// The table size used for `backends` backends when `min_size` is asked for: the smallest
    /// prime at least `min_size` and at least 100 per backend, at most [`MAX_TABLE_SIZE`]
    /// (or `min_size`, if larger).
    pub fn size_for(min_size: u64, backends: usize) -> u64 {
        let wanted = (backends as u64)
            .saturating_mul(MIN_SLOTS_PER_BACKEND)
            .min(MAX_TABLE_SIZE);
        next_prime(min_size.max(wanted).max(2))
    }

    /// Number of slots (0 when no backend is eligible).
    pub fn size(&self) -> usize {
        self.slots.len()
    }

    /// The backend owning `hash`'s slot; if it is not a candidate for this request (already
    /// tried), the owner of the next slot that is.
    pub fn lookup(&self, hash: u64, backends: &Backends<'_>) -> Option<usize> {
        let start = self.slot(hash)?;
        let owner = self.slots[start] as usize;
        if backends.is_candidate(owner) {
            return Some(owner);
        }
        self.walk(start, |i| backends.is_candidate(i))
    }

    /// [`MaglevTable::lookup`] with bounded loads (Mirrokni, Thorup, Zadimoghaddam, "Consistent
    /// Hashing with Bounded Loads"): walks on from `hash`'s slot to the first candidate with
    /// fewer requests in flight than `⌈factor × (in flight + 1) / eligible backends⌉`, the
    /// average counting this request. No backend then holds more than that, and keys move only
    /// while their backend is over the bound. `factor` is at least 1; needs
    /// [`crate::Needs::in_flight`].
    pub fn lookup_bounded(&self, hash: u64, backends: &Backends<'_>, factor: f64) -> Option<usize> {
        let start = self.slot(hash)?;
        let capacity = capacity(backends, factor);
        let fits =
            |i: usize| backends.is_candidate(i) && u64::from(backends.in_flight(i)) < capacity;
        let owner = self.slots[start] as usize;
        if fits(owner) {
            return Some(owner);
        }
        // Some candidate is under the bound unless candidates were excluded: then any will do.
        self.walk(start, fits)
            .or_else(|| self.lookup(hash, backends))
    }

    /// `hash`'s slot, or `None` for an empty table.
    fn slot(&self, hash: u64) -> Option<usize> {
        (!self.slots.is_empty()).then(|| (mix64(hash) % self.slots.len() as u64) as usize)
    }

    /// The owner of the first slot after `start` (wrapping) that `accept`s, if any.
    fn walk(&self, start: usize, accept: impl Fn(usize) -> bool) -> Option<usize> {
        let len = self.slots.len();
        (1..len)
            .map(|step| self.slots[(start + step) % len] as usize)
            .find(|&i| accept(i))
    }
}

/// One backend while the table fills.
struct Fill {
    index: u32,
    key: u64,
    weight: u64,
    /// Its next preferred slot.
    offset: u64,
    /// Its permutation's step: coprime with the (prime) size, so every slot comes round.
    skip: u64,
    /// The round × weight at which it gets its next turn.
    target: u64,
}

fn next(slot: u64, skip: u64, size: u64) -> u64 {
    let n = slot + skip;
    if n >= size {
        n - size
    } else {
        n
    }
}

/// `⌈factor × (in_flight + 1) / n⌉` over the eligible backends.
fn capacity(backends: &Backends<'_>, factor: f64) -> u64 {
    let eligible = backends.set().eligible();
    let total: u64 = eligible
        .iter()
        .map(|&i| u64::from(backends.in_flight(i)))
        .sum();
    let average = (total + 1) as f64 / eligible.len().max(1) as f64;
    (factor * average).ceil() as u64
}

/// Whether `n` is prime (trial division: fast enough for table sizes).
pub fn is_prime(n: u64) -> bool {
    if n < 4 {
        return n >= 2;
    }
    if n.is_multiple_of(2) || n.is_multiple_of(3) {
        return false;
    }
    let mut d = 5;
    while d * d <= n {
        if n.is_multiple_of(d) || n.is_multiple_of(d + 2) {
            return false;
        }
        d += 6;
    }
    true
}

/// The smallest prime at least `n`.
pub fn next_prime(n: u64) -> u64 {
    (n..).find(|&p| is_prime(p)).unwrap_or(n)
}

#[cfg(test)]
mod tests;
