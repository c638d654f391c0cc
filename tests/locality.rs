//! `locality.wasm` through the real lbhost: a node keeps its traffic in its own zone while the
//! zone is healthy, spills part of it over when a local backend fails its health checks, and
//! takes it back when the backend recovers.

use std::time::Duration;

use demo_backend::Backend;
use lbhost_e2e::{start_backends, strategy, Http, Lb};
use serde_json::json;

/// Requests each backend received while `n` requests were sent.
async fn spread(http: &Http, lb: &Lb, backends: &[Backend], n: usize) -> Vec<u64> {
    let before: Vec<u64> = backends.iter().map(Backend::hits).collect();
    for _ in 0..n {
        let reply = http.get(&lb.url("/")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    backends
        .iter()
        .zip(before)
        .map(|(b, before)| b.hits() - before)
        .collect()
}

/// Whether the pool has `address` up, per `GET /status`.
async fn is_up(http: &Http, lb: &Lb, address: &str) -> bool {
    let status = http.get(&lb.admin_url("/status")).await.json();
    status["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .any(|b| b["address"] == address && b["eligible"] == true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_stays_in_the_local_zone_and_spills_over_when_a_local_backend_fails() {
    let backends = start_backends(&["a1", "a2", "b1", "b2"]).await;
    let config = json!({
        "strategy": strategy("locality"),
        "strategy_config": {"label": "zone", "local": "a", "min_local_share": 0.7},
        "backends": backends.iter().map(|b| json!({
            "url": b.url(),
            "labels": {"zone": &b.name()[..1]},
        })).collect::<Vec<_>>(),
        "health_check": {"path": "/health", "interval": "100ms", "timeout": "200ms",
                         "healthy_threshold": 1, "unhealthy_threshold": 1},
    });
    let lb = Lb::start(config).await;
    let http = Http::new();
    let address = |b: &Backend| b.url().trim_start_matches("http://").to_string();

    let all_local = spread(&http, &lb, &backends, 200).await;
    assert_eq!(all_local[2] + all_local[3], 0, "{all_local:?}");
    assert_eq!(all_local[0], 100, "{all_local:?}");

    // a1 fails its health checks: half the zone is healthy, under 0.7, so 0.5 / 0.7 of the
    // requests stay local (on a2) and the rest goes to zone b.
    backends[0].set_health_status(503);
    let a1 = address(&backends[0]);
    for _ in 0..100 {
        if !is_up(&http, &lb, &a1).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!is_up(&http, &lb, &a1).await, "a1 is still eligible");
    let spilled = spread(&http, &lb, &backends, 2000).await;
    let local = spilled[1] as f64 / 2000.0;
    assert_eq!(spilled[0], 0, "{spilled:?}");
    assert!((local - 0.5 / 0.7).abs() < 0.05, "{spilled:?}");
    assert!(spilled[2] > 200 && spilled[3] > 200, "{spilled:?}");

    // a1 recovers: all local again.
    backends[0].set_health_status(200);
    for _ in 0..100 {
        if is_up(&http, &lb, &a1).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(is_up(&http, &lb, &a1).await, "a1 never came back");
    let again = spread(&http, &lb, &backends, 200).await;
    assert_eq!(again[2] + again[3], 0, "{again:?}");
}
