//! The strategy contract through the real lbhost: components built against 0.1.0 still load and
//! serve; 0.2.0's response fields (a sticky cookie set on the first response and honoured
//! after), its clock (a newly added backend ramps up under slow start), a value backends report
//! in a response field, and a strategy that puts a field it may not put is a fault served by
//! the fallback.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use demo_backend::Backend;
use hyper::Request;
use lbhost_e2e::{bench_guest, config, full, guest, metric_total, start_backends, Http, Lb, Reply};
use serde_json::{json, Value};

/// Requests each backend has received.
fn hits(backends: &[Backend]) -> Vec<u64> {
    backends.iter().map(Backend::hits).collect()
}

/// `config` with the strategy `path` and its parameters.
fn with_strategy(backends: &[Backend], path: String, params: Value) -> Value {
    let mut c = config("round_robin", backends);
    c["strategy"] = json!(path);
    c["strategy_config"] = params;
    c
}

/// Rewrites the running config's backends to `backends` and reloads it.
async fn reload_backends(http: &Http, lb: &Lb, backends: &[&Backend]) {
    let path = lb.dir().join("config.json");
    let mut current: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("reading")).expect("JSON");
    current["backends"] = backends.iter().map(|b| json!({"url": b.url()})).collect();
    std::fs::write(&path, serde_json::to_vec(&current).expect("JSON")).expect("writing");
    let request = Request::post(lb.admin_url("/reload"))
        .body(full(""))
        .expect("a valid request");
    let reply = http.send(request).await;
    assert_eq!(reply.status, 200, "reload: {}", reply.text());
}

async fn faults(http: &Http, lb: &Lb) -> f64 {
    let metrics = http.get(&lb.admin_url("/metrics")).await.text();
    metric_total(&metrics, "lbhost_strategy_faults_total")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_built_against_0_1_0_still_loads_and_serves() {
    let backends = start_backends(&["a", "b", "c"]).await;
    let http = Http::new();
    // As the 0.1.0 call floor: exact round-robin.
    let lb = Lb::start(with_strategy(&backends, guest("v0_1"), json!({}))).await;
    for _ in 0..300 {
        let reply = http.get(&lb.url("/")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    assert_eq!(hits(&backends), [100, 100, 100]);
    // With its columns, feedback and a header read through the 0.1.0 request import.
    let params = json!({"route_header": "x-route"});
    let lb = Lb::start(with_strategy(&backends, guest("v0_1"), params)).await;
    for _ in 0..50 {
        let reply = http.get_with(&lb.url("/"), &[("x-route", "2")]).await;
        assert_eq!(reply.header("x-backend"), Some("c"), "{}", reply.text());
    }
    assert_eq!(faults(&http, &lb).await, 0.0, "{}", lb.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_cookie_pins_on_the_first_response_and_re_pins_when_the_backend_is_removed() {
    let backends = start_backends(&["a", "b", "c"]).await;
    let mut c = config("sticky_cookie", &backends);
    c["strategy_config"] = json!({"max_age": 3600});
    let lb = Lb::start(c).await;
    for http in [Http::new(), Http::h2c()] {
        let first = http.get(&lb.url("/")).await;
        assert_eq!(first.status, 200, "{}", first.text());
        let pinned = first.header("x-backend").expect("named").to_string();
        let cookie = set_cookie(&first);
        let value = cookie.strip_prefix("lbsticky=").expect("named lbsticky");
        assert!(
            cookie.ends_with("; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax"),
            "{cookie}"
        );
        // An opaque pin: hex digits, not the backend's address (a hex digit string may well
        // contain "127" by chance, so the address is looked for with its separators).
        let pin = &value[..16];
        assert!(pin.bytes().all(|b| b.is_ascii_hexdigit()), "{pin}");
        for b in &backends {
            let port = b.url().rsplit(':').next().expect("a port").to_string();
            assert!(
                !value.contains("127.0.0.1") && !value.contains(&format!(":{port}")),
                "{value}"
            );
        }
        let header = format!("lbsticky={pin}");
        for _ in 0..30 {
            let reply = http.get_with(&lb.url("/"), &[("cookie", &header)]).await;
            assert_eq!(reply.header("x-backend"), Some(pinned.as_str()));
            assert_eq!(reply.headers.get("set-cookie"), None, "pinned already");
        }
    }

    // The pinned backend leaves: the client goes elsewhere, pinned anew, and stays there.
    let http = Http::new();
    let first = http.get(&lb.url("/")).await;
    let pinned = first.header("x-backend").expect("named").to_string();
    let old = set_cookie(&first)
        .split(';')
        .next()
        .expect("pair")
        .to_string();
    let remaining: Vec<&Backend> = backends.iter().filter(|b| b.name() != pinned).collect();
    reload_backends(&http, &lb, &remaining).await;
    let moved = http.get_with(&lb.url("/"), &[("cookie", &old)]).await;
    assert_eq!(moved.status, 200, "{}", moved.text());
    let now = moved.header("x-backend").expect("named").to_string();
    assert_ne!(now, pinned);
    let new = set_cookie(&moved)
        .split(';')
        .next()
        .expect("pair")
        .to_string();
    assert_ne!(new, old);
    for _ in 0..20 {
        let reply = http.get_with(&lb.url("/"), &[("cookie", &new)]).await;
        assert_eq!(reply.header("x-backend"), Some(now.as_str()));
        assert_eq!(reply.headers.get("set-cookie"), None);
    }
}

/// The `Set-Cookie` of `reply`, which must have exactly one.
fn set_cookie(reply: &Reply) -> String {
    let all: Vec<_> = reply.headers.get_all("set-cookie").iter().collect();
    assert_eq!(all.len(), 1, "{:?}", reply.headers);
    all[0].to_str().expect("text").to_string()
}

/// Weighted with a 3 s slow start window: a backend added under load gets a small share at
/// first, more each second, and its full third once the window has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_start_ramps_up_a_newly_added_backend() {
    let backends = start_backends(&["a", "b", "c"]).await;
    let mut c = config("weighted", &backends[..2]);
    c["strategy_config"] = json!({"slow_start_window": "3s"});
    let lb = Lb::start(c).await;
    let http = Http::new();
    // Past a and b's own window (they joined at start).
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (url, stop) = (lb.url("/"), stop.clone());
            tokio::spawn(async move {
                let http = Http::new();
                while !stop.load(Ordering::Relaxed) {
                    let reply = http.get(&url).await;
                    assert_eq!(reply.status, 200, "{}", reply.text());
                }
            })
        })
        .collect();
    reload_backends(&http, &lb, &backends.iter().collect::<Vec<_>>()).await;
    let mut shares = Vec::new();
    for window in [1000, 1000, 1000, 500, 1000] {
        let before = hits(&backends);
        tokio::time::sleep(Duration::from_millis(window)).await;
        let during: Vec<u64> = hits(&backends)
            .iter()
            .zip(before)
            .map(|(after, before)| after - before)
            .collect();
        shares.push(during[2] as f64 / during.iter().sum::<u64>().max(1) as f64);
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("client task");
    }
    eprintln!("share of the new backend per window (1 s, 1 s, 1 s, 0.5 s, 1 s): {shares:.3?}");
    // Factor max(t, 1 s) / 3 s: about 1/3, 1/2, 5/6 over the seconds, shares 0.14, 0.2, 0.29;
    // the fourth window straddles the window's end; then a full third.
    let [first, second, third, _, after] = shares[..] else {
        unreachable!()
    };
    assert!(first < 0.2, "{shares:.3?}");
    assert!(second > first && third > second, "{shares:.3?}");
    assert!((after - 1.0 / 3.0).abs() < 0.03, "{shares:.3?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_the_strategy_may_not_put_is_a_fault_and_the_request_is_served() {
    let backends = start_backends(&["a", "b"]).await;
    let params = json!({"mode": "bad_response_header", "n": 3});
    let mut c = with_strategy(&backends, guest("hostile"), params);
    // One worker: one instance counts the calls (every third faults, and the rebuilt instance
    // counts afresh, so the pattern holds).
    c["workers"] = json!(1);
    let lb = Lb::start(c).await;
    let http = Http::new();
    for i in 1..=6 {
        let reply = http.get(&lb.url("/")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        // The faulting call's fields are dropped with it; the others reach the client.
        let expected = if i % 3 == 0 { None } else { Some("ok") };
        assert_eq!(reply.header("x-strategy"), expected, "request {i}");
        assert_ne!(reply.body.len(), 0, "its own content-length never went out");
    }
    assert_eq!(faults(&http, &lb).await, 2.0);
    let log = lb.log();
    assert!(
        log.contains("add-response-header: framing and hop-by-hop fields are the host's"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_backends_report_in_a_response_field_reaches_the_strategy() {
    let backends = start_backends(&["a", "b", "c"]).await;
    // The demo backends name themselves in `x-backend`: the strategy prefers the one saying c.
    let params = json!({"report_header": "x-backend", "prefer": "c"});
    let mut c = with_strategy(&backends, guest("feedback"), params);
    // One worker: one instance hears every response.
    c["workers"] = json!(1);
    let lb = Lb::start(c).await;
    let http = Http::new();
    // Rotation until c has answered once (a, b, c), then c only.
    for _ in 0..3 {
        http.get(&lb.url("/")).await;
    }
    for _ in 0..30 {
        let reply = http.get(&lb.url("/")).await;
        assert_eq!(reply.header("x-backend"), Some("c"));
    }
    assert_eq!(faults(&http, &lb).await, 0.0, "{}", lb.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_floor_with_every_0_2_0_addition_still_routes() {
    let backends = start_backends(&["a", "b"]).await;
    let params =
        json!({"clock": true, "set_cookie": true, "feedback": true, "report": "x-backend"});
    let lb = Lb::start(with_strategy(&backends, bench_guest("call_floor"), params)).await;
    let http = Http::new();
    for _ in 0..20 {
        let reply = http.get(&lb.url("/")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.header("set-cookie"), Some("lbfloor=1; Path=/"));
    }
    assert_eq!(hits(&backends), [10, 10]);
    assert_eq!(faults(&http, &lb).await, 0.0);
}
