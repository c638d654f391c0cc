//! Weighted least request, as Envoy defines it: P2C on in-flight counts, or a weighted schedule
//! whose weights shrink with load.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use crate::{power_of_two_choices, BackendSet, Backends, SlowStart};

/// Deadlines are rebased to 0 past this, so that `1 / weight` steps stay exact in an `f64`.
const REBASE_AFTER: f64 = 1e6;

/// Envoy's `LEAST_REQUEST` load balancer, per worker like Envoy's.
///
/// - All eligible weights equal: power of two choices on in-flight requests (two random
///   candidates, the one with fewer requests in flight wins).
/// - Weights differ: an earliest-deadline-first schedule (a smooth weighted round-robin) in which
///   a backend, each time it is chosen, is scheduled again with the weight
///   `weight / (in_flight + 1) ^ active_request_bias`: a loaded backend comes round later.
///   A bias of 0 is plain weighted round-robin; higher biases drain load faster.
///
/// With [`LeastRequest::with_slow_start`], a backend's weight is also scaled by its slow start
/// factor, and while some backend ramps up the schedule is used even when the weights are equal
/// (as Envoy does).
///
/// Needs [`crate::Needs::in_flight`] (and [`crate::Needs::clock`] with slow start). Rebuild with
/// [`LeastRequest::backends_changed`].
#[derive(Clone, Debug)]
pub struct LeastRequest {
    /// `active_request_bias`: finite, not negative.
    bias: f64,
    /// Whether the eligible weights are all equal (then P2C; the schedule is empty).
    uniform: bool,
    /// The schedule: each eligible backend once, by deadline.
    schedule: BinaryHeap<Reverse<Entry>>,
    /// The deadline of the last choice: where new deadlines count from.
    now: f64,
    /// Order of the next entry, so equal deadlines keep their insertion order.
    next_order: u64,
    /// Slow start, if configured.
    slow_start: Option<SlowStart>,
    /// Until when (host clock) some backend ramps up.
    ramp_until_ms: u64,
    /// The schedule is to be built at the next `select`, when the clock is known.
    rebuild: bool,
}

/// One backend in the schedule.
#[derive(Clone, Copy, Debug)]
struct Entry {
    deadline: f64,
    order: u64,
    index: usize,
    weight: u32,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.deadline
            .total_cmp(&other.deadline)
            .then(self.order.cmp(&other.order))
    }
}

impl LeastRequest {
    /// Envoy's default `active_request_bias`.
    pub const DEFAULT_BIAS: f64 = 1.0;

    /// An empty balancer with `active_request_bias` `bias`, which must be finite and not
    /// negative (the message names the parameter otherwise).
    pub fn new(bias: f64) -> Result<Self, String> {
        if !bias.is_finite() || bias < 0.0 {
            return Err(format!(
                "strategy_config.active_request_bias: must be a number of at least 0 (got {bias})"
            ));
        }
        Ok(LeastRequest {
            bias,
            uniform: true,
            schedule: BinaryHeap::new(),
            now: 0.0,
            next_order: 0,
            slow_start: None,
            ramp_until_ms: 0,
            rebuild: false,
        })
    }

    /// This balancer with slow start (none: every backend at its full weight at once).
    pub fn with_slow_start(mut self, slow_start: Option<SlowStart>) -> Self {
        self.slow_start = slow_start;
        self
    }

    /// Whether some backend is ramping up now (slow start).
    pub fn is_ramping(&self, backends: &Backends<'_>) -> bool {
        self.slow_start.is_some()
            && backends
                .now_ms()
                .is_some_and(|now| now < self.ramp_until_ms)
    }

    /// Takes a new backend set: decides between P2C and the schedule, and rebuilds the schedule.
    pub fn backends_changed(&mut self, set: &BackendSet) {
        let mut weights = set.eligible().iter().map(|&i| set.all()[i].weight);
        let first = weights.next();
        self.uniform = weights.all(|w| Some(w) == first);
        self.schedule.clear();
        self.now = 0.0;
        if let Some(slow_start) = &self.slow_start {
            // Scaled by each backend's factor, which needs the clock `select` brings.
            self.ramp_until_ms = slow_start.ramp_until_ms(set);
            self.rebuild = true;
            return;
        }
        if self.uniform {
            return;
        }
        for &index in set.eligible() {
            let weight = set.all()[index].weight;
            self.push(index, weight, f64::from(weight));
        }
    }

    /// Chooses a candidate; `None` when there is none.
    pub fn select(&mut self, backends: &Backends<'_>) -> Option<usize> {
        if self.uniform && !self.is_ramping(backends) {
            return power_of_two_choices(backends, |i| backends.in_flight(i));
        }
        if self.rebuild {
            self.rebuild = false;
            for &index in backends.set().eligible() {
                let weight = backends.set().all()[index].weight;
                let effective = f64::from(weight) * self.factor(backends, index);
                self.push(index, weight, effective);
            }
        }
        // Earliest deadline first, skipping backends already tried for this request (they keep
        // their place).
        let mut skipped = Vec::new();
        let mut chosen = None;
        while let Some(Reverse(entry)) = self.schedule.pop() {
            if backends.is_candidate(entry.index) {
                chosen = Some(entry);
                break;
            }
            skipped.push(entry);
        }
        self.schedule.extend(skipped.into_iter().map(Reverse));
        let entry = chosen?;
        self.now = entry.deadline;
        let effective = self.effective_weight(entry.weight, backends.in_flight(entry.index))
            * self.factor(backends, entry.index);
        self.push(entry.index, entry.weight, effective);
        if self.now > REBASE_AFTER {
            self.rebase();
        }
        Some(entry.index)
    }

    /// Backend `index`'s slow start factor now (1 without slow start).
    fn factor(&self, backends: &Backends<'_>, index: usize) -> f64 {
        self.slow_start
            .as_ref()
            .map_or(1.0, |s| s.factor_of(backends, index))
    }

    /// `weight / (in_flight + 1) ^ bias`.
    fn effective_weight(&self, weight: u32, in_flight: u32) -> f64 {
        let load = f64::from(in_flight) + 1.0;
        let divisor = if self.bias == 1.0 {
            load
        } else {
            load.powf(self.bias)
        };
        f64::from(weight) / divisor
    }

    /// Schedules `index` one period of `effective` weight after now.
    fn push(&mut self, index: usize, weight: u32, effective: f64) {
        let deadline = self.now + 1.0 / effective.max(f64::MIN_POSITIVE);
        self.schedule.push(Reverse(Entry {
            deadline,
            order: self.next_order,
            index,
            weight,
        }));
        self.next_order += 1;
    }

    /// Moves every deadline back by `now`, keeping the order.
    fn rebase(&mut self) {
        let now = self.now;
        self.schedule = self
            .schedule
            .drain()
            .map(|Reverse(mut e)| {
                e.deadline -= now;
                Reverse(e)
            })
            .collect();
        self.now = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::backend;

    fn view<'a>(set: &'a BackendSet, in_flight: &'a [u32], random: u64) -> Backends<'a> {
        Backends {
            set,
            sequence: 0,
            random,
            in_flight,
            latency_ewma_us: &[],
            now_ms: None,
            exclude: &[],
        }
    }

    #[test]
    fn equal_weights_take_the_less_loaded_of_two() {
        let set = BackendSet::new((0..3).map(|i| backend(&format!("a:{i}"))).collect());
        let mut lr = LeastRequest::new(1.0).unwrap();
        lr.backends_changed(&set);
        let in_flight = [5, 0, 9];
        let mut picks = [0; 3];
        for r in 0..300 {
            picks[lr
                .select(&view(&set, &in_flight, crate::hash::mix64(r)))
                .unwrap()] += 1;
        }
        // Backend 1 wins every draw it is in (2 of 3 pairs); 0 beats 2.
        assert_eq!(picks[2], 0, "{picks:?}");
        assert!(picks[1] > 150 && picks[0] > 50, "{picks:?}");
    }

    #[test]
    fn unequal_weights_follow_the_weights_when_idle() {
        let set = BackendSet::new(vec![backend("a:1").weight(3), backend("b:1").weight(1)]);
        let mut lr = LeastRequest::new(1.0).unwrap();
        lr.backends_changed(&set);
        let picks: Vec<usize> = (0..8)
            .map(|_| lr.select(&view(&set, &[0, 0], 0)).unwrap())
            .collect();
        assert_eq!(picks.iter().filter(|&&p| p == 0).count(), 6, "{picks:?}");
    }

    #[test]
    fn load_lowers_the_effective_weight_by_the_bias() {
        let set = BackendSet::new(vec![backend("a:1").weight(2), backend("b:1").weight(1)]);
        for (bias, expected_heavy) in [(0.0, 2.0 / 3.0), (1.0, 0.5), (2.0, 1.0 / 3.0)] {
            let mut lr = LeastRequest::new(bias).unwrap();
            lr.backends_changed(&set);
            // Backend a holds 1 request more than b, always: its weight is 2 / 2^bias.
            let heavy = (0..3000)
                .filter(|_| lr.select(&view(&set, &[1, 0], 0)) == Some(0))
                .count() as f64
                / 3000.0;
            assert!(
                (heavy - expected_heavy).abs() < 0.01,
                "bias {bias}: {heavy:.3}"
            );
        }
    }

    #[test]
    fn bias_must_be_a_non_negative_number() {
        assert!(LeastRequest::new(-1.0).is_err());
        assert!(LeastRequest::new(f64::NAN).is_err());
        assert!(LeastRequest::new(0.0).is_ok());
    }

    #[test]
    fn long_runs_rebase_without_changing_the_shares() {
        let set = BackendSet::new(vec![
            backend("a:1").weight(10_000),
            backend("b:1").weight(1),
        ]);
        let mut lr = LeastRequest::new(1.0).unwrap();
        lr.backends_changed(&set);
        lr.now = REBASE_AFTER - 1.0;
        lr.schedule = lr
            .schedule
            .drain()
            .map(|Reverse(mut e)| {
                e.deadline += lr.now;
                Reverse(e)
            })
            .collect();
        let light = (0..100_010)
            .filter(|_| lr.select(&view(&set, &[0, 0], 0)) == Some(1))
            .count();
        assert!((9..=11).contains(&light), "{light}");
        assert!(lr.now < REBASE_AFTER);
    }
}
