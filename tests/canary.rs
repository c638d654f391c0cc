//! A strategy in canary (`POST /strategy` with `"mode": "canary"`, or the config's `canary`):
//! it routes its share of the clients, a client stays on one side, the share steps by hand or
//! on a schedule, a canary that does worse than the active strategy is rolled back by itself,
//! promotion makes it active — and no request fails through any of it.
//!
//! Two `locality` strategies pick disjoint backends: the active one sends everything to the
//! backend labelled `v1`, the canary to the one labelled `v2`, so the backend that answers says
//! which strategy routed the request.

use std::time::Duration;

use hyper::Request;
use lbhost_e2e::{
    chromium, full, headless, metric, start_backends, workspace_root, Http, Lb, Reply,
};
use serde_json::{json, Value};

async fn post(http: &Http, lb: &Lb, body: Value) -> Reply {
    let request = Request::post(lb.admin_url("/strategy"))
        .body(full(body.to_string()))
        .expect("a valid request");
    http.send(request).await
}

async fn status(http: &Http, lb: &Lb) -> Value {
    http.get(&lb.admin_url("/status")).await.json()
}

/// Backend `v1` (the active strategy's) and `v2` (the canary's), lbhost in front with the
/// active `locality` on `v1`; clients told apart by X-Forwarded-For.
async fn two_sides(extra: Value) -> (Vec<demo_backend::Backend>, Lb) {
    let backends = start_backends(&["v1", "v2"]).await;
    let mut config = json!({
        "strategy": lbhost_e2e::strategy("locality"),
        "strategy_config": {"label": "version", "local": "v1"},
        "backends": [
            {"url": backends[0].url(), "labels": {"version": "v1"}},
            {"url": backends[1].url(), "labels": {"version": "v2"}},
        ],
        "trusted_proxies": ["127.0.0.1/32"],
    });
    for (k, v) in extra.as_object().into_iter().flatten() {
        config[k] = v.clone();
    }
    let lb = Lb::start(config).await;
    (backends, lb)
}

/// The canary body for `locality` on `v2`, with `plan` merged in.
fn canary(plan: Value) -> Value {
    let mut body = json!({
        "name": "locality", "mode": "canary",
        "config": {"label": "version", "local": "v2"},
    });
    for (k, v) in plan.as_object().into_iter().flatten() {
        body[k] = v.clone();
    }
    body
}

/// `GET /` as client `ip` (extra headers after); panics unless it is answered 200. Returns the
/// backend that answered.
async fn get_as(http: &Http, lb: &Lb, ip: &str, headers: &[(&str, &str)]) -> String {
    let mut all = vec![("x-forwarded-for", ip)];
    all.extend_from_slice(headers);
    let reply = http.get_with(&lb.url("/"), &all).await;
    assert_eq!(reply.status, 200, "{ip}: {}", reply.text());
    reply.header("x-backend").unwrap_or("").to_string()
}

fn client(i: u32) -> String {
    format!("10.{}.{}.{}", i / 65536 % 256, i / 256 % 256, i % 256)
}

/// Of `clients` clients from `first` on, how many the canary routed.
async fn canary_count(http: &Http, lb: &Lb, first: u32, clients: u32) -> u32 {
    let mut on = 0;
    for i in first..first + clients {
        if get_as(http, lb, &client(i), &[]).await == "v2" {
            on += 1;
        }
    }
    on
}

fn assert_near(what: &str, got: u32, of: u32, share: f64) {
    let seen = f64::from(got) / f64::from(of);
    assert!(
        (seen - share).abs() < 0.05,
        "{what}: {got} of {of} ({seen:.3}), wanted {share}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_share_holds_a_client_stays_on_its_side_and_steps_by_hand() {
    let (_backends, lb) = two_sides(json!({})).await;
    let http = Http::new();
    let reply = post(&http, &lb, canary(json!({"share": 0.2}))).await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    let first = canary_count(&http, &lb, 0, 800).await;
    assert_near("at 20 %", first, 800, 0.2);
    // Each client keeps its side, request after request.
    let mut sides = Vec::new();
    for i in 0..40 {
        sides.push(get_as(&http, &lb, &client(i), &[]).await);
    }
    for _ in 0..2 {
        for (i, side) in sides.iter().enumerate() {
            assert_eq!(&get_as(&http, &lb, &client(i as u32), &[]).await, side);
        }
    }
    let now = status(&http, &lb).await;
    let c = &now["canary"];
    assert_eq!(c["state"], "running", "{c}");
    assert_eq!(c["share"], 0.2);
    assert_eq!(c["key"], "client_ip");
    let routed = first + sides.iter().filter(|s| *s == "v2").count() as u32 * 3;
    assert_eq!(c["requests"], routed, "{c}");
    assert_eq!(c["errors"], 0);
    assert_eq!(c["sides"]["active"]["total"]["requests"], 920 - routed);
    let v2 = lb_address(&now, 1);
    assert_eq!(c["sides"]["canary"]["shares"][&v2], routed, "{c}");
    let metrics = http.get(&lb.admin_url("/metrics")).await.text();
    let series = r#"lbhost_canary_requests_total{result="ok",side="canary"}"#;
    assert_eq!(metric(&metrics, series), f64::from(routed), "{metrics}");

    // Up to 60 % by hand: the figures stay, the clients already on the canary stay there.
    let reply = post(&http, &lb, json!({"mode": "canary", "share": 0.6})).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["share"], 0.6);
    for (i, side) in sides.iter().enumerate() {
        if side == "v2" {
            assert_eq!(get_as(&http, &lb, &client(i as u32), &[]).await, "v2");
        }
    }
    let second = canary_count(&http, &lb, 1000, 600).await;
    assert_near("at 60 %", second, 600, 0.6);
    assert!(status(&http, &lb).await["canary"]["requests"].as_u64() > Some(u64::from(routed)));

    // Aborted: everyone is back on the active strategy, the canary's record stays.
    let reply = post(&http, &lb, json!({"abort": true})).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["canary_ended"], true);
    assert_eq!(canary_count(&http, &lb, 0, 100).await, 0);
    let c = status(&http, &lb).await["canary"].clone();
    assert_eq!(c["state"], "aborted", "{c}");
    let metrics = http.get(&lb.admin_url("/metrics")).await.text();
    assert_eq!(
        metric(&metrics, r#"lbhost_canary_rollbacks_total{reason="abort"}"#),
        1.0
    );
}

/// The address of backend `i` in `/status`.
fn lb_address(status: &Value, i: usize) -> String {
    status["backends"][i]["address"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_key_keeps_a_user_on_one_side_from_any_address() {
    let (_backends, lb) = two_sides(json!({})).await;
    let http = Http::new();
    let body = canary(json!({"share": 0.5, "key": "header:x-user"}));
    assert_eq!(post(&http, &lb, body).await.status, 200);
    let mut on = 0;
    for user in 0..200 {
        let user = format!("user-{user}");
        let side = get_as(&http, &lb, &client(1), &[("x-user", &user)]).await;
        for ip in 2..5 {
            let again = get_as(&http, &lb, &client(ip), &[("x-user", &user)]).await;
            assert_eq!(again, side, "{user} moved");
        }
        on += u32::from(side == "v2");
    }
    assert_near("users at 50 %", on, 200, 0.5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_steps_up_and_promotion_makes_the_canary_active() {
    let (_backends, lb) = two_sides(json!({})).await;
    let http = Http::new();
    let body = canary(json!({"steps": [0.1, 0.5], "step_every": "1s"}));
    assert_eq!(post(&http, &lb, body).await.status, 200);
    assert_near("step 0", canary_count(&http, &lb, 0, 400).await, 400, 0.1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_near("step 1", canary_count(&http, &lb, 400, 400).await, 400, 0.5);
    let c = status(&http, &lb).await["canary"].clone();
    assert_eq!(c["share"], 0.5, "{c}");
    assert_eq!(c["schedule"]["step"], 1, "{c}");

    let reply = post(&http, &lb, json!({"promote": true})).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["promoted"], "locality");
    // Every client is on the promoted strategy now, and it is what a switch would have made:
    // the running config names its file and its parameters.
    assert_eq!(canary_count(&http, &lb, 0, 100).await, 100);
    let now = status(&http, &lb).await;
    assert_eq!(now["canary"]["state"], "promoted");
    assert_eq!(now["reload"]["last_strategy_reload"]["error"], Value::Null);
    // Nothing left to promote or step.
    let reply = post(&http, &lb, json!({"promote": true})).await;
    assert_eq!(reply.status, 409, "{}", reply.text());
    let reply = post(&http, &lb, json!({"mode": "canary", "share": 0.3})).await;
    assert_eq!(reply.status, 409, "{}", reply.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_whose_backend_fails_is_rolled_back_with_no_failed_request() {
    // Failures are only seen through the canary's figures: no ejection, no circuit, and a
    // retry budget for every request (a retry goes to the active side's backend).
    let (backends, lb) = two_sides(json!({
        "passive": {"enabled": false},
        "circuit_breaker": {"enabled": false},
        "retries": {"max": 2, "budget_percent": 100, "min_per_second": 1000},
    }))
    .await;
    let http = Http::new();
    let body = canary(json!({"share": 0.5, "rollback": {"window": "10s", "min_requests": 20}}));
    assert_eq!(post(&http, &lb, body).await.status, 200);
    let healthy = canary_count(&http, &lb, 0, 100).await;
    assert!(healthy > 25, "{healthy}");
    assert_eq!(status(&http, &lb).await["canary"]["state"], "running");

    // The canary's backend goes away: its requests fail over to v1, and it is rolled back.
    let mut backends = backends.into_iter();
    let v1 = backends.next().expect("v1");
    if let Some(v2) = backends.next() {
        v2.stop().await;
    }
    let mut rolled_back_after = None;
    for i in 0..400u32 {
        assert_eq!(get_as(&http, &lb, &client(i), &[]).await, "v1");
        if i % 20 == 19 && status(&http, &lb).await["canary"]["state"] == "rolled_back" {
            rolled_back_after = Some(i + 1);
            break;
        }
    }
    let now = status(&http, &lb).await;
    let c = &now["canary"];
    assert!(rolled_back_after.is_some(), "{c}");
    let reason = c["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("errors: "), "{reason}");
    assert_eq!(c["share"], 0.0);
    let metrics = http.get(&lb.admin_url("/metrics")).await.text();
    assert_eq!(
        metric(
            &metrics,
            r#"lbhost_canary_rollbacks_total{reason="errors"}"#
        ),
        1.0
    );
    assert!(lb.log().contains("canary rolled back"), "{}", lb.log());
    // No retry is needed any more: every request goes to v1 at once.
    let before = v1.hits();
    for i in 0..50 {
        get_as(&http, &lb, &client(i), &[]).await;
    }
    assert_eq!(v1.hits() - before, 50);
    // Each of the canary's errors was an attempt on v2 that failed and was retried on v1.
    assert!(c["errors"].as_u64() > Some(0), "{c}");
    assert_eq!(
        now["backends"][1]["retries_total"], c["errors"],
        "the failed attempts were retried: {now}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_canary_is_rolled_back_on_latency() {
    let (backends, lb) = two_sides(json!({})).await;
    let http = Http::new();
    backends[1].set_delay(Duration::from_millis(40));
    let rule = json!({"max_p99_increase": 0.5, "p99_slack": "10ms"});
    let body = canary(json!({"share": 0.5, "rollback": rule}));
    assert_eq!(post(&http, &lb, body).await.status, 200);
    // p99s are compared from 100 requests on each side: 8 clients at a time.
    for round in 0..3u32 {
        let mut tasks = Vec::new();
        for t in 0..8u32 {
            let (http, url) = (http.clone(), lb.url("/"));
            tasks.push(tokio::spawn(async move {
                for i in 0..30 {
                    let ip = client(round * 10_000 + t * 100 + i);
                    let reply = http.get_with(&url, &[("x-forwarded-for", &ip)]).await;
                    assert_eq!(reply.status, 200, "{}", reply.text());
                }
            }));
        }
        for task in tasks {
            task.await.expect("a client task");
        }
        if status(&http, &lb).await["canary"]["state"] != "running" {
            break;
        }
    }
    let c = status(&http, &lb).await["canary"].clone();
    assert_eq!(c["state"], "rolled_back", "{c}");
    let reason = c["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("latency: p99 "), "{reason}");
    assert!(
        c["sides"]["canary"]["total"]["p99_ms"].as_f64() > Some(40.0),
        "{c}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulting_canary_is_served_by_the_fallback_and_rolled_back() {
    let backends = start_backends(&["a", "b"]).await;
    let mut config = lbhost_e2e::config("round_robin", &backends);
    config["strategies_dir"] = json!(workspace_root().join("tests/guests"));
    config["trusted_proxies"] = json!(["127.0.0.1/32"]);
    let lb = Lb::start(config).await;
    let http = Http::new();
    let body = json!({
        "name": "hostile", "mode": "canary", "share": 0.5,
        "config": {"mode": "out_of_range"}, "rollback": {"min_requests": 10},
    });
    let reply = post(&http, &lb, body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    for i in 0..300u32 {
        get_as(&http, &lb, &client(i), &[]).await;
        if i % 10 == 9 && status(&http, &lb).await["canary"]["state"] != "running" {
            break;
        }
    }
    let c = status(&http, &lb).await["canary"].clone();
    assert_eq!(c["state"], "rolled_back", "{c}");
    assert!(
        c["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("faults: "),
        "{c}"
    );
    assert!(c["faults"].as_u64() >= Some(10), "{c}");
    assert_eq!(c["errors"], 0, "the fallback served them: {c}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_canary_requests_are_refused_and_a_shadow_can_be_promoted() {
    let (_backends, lb) = two_sides(json!({})).await;
    let http = Http::new();
    for (body, code) in [
        (canary(json!({"share": 1.5})), 400),
        (
            canary(json!({"share": 0.1, "steps": [0.1], "step_every": "1s"})),
            400,
        ),
        (canary(json!({"steps": [0.1]})), 400),
        (canary(json!({"key": "ip"})), 400),
        (canary(json!({"rollback": {"windw": "1s"}})), 400),
        (canary(json!({"sample": 0.1})), 400),
        (json!({"name": "locality", "share": 0.1}), 400),
        (json!({"mode": "canary", "rollback": {}}), 400),
        (json!({"promote": true, "mode": "sideways"}), 400),
        (json!({"mode": "canary", "share": 0.1}), 409),
        (json!({"promote": true}), 409),
        (canary(json!({"name": "nonexistent"})), 422),
    ] {
        let reply = post(&http, &lb, body.clone()).await;
        assert_eq!(reply.status, code, "{body}: {}", reply.text());
    }
    assert_eq!(status(&http, &lb).await["canary"], Value::Null);
    assert_eq!(canary_count(&http, &lb, 0, 20).await, 0);

    // A shadow promoted: the active strategy now, the shadow gone.
    let body = json!({"name": "locality", "mode": "shadow", "sample": 1.0,
                      "config": {"label": "version", "local": "v2"}});
    assert_eq!(post(&http, &lb, body).await.status, 200);
    assert_eq!(canary_count(&http, &lb, 0, 20).await, 0);
    let reply = post(&http, &lb, json!({"promote": true})).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(canary_count(&http, &lb, 0, 20).await, 20);
    assert_eq!(status(&http, &lb).await["shadow"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_starts_a_canary_and_a_reload_keeps_or_ends_it() {
    let plan = json!({"strategy": lbhost_e2e::strategy("locality"),
                      "strategy_config": {"label": "version", "local": "v2"}, "share": 0.5});
    let (_backends, lb) = two_sides(json!({"canary": plan})).await;
    let http = Http::new();
    assert_near(
        "from the config",
        canary_count(&http, &lb, 0, 400).await,
        400,
        0.5,
    );
    let reload = || async {
        let request = Request::post(lb.admin_url("/reload"))
            .body(full(""))
            .expect("a valid request");
        http.send(request).await
    };
    // The same file: the same canary, its figures kept.
    assert_eq!(reload().await.status, 200);
    let kept = status(&http, &lb).await["canary"]["requests"].as_u64();
    assert!(kept > Some(150), "{kept:?}");
    // A file without it ends it.
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(lb.dir().join("config.json")).unwrap())
            .unwrap();
    config.as_object_mut().map(|c| c.remove("canary"));
    std::fs::write(lb.dir().join("config.json"), config.to_string()).unwrap();
    assert_eq!(reload().await.status, 200);
    assert_eq!(status(&http, &lb).await["canary"], Value::Null);
    assert_eq!(canary_count(&http, &lb, 0, 50).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_the_canary_and_charts_both_sides() {
    let Some(chromium) = chromium() else {
        eprintln!(
            "SKIPPED the_status_page_shows_the_canary_and_charts_both_sides: chromium is not \
             installed (apt-get install chromium, or set LBHOST_CHROMIUM)"
        );
        return;
    };
    let (_backends, lb) = two_sides(json!({})).await;
    let http = Http::new();
    let dom = headless(&chromium, &lb.admin_url("/"), &["--dump-dom".into()]).await;
    assert!(
        dom.contains(r#"<section id="canary" hidden="">"#),
        "no canary, no section"
    );
    assert_eq!(
        post(&http, &lb, canary(json!({"share": 0.5}))).await.status,
        200
    );
    canary_count(&http, &lb, 0, 60).await;
    let dom = headless(&chromium, &lb.admin_url("/"), &["--dump-dom".into()]).await;
    assert!(dom.contains(r#"<section id="canary">"#), "{dom}");
    assert!(dom.contains(r#"<tr data-side="canary">"#), "{dom}");
    let now = status(&http, &lb).await;
    for (i, kind) in [(0, "active"), (1, "canary")] {
        let line = format!(
            r#"data-backend="{}" data-kind="{kind}""#,
            lb_address(&now, i)
        );
        assert!(dom.contains(&line), "no {kind} line:\n{dom}");
    }
    let shot = lb.dir().join("canary.png");
    headless(
        &chromium,
        &lb.admin_url("/"),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1200,1300".into(),
        ],
    )
    .await;
    assert!(std::fs::metadata(&shot)
        .map(|m| m.len() > 10_000)
        .unwrap_or(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_a_bad_canary_in_one_line() {
    let backends = start_backends(&["a"]).await;
    let scratch = lbhost_e2e::Scratch::new();
    let round_robin = lbhost_e2e::strategy("round_robin");
    for (canary, named) in [
        (json!({"strategy": round_robin, "share": 2}), "canary.share"),
        (json!({"strategy": "nowhere.wasm"}), "canary.strategy"),
        (
            json!({"strategy": round_robin, "steps": [0.1, 0.5]}),
            "canary.step_every",
        ),
        (
            json!({"strategy": round_robin, "rollback": {"window": "0s"}}),
            "canary.rollback.window",
        ),
        (json!({"strategy": round_robin, "shares": 0.1}), "shares"),
    ] {
        let mut config = lbhost_e2e::config("round_robin", &backends);
        config["canary"] = canary;
        let path = scratch.write("config.json", config.to_string());
        let run = Lb::spawn_raw(["check", "--config", path.to_str().unwrap()]).await;
        assert!(!run.status.success(), "{named}: {}", run.stdout);
        let stderr = run.stderr.trim_end();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(named), "{named}: {stderr}");
    }
}
