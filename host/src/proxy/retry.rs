//! When a failed attempt may be retried on another backend, and the budget that keeps retries
//! from multiplying load during an outage.
//!
//! Budget: a token bucket shared by all requests. Each first attempt deposits
//! `budget_percent / 100` token, each retry spends 1, and `min_per_second` tokens flow in per
//! second regardless of traffic. The bucket holds at most `max(10, 10 × min_per_second)` tokens,
//! so a long quiet past cannot fund a storm: under a total outage retries add at most
//! `budget_percent` % of the traffic plus `min_per_second`, after an initial burst of the bucket.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use http::Method;

use crate::config::RetryConfig;
use crate::pool::Failure;

/// Micro-tokens per token.
const TOKEN: i64 = 1_000_000;

/// Whether an attempt that failed with `failure` may be sent again, as far as the request
/// goes: nothing reached the backend (connect failure), or the method is idempotent and the
/// backend sent no response head. Timeouts are not retried (the backend may still be working),
/// nor are a backend's own 5xx answers. The caller also checks that the body can be resent.
pub(super) fn is_retryable(method: &Method, failure: Failure) -> bool {
    match failure {
        Failure::Connect => true,
        Failure::Transport => is_idempotent(method),
        Failure::Timeout | Failure::Status(_) => false,
    }
}

/// GET, HEAD, OPTIONS, PUT, DELETE and TRACE (RFC 9110 §9.2.2).
pub(super) fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// The retry token bucket (see the module docs).
///
/// Kept instead of tower's `TpsBudget`: a deposit here is one atomic add on every request
/// (and a clock read once per millisecond); `TpsBudget` locks a mutex and reads the clock on
/// every deposit and withdrawal, which every worker thread would contend on.
#[derive(Debug)]
pub(crate) struct RetryBudget {
    /// Micro-tokens available.
    balance: AtomicI64,
    /// When the `min_per_second` flow was last added, on the pool clock (ms).
    flowed_at: AtomicU64,
}

impl RetryBudget {
    /// A full bucket.
    pub(crate) fn new(config: &RetryConfig) -> Self {
        RetryBudget {
            balance: AtomicI64::new(capacity(config)),
            flowed_at: AtomicU64::new(crate::pool::clock_ms()),
        }
    }

    /// A first attempt earns `budget_percent / 100` token.
    pub(crate) fn deposit(&self, config: &RetryConfig) {
        let cap = capacity(config);
        // The common case (a full bucket) writes nothing.
        if self.balance.load(Ordering::Relaxed) >= cap {
            return;
        }
        let earned = (config.budget_percent * TOKEN as f64 / 100.0) as i64;
        let _ = self
            .balance
            .try_update(Ordering::AcqRel, Ordering::Relaxed, |b| {
                Some(b.saturating_add(earned).min(cap))
            });
    }

    /// Spends one token for a retry; `false` when the budget is spent.
    pub(crate) fn withdraw(&self, config: &RetryConfig) -> bool {
        self.withdraw_at(config, crate::pool::clock_ms())
    }

    fn withdraw_at(&self, config: &RetryConfig, now: u64) -> bool {
        let cap = capacity(config);
        let last = self.flowed_at.load(Ordering::Acquire);
        if now > last
            && self
                .flowed_at
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            // min_per_second tokens/s = min_per_second × 1000 micro-tokens per ms.
            let flowed = ((now - last) as f64 * config.min_per_second * 1000.0) as i64;
            let _ = self
                .balance
                .try_update(Ordering::AcqRel, Ordering::Relaxed, |b| {
                    Some(b.saturating_add(flowed).min(cap))
                });
        }
        self.balance
            .try_update(Ordering::AcqRel, Ordering::Relaxed, |b| {
                (b >= TOKEN).then_some(b - TOKEN)
            })
            .is_ok()
    }
}

/// Most micro-tokens the bucket holds.
fn capacity(config: &RetryConfig) -> i64 {
    ((config.min_per_second * 10.0).max(10.0) * TOKEN as f64) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(percent: f64, floor: f64) -> RetryConfig {
        RetryConfig {
            max: 2,
            budget_percent: percent,
            min_per_second: floor,
        }
    }

    #[test]
    fn idempotent_methods_retry_after_a_reset_others_only_after_a_connect_failure() {
        assert!(is_retryable(&Method::GET, Failure::Transport));
        assert!(is_retryable(&Method::PUT, Failure::Transport));
        assert!(!is_retryable(&Method::POST, Failure::Transport));
        assert!(is_retryable(&Method::POST, Failure::Connect));
        assert!(!is_retryable(&Method::GET, Failure::Timeout));
        assert!(!is_retryable(&Method::GET, Failure::Status(503)));
    }

    #[test]
    fn budget_allows_its_capacity_then_the_percentage_of_traffic() {
        let c = config(20.0, 0.0);
        let budget = RetryBudget::new(&c);
        let now = budget.flowed_at.load(Ordering::Relaxed);
        // A full bucket: 10 tokens.
        let burst = (0..100).filter(|_| budget.withdraw_at(&c, now)).count();
        assert_eq!(burst, 10);
        // Then 100 first attempts earn 20 retries.
        let mut retries = 0;
        for _ in 0..100 {
            budget.deposit(&c);
            retries += (0..2).filter(|_| budget.withdraw_at(&c, now)).count();
        }
        assert_eq!(retries, 20);
    }

    #[test]
    fn the_floor_flows_in_with_time_up_to_the_capacity() {
        let c = config(0.0, 2.0);
        let budget = RetryBudget::new(&c);
        let t0 = budget.flowed_at.load(Ordering::Relaxed);
        while budget.withdraw_at(&c, t0) {}
        assert!(!budget.withdraw_at(&c, t0 + 400), "0.8 token after 400 ms");
        assert!(budget.withdraw_at(&c, t0 + 500), "1 token after 500 ms");
        // An hour later: capped at 20 tokens (10 s of the floor).
        let later = t0 + 3_600_000;
        let n = (0..100).filter(|_| budget.withdraw_at(&c, later)).count();
        assert_eq!(n, 20);
    }
}
