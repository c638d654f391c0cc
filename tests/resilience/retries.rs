//! Retries and their budget, circuit breaking and per-client rate limiting, through the real
//! lbhost on loopback (a part of `resilience.rs`, in a file of its own for length).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hyper::{Request, StatusCode};
use lbhost_e2e::{config, free_addr, full, start_backends, Http, Lb};
use serde_json::{json, Value};

use super::fixtures::{black_hole, label, metric};
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_is_retried_after_a_reset_but_a_post_whose_body_was_sent_is_not() {
    let backends = start_backends(&["good"]).await;
    let (hole, swallowed) = black_hole().await;
    let config = dead_then_live(hole, &backends[0].url());
    let lb = Lb::start(config).await;
    let http = Http::new();
    for _ in 0..4 {
        let reply = http.get(&lb.url("/")).await;
        assert_eq!(reply.status, 200, "GET: {}", reply.text());
        assert_eq!(reply.text().trim(), "good");
    }
    let gets_lost = swallowed.load(Ordering::SeqCst);
    assert!(
        gets_lost >= 1,
        "no GET went to the black hole: nothing was retried"
    );
    assert_eq!(
        backends[0].hits(),
        4,
        "each GET answered once by the good backend"
    );

    let mut statuses = Vec::new();
    for _ in 0..4 {
        let request = Request::post(lb.url("/upload"))
            .body(full("payload"))
            .expect("request");
        statuses.push(http.send(request).await.status.as_u16());
    }
    let posts_lost = swallowed.load(Ordering::SeqCst) - gets_lost;
    let bad_gateway = statuses.iter().filter(|&&s| s == 502).count() as u64;
    assert!(
        posts_lost >= 1,
        "no POST went to the black hole: {statuses:?}"
    );
    assert_eq!(
        bad_gateway, posts_lost,
        "{statuses:?}: a POST whose body was sent was retried"
    );
    assert_eq!(
        backends[0].hits(),
        4 + (4 - posts_lost),
        "the good backend got only the POSTs sent to it"
    );
    eprintln!(
        "retries: {gets_lost} GETs reset and retried; {posts_lost} POSTs reset and answered 502"
    );

    // A POST that never reached a backend (connection refused) is retried: nothing was sent.
    drop(lb);
    let backends = start_backends(&["live"]).await;
    let nobody = free_addr();
    let config = dead_then_live(nobody, &backends[0].url());
    let lb = Lb::start(config).await;
    let http = Http::new();
    for _ in 0..4 {
        let request = Request::post(lb.url("/upload"))
            .body(full("hello"))
            .expect("request");
        let reply = http.send(request).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.text(), "5");
    }
    let dead = format!("backend=\"{nobody}\"");
    assert!(metric(&http, &lb, "lbhost_retries_total", &[&dead]).await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_budget_caps_extra_attempts_under_a_total_outage() {
    let dead: Vec<Value> = (0..3)
        .map(|_| json!({ "url": format!("http://{}", free_addr()) }))
        .collect();
    let config = json!({
        "strategy": lbhost_e2e::strategy("round_robin"),
        "backends": dead,
        "passive": { "enabled": false },
        "circuit_breaker": { "enabled": false },
        "retries": { "max": 2, "budget_percent": 20, "min_per_second": 1 },
    });
    let lb = Lb::start(config).await;
    let http = Http::new();
    let requests = 200;
    let started = Instant::now();
    for _ in 0..requests {
        let reply = http.get(&lb.url("/")).await;
        assert_eq!(reply.status, 502, "{}", reply.text());
    }
    let elapsed = started.elapsed().as_secs_f64();
    let retries = metric(&http, &lb, "lbhost_retries_total", &[]).await;
    let refused = metric(&http, &lb, "lbhost_retry_budget_exhausted_total", &[]).await;
    // A full bucket (10), 20 % of the first attempts, 1 per second.
    let bound = 10.0 + 0.2 * f64::from(requests) + elapsed.ceil() + 1.0;
    eprintln!(
        "retry budget: {requests} requests in {elapsed:.2} s, {retries} retries (bound {bound:.0}, \
         unbudgeted {}), {refused} refused",
        2 * requests
    );
    assert!(retries <= bound, "{retries} retries > {bound}");
    assert!(
        retries >= 0.2 * f64::from(requests) - 1.0,
        "{retries} retries"
    );
    assert!(refused > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuit_opens_on_failures_probes_after_the_cooldown_and_closes_on_recovery() {
    let backends = start_backends(&["a", "b"]).await;
    backends[1].set_status(500);
    let mut config = config("round_robin", &backends);
    config["passive"] = json!({ "enabled": false });
    config["circuit_breaker"] = json!({
        "failure_ratio": 0.5, "min_requests": 6, "window": "10s", "cooldown": "400ms",
        "half_open_probes": 2,
    });
    let lb = Lb::start(config).await;
    let http = Http::new();
    let b = label(&backends[1]);
    for _ in 0..12 {
        http.get(&lb.url("/")).await;
    }
    assert_eq!(backends[1].hits(), 6);
    assert_eq!(
        metric(&http, &lb, "lbhost_backend_circuit_state", &[&b]).await,
        1.0
    );
    for _ in 0..10 {
        assert_eq!(http.get(&lb.url("/")).await.status, 200);
    }
    assert_eq!(backends[1].hits(), 6, "open: no traffic");

    // Half-open after the cooldown: one probe fails and the circuit opens again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..10 {
        http.get(&lb.url("/")).await;
    }
    assert_eq!(backends[1].hits(), 7, "one failed probe, then open again");
    assert_eq!(
        metric(&http, &lb, "lbhost_backend_circuit_state", &[&b]).await,
        1.0
    );

    // Recovered: both probes succeed and it closes.
    backends[1].set_status(200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..20 {
        assert_eq!(http.get(&lb.url("/")).await.status, 200);
    }
    assert!(
        backends[1].hits() >= 7 + 8,
        "closed: b takes its share again"
    );
    assert_eq!(
        metric(&http, &lb, "lbhost_backend_circuit_state", &[&b]).await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_rate_gets_429_with_retry_after_and_another_is_unaffected() {
    let backends = start_backends(&["a"]).await;
    let mut config = config("round_robin", &backends);
    config["trusted_proxies"] = json!(["127.0.0.1/32"]);
    config["rate_limit"] = json!({ "requests_per_second": 2, "burst": 3 });
    let lb = Lb::start(config).await;
    let http = Http::new();
    let from = |ip: &'static str| [("x-forwarded-for", ip)];
    for _ in 0..3 {
        assert_eq!(
            http.get_with(&lb.url("/"), &from("203.0.113.1"))
                .await
                .status,
            200
        );
    }
    let limited = http.get_with(&lb.url("/"), &from("203.0.113.1")).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.header("retry-after"), Some("1"));
    for _ in 0..3 {
        assert_eq!(
            http.get_with(&lb.url("/"), &from("203.0.113.2"))
                .await
                .status,
            200,
            "another client is not limited"
        );
    }
    assert_eq!(
        backends[0].hits(),
        6,
        "the limited request never reached the backend"
    );
    assert_eq!(
        metric(&http, &lb, "lbhost_rate_limited_total", &[]).await,
        1.0
    );
    // Half a second later (2 per second) the first client has a token again.
    tokio::time::sleep(Duration::from_millis(550)).await;
    assert_eq!(
        http.get_with(&lb.url("/"), &from("203.0.113.1"))
            .await
            .status,
        200
    );
}

/// Round-robin over `dead` (an address that fails requests) and then the backend at `live`.
fn dead_then_live(dead: std::net::SocketAddr, live: &str) -> serde_json::Value {
    json!({
        "strategy": lbhost_e2e::strategy("round_robin"),
        "backends": [{ "url": format!("http://{dead}") }, { "url": live }],
    })
}
