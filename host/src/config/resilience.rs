//! Failure-handling settings (passive ejection, retries, circuit breaker, rate limiting): their
//! domain types, defaults and validation.

use std::time::Duration;

use super::file::{FileCircuitBreaker, FilePassive, FileRateLimit, FileRetries};
use super::validate::duration;
use super::ConfigError;

/// Passive health: consecutive failures of real traffic eject a backend for a while.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassiveConfig {
    /// Whether real traffic can eject backends (default true).
    pub enabled: bool,
    /// Failures in a row (connect errors, resets, timeouts, 5xx) that eject (default 5).
    pub consecutive_failures: u32,
    /// First ejection time; the k-th ejection in a row lasts `base × 2^(k-1)` (default 10 s).
    pub base_ejection: Duration,
    /// Longest ejection (default 5 min).
    pub max_ejection: Duration,
    /// At most this share of the pool is ejected at once, rounded down (default 50).
    pub max_ejected_percent: u32,
}

impl Default for PassiveConfig {
    fn default() -> Self {
        PassiveConfig {
            enabled: true,
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(300),
            max_ejected_percent: 50,
        }
    }
}

/// Retries of requests that failed before a response head, on another backend.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryConfig {
    /// Retries per request at most (default 2; 0 disables retries).
    pub max: u32,
    /// Each first attempt earns this share of a retry (default 20 %).
    pub budget_percent: f64,
    /// Retries earned per second regardless of traffic (default 3).
    pub min_per_second: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max: 2,
            budget_percent: 20.0,
            min_per_second: 3.0,
        }
    }
}

/// Per-backend circuit breaker.
#[derive(Clone, Debug, PartialEq)]
pub struct CircuitBreakerConfig {
    /// Whether circuits can open (default true).
    pub enabled: bool,
    /// Share of failed requests within `window` that opens the circuit (default 0.5).
    pub failure_ratio: f64,
    /// Fewest requests within `window` before the ratio counts (default 20).
    pub min_requests: u32,
    /// How far back outcomes count (default 10 s).
    pub window: Duration,
    /// How long an open circuit stays open before probes (default 5 s).
    pub cooldown: Duration,
    /// Probe requests let through when half-open; all must succeed to close (default 3).
    pub half_open_probes: u32,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        CircuitBreakerConfig {
            enabled: true,
            failure_ratio: 0.5,
            min_requests: 20,
            window: Duration::from_secs(10),
            cooldown: Duration::from_secs(5),
            half_open_probes: 3,
        }
    }
}

/// Per-client-IP rate limiting (a token bucket per client).
#[derive(Clone, Debug, PartialEq)]
pub struct RateLimitConfig {
    /// Sustained rate per client (default 100).
    pub requests_per_second: f64,
    /// Requests a client may send at once after being idle (default twice the rate).
    pub burst: u32,
    /// Most clients tracked at once; idle ones are forgotten first (default 100,000).
    pub max_clients: usize,
}

pub(super) fn passive(p: FilePassive) -> Result<PassiveConfig, ConfigError> {
    let d = PassiveConfig::default();
    let passive = PassiveConfig {
        enabled: p.enabled.unwrap_or(d.enabled),
        consecutive_failures: p.consecutive_failures.unwrap_or(d.consecutive_failures),
        base_ejection: duration("passive.base_ejection", p.base_ejection.as_deref(), "10s")?,
        max_ejection: duration("passive.max_ejection", p.max_ejection.as_deref(), "5m")?,
        max_ejected_percent: p.max_ejected_percent.unwrap_or(d.max_ejected_percent),
    };
    if passive.consecutive_failures == 0 {
        return Err(ConfigError::field(
            "passive.consecutive_failures",
            "must be at least 1 (use \"enabled\": false to turn ejection off)",
        ));
    }
    if passive.base_ejection.is_zero() {
        return Err(ConfigError::field(
            "passive.base_ejection",
            "must be above 0",
        ));
    }
    if passive.max_ejection < passive.base_ejection {
        return Err(ConfigError::field(
            "passive.max_ejection",
            "must be at least passive.base_ejection",
        ));
    }
    if passive.max_ejected_percent > 100 {
        return Err(ConfigError::field(
            "passive.max_ejected_percent",
            "must be between 0 and 100",
        ));
    }
    Ok(passive)
}

pub(super) fn retries(r: FileRetries) -> Result<RetryConfig, ConfigError> {
    let d = RetryConfig::default();
    let retries = RetryConfig {
        max: r.max.unwrap_or(d.max),
        budget_percent: r.budget_percent.unwrap_or(d.budget_percent),
        min_per_second: r.min_per_second.unwrap_or(d.min_per_second),
    };
    if retries.max > 10 {
        return Err(ConfigError::field("retries.max", "must be at most 10"));
    }
    if !(0.0..=100.0).contains(&retries.budget_percent) {
        return Err(ConfigError::field(
            "retries.budget_percent",
            "must be between 0 and 100",
        ));
    }
    if !(0.0..=1_000_000.0).contains(&retries.min_per_second) {
        return Err(ConfigError::field(
            "retries.min_per_second",
            "must be between 0 and 1000000",
        ));
    }
    Ok(retries)
}

pub(super) fn circuit_breaker(c: FileCircuitBreaker) -> Result<CircuitBreakerConfig, ConfigError> {
    let d = CircuitBreakerConfig::default();
    let circuit = CircuitBreakerConfig {
        enabled: c.enabled.unwrap_or(d.enabled),
        failure_ratio: c.failure_ratio.unwrap_or(d.failure_ratio),
        min_requests: c.min_requests.unwrap_or(d.min_requests),
        window: duration("circuit_breaker.window", c.window.as_deref(), "10s")?,
        cooldown: duration("circuit_breaker.cooldown", c.cooldown.as_deref(), "5s")?,
        half_open_probes: c.half_open_probes.unwrap_or(d.half_open_probes),
    };
    if !(circuit.failure_ratio > 0.0 && circuit.failure_ratio <= 1.0) {
        return Err(ConfigError::field(
            "circuit_breaker.failure_ratio",
            "must be above 0 and at most 1",
        ));
    }
    if circuit.min_requests == 0 {
        return Err(ConfigError::field(
            "circuit_breaker.min_requests",
            "must be at least 1",
        ));
    }
    if circuit.window < Duration::from_millis(10) {
        return Err(ConfigError::field(
            "circuit_breaker.window",
            "must be at least 10ms",
        ));
    }
    if circuit.cooldown.is_zero() {
        return Err(ConfigError::field(
            "circuit_breaker.cooldown",
            "must be above 0",
        ));
    }
    if !(1..=1000).contains(&circuit.half_open_probes) {
        return Err(ConfigError::field(
            "circuit_breaker.half_open_probes",
            "must be between 1 and 1000",
        ));
    }
    Ok(circuit)
}

pub(super) fn rate_limit(r: FileRateLimit) -> Result<RateLimitConfig, ConfigError> {
    let requests_per_second = r.requests_per_second.unwrap_or(100.0);
    if !(requests_per_second > 0.0 && requests_per_second <= 1_000_000.0) {
        return Err(ConfigError::field(
            "rate_limit.requests_per_second",
            "must be above 0 and at most 1000000",
        ));
    }
    let burst = match r.burst {
        Some(0) => return Err(ConfigError::field("rate_limit.burst", "must be at least 1")),
        Some(burst) => burst,
        // At most 2,000,000, so the cast cannot truncate.
        None => (requests_per_second * 2.0).ceil().max(1.0) as u32,
    };
    let max_clients = r.max_clients.unwrap_or(100_000);
    if !(1..=100_000_000).contains(&max_clients) {
        return Err(ConfigError::field(
            "rate_limit.max_clients",
            "must be between 1 and 100000000",
        ));
    }
    Ok(RateLimitConfig {
        requests_per_second,
        burst,
        max_clients,
    })
}
