//! The built-in strategies, driven through the real lbhost: exact rotation, weights, least
//! connections, consistent IP hashing, uniform randomness, least request and latency-aware P2C;
//! and feedback to a strategy that asks for it. And the benchmark's call floor, which must route
//! by itself for its figure to mean anything. (The hashing strategies across several nodes:
//! `hashing.rs`.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use demo_backend::Backend;
use lbhost_e2e::{bench_guest, config, metric_total, start_backends, wait_until, Http, Lb};
use serde_json::{json, Value};

/// Requests each backend has received.
fn hits(backends: &[Backend]) -> Vec<u64> {
    backends.iter().map(Backend::hits).collect()
}

/// Sets `field` of each backend entry of `config`, in order.
fn set_per_backend(config: &mut Value, field: &str, values: &[Value]) {
    let entries = config["backends"]
        .as_array_mut()
        .expect("config() writes a backends array");
    for (entry, value) in entries.iter_mut().zip(values) {
        entry[field] = value.clone();
    }
}

/// Which backend `lb` sends a client with address `ip` to (the client is simulated by sending
/// `X-Forwarded-For: ip` from the trusted loopback peer).
async fn backend_for(http: &Http, lb: &Lb, ip: &str) -> String {
    let reply = http
        .get_with(&lb.url("/"), &[("x-forwarded-for", ip)])
        .await;
    assert_eq!(reply.status, 200, "client {ip}: {}", reply.text());
    reply
        .header("x-backend")
        .expect("the demo backend names itself")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_gives_each_backend_exactly_its_share() {
    let backends = start_backends(&["a", "b", "c"]).await;
    let lb = Lb::start(config("round_robin", &backends)).await;
    let http = Http::new();
    for _ in 0..300 {
        let reply = http.get(&lb.url("/")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    assert_eq!(hits(&backends), [100, 100, 100]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn round_robin_stays_exact_with_concurrent_clients_on_several_workers() {
    let backends = start_backends(&["a", "b", "c"]).await;
    let mut config = config("round_robin", &backends);
    config["workers"] = json!(2);
    let lb = Lb::start(config).await;
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let url = lb.url("/");
            tokio::spawn(async move {
                let http = Http::new();
                for _ in 0..75 {
                    let reply = http.get(&url).await;
                    assert_eq!(reply.status, 200, "{}", reply.text());
                }
            })
        })
        .collect();
    for client in clients {
        client.await.expect("client task");
    }
    assert_eq!(hits(&backends), [100, 100, 100]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_follows_smooth_weighted_round_robin() {
    let backends = start_backends(&["a", "b", "c"]).await;
    let mut config = config("weighted", &backends);
    set_per_backend(&mut config, "weight", &[json!(5), json!(1), json!(1)]);
    let lb = Lb::start(config).await;
    let http = Http::new();
    let mut order = Vec::new();
    for _ in 0..70 {
        let reply = http.get(&lb.url("/")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        order.push(reply.header("x-backend").unwrap_or("?").to_string());
    }
    assert_eq!(order[..7], ["a", "a", "b", "a", "c", "a", "a"], "{order:?}");
    assert_eq!(hits(&backends), [50, 10, 10]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_conn_avoids_backends_busy_with_slow_requests() {
    let backends = start_backends(&["a", "b", "c"]).await;
    let lb = Lb::start(config("least_conn", &backends)).await;

    // Two slow requests: least-conn puts them on two different backends.
    let mut slow = Vec::new();
    for in_flight in 1..=2 {
        let url = lb.url("/slow?ms=3000");
        slow.push(tokio::spawn(async move { lbhost_e2e::get(&url).await }));
        wait_until(
            "the slow request reaches a backend",
            Duration::from_secs(5),
            || hits(&backends).iter().sum::<u64>() == in_flight,
        )
        .await;
    }
    let busy = hits(&backends);
    assert_eq!(
        busy.iter().filter(|&&h| h == 1).count(),
        2,
        "the two slow requests share a backend: {busy:?}"
    );
    let idle = busy
        .iter()
        .position(|&h| h == 0)
        .expect("one backend is idle");

    // While they run, every new request goes to the idle backend. The pause between requests
    // lets lbhost finish accounting for the previous one, so the idle backend is back at 0.
    let http = Http::new();
    for _ in 0..30 {
        let reply = http.get(&lb.url("/")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(
            reply.header("x-backend"),
            Some(backends[idle].name()),
            "a request went to a busy backend"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        slow.iter().all(|request| !request.is_finished()),
        "the slow requests ended before the test was done with them"
    );
    for request in slow {
        let reply = request.await.expect("slow request task");
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_hash_keeps_clients_and_moves_only_those_of_a_removed_backend() {
    let backends = start_backends(&["a", "b", "c"]).await;
    let mut full = config("ip_hash", &backends);
    full["trusted_proxies"] = json!(["127.0.0.1/32"]);
    let lb = Lb::start(full).await;
    let http = Http::new();
    // The test ports change the backend keys on every run, so each run samples the shares
    // afresh: one standard deviation is sqrt(p(1-p)/n) = 0.6 % here. A margin of 6 sigma
    // (3.7 %) fails a fair hash about once in 10^8 runs and still catches a skewed one.
    // (2 % was 3.3 sigma and failed about one run in 400.)
    const CLIENTS: usize = 6000;
    let sigma = (1.0 / 3.0 * (2.0 / 3.0) / CLIENTS as f64).sqrt();
    let margin = 6.0 * sigma;
    let clients: Vec<String> = (0..CLIENTS)
        .map(|i| format!("198.18.{}.{}", i / 256, i % 256))
        .collect();

    let mut first = Vec::new();
    for ip in &clients {
        first.push(backend_for(&http, &lb, ip).await);
    }
    for (ip, was) in clients.iter().zip(&first) {
        assert_eq!(
            &backend_for(&http, &lb, ip).await,
            was,
            "client {ip} changed backend"
        );
    }
    for name in ["a", "b", "c"] {
        let share = first.iter().filter(|b| *b == name).count() as f64 / CLIENTS as f64;
        assert!(
            (share - 1.0 / 3.0).abs() < margin,
            "backend {name} got {share:.3} of the clients (margin {margin:.3})"
        );
    }

    // Another node, as if `c` had been removed: same backend keys, so the same table minus c.
    let mut without_c = config("ip_hash", &backends[..2]);
    without_c["trusted_proxies"] = json!(["127.0.0.1/32"]);
    let lb2 = Lb::start(without_c).await;
    let mut moved = 0;
    let mut wrongly_moved = Vec::new();
    for (ip, was) in clients.iter().zip(&first) {
        let now = backend_for(&http, &lb2, ip).await;
        if was == "c" {
            moved += 1;
        } else if &now != was {
            wrongly_moved.push(format!("{ip}: {was} -> {now}"));
        }
    }
    assert!(
        wrongly_moved.is_empty(),
        "{} clients of a remaining backend moved, e.g. {:?}",
        wrongly_moved.len(),
        &wrongly_moved[..wrongly_moved.len().min(5)]
    );
    // Only c's clients moved: at most 1/N plus the margin (hashing modulo N would move about 2/3).
    let moved = moved as f64 / CLIENTS as f64;
    assert!(
        moved <= 1.0 / 3.0 + margin,
        "{moved:.3} of the clients moved"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_is_uniform_by_chi_square() {
    let backends = start_backends(&["a", "b", "c"]).await;
    let lb = Lb::start(config("random", &backends)).await;
    let http = Http::new();
    const REQUESTS: u64 = 6000;
    for _ in 0..REQUESTS {
        let reply = http.get(&lb.url("/")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let counts = hits(&backends);
    assert_eq!(counts.iter().sum::<u64>(), REQUESTS);
    let expected = REQUESTS as f64 / 3.0;
    let chi_square: f64 = counts
        .iter()
        .map(|&c| (c as f64 - expected).powi(2) / expected)
        .sum();
    // 2 degrees of freedom: P(chi-square > x) = exp(-x / 2), so 27.63 fails a fair source once in
    // 10^6 runs (p = 0.001 would fail one run in a thousand). A 10 % skew (2200 / 1800 / 2000)
    // scores 40 and fails.
    assert!(
        chi_square < 27.63,
        "chi-square {chi_square:.2} for {counts:?}"
    );
}

/// `least_request` with equal weights: of two random backends, the one with fewer requests in
/// flight, so a backend busy with a slow request gets nothing while the other two are idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_never_chooses_a_backend_busier_than_the_others() {
    let backends = start_backends(&["a", "b", "c"]).await;
    let lb = Lb::start(config("least_request", &backends)).await;
    let url = lb.url("/slow?ms=3000");
    let slow = tokio::spawn(async move { lbhost_e2e::get(&url).await });
    wait_until(
        "the slow request reaches a backend",
        Duration::from_secs(5),
        || hits(&backends).iter().sum::<u64>() == 1,
    )
    .await;
    let busy = hits(&backends)
        .iter()
        .position(|&h| h == 1)
        .expect("one backend has the slow request");

    let http = Http::new();
    for _ in 0..60 {
        let reply = http.get(&lb.url("/")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_ne!(
            reply.header("x-backend"),
            Some(backends[busy].name()),
            "a request went to the busy backend"
        );
        // Let lbhost finish accounting for the request, so the idle backends are back at 0.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let spread = hits(&backends);
    assert!(
        (0..3).all(|i| i == busy || spread[i] >= 10),
        "the two idle backends should share the requests: {spread:?}"
    );
    assert!(!slow.is_finished(), "the slow request ended too early");
    let reply = slow.await.expect("slow request task");
    assert_eq!(reply.status, 200, "{}", reply.text());
}

/// Clients that send their next request as soon as the last one is answered, until `stop`.
fn closed_loop(
    url: String,
    clients: usize,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..clients)
        .map(|_| {
            let (url, stop) = (url.clone(), stop.clone());
            tokio::spawn(async move {
                let http = Http::new();
                while !stop.load(Ordering::Relaxed) {
                    let reply = http.get(&url).await;
                    assert_eq!(reply.status, 200, "{}", reply.text());
                }
            })
        })
        .collect()
}

/// Requests each backend received during `window`, while the load runs.
async fn hits_during(backends: &[Backend], window: Duration) -> Vec<u64> {
    let before = hits(backends);
    tokio::time::sleep(window).await;
    hits(backends)
        .iter()
        .zip(before)
        .map(|(after, before)| after - before)
        .collect()
}

/// `p2c_ewma` under a steady closed-loop load: when one backend's latency rises tenfold
/// (10 ms to 100 ms), at least 80 % of the traffic it had moves to the others within 2 s (the
/// peak EWMA takes a slower response at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn p2c_ewma_moves_traffic_off_a_backend_whose_latency_rose_tenfold() {
    let backends = start_backends(&["a", "b", "c"]).await;
    for backend in &backends {
        backend.set_delay(Duration::from_millis(10));
    }
    let lb = Lb::start(config("p2c_ewma", &backends)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let clients = closed_loop(lb.url("/"), 6, stop.clone());

    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = hits_during(&backends, Duration::from_millis(1500)).await;
    backends[2].set_delay(Duration::from_millis(100));
    let after = hits_during(&backends, Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("client task");
    }

    let share = |counts: &[u64]| counts[2] as f64 / counts.iter().sum::<u64>().max(1) as f64;
    let (before_share, after_share) = (share(&before), share(&after));
    eprintln!(
        "c's share: {before_share:.3} before ({before:?}), {after_share:.3} in the 2 s after \
         ({after:?})"
    );
    assert!(
        before.iter().sum::<u64>() >= 100 && before_share > 0.2,
        "before the rise the load was not spread: {before:?}"
    );
    let moved = 1.0 - after_share / before_share;
    assert!(
        moved >= 0.8,
        "only {:.0} % of c's traffic moved within 2 s: {before:?} -> {after:?}",
        moved * 100.0
    );
}

/// A strategy that asks for feedback hears every backend's answer (`on-response`): this test
/// guest avoids a backend whose last answer was a server error, so after one 500 from `a` the
/// requests go to `b`, and back to `a` once `a` is well and `b` fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strategy_that_asks_for_feedback_hears_each_answer() {
    let backends = start_backends(&["a", "b"]).await;
    backends[0].set_status(500);
    let mut config = config("round_robin", &backends);
    config["strategy"] = json!(lbhost_e2e::guest("feedback"));
    // One worker: the instance that heard the 500 is the one that routes the next request.
    config["workers"] = json!(1);
    let lb = Lb::start(config).await;
    let http = Http::new();

    let first = http.get(&lb.url("/")).await;
    assert_eq!(first.status, 500, "{}", first.text());
    assert_eq!(first.header("x-backend"), Some("a"));
    for _ in 0..10 {
        let reply = http.get(&lb.url("/")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(
            reply.header("x-backend"),
            Some("b"),
            "feedback did not arrive"
        );
    }
    assert_eq!(hits(&backends), [1, 10]);

    backends[0].set_status(200);
    backends[1].set_status(503);
    let failed = http.get(&lb.url("/")).await;
    assert_eq!(failed.status, 503, "{}", failed.text());
    assert_eq!(failed.header("x-backend"), Some("b"));
    let reply = http.get(&lb.url("/")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-backend"), Some("a"));
}

/// The benchmark's call floor (`bench/call_floor.wasm`: round-robin on the raw WIT bindings,
/// without the SDK) routes by itself: exact shares over the backends it may choose, a drained
/// one skipped, and not one request left to the host's fallback, whose round-robin would give
/// the same shares.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_benchmarks_call_floor_routes_by_itself() {
    let backends = start_backends(&["a", "b", "c"]).await;
    let mut config = config("round_robin", &backends);
    config["strategy"] = json!(bench_guest("call_floor"));
    set_per_backend(&mut config, "weight", &[json!(1), json!(0), json!(1)]);
    let lb = Lb::start(config).await;
    let http = Http::new();
    for _ in 0..200 {
        let reply = http.get(&lb.url("/")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    assert_eq!(hits(&backends), [100, 0, 100]);
    let metrics = http.get(&lb.admin_url("/metrics")).await.text();
    assert_eq!(
        metric_total(&metrics, "lbhost_strategy_fallbacks_total{"),
        0.0,
        "the fallback served requests:\n{metrics}"
    );
    assert_eq!(metric_total(&metrics, "lbhost_strategy_faults_total{"), 0.0);
}
