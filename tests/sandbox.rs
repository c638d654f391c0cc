//! Untrusted strategies: a guest that loops, hoards memory, panics or answers nonsense never
//! fails a request; a module that keeps faulting is quarantined; a component asking for
//! authority the host does not give is refused at load.

use std::sync::Arc;
use std::time::{Duration, Instant};

use demo_backend::Backend;
use lbhost_e2e::{config, guest, metric, metric_total, start_backends, Http, Lb, Scratch};
use serde_json::{json, Value};

/// `clients` keep-alive clients sending `each` GETs; every answer must be a 200 from a backend.
/// Returns the latencies, sorted.
async fn load(lb: &Lb, clients: usize, each: usize) -> Vec<Duration> {
    let url = Arc::new(lb.url("/"));
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let url = Arc::clone(&url);
            tokio::spawn(async move {
                let http = Http::new();
                let mut latencies = Vec::with_capacity(each);
                for _ in 0..each {
                    let started = Instant::now();
                    let reply = http.get(&url).await;
                    latencies.push(started.elapsed());
                    assert_eq!(reply.status, 200, "{}", reply.text());
                    assert!(reply.header("x-backend").is_some(), "served by a backend");
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("a client task failed"));
    }
    all.sort();
    all
}

fn p99(sorted: &[Duration]) -> Duration {
    sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)]
}

fn hostile_config(backends: &[Backend], mode: &str) -> Value {
    let mut c = config("round_robin", backends);
    c["strategy"] = json!(guest("hostile"));
    c["strategy_config"] = json!({"mode": mode, "n": 3, "micros": 300});
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_hostile_guest_is_contained_and_every_request_is_served() {
    let backends = start_backends(&["a", "b", "c"]).await;
    let baseline = {
        let lb = Lb::start(config("round_robin", &backends)).await;
        p99(&load(&lb, 4, 150).await)
    };
    let mut report = vec![format!("round_robin (baseline): p99 {baseline:?}")];
    for mode in [
        "panic_every_nth",
        "out_of_range",
        "ineligible",
        "slow",
        "memory_hog",
        "infinite_loop",
        "bulk_copy",
        "host_call_flood",
    ] {
        let lb = Lb::start(hostile_config(&backends, mode)).await;
        let latencies = load(&lb, 4, 150).await;
        let rss_mib = lb.rss_bytes() / (1024 * 1024);
        let metrics = Http::new().get(&lb.admin_url("/metrics")).await.text();
        let fallbacks = metric(
            &metrics,
            "lbhost_strategy_fallbacks_total{reason=\"fault\"}",
        ) + metric(
            &metrics,
            "lbhost_strategy_fallbacks_total{reason=\"quarantine\"}",
        );
        report.push(format!(
            "{mode}: p99 {:?}, RSS {rss_mib} MiB, requests on the fallback {fallbacks}",
            p99(&latencies)
        ));
        assert!(rss_mib < 128, "{mode}: RSS {rss_mib} MiB");
        if mode != "slow" {
            assert!(
                fallbacks > 0.0,
                "{mode}: faults were served by the fallback"
            );
        } else {
            assert_eq!(fallbacks, 0.0, "a slow but legal strategy is not a fault");
        }
    }
    eprintln!("{}", report.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_is_interrupted_quarantined_then_replaced_by_a_good_file() {
    let backends = start_backends(&["a", "b", "c"]).await;
    let scratch = Scratch::new();
    let active = scratch.path().join("active.wasm");
    std::fs::copy(guest("hostile"), &active).expect("copying the hostile guest");
    let mut c = config("round_robin", &backends);
    c["strategy"] = json!(active);
    let lb = Lb::start(c).await;
    let http = Http::new();

    // Each call runs into the deadline; the request is still served, a little later.
    let mut first = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let reply = http.get(&lb.url("/")).await;
        first.push(started.elapsed());
        assert_eq!(reply.status, 200);
    }
    eprintln!("requests while the loop is interrupted: {first:?}");

    // By now the module faulted on every call: quarantined, and requests skip it.
    for _ in 0..20 {
        assert_eq!(http.get(&lb.url("/")).await.status, 200);
    }
    let metrics = http.get(&lb.admin_url("/metrics")).await.text();
    assert!(
        metric(&metrics, "lbhost_strategy_faults_total{kind=\"timeout\"}") >= 5.0,
        "{metrics}"
    );
    assert!(
        metric(
            &metrics,
            "lbhost_strategy_fallbacks_total{reason=\"quarantine\"}"
        ) >= 15.0,
        "{metrics}"
    );
    assert!(
        lb.log().contains("strategy quarantined"),
        "the log says why"
    );
    let s = status(&http, &lb).await;
    let reason = s["strategy"]["faults"]["quarantine_reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.starts_with("5 faults in 5 calls "),
        "each of the five calls counts: {reason}"
    );
    let quarantined_fast = {
        let started = Instant::now();
        http.get(&lb.url("/")).await;
        started.elapsed()
    };
    eprintln!("a request while quarantined: {quarantined_fast:?}");

    // A good file replaces it: the good strategy serves (exact round-robin again).
    let tmp = scratch.path().join(".good");
    std::fs::copy(lbhost_e2e::strategy("round_robin"), &tmp).expect("copy");
    std::fs::rename(&tmp, &active).expect("rename");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = http.get(&lb.admin_url("/status")).await.json();
        if status["strategy"]["name"] == json!("active") && lb.log().contains("strategy swapped in")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the good file was not loaded: {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before: Vec<u64> = backends.iter().map(Backend::hits).collect();
    for _ in 0..30 {
        assert_eq!(http.get(&lb.url("/")).await.status, 200);
    }
    let got: Vec<u64> = backends
        .iter()
        .zip(&before)
        .map(|(b, was)| b.hits() - was)
        .collect();
    assert_eq!(got, [10, 10, 10], "round-robin serves after the swap");
    let metrics = http.get(&lb.admin_url("/metrics")).await.text();
    let quarantine_fallbacks = metric(
        &metrics,
        "lbhost_strategy_fallbacks_total{reason=\"quarantine\"}",
    );
    for _ in 0..5 {
        http.get(&lb.url("/")).await;
    }
    let metrics = http.get(&lb.admin_url("/metrics")).await.text();
    assert_eq!(
        metric(
            &metrics,
            "lbhost_strategy_fallbacks_total{reason=\"quarantine\"}"
        ),
        quarantine_fallbacks,
        "the new module is not quarantined"
    );
}

#[tokio::test]
async fn a_component_importing_wasi_filesystem_is_refused_naming_the_import() {
    let scratch = Scratch::new();
    let config = json!({
        "strategy": guest("wasi_import"),
        "backends": [{"url": "http://127.0.0.1:9"}],
    });
    let path = scratch.write("config.json", config.to_string());
    let run = Lb::spawn_raw(["check", "--config", path.to_str().expect("utf-8 path")]).await;
    assert!(!run.status.success(), "refused");
    assert!(
        run.stderr.contains("wasi:filesystem/preopens@0.2.0")
            && run.stderr.contains("does not provide"),
        "names the import: {}",
        run.stderr
    );
    assert_eq!(
        run.stderr.trim().lines().count(),
        1,
        "one line: {}",
        run.stderr
    );
}

#[tokio::test]
async fn a_component_of_another_world_is_refused_saying_so() {
    let scratch = Scratch::new();
    let config = json!({
        "strategy": guest("wrong_world"),
        "backends": [{"url": "http://127.0.0.1:9"}],
    });
    let path = scratch.write("config.json", config.to_string());
    let run = Lb::spawn_raw(["check", "--config", path.to_str().expect("utf-8 path")]).await;
    assert!(!run.status.success(), "refused");
    assert!(
        run.stderr
            .contains("not an lb:strategy@0.2.0 (or 0.1.0) strategy"),
        "says what is wrong: {}",
        run.stderr
    );
}

/// `GET /status` as JSON.
async fn status(http: &Http, lb: &Lb) -> Value {
    let reply = http.get(&lb.admin_url("/status")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_in_on_response_are_counted_in_the_metric_and_status_like_any_other() {
    let backends = start_backends(&["a", "b"]).await;
    let mut c = config("round_robin", &backends);
    c["strategy"] = json!(guest("feedback_trap"));
    let lb = Lb::start(c).await;
    let http = Http::new();
    // One client, one request at a time: each `select` is fine and each `on-response` after it
    // traps, until the fifth fault in five calls quarantines the module (default rule: 5 faults,
    // 0.2 of the calls). Quarantined, it is not called at all.
    for _ in 0..10 {
        let reply = http.get(&lb.url("/")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let metrics = http.get(&lb.admin_url("/metrics")).await.text();
    let s = status(&http, &lb).await;
    let faults = &s["strategy"]["faults"];
    eprintln!(
        "metric {}, /status faults {faults}, faults_by_kind {}",
        metric(&metrics, "lbhost_strategy_faults_total{kind=\"trap\"}"),
        s["strategy"]["faults_by_kind"]
    );
    assert_eq!(
        metric(&metrics, "lbhost_strategy_faults_total{kind=\"trap\"}"),
        5.0,
        "{metrics}"
    );
    assert_eq!(faults["faults_total"], json!(5));
    assert_eq!(s["strategy"]["faults_by_kind"], json!({"trap": 5}));
    assert_eq!(faults["last_fault"]["kind"], json!("trap"));
    assert_eq!(faults["quarantined"], json!(true));
    let reason = faults["quarantine_reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("5 faults in 5 calls "),
        "every faulting call counts as a call: {reason}"
    );
    // Requests while quarantined are fallbacks, not faults.
    assert_eq!(
        metric(
            &metrics,
            "lbhost_strategy_fallbacks_total{reason=\"quarantine\"}"
        ),
        5.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn going_over_the_host_call_limit_is_its_own_fault_kind() {
    let backends = start_backends(&["a", "b"]).await;
    let lb = Lb::start(hostile_config(&backends, "host_call_flood")).await;
    let http = Http::new();
    for _ in 0..3 {
        assert_eq!(http.get(&lb.url("/")).await.status, 200);
    }
    let metrics = http.get(&lb.admin_url("/metrics")).await.text();
    assert_eq!(
        metric(
            &metrics,
            "lbhost_strategy_faults_total{kind=\"host_call_limit\"}"
        ),
        3.0,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "lbhost_strategy_faults_total{kind=\"timeout\"}"),
        0.0,
        "not reported as a deadline: {metrics}"
    );
    let last = &status(&http, &lb).await["strategy"]["faults"]["last_fault"];
    assert_eq!(last["kind"], json!("host_call_limit"));
    let message = last["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("more than 256 host calls in one call"),
        "{message}"
    );
    assert!(
        lb.log().contains("kind=\"host_call_limit\"") || lb.log().contains("kind=host_call_limit"),
        "the fault line names the kind: {}",
        lb.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_fallback_shares_requests_evenly_among_the_eligible_backends() {
    let backends = start_backends(&["a", "b"]).await;
    // c listens nowhere: the first health probe takes it down.
    let down = lbhost_e2e::free_addr();
    let mut c = config("round_robin", &backends);
    c["backends"]
        .as_array_mut()
        .expect("backends")
        .push(json!({"url": format!("http://{down}")}));
    c["strategy"] = json!(guest("hostile"));
    c["strategy_config"] = json!({"mode": "out_of_range"});
    c["health_check"] = json!({
        "path": "/health", "interval": "100ms", "timeout": "1s",
        "healthy_threshold": 1, "unhealthy_threshold": 1,
    });
    let lb = Lb::start(c).await;
    let http = Http::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(&http, &lb).await["backends"][2]["eligible"] != json!(false) {
        assert!(Instant::now() < deadline, "c was never taken down");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every answer of the strategy is out of range: every request is the fallback's.
    load(&lb, 4, 150).await;
    let hits: Vec<u64> = backends.iter().map(Backend::hits).collect();
    eprintln!(
        "fallback shares over 600 requests with c down: a {}, b {}",
        hits[0], hits[1]
    );
    assert_eq!(hits.iter().sum::<u64>(), 600);
    for (backend, n) in backends.iter().zip(&hits) {
        assert!(
            (240..=360).contains(n),
            "{} got {n} of 600 (want 40-60 %): {hits:?}",
            backend.name()
        );
    }
    let metrics = http.get(&lb.admin_url("/metrics")).await.text();
    assert_eq!(
        metric_total(&metrics, "lbhost_strategy_fallbacks_total{"),
        600.0,
        "{metrics}"
    );
}
