use super::*;
use lbhost_sdk::testing::{backend, Harness, Served, TestRequest};
use lbhost_sdk::Backend;

fn pool(n: usize) -> Vec<Backend> {
    (0..n).map(|i| backend(&format!("10.4.0.{i}:80"))).collect()
}

fn harness(n: usize) -> Harness<P2cEwma> {
    let mut h = Harness::new(&[]).unwrap();
    h.set_backends(pool(n));
    h
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Share of the requests started in `[from, to)` that went to `backend`.
fn share(served: &[Served], backend: usize, from: Duration, to: Duration) -> f64 {
    let window: Vec<_> = served
        .iter()
        .filter(|s| s.at >= from && s.at < to)
        .collect();
    window.iter().filter(|s| s.backend == backend).count() as f64 / window.len() as f64
}

#[test]
fn a_backend_ten_times_slower_gets_clearly_less() {
    let mut h = harness(3);
    let latency = |b: usize, _| ms(if b == 2 { 20 } else { 2 });
    let served = h.closed_loop(6, 20_000, latency, |_| TestRequest::default());
    let end = served.last().map_or(Duration::ZERO, |s| s.at);
    let slow = share(&served, 2, Duration::ZERO, end);
    // A third under round-robin; least-request on in-flight alone gives it about a tenth.
    assert!(slow < 0.02, "the slow backend got {slow:.4}");
}

#[test]
fn traffic_leaves_a_backend_within_two_seconds_of_its_latency_rising_tenfold() {
    let mut h = harness(3);
    let rise = Duration::from_secs(5);
    let latency = |b: usize, at: Duration| ms(if b == 2 && at >= rise { 20 } else { 2 });
    let served = h.closed_loop(6, 40_000, latency, |_| TestRequest::default());
    let before = share(&served, 2, Duration::from_secs(1), rise);
    let after = share(&served, 2, rise, rise + Duration::from_secs(2));
    let moved = 1.0 - after / before;
    assert!(
        (0.28..0.39).contains(&before),
        "before the rise it got {before:.3}"
    );
    assert!(
        moved >= 0.8,
        "only {:.1} % moved ({before:.3} -> {after:.3})",
        moved * 100.0
    );
}

#[test]
fn a_backend_that_recovers_is_tried_again_and_wins_back_its_share() {
    let mut h = Harness::<P2cEwma>::new(&[("decay", "1s")]).unwrap();
    h.set_backends(pool(3));
    let (slow_from, slow_to) = (Duration::from_secs(2), Duration::from_secs(4));
    let latency = |b: usize, at: Duration| {
        ms(if b == 2 && at >= slow_from && at < slow_to {
            20
        } else {
            2
        })
    };
    let served = h.closed_loop(6, 60_000, latency, |_| TestRequest::default());
    let end = served.last().map_or(Duration::ZERO, |s| s.at);
    assert!(share(&served, 2, slow_from, slow_to) < 0.05);
    // A few decays after it recovered, it has its third again.
    let late = share(&served, 2, slow_to + Duration::from_secs(8), end);
    assert!(
        (0.28..0.39).contains(&late),
        "after recovering it got {late:.3}"
    );
}

#[test]
fn a_backend_that_has_not_answered_takes_one_request_at_a_time() {
    let mut h = harness(2);
    // Backend 0 has answered (1 ms) and holds 3 requests; backend 1 has never answered.
    h.respond(0, 200, ms(1));
    h.in_flight = vec![3, 0];
    assert_eq!(h.select(&TestRequest::default()), Some(1));
    h.in_flight = vec![3, 1];
    assert_eq!(h.select(&TestRequest::default()), Some(0));
}

#[test]
fn a_backend_that_fails_fast_does_not_attract_traffic() {
    let mut h = harness(3);
    for b in 0..3 {
        h.respond(b, 200, ms(5));
    }
    // Backend 0 refuses connections: a failure after 50 µs, no status.
    h.respond(0, 0, Duration::from_micros(50));
    let picks = (0..300)
        .filter(|_| h.select(&TestRequest::default()) == Some(0))
        .count();
    assert_eq!(picks, 0);
}

#[test]
fn estimates_follow_backends_across_changes_and_reset_after_a_down_spell() {
    let mut h = harness(3);
    h.respond(0, 200, ms(100));
    h.respond(1, 200, ms(1));
    h.respond(2, 200, ms(1));
    // The same backends in another order: the slow one (now index 2) keeps its estimate.
    let mut reordered = pool(3);
    reordered.rotate_left(1);
    h.set_backends(reordered.clone());
    for _ in 0..100 {
        assert_ne!(h.select(&TestRequest::default()), Some(2));
    }
    // It goes down, then comes back: it starts afresh, like a backend never measured.
    reordered[2] = reordered[2].clone().down();
    h.set_backends(reordered.clone());
    reordered[2].eligible = true;
    h.set_backends(reordered);
    let fresh = (0..300)
        .filter(|_| h.select(&TestRequest::default()) == Some(2))
        .count();
    assert!(fresh > 100, "{fresh}");
}

#[test]
fn weights_scale_the_cost() {
    let mut h = Harness::<P2cEwma>::new(&[]).unwrap();
    h.set_backends(vec![backend("a:1").weight(4), backend("b:1")]);
    h.respond(0, 200, ms(3));
    h.respond(1, 200, ms(1));
    // 3 ms / 4 against 1 ms / 1: the heavier backend is the cheaper one.
    assert_eq!(h.select(&TestRequest::default()), Some(0));
}

#[test]
fn decay_is_a_duration_of_at_least_a_millisecond() {
    assert!(Harness::<P2cEwma>::new(&[("decay", "30s")]).is_ok());
    for (key, value) in [("decay", "0s"), ("decay", "10"), ("window", "1s")] {
        let err = Harness::<P2cEwma>::new(&[(key, value)]).err().unwrap();
        assert!(err.contains(&format!("strategy_config.{key}")), "{err}");
    }
}

#[test]
fn slow_start_gives_a_new_backend_a_smaller_share_until_its_window_passes() {
    let share_of_new = |params: &[(&str, &str)], now_ms: u64| {
        let mut h = Harness::<P2cEwma>::new(params).unwrap();
        h.now_ms = now_ms;
        h.set_backends(vec![
            backend("a:1"),
            backend("b:1"),
            backend("c:1").eligible_since(100_000),
        ]);
        let served = h.closed_loop(8, 30_000, |_, _| ms(2), |_| TestRequest::default());
        served[5_000..].iter().filter(|s| s.backend == 2).count() as f64 / 25_000.0
    };
    let window = [("slow_start_window", "10s")];
    let ramping = share_of_new(&window, 100_000);
    let done = share_of_new(&window, 110_000);
    let without = share_of_new(&[], 100_000);
    assert!(ramping < 0.2, "ramping: {ramping:.3}");
    assert!((done - without).abs() < 0.03, "{done:.3} vs {without:.3}");
    assert!((without - 1.0 / 3.0).abs() < 0.05, "{without:.3}");
}
