//! Per-client-IP rate limiting: a token bucket per client address (`requests_per_second`
//! refill, `burst` capacity), kept in a sharded map whose size is bounded by `max_clients`.
//!
//! Memory: when a shard is full, buckets that have refilled completely are dropped first (an
//! absent bucket behaves exactly like a full one, so nothing is lost); if that frees too little,
//! the least recently seen clients are forgotten, which gives them a fresh burst. So with more
//! than `max_clients` clients active at once the limit is approximate, never the memory.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::config::RateLimitConfig;

/// Shards of the client map: lock contention drops with their number.
const SHARDS: usize = 64;

/// The token buckets of all clients.
///
/// Kept instead of `governor`'s keyed limiter: its key store grows with every client address
/// until `retain_recent` is called, so a flood of spoofed or rotating addresses grows memory
/// without bound between sweeps; this one never holds more than `max_clients`.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    hasher: RandomState,
    shards: Box<[Mutex<HashMap<IpAddr, Bucket>>]>,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter::new()
    }
}

impl RateLimiter {
    /// An empty limiter.
    pub(crate) fn new() -> Self {
        RateLimiter {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// Takes one token from `client`'s bucket; `Err(wait)` when it is empty, with how long
    /// until the next token.
    pub(crate) fn check(&self, client: IpAddr, config: &RateLimitConfig) -> Result<(), Duration> {
        self.check_at(client, config, Instant::now())
    }

    /// Clients tracked now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    fn check_at(
        &self,
        client: IpAddr,
        config: &RateLimitConfig,
        now: Instant,
    ) -> Result<(), Duration> {
        let rate = config.requests_per_second;
        let burst = f64::from(config.burst);
        let shard = &self.shards[(self.hasher.hash_one(client) % SHARDS as u64) as usize];
        let mut buckets = lock(shard);
        let capacity = config.max_clients.div_ceil(SHARDS).max(1);
        if !buckets.contains_key(&client) && buckets.len() >= capacity {
            evict(&mut buckets, now, rate, burst, capacity);
        }
        let bucket = buckets.entry(client).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        bucket.tokens = refilled(bucket, now, rate, burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
    }
}

/// `Retry-After` for a wait: whole seconds, rounded up, at least 1.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

fn lock(
    shard: &Mutex<HashMap<IpAddr, Bucket>>,
) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Bucket>> {
    // A bucket is two numbers written together: nothing is half-updated after a panic.
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The tokens of `bucket` at `now`.
fn refilled(bucket: &Bucket, now: Instant, rate: f64, burst: f64) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
    (bucket.tokens + elapsed * rate).min(burst)
}

/// Makes room in a full shard: drops full buckets, then if fewer than an eighth of `capacity`
/// is free, the least recently seen ones.
fn evict(
    buckets: &mut HashMap<IpAddr, Bucket>,
    now: Instant,
    rate: f64,
    burst: f64,
    capacity: usize,
) {
    buckets.retain(|_, b| refilled(b, now, rate, burst) < burst);
    let target = capacity - capacity.div_ceil(8);
    if buckets.len() <= target {
        return;
    }
    let mut seen: Vec<(Instant, IpAddr)> = buckets.iter().map(|(ip, b)| (b.last, *ip)).collect();
    let excess = buckets.len() - target;
    seen.select_nth_unstable(excess - 1);
    for (_, ip) in &seen[..excess] {
        buckets.remove(ip);
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn config(rate: f64, burst: u32, max_clients: usize) -> RateLimitConfig {
        RateLimitConfig {
            requests_per_second: rate,
            burst,
            max_clients,
        }
    }

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(n))
    }

    #[test]
    fn burst_then_the_rate_and_a_wait_until_the_next_token() {
        let (limiter, c, t0) = (RateLimiter::new(), config(10.0, 3, 100), Instant::now());
        for _ in 0..3 {
            assert!(limiter.check_at(ip(1), &c, t0).is_ok());
        }
        let wait = limiter.check_at(ip(1), &c, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        assert_eq!(retry_after_secs(wait), 1);
        assert!(limiter.check_at(ip(2), &c, t0).is_ok(), "another client");
        let later = t0 + Duration::from_millis(100);
        assert!(limiter.check_at(ip(1), &c, later).is_ok());
        assert!(limiter.check_at(ip(1), &c, later).is_err());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }

    #[test]
    fn memory_stays_bounded_with_many_clients() {
        let (limiter, c, t0) = (RateLimiter::new(), config(1.0, 5, 1000), Instant::now());
        for n in 0..50_000 {
            let _ = limiter.check_at(ip(n), &c, t0);
        }
        let per_shard = 1000usize.div_ceil(SHARDS);
        assert!(limiter.len() <= per_shard * SHARDS, "{}", limiter.len());
    }

    #[test]
    fn eviction_drops_refilled_buckets_first_then_the_least_recent() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(10);
        let mut buckets: HashMap<IpAddr, Bucket> = HashMap::new();
        // 0..4: idle for 10 s, refilled (dropping them loses nothing).
        for n in 0..4 {
            buckets.insert(
                ip(n),
                Bucket {
                    tokens: 0.0,
                    last: t0,
                },
            );
        }
        // 4..8: empty just now, seen at increasing times.
        for n in 4..8 {
            let last = now - Duration::from_millis(u64::from(10 - n));
            buckets.insert(ip(n), Bucket { tokens: 0.0, last });
        }
        evict(&mut buckets, now, 1.0, 5.0, 8);
        let mut kept: Vec<u32> = buckets
            .keys()
            .map(|k| match k {
                IpAddr::V4(v4) => u32::from(*v4),
                IpAddr::V6(_) => unreachable!(),
            })
            .collect();
        kept.sort_unstable();
        assert_eq!(kept, [4, 5, 6, 7], "refilled ones went first, the rest fit");
        evict(&mut buckets, now, 1.0, 5.0, 4);
        let mut kept: Vec<_> = buckets.keys().copied().collect();
        kept.sort_unstable();
        assert_eq!(kept, [ip(5), ip(6), ip(7)], "then the least recently seen");
    }
}
