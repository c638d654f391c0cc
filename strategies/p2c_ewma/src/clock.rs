//! Time for a strategy that has no clock: estimated from the request count by Little's law.
//!
//! A guest cannot read the time, and the host passes none. What it has: the global `sequence`
//! number (one more for every request the pool routes, across all workers), the requests in
//! flight, and the response times it hears. Little's law says requests arrive at
//! `λ = N / W` (N in flight, W the mean response time), so the `Δ` requests that arrived between
//! two calls took about `Δ × W / (N + 1)` (N counted before this request, plus this one).
//!
//! Under a steady load this tracks the wall clock: a closed loop of C clients keeps C requests
//! in flight and sends C per W. Two departures, both on the side of forgetting less:
//! - it stands still while nothing is routed, so an estimate does not decay during a pause in
//!   traffic (there was nothing to route by it then either);
//! - clients that pause between requests leave fewer in flight than the arrival rate implies,
//!   so the clock runs slower than the wall (by the share of time the pool sits idle): `decay`
//!   then lasts longer than its wall time, but not more requests.

/// The weight of a new response time in the mean response time.
const MEAN_WEIGHT: f64 = 1.0 / 16.0;

/// The strategy's estimate of the time, in microseconds since it started.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    now_us: f64,
    /// The sequence number of the last `select` seen; `None` before the first.
    last_sequence: Option<u64>,
    /// Mean response time in microseconds (EWMA over responses); 0 until one is heard.
    mean_latency_us: f64,
}

impl Clock {
    /// Advances to the `select` call numbered `sequence`, with `in_flight` requests in flight
    /// across the pool, and returns the time.
    pub fn tick(&mut self, sequence: u64, in_flight: u64) -> f64 {
        let last = self.last_sequence.unwrap_or(sequence);
        let arrived = sequence.saturating_sub(last) as f64;
        self.now_us += arrived * self.mean_latency_us / (in_flight as f64 + 1.0);
        self.last_sequence = Some(last.max(sequence));
        self.now_us
    }

    /// Folds a response time into the mean response time.
    pub fn observe(&mut self, latency_us: f64) {
        if self.mean_latency_us == 0.0 {
            self.mean_latency_us = latency_us;
        } else {
            self.mean_latency_us += (latency_us - self.mean_latency_us) * MEAN_WEIGHT;
        }
    }

    /// The time of the last `select`.
    pub fn now_us(&self) -> f64 {
        self.now_us
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_loop_advances_like_the_wall_clock() {
        // 4 clients, 2 ms per response: 4 requests per 2 ms, 3 others in flight at each call.
        let mut clock = Clock::default();
        clock.tick(0, 3);
        clock.observe(2_000.0);
        let mut now = 0.0;
        for sequence in 1..=4_000 {
            now = clock.tick(sequence, 3);
        }
        // 4,000 requests at 2,000 per second: 2 s.
        assert!((now - 2e6).abs() < 1.0, "{now}");
    }

    #[test]
    fn other_workers_requests_count_and_nothing_moves_before_a_response() {
        let mut clock = Clock::default();
        assert_eq!(clock.tick(10, 0), 0.0);
        assert_eq!(clock.tick(20, 0), 0.0, "no response time yet");
        clock.observe(1_000.0);
        // 10 requests (this worker saw one of them), one in flight each time: 10 × 1 ms.
        assert_eq!(clock.tick(30, 0), 10_000.0);
        assert_eq!(clock.tick(25, 0), 10_000.0, "never backwards");
        assert_eq!(clock.tick(31, 0), 11_000.0);
    }
}
