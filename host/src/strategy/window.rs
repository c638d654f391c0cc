//! Request figures of one side of a canary, over a sliding window of time and since the start:
//! requests, errors, faults and a latency histogram, with quantiles read from it.
//!
//! Time is passed in (milliseconds since the canary started), so the window's arithmetic is
//! tested without a clock.

use std::time::Duration;

use serde::Serialize;

/// Latency buckets: below 4 µs one per microsecond, then four per power of two, up to 2^27 µs
/// (134 s; slower counts there). A quantile is off by at most a quarter of its power of two.
const BUCKETS: usize = 104;
/// Slots a window is cut into: it slides by a tenth of its length.
const SLOTS: usize = 10;

/// The bucket of a latency of `us` microseconds.
fn bucket(us: u64) -> usize {
    let us = us.min((1 << 27) - 1);
    if us < 4 {
        return us as usize;
    }
    let e = 63 - us.leading_zeros() as usize;
    4 * (e - 1) + ((us >> (e - 2)) & 3) as usize
}

/// The lowest latency of bucket `i`, in microseconds.
fn lower(i: usize) -> u64 {
    if i < 4 {
        return i as u64;
    }
    let (e, m) = (i / 4 + 1, (i % 4) as u64);
    (4 + m) << (e - 2)
}

/// Counts of latencies by bucket.
#[derive(Clone, Debug)]
struct Histogram(Box<[u64; BUCKETS]>);

impl Default for Histogram {
    fn default() -> Self {
        Histogram(Box::new([0; BUCKETS]))
    }
}

impl Histogram {
    fn add(&mut self, other: &Histogram) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }

    /// The `q` quantile in microseconds, interpolated within its bucket; `None` when empty.
    fn quantile(&self, q: f64) -> Option<f64> {
        let n: u64 = self.0.iter().sum();
        if n == 0 {
            return None;
        }
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        let mut before = 0;
        for (i, &count) in self.0.iter().enumerate() {
            if before + count >= rank {
                let (low, high) = (lower(i), lower(i + 1));
                let within = (rank - before) as f64 / count as f64;
                return Some(low as f64 + (high - low) as f64 * within);
            }
            before += count;
        }
        None
    }
}

/// Counts of one slot of time, or of a whole span.
#[derive(Clone, Debug, Default)]
struct Counts {
    requests: u64,
    errors: u64,
    faults: u64,
    latency: Histogram,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.faults += other.faults;
        self.latency.add(&other.latency);
    }

    fn figures(&self) -> Figures {
        let ms = |q| self.latency.quantile(q).map(|us| us / 1000.0);
        Figures {
            requests: self.requests,
            errors: self.errors,
            faults: self.faults,
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
        }
    }
}

/// What `/status` shows of a span, and what the rollback compares.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Figures {
    pub requests: u64,
    /// Requests answered 5xx, or with a failed attempt (retried or not).
    pub errors: u64,
    /// Strategy faults while choosing for these requests (the fallback served them).
    pub faults: u64,
    /// Latency to the response head, in milliseconds; `None` before any request.
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

impl Figures {
    /// Errors per request (0 without requests).
    pub fn error_rate(&self) -> f64 {
        ratio(self.errors, self.requests)
    }

    /// Faults per request, at most 1 (0 without requests).
    pub fn fault_rate(&self) -> f64 {
        ratio(self.faults, self.requests).min(1.0)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// One side's figures: a ring of slots for the window, and totals.
#[derive(Debug)]
pub(super) struct Window {
    slot_ms: u64,
    /// Slot `k` of time holds `(k, counts)` at `k % SLOTS`.
    slots: Vec<(u64, Counts)>,
    total: Counts,
}

impl Window {
    /// A window of `length`, empty.
    pub(super) fn new(length: Duration) -> Self {
        let slot_ms = (u64::try_from(length.as_millis()).unwrap_or(u64::MAX) / SLOTS as u64).max(1);
        Window {
            slot_ms,
            slots: vec![(u64::MAX, Counts::default()); SLOTS],
            total: Counts::default(),
        }
    }

    /// The counts of the slot of `now_ms`, emptied if it last held an older slot.
    fn slot(&mut self, now_ms: u64) -> &mut Counts {
        let k = now_ms / self.slot_ms;
        let (held, counts) = &mut self.slots[(k % SLOTS as u64) as usize];
        if *held != k {
            *held = k;
            *counts = Counts::default();
        }
        counts
    }

    /// One request answered at `now_ms`, `latency` after it came.
    pub(super) fn request(&mut self, now_ms: u64, error: bool, latency: Duration) {
        let i = bucket(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
        let count = |counts: &mut Counts| {
            counts.requests += 1;
            counts.errors += u64::from(error);
            counts.latency.0[i] += 1;
        };
        count(&mut self.total);
        count(self.slot(now_ms));
    }

    /// One strategy fault at `now_ms`.
    pub(super) fn fault(&mut self, now_ms: u64) {
        self.total.faults += 1;
        self.slot(now_ms).faults += 1;
    }

    /// The figures of the last window at `now_ms` (the current slot and the nine before it).
    pub(super) fn recent(&self, now_ms: u64) -> Figures {
        let k = now_ms / self.slot_ms;
        let mut sum = Counts::default();
        for (held, counts) in &self.slots {
            if *held <= k && k - *held < SLOTS as u64 {
                sum.add(counts);
            }
        }
        sum.figures()
    }

    /// The figures since the start.
    pub(super) fn total(&self) -> Figures {
        self.total.figures()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_cover_their_latencies() {
        for us in [
            0,
            1,
            3,
            4,
            5,
            7,
            8,
            9,
            15,
            16,
            100,
            999,
            1000,
            123_456,
            1 << 26,
        ] {
            let i = bucket(us);
            assert!(lower(i) <= us && us < lower(i + 1), "{us} in bucket {i}");
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
        for i in 0..BUCKETS {
            assert!(lower(i) < lower(i + 1));
        }
    }

    #[test]
    fn quantiles_are_within_a_bucket() {
        let mut w = Window::new(Duration::from_secs(10));
        for ms in 1..=100u64 {
            w.request(0, false, Duration::from_millis(ms));
        }
        let f = w.total();
        let p50 = f.p50_ms.unwrap();
        let p99 = f.p99_ms.unwrap();
        assert!((40.0..=60.0).contains(&p50), "{p50}");
        assert!((85.0..=115.0).contains(&p99), "{p99}");
        assert_eq!(Window::new(Duration::from_secs(1)).total().p99_ms, None);
    }

    #[test]
    fn the_window_slides_and_the_total_stays() {
        // Ten slots of one second.
        let mut w = Window::new(Duration::from_secs(10));
        w.request(500, true, Duration::from_millis(1));
        w.fault(500);
        for t in (1000..10_000).step_by(1000) {
            w.request(t, false, Duration::from_millis(1));
        }
        assert_eq!(w.recent(9_999).requests, 10);
        assert_eq!(w.recent(9_999).errors, 1);
        // The first slot leaves the window at 10 s.
        let f = w.recent(10_000);
        assert_eq!((f.requests, f.errors, f.faults), (9, 0, 0));
        // A slot reused for a later second starts empty.
        w.request(10_500, false, Duration::from_millis(1));
        assert_eq!(w.recent(10_500).requests, 10);
        assert_eq!(w.recent(60_000).requests, 0);
        let t = w.total();
        assert_eq!((t.requests, t.errors, t.faults), (11, 1, 1));
        assert!((t.error_rate() - 1.0 / 11.0).abs() < 1e-12);
    }
}
