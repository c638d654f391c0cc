//! The backend set pushed by the host and the per-request view of it.

/// One backend, as the host describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    /// Stable identity: [`crate::hash::backend_key`] of the address, the same on every node.
    pub key: u64,
    /// `host:port`.
    pub address: String,
    /// Relative weight; 0 means drained.
    pub weight: u32,
    /// Whether the host allows choosing this backend now (healthy, circuit closed, not removed).
    pub eligible: bool,
    /// Labels from the config.
    pub labels: Vec<(String, String)>,
    /// When it last became eligible, on the host's clock ([`Backends::now_ms`]).
    pub eligible_since_ms: u64,
}

impl Backend {
    /// The value of label `name`, if the backend has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The whole backend set, with the eligible ones (weight above 0) precomputed.
#[derive(Clone, Debug, Default)]
pub struct BackendSet {
    backends: Vec<Backend>,
    /// Indices of backends that are eligible and have a weight above 0, ascending.
    eligible: Vec<usize>,
}

impl BackendSet {
    /// Builds the set from the host's list.
    pub fn new(backends: Vec<Backend>) -> Self {
        let eligible = backends
            .iter()
            .enumerate()
            .filter(|(_, b)| b.eligible && b.weight > 0)
            .map(|(i, _)| i)
            .collect();
        BackendSet { backends, eligible }
    }

    /// All backends, eligible or not, in the host's order.
    #[inline]
    pub fn all(&self) -> &[Backend] {
        &self.backends
    }

    /// Indices of the eligible backends with a weight above 0, ascending.
    #[inline]
    pub fn eligible(&self) -> &[usize] {
        &self.eligible
    }

    /// Number of backends in the set.
    pub fn len(&self) -> usize {
        self.backends.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.backends.is_empty()
    }
}

/// What [`crate::Strategy::select`] sees: the backend set plus this request's numbers.
#[derive(Clone, Copy, Debug)]
pub struct Backends<'a> {
    pub(crate) set: &'a BackendSet,
    pub(crate) sequence: u64,
    pub(crate) random: u64,
    pub(crate) in_flight: &'a [u32],
    pub(crate) latency_ewma_us: &'a [u32],
    pub(crate) exclude: &'a [u32],
    pub(crate) now_ms: Option<u64>,
}

impl<'a> Backends<'a> {
    /// The backend set.
    #[inline]
    pub fn set(&self) -> &'a BackendSet {
        self.set
    }

    /// Backend `index`, if in range.
    #[inline]
    pub fn get(&self, index: usize) -> Option<&'a Backend> {
        self.set.backends.get(index)
    }

    /// A sequence number shared by all worker threads: one more for every `select` call.
    #[inline]
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// 64 fresh random bits for this call.
    #[inline]
    pub fn random(&self) -> u64 {
        self.random
    }

    /// Requests in flight to backend `index` (0 unless the strategy asked for
    /// [`crate::Needs::in_flight`]).
    #[inline]
    pub fn in_flight(&self, index: usize) -> u32 {
        self.in_flight.get(index).copied().unwrap_or(0)
    }

    /// Moving average of backend `index`'s response time in microseconds, if the strategy asked
    /// for [`crate::Needs::latency`] and the host has measured one.
    #[inline]
    pub fn latency_ewma_us(&self, index: usize) -> Option<u32> {
        self.latency_ewma_us.get(index).copied()
    }

    /// The host's clock in milliseconds, if the strategy asked for [`crate::Needs::clock`].
    #[inline]
    pub fn now_ms(&self) -> Option<u64> {
        self.now_ms
    }

    /// How long backend `index` has been eligible, in milliseconds, if the strategy asked for
    /// [`crate::Needs::clock`] and the backend is eligible.
    #[inline]
    pub fn eligible_for_ms(&self, index: usize) -> Option<u64> {
        let backend = self.get(index).filter(|b| b.eligible)?;
        Some(self.now_ms?.saturating_sub(backend.eligible_since_ms))
    }

    /// Whether some backends were already tried for this request (a retry).
    #[inline]
    pub fn has_exclusions(&self) -> bool {
        !self.exclude.is_empty()
    }

    /// Requests in flight to all backends together (0 unless the strategy asked for
    /// [`crate::Needs::in_flight`]).
    pub fn total_in_flight(&self) -> u64 {
        self.in_flight.iter().map(|&n| u64::from(n)).sum()
    }

    /// Whether backend `index` was already tried for this request.
    #[inline]
    pub fn is_excluded(&self, index: usize) -> bool {
        !self.exclude.is_empty() && self.exclude.iter().any(|&e| e as usize == index)
    }

    /// Whether backend `index` may be chosen: eligible, weight above 0, not already tried.
    #[inline]
    pub fn is_candidate(&self, index: usize) -> bool {
        self.set
            .backends
            .get(index)
            .is_some_and(|b| b.eligible && b.weight > 0)
            && !self.is_excluded(index)
    }

    /// The candidates (see [`Backends::is_candidate`]) in ascending order.
    pub fn candidates(&self) -> impl Iterator<Item = usize> + 'a {
        let exclude = self.exclude;
        self.set
            .eligible
            .iter()
            .copied()
            .filter(move |&i| !exclude.iter().any(|&e| e as usize == i))
    }

    /// The candidate at position `n` modulo the number of eligible backends, skipping forward past
    /// excluded ones. `rotate(sequence())` is exact round-robin; `rotate(random())` is uniform.
    /// O(1) unless backends are excluded.
    #[inline]
    pub fn rotate(&self, n: u64) -> Option<usize> {
        let eligible = &self.set.eligible;
        if eligible.is_empty() {
            return None;
        }
        let start = (n % eligible.len() as u64) as usize;
        self.first_candidate_from(eligible, start)
    }

    /// The first entry of `order` at or after position `start` (wrapping) that is a candidate.
    /// Use it with a precomputed order such as a weighted sequence.
    #[inline]
    pub fn first_candidate_from(&self, order: &[usize], start: usize) -> Option<usize> {
        let len = order.len();
        (0..len)
            .map(|step| order[(start + step) % len])
            .find(|&i| self.is_candidate(i))
    }
}
