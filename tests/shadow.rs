//! A strategy in shadow (`POST /strategy` with `"mode": "shadow"`): asked after the active
//! decision on a sampled share of requests, its answers recorded in `/status` and `/metrics` and
//! never used; a faulting shadow never fails a request.

use std::time::{Duration, Instant};

use hyper::Request;
use lbhost_e2e::{
    chromium, config, full, headless, metric, start_backends, workspace_root, Http, Lb, Reply,
};
use serde_json::{json, Value};

async fn post(http: &Http, lb: &Lb, body: &str) -> Reply {
    let request = Request::post(lb.admin_url("/strategy"))
        .body(full(body.to_string()))
        .expect("a valid request");
    http.send(request).await
}

async fn reload(http: &Http, lb: &Lb) -> Reply {
    let request = Request::post(lb.admin_url("/reload"))
        .body(full(""))
        .expect("a valid request");
    http.send(request).await
}

async fn status(http: &Http, lb: &Lb) -> Value {
    http.get(&lb.admin_url("/status")).await.json()
}

/// One worker, so requests are routed one after another, in order; clients told apart by
/// X-Forwarded-For from the trusted loopback peer.
fn one_worker(strategy: &str, backends: &[demo_backend::Backend]) -> Value {
    let mut config = config(strategy, backends);
    config["workers"] = json!(1);
    config["trusted_proxies"] = json!(["127.0.0.1/32"]);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_agreement_matches_what_the_two_strategies_decide() {
    let backends = start_backends(&["a", "b", "c"]).await;
    let lb = Lb::start(one_worker("ip_hash", &backends)).await;
    let http = Http::new();
    let reply = post(
        &http,
        &lb,
        r#"{"name": "round_robin", "mode": "shadow", "sample": 1.0}"#,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(status(&http, &lb).await["strategy"]["name"], "ip_hash");

    // The shadow round-robin answers k % 3 for the k-th request; ip_hash's answer is what the
    // client sees.
    let names = ["a", "b", "c"];
    let mut agreed = 0;
    let mut active = [0u64; 3];
    for k in 0..300u32 {
        let reply = http
            .get_with(
                &lb.url("/"),
                &[("x-forwarded-for", &format!("10.7.{}.{}", k / 200, k % 200))],
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let backend = reply.header("x-backend").unwrap();
        let index = names.iter().position(|n| *n == backend).unwrap();
        active[index] += 1;
        if index == (k % 3) as usize {
            agreed += 1;
        }
    }
    let shadow = status(&http, &lb).await["shadow"].clone();
    assert_eq!(shadow["name"], "round_robin");
    assert_eq!(shadow["requests"], 300, "{shadow}");
    let agreement = shadow["agreement"].as_f64().unwrap();
    assert!(
        (agreement - f64::from(agreed) / 300.0).abs() < 1e-9,
        "status says {agreement}, the strategies agreed on {agreed} of 300"
    );
    for (i, b) in backends.iter().enumerate() {
        let address = b.url().trim_start_matches("http://").to_string();
        assert_eq!(shadow["shares"][&address], 100, "{shadow}");
        assert_eq!(shadow["active_shares"][&address], active[i], "{shadow}");
    }
    assert_eq!(shadow["faults"], json!({}));
    let metrics = http.get(&lb.admin_url("/metrics")).await.text();
    assert_eq!(
        metric(&metrics, r#"lbhost_shadow_selects_total{outcome="agree"}"#),
        f64::from(agreed)
    );

    let reply = post(&http, &lb, r#"{"abort": true}"#).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["shadow_ended"], true);
    assert_eq!(status(&http, &lb).await["shadow"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulting_shadow_never_fails_a_request_and_only_the_sample_asks_it() {
    let backends = start_backends(&["a", "b", "c"]).await;
    let mut config = one_worker("round_robin", &backends);
    config["strategies_dir"] = json!(workspace_root().join("tests/guests"));
    let lb = Lb::start(config).await;
    let http = Http::new();
    // A shadow that panics on every 10th call, asked about half the requests.
    let reply = post(
        &http,
        &lb,
        r#"{"name": "hostile", "mode": "shadow", "sample": 0.5, "config": {"mode": "panic_every_nth", "n": 10}}"#,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    for _ in 0..600 {
        let reply = http.get(&lb.url("/")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    // lbhost's own count of the requests answered through each backend.
    let now = status(&http, &lb).await;
    let served: Vec<u64> = (0..3)
        .map(|i| now["backends"][i]["requests_total"].as_u64().unwrap())
        .collect();
    assert_eq!(
        served,
        [200, 200, 200],
        "the active round-robin stays exact"
    );
    let shadow = now["shadow"].clone();
    let asked = shadow["requests"].as_u64().unwrap();
    assert!((230..=370).contains(&asked), "about half asked: {shadow}");
    let traps = shadow["faults"]["trap"].as_u64().unwrap();
    assert!(
        traps >= asked / 10 - 1 && traps <= asked / 10 + 1,
        "{shadow}"
    );

    // A shadow that never returns costs each sampled request at most its deadline.
    let reply = post(
        &http,
        &lb,
        r#"{"name": "hostile", "mode": "shadow", "sample": 1.0, "config": {"mode": "infinite_loop"}}"#,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let mut slowest = Duration::ZERO;
    for _ in 0..30 {
        let started = Instant::now();
        let reply = http.get(&lb.url("/")).await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    assert!(slowest < Duration::from_millis(200), "slowest {slowest:?}");
    let shadow = status(&http, &lb).await["shadow"].clone();
    assert!(
        shadow["faults"]["timeout"].as_u64().unwrap() >= 5,
        "{shadow}"
    );
    assert_eq!(shadow["fault_status"]["quarantined"], true, "{shadow}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_shadow_requests_are_refused_and_change_nothing() {
    let backends = start_backends(&["a", "b"]).await;
    let lb = Lb::start(config("round_robin", &backends)).await;
    let http = Http::new();
    for body in [
        r#"{"name": "ip_hash", "mode": "shadow", "sample": 0}"#,
        r#"{"name": "ip_hash", "mode": "shadow", "sample": 1.5}"#,
        r#"{"name": "ip_hash", "mode": "sideways"}"#,
        r#"{"name": "ip_hash", "sample": 0.1}"#,
        r#"{"mode": "shadow"}"#,
    ] {
        let reply = post(&http, &lb, body).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text());
    }
    let reply = post(&http, &lb, r#"{"name": "nonexistent", "mode": "shadow"}"#).await;
    assert_eq!(reply.status, 422, "{}", reply.text());
    let now = status(&http, &lb).await;
    assert_eq!(now["shadow"], Value::Null);
    assert_eq!(now["strategy"]["name"], "round_robin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_the_shadow_and_charts_both_strategies_shares() {
    let Some(chromium) = chromium() else {
        eprintln!(
            "SKIPPED the_status_page_shows_the_shadow_and_charts_both_strategies_shares: \
             chromium is not installed (apt-get install chromium, or set LBHOST_CHROMIUM)"
        );
        return;
    };
    let backends = start_backends(&["a", "b"]).await;
    let lb = Lb::start(one_worker("round_robin", &backends)).await;
    let http = Http::new();
    let dom = headless(&chromium, &lb.admin_url("/"), &["--dump-dom".into()]).await;
    assert!(
        dom.contains(r#"<section id="shadow" hidden="">"#),
        "no shadow, no section"
    );
    let reply = post(
        &http,
        &lb,
        r#"{"name": "ip_hash", "mode": "shadow", "sample": 1.0}"#,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    for k in 0..40 {
        let ip = format!("10.8.0.{k}");
        let reply = http
            .get_with(&lb.url("/"), &[("x-forwarded-for", ip.as_str())])
            .await;
        assert_eq!(reply.status, 200);
    }
    let dom = headless(&chromium, &lb.admin_url("/"), &["--dump-dom".into()]).await;
    assert!(dom.contains(r#"<section id="shadow">"#), "{dom}");
    assert!(dom.contains("ip_hash"), "the shadow's name");
    for b in &backends {
        let address = b.url().trim_start_matches("http://").to_string();
        for kind in ["active", "shadow"] {
            let line = format!(r#"data-backend="{address}" data-kind="{kind}""#);
            assert!(dom.contains(&line), "no {kind} line for {address}:\n{dom}");
        }
    }
    // And as a person sees it.
    let shot = lb.dir().join("shadow.png");
    headless(
        &chromium,
        &lb.admin_url("/"),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1200,1100".into(),
        ],
    )
    .await;
    assert!(std::fs::metadata(&shot)
        .map(|m| m.len() > 10_000)
        .unwrap_or(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_starts_a_shadow_and_a_reload_ends_or_keeps_it() {
    let backends = start_backends(&["a", "b"]).await;
    let mut config = one_worker("ip_hash", &backends);
    config["shadow"] = json!({"strategy": lbhost_e2e::strategy("round_robin"), "sample": 1.0});
    let lb = Lb::start(config).await;
    let http = Http::new();
    for _ in 0..30 {
        assert_eq!(http.get(&lb.url("/")).await.status, 200);
    }
    let shadow = status(&http, &lb).await["shadow"].clone();
    assert_eq!(shadow["name"], "round_robin", "{shadow}");
    assert_eq!(shadow["requests"], 30, "{shadow}");

    // A reload with a bad shadow is refused whole: the running one stays.
    let path = lb.dir().join("config.json");
    let mut written: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    written["shadow"]["sample"] = json!(2);
    std::fs::write(&path, written.to_string()).unwrap();
    let reply = reload(&http, &lb).await;
    assert_ne!(reply.status, 200, "{}", reply.text());
    assert!(reply.text().contains("shadow.sample"), "{}", reply.text());
    assert_eq!(status(&http, &lb).await["shadow"]["name"], "round_robin");

    // Without `shadow` in the file, a reload ends it.
    written.as_object_mut().unwrap().remove("shadow");
    std::fs::write(&path, written.to_string()).unwrap();
    let reply = reload(&http, &lb).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(status(&http, &lb).await["shadow"], Value::Null);
}

#[tokio::test]
async fn check_names_a_bad_shadow_in_one_line() {
    let backends = start_backends(&["a"]).await;
    let scratch = lbhost_e2e::Scratch::new();
    for (shadow, named) in [
        (
            json!({"strategy": lbhost_e2e::strategy("round_robin"), "sample": 0}),
            "shadow.sample",
        ),
        (json!({"strategy": "nowhere.wasm"}), "shadow.strategy"),
        (
            json!({"strategy": lbhost_e2e::strategy("round_robin"), "smaple": 0.1}),
            "smaple",
        ),
    ] {
        let mut config = config("round_robin", &backends);
        config["shadow"] = shadow;
        let path = scratch.write("config.json", config.to_string());
        let run = Lb::spawn_raw(["check", "--config", path.to_str().unwrap()]).await;
        assert!(!run.status.success(), "{named}: {}", run.stdout);
        let stderr = run.stderr.trim_end();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(named), "{named}: {stderr}");
    }
}
