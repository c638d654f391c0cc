//! Several services behind one lbhost: named pools, each with its own strategy, chosen by
//! routes on host and path; a hot swap of one pool's strategy and a reload of the routes
//! under load; the 404 of a request no route takes; bad routing tables refused by
//! `lbhost check` (and by a reload, while the proxy keeps serving).

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::time::Duration;

use demo_backend::Backend;
use hyper::Request;
use lbhost_e2e::load::Load;
use lbhost_e2e::{full, metric, start_backends, strategy, Http, Lb, Reply};
use serde_json::{json, Value};

fn urls(backends: &[Backend]) -> Vec<Value> {
    backends.iter().map(|b| json!({ "url": b.url() })).collect()
}

async fn status(http: &Http, lb: &Lb) -> Value {
    let reply = http.get(&lb.admin_url("/status")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

async fn post(http: &Http, url: &str, body: &str) -> Reply {
    let request = Request::post(url)
        .body(full(body.to_string()))
        .expect("a valid request");
    http.send(request).await
}

async fn get_host(http: &Http, lb: &Lb, host: &str, path: &str) -> Reply {
    http.get_with(&lb.url(path), &[("host", host)]).await
}

/// Which backends answered `n` requests for `host` and `path`, with how many each.
async fn spread(http: &Http, lb: &Lb, host: &str, path: &str, n: usize) -> BTreeMap<String, u32> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let reply = get_host(http, lb, host, path).await;
        assert_eq!(reply.status, 200, "{host}{path}: {}", reply.text());
        let backend = reply.header("x-backend").unwrap_or_default().to_string();
        *seen.entry(backend).or_insert(0) += 1;
    }
    seen
}

fn names(seen: &BTreeMap<String, u32>) -> HashSet<&str> {
    seen.keys().map(String::as_str).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_pools_are_routed_by_host_and_path_each_with_its_strategy() {
    let api = start_backends(&["api1", "api2"]).await;
    let web = start_backends(&["web1", "web2", "web3"]).await;
    let assets = start_backends(&["static1"]).await;
    let lb = Lb::start(json!({
        "strategy": strategy("round_robin"),
        "pools": {
            "api": {"backends": urls(&api), "strategy": strategy("least_conn")},
            "web": {"backends": urls(&web)},
            "static": {"backends": urls(&assets), "strategy": strategy("ip_hash")}
        },
        "routes": [
            {"match": {"host": "api.example.com"}, "pool": "api"},
            {"match": {"path_prefix": "/static/"}, "pool": "static", "strip_prefix": "/static"},
            {"match": {"host": "*.example.com"}, "pool": "web"}
        ],
        "access_log": true
    }))
    .await;
    let http = Http::new();

    let seen = spread(&http, &lb, "api.example.com", "/", 10).await;
    assert_eq!(names(&seen), HashSet::from(["api1", "api2"]), "{seen:?}");
    // Round robin in the web pool: every backend once per turn.
    let seen = spread(&http, &lb, "www.example.com", "/", 30).await;
    assert_eq!(
        seen.values().copied().collect::<Vec<_>>(),
        [10, 10, 10],
        "{seen:?}"
    );
    // The wildcard takes deeper names, any case, with a port.
    let seen = spread(&http, &lb, "A.B.Example.COM:8080", "/", 3).await;
    assert_eq!(names(&seen), HashSet::from(["web1", "web2", "web3"]));
    // The path route comes before the wildcard, and strips its prefix.
    let reply = get_host(&http, &lb, "www.example.com", "/static/echo?x=1").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-backend"), Some("static1"));
    assert_eq!(reply.json()["uri"], "/echo?x=1", "{}", reply.text());

    // No route: 404, counted.
    for host in ["example.com", "other.org"] {
        let reply = get_host(&http, &lb, host, "/").await;
        assert_eq!(reply.status, 404, "{host}: {}", reply.text());
    }

    let scrape = http.get(&lb.admin_url("/metrics")).await.text();
    assert_eq!(metric(&scrape, "lbhost_unrouted_requests_total"), 2.0);
    let web1 = web[0].addr();
    assert_eq!(
        metric(
            &scrape,
            &format!("lbhost_requests_total{{backend=\"{web1}\",method=\"GET\",pool=\"web\",status_class=\"2xx\"}}")
        ),
        11.0,
        "{scrape}"
    );
    assert_eq!(
        metric(
            &scrape,
            &format!("lbhost_backend_up{{backend=\"{web1}\",pool=\"web\"}}")
        ),
        1.0
    );

    let status = status(&http, &lb).await;
    let pools = status["pools"].as_object().expect("a pools object");
    let strategies: BTreeMap<&str, &str> = pools
        .iter()
        .map(|(name, pool)| {
            (
                name.as_str(),
                pool["strategy"]["name"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        strategies,
        BTreeMap::from([
            ("api", "least_conn"),
            ("static", "ip_hash"),
            ("web", "round_robin")
        ])
    );
    assert_eq!(pools["web"]["backends"].as_array().map(Vec::len), Some(3));
    assert_eq!(pools["web"]["backends"][0]["requests_total"], 11);
    assert_eq!(status["unrouted"], 2);
    assert_eq!(
        status["routes"][1],
        json!({"name": "routes[1]", "pool": "static"})
    );
    let log = lb.log();
    assert!(
        log.contains("route=routes[1]") && log.contains("pool=static"),
        "the access log names route and pool: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_without_pools_is_the_pool_default() {
    let backends = start_backends(&["a"]).await;
    let lb = Lb::start(lbhost_e2e::config("round_robin", &backends)).await;
    let http = Http::new();
    assert_eq!(http.get(&lb.url("/")).await.status, 200);
    let status = status(&http, &lb).await;
    assert_eq!(
        status["routes"],
        json!([{"name": "default", "pool": "default"}])
    );
    assert_eq!(status["pools"]["default"]["backends"], status["backends"]);
    assert_eq!(
        status["pools"]["default"]["strategy"]["name"],
        "round_robin"
    );
    let scrape = http.get(&lb.admin_url("/metrics")).await.text();
    let addr = backends[0].addr();
    assert_eq!(
        metric(
            &scrape,
            &format!("lbhost_backend_up{{backend=\"{addr}\",pool=\"default\"}}")
        ),
        1.0,
        "{scrape}"
    );
}

/// Two pools by path, for load from a plain URL.
fn by_path(a: &[Backend], b: &[Backend]) -> Value {
    json!({
        "strategy": strategy("round_robin"),
        "pools": {
            "a": {"backends": urls(a)},
            "b": {"backends": urls(b)}
        },
        "routes": [
            {"match": {"path_prefix": "/a/"}, "pool": "a"},
            {"match": {"path_prefix": "/b/"}, "pool": "b"}
        ]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pools_strategy_swaps_under_load_and_the_other_pool_keeps_its_own() {
    let a = start_backends(&["a1", "a2"]).await;
    let b = start_backends(&["b1", "b2"]).await;
    let lb = Lb::start(by_path(&a, &b)).await;
    let http = Http::new();
    let before = status(&http, &lb).await;
    let load_a = Load::start(&lb.url("/a/x"), 3);
    let load_b = Load::start(&lb.url("/b/x"), 3);
    tokio::time::sleep(Duration::from_millis(300)).await;

    for name in ["ip_hash", "random", "ip_hash"] {
        let body = json!({"name": name, "pool": "a"}).to_string();
        let reply = post(&http, &lb.admin_url("/strategy"), &body).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let refused = post(
        &http,
        &lb.admin_url("/strategy"),
        r#"{"name": "random", "pool": "zz"}"#,
    )
    .await;
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(
        refused.text().contains("is not a pool"),
        "{}",
        refused.text()
    );

    let (seen_a, seen_b) = (load_a.stop().await, load_b.stop().await);
    assert_eq!(seen_a.failed, 0, "{:?}", seen_a.first_failures);
    assert_eq!(seen_b.failed, 0, "{:?}", seen_b.first_failures);
    assert!(seen_a.ok > 50 && seen_b.ok > 50, "{seen_a:?} {seen_b:?}");

    let after = status(&http, &lb).await;
    assert_eq!(after["pools"]["a"]["strategy"]["name"], "ip_hash");
    assert_eq!(
        after["pools"]["b"]["strategy"], before["pools"]["b"]["strategy"],
        "pool b's strategy is the very one it started with"
    );
    // Pool a now hashes the client address: one client, one backend.
    let mut seen = HashSet::new();
    for _ in 0..10 {
        let reply = http.get(&lb.url("/a/")).await;
        seen.insert(reply.header("x-backend").unwrap_or_default().to_string());
    }
    assert_eq!(seen.len(), 1, "{seen:?}");
    // Pool b still takes turns.
    let mut seen = HashSet::new();
    for _ in 0..4 {
        let reply = http.get(&lb.url("/b/")).await;
        seen.insert(reply.header("x-backend").unwrap_or_default().to_string());
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_and_pools_reload_under_load_without_a_failed_request() {
    let a = start_backends(&["a1", "a2"]).await;
    let b = start_backends(&["b1"]).await;
    let c = start_backends(&["c1"]).await;
    let lb = Lb::start(by_path(&a, &b)).await;
    let http = Http::new();
    let path = lb.dir().join("config.json");
    let running: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("the config")).expect("JSON");
    let before = status(&http, &lb).await;
    let load = Load::start(&lb.url("/a/x"), 4);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // b goes, c comes, a stays as it was.
    let mut next = running.clone();
    next["pools"].as_object_mut().expect("pools").remove("b");
    next["pools"]["c"] = json!({"backends": urls(&c), "strategy": strategy("random")});
    next["routes"] = json!([
        {"match": {"path_prefix": "/a/"}, "pool": "a"},
        {"match": {"path_prefix": "/c/", "method": "GET"}, "pool": "c", "strip_prefix": "/c"}
    ]);
    for round in 0..6 {
        let config = if round % 2 == 0 { &next } else { &running };
        std::fs::write(&path, config.to_string()).expect("writing the config");
        let reply = post(&http, &lb.admin_url("/reload"), "").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    std::fs::write(&path, next.to_string()).expect("writing the config");
    let reply = post(&http, &lb.admin_url("/reload"), "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    // A bad table is refused with its reason; the running one stays.
    let mut bad = next.clone();
    bad["routes"][1]["pool"] = json!("nowhere");
    std::fs::write(&path, bad.to_string()).expect("writing the config");
    let reply = post(&http, &lb.admin_url("/reload"), "").await;
    assert_eq!(reply.status, 422, "{}", reply.text());
    assert!(
        reply
            .text()
            .contains("routes[1].pool: \\\"nowhere\\\" is not a pool"),
        "{}",
        reply.text()
    );

    let seen = load.stop().await;
    assert_eq!(seen.failed, 0, "{:?}", seen.first_failures);
    assert!(seen.ok > 100, "{seen:?}");
    assert_eq!(
        http.get(&lb.url("/c/x")).await.header("x-backend"),
        Some("c1")
    );
    assert_eq!(http.get(&lb.url("/b/x")).await.status, 404);
    let after = status(&http, &lb).await;
    assert_eq!(
        after["pools"]["a"]["strategy"], before["pools"]["a"]["strategy"],
        "pool a kept its strategy instance through the reloads"
    );
    assert!(after["pools"].get("b").is_none(), "{}", after["pools"]);
    let scrape = http.get(&lb.admin_url("/metrics")).await.text();
    assert!(
        !scrape.contains("pool=\"b\""),
        "the removed pool's series are gone: {scrape}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_refuses_bad_routing_tables_with_one_line() {
    let backends = [json!({"url": "http://127.0.0.1:9001"})];
    let base = json!({
        "listen": "127.0.0.1:18080",
        "admin": "127.0.0.1:19901",
        "strategy": strategy("round_robin"),
        "pools": {"api": {"backends": backends}, "web": {"backends": backends}},
        "routes": [{"match": {"host": "api.example.com"}, "pool": "api"}, {"pool": "web"}]
    });
    let scratch = lbhost_e2e::Scratch::new();
    let run = |config: Value| {
        let path = scratch.write("config.json", config.to_string());
        async move {
            Lb::spawn_raw([
                OsStr::new("check"),
                OsStr::new("--config"),
                path.as_os_str(),
            ])
            .await
        }
    };
    let ok = run(base.clone()).await;
    assert!(ok.status.success(), "{}", ok.stderr);

    let mut missing = base.clone();
    missing["routes"][0]["pool"] = json!("apii");
    let mut unreached = base.clone();
    unreached["routes"] = json!([{"pool": "web"}]);
    let mut shadowed = base.clone();
    shadowed["routes"] = json!([
        {"match": {"host": "*.example.com"}, "pool": "web"},
        {"match": {"host": "api.example.com", "path_prefix": "/v1/"}, "pool": "api"}
    ]);
    let mut no_strategy = base.clone();
    no_strategy["pools"]["api"]["strategy"] = json!("/nonexistent/x.wasm");
    for (config, wanted) in [
        (
            missing,
            "routes[0].pool: \"apii\" is not a pool (pools: api, web)",
        ),
        (unreached, "pools.api: no route leads to it"),
        (shadowed, "routes[1]: never matches: routes[0] comes first"),
        (no_strategy, "pools.api.strategy /nonexistent/x.wasm"),
    ] {
        let refused = run(config).await;
        let stderr = refused.stderr.trim_end();
        assert!(!refused.status.success(), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(wanted), "{stderr}\nwanted: {wanted}");
    }
}
