use std::path::Path;
use std::time::Duration;

use super::*;
use crate::config::{from_file, Config};
use crate::metrics::Metrics;

fn setup(n: usize, extra: &str) -> (Arc<Pool>, Config, Arc<Metrics>) {
    let backends: Vec<String> = (1..=n)
        .map(|i| format!(r#"{{"url": "http://127.0.0.1:{i}"}}"#))
        .collect();
    let json = format!(r#"{{"backends": [{}] {extra}}}"#, backends.join(","));
    let config = from_file(&json, Path::new("/")).expect("valid config");
    let pool = Pool::new(&config.backends);
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    (pool, config, metrics)
}

fn eligible(pool: &Pool) -> Vec<bool> {
    pool.load()
        .backends
        .iter()
        .map(|b| b.is_eligible())
        .collect()
}

/// Reports `n` failures (503) on backend `i`.
fn fail(pool: &Arc<Pool>, i: usize, n: usize, config: &Config, metrics: &Arc<Metrics>) {
    let backend = Arc::clone(&pool.load().backends[i]);
    for _ in 0..n {
        let admitted = pool
            .admit(&backend, &config.circuit_breaker)
            .expect("admitted");
        pool.report(&backend, admitted, Outcome::of_status(503), config, metrics);
    }
}

#[tokio::test]
async fn at_most_max_ejected_percent_of_the_pool_is_ejected() {
    let extra = r#", "passive": {"consecutive_failures": 2, "max_ejected_percent": 50},
                     "circuit_breaker": {"enabled": false}"#;
    let (pool, config, metrics) = setup(4, extra);
    for i in 0..4 {
        fail(&pool, i, 2, &config, &metrics);
    }
    assert_eq!(eligible(&pool), [false, false, true, true]);
    assert!(!pool.is_panic());
}

#[tokio::test]
async fn panic_rule_ignores_ejections_when_every_backend_is_ejected() {
    let extra = r#", "passive": {"consecutive_failures": 1, "max_ejected_percent": 100},
                     "circuit_breaker": {"enabled": false}"#;
    let (pool, config, metrics) = setup(3, extra);
    fail(&pool, 0, 1, &config, &metrics);
    fail(&pool, 1, 1, &config, &metrics);
    assert_eq!(eligible(&pool), [false, false, true]);
    let generation = pool.generation();
    fail(&pool, 2, 1, &config, &metrics);
    assert!(pool.is_panic());
    assert_eq!(eligible(&pool), [true, true, true], "all rather than none");
    assert!(pool.generation() > generation, "strategies hear of it");
    // A backend down by active checks stays out, panic or not.
    pool.load().backends[1].set_up(false);
    pool.refresh();
    assert_eq!(eligible(&pool), [true, false, true]);
    // Nothing up at all: nothing eligible (the proxy answers 503).
    for b in &pool.load().backends {
        b.set_up(false);
    }
    pool.refresh();
    assert_eq!(eligible(&pool), [false, false, false]);
}

#[tokio::test]
async fn an_ejection_ends_by_itself() {
    let extra = r#", "passive": {"consecutive_failures": 1, "base_ejection": "50ms"},
                     "circuit_breaker": {"enabled": false}"#;
    let (pool, config, metrics) = setup(2, extra);
    fail(&pool, 0, 1, &config, &metrics);
    assert_eq!(eligible(&pool), [false, true]);
    let generation = pool.generation();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(eligible(&pool), [true, true]);
    assert!(pool.generation() > generation);
}

#[tokio::test]
async fn circuit_opens_half_opens_after_the_cooldown_and_closes_on_good_probes() {
    let extra = r#", "passive": {"enabled": false},
                     "circuit_breaker": {"min_requests": 4, "failure_ratio": 0.5,
                                         "cooldown": "50ms", "half_open_probes": 2}"#;
    let (pool, config, metrics) = setup(2, extra);
    fail(&pool, 0, 4, &config, &metrics);
    assert_eq!(eligible(&pool), [false, true]);
    let backend = Arc::clone(&pool.load().backends[0]);
    assert_eq!(backend.circuit_state(), CircuitState::Open);
    assert!(pool.admit(&backend, &config.circuit_breaker).is_none());
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(backend.circuit_state(), CircuitState::HalfOpen);
    assert_eq!(eligible(&pool), [true, true]);
    let first = pool
        .admit(&backend, &config.circuit_breaker)
        .expect("probe 1");
    let second = pool
        .admit(&backend, &config.circuit_breaker)
        .expect("probe 2");
    assert!(first.is_probe() && second.is_probe());
    assert_eq!(eligible(&pool), [false, true], "no probe left");
    // A probe whose client went away is given back.
    drop(second);
    assert_eq!(eligible(&pool), [true, true]);
    let second = pool
        .admit(&backend, &config.circuit_breaker)
        .expect("probe 2");
    pool.report(&backend, first, Outcome::Success, &config, &metrics);
    pool.report(&backend, second, Outcome::Success, &config, &metrics);
    assert_eq!(backend.circuit_state(), CircuitState::Closed);
    assert_eq!(eligible(&pool), [true, true]);
}
