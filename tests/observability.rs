//! Observability through the real lbhost: `/metrics` parsed with a Prometheus text parser and
//! checked against the requests sent, `/status`, JSON logs, and (in `page`) the status page
//! rendered in headless Chromium.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use hyper::{Request, StatusCode};
use lbhost_e2e::{config, empty, start_backends, strategy, Http, Lb};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use prom::{histogram_count, scrape, total, value};

#[path = "observability/page.rs"]
mod page;
#[path = "observability/prom.rs"]
mod prom;

/// Health checks every 100 ms; one failure takes a backend down.
fn fast_health_check() -> Value {
    json!({
        "path": "/health",
        "interval": "100ms",
        "timeout": "1s",
        "healthy_threshold": 1,
        "unhealthy_threshold": 1,
    })
}

/// `GET /status` as JSON.
async fn status(http: &Http, lb: &Lb) -> Value {
    let reply = http.get(&lb.admin_url("/status")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    reply.json()
}

fn sha256_of(path: &str) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Polls `/status` every 50 ms until `condition` holds on it; panics naming `what` after 10 s.
async fn wait_for_status(http: &Http, lb: &Lb, what: &str, condition: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = status(http, lb).await;
        if condition(&now) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting until {what}; /status: {now:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_requests_sent_per_backend() {
    let backends = start_backends(&["a", "b", "c"]).await;
    let lb = Lb::start(config("round_robin", &backends)).await;
    let http = Http::new();
    for _ in 0..30 {
        let reply = http.get(&lb.url("/")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }

    let scrape = scrape(&http, &lb).await;
    for backend in &backends {
        let addr = backend.addr().to_string();
        let b = [("backend", addr.as_str())];
        assert_eq!(
            value(
                &scrape,
                "lbhost_requests_total",
                &[
                    ("backend", &addr),
                    ("method", "GET"),
                    ("status_class", "2xx")
                ]
            ),
            Some(10.0),
            "round robin sends 10 of 30 requests to {addr}"
        );
        assert_eq!(
            histogram_count(&scrape, "lbhost_request_duration_seconds", &b),
            Some(10.0),
            "duration histogram of {addr}"
        );
        assert_eq!(
            value(&scrape, "lbhost_request_duration_seconds_count", &b),
            Some(10.0)
        );
        assert_eq!(value(&scrape, "lbhost_backend_up", &b), Some(1.0));
        assert_eq!(value(&scrape, "lbhost_backend_in_flight", &b), Some(0.0));
        assert_eq!(
            value(&scrape, "lbhost_backend_circuit_state", &b),
            Some(0.0),
            "circuit closed"
        );
        // Only lbhost connects to these backends (no health checks here): what they accepted is
        // what lbhost opened, and every other request went over a reused connection.
        let opened = value(
            &scrape,
            "lbhost_upstream_connections_total",
            &[("backend", &addr), ("kind", "opened")],
        );
        let reused = value(
            &scrape,
            "lbhost_upstream_connections_total",
            &[("backend", &addr), ("kind", "reused")],
        );
        assert_eq!(
            opened,
            Some(backend.connections() as f64),
            "opened to {addr}"
        );
        assert_eq!(
            opened.unwrap_or(0.0) + reused.unwrap_or(0.0),
            10.0,
            "each response came over a new or a reused connection"
        );
        assert!(
            reused.unwrap_or(0.0) >= 5.0,
            "sequential keep-alive requests reuse connections: {reused:?} reused, {opened:?} opened"
        );
    }
    assert_eq!(
        total(&scrape, "lbhost_requests_total", &[]),
        30.0,
        "no request counted twice or under another label"
    );
    assert_eq!(
        histogram_count(&scrape, "lbhost_strategy_select_duration_seconds", &[]),
        Some(30.0),
        "one select per request"
    );
    let sha = sha256_of(&strategy("round_robin"));
    assert_eq!(
        value(
            &scrape,
            "lbhost_strategy_info",
            &[("name", "round_robin"), ("sha256", &sha)]
        ),
        Some(1.0),
        "the info metric names the active module"
    );
    assert_eq!(total(&scrape, "lbhost_strategy_info", &[]), 1.0);
    assert_eq!(
        value(
            &scrape,
            "lbhost_strategy_quarantined",
            &[("name", "round_robin")]
        ),
        Some(0.0)
    );
    for family in [
        "lbhost_requests_total",
        "lbhost_request_duration_seconds",
        "lbhost_backend_up",
        "lbhost_backend_in_flight",
        "lbhost_strategy_select_duration_seconds",
        "lbhost_strategy_info",
        "lbhost_upstream_connections_total",
        "lbhost_retry_budget_exhausted_total",
        "lbhost_rate_limited_total",
    ] {
        assert!(
            scrape.docs.contains_key(family),
            "{family} has no HELP line"
        );
    }

    // /status agrees with the metrics.
    let status = status(&http, &lb).await;
    let rows = status["backends"].as_array().expect("backends is an array");
    assert_eq!(rows.len(), 3, "{status:#}");
    for (row, backend) in rows.iter().zip(&backends) {
        assert_eq!(row["address"], backend.addr().to_string());
        assert_eq!(row["state"], "up");
        assert_eq!(row["up"], true);
        assert_eq!(row["eligible"], true);
        assert_eq!(row["ejected"], false);
        assert_eq!(row["circuit"], "closed");
        assert_eq!(row["ejections_total"], 0);
        assert_eq!(row["in_flight"], 0);
        assert_eq!(row["requests_total"], 10);
        assert_eq!(row["errors_total"], 0);
        assert_eq!(row["requests_by_class"]["2xx"], 10);
        assert!(row["latency_ewma_us"].as_u64().unwrap_or(0) > 0, "{row}");
        assert_eq!(
            row["upstream_connections"]["opened"],
            backend.connections(),
            "{row}"
        );
    }
    assert_eq!(status["strategy"]["name"], "round_robin");
    assert_eq!(status["strategy"]["sha256"], sha.as_str());
    assert!(status["strategy"]["loaded_at_unix"].as_u64().unwrap_or(0) > 0);
    assert!(status["strategy"]["loaded_at"].is_string());
    assert_eq!(status["strategy"]["faults"]["quarantined"], false);
    assert_eq!(status["strategy"]["faults"]["faults_total"], 0);
    assert_eq!(status["reload"]["config_version"], 1);
    assert_eq!(status["panic_mode"], false);
    assert!(status["uptime_s"].is_u64());

    // The default log format is text, for people.
    let log = lb.log();
    assert!(log.contains("lbhost ready"), "{log}");
    assert!(
        log.lines().all(|l| !l.trim_start().starts_with('{')),
        "text logs by default: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_with_no_backend_count_as_none_and_down_backends_show() {
    let backends = start_backends(&["a"]).await;
    backends[0].set_health_status(500);
    let addr = backends[0].addr().to_string();
    let mut config = config("round_robin", &backends);
    config["health_check"] = fast_health_check();
    let lb = Lb::start(config).await;
    let http = Http::new();
    wait_for_status(&http, &lb, "the backend is down", |s| {
        s["backends"][0]["up"] == false
    })
    .await;
    for _ in 0..2 {
        let reply = http.get(&lb.url("/")).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    }

    let scrape = scrape(&http, &lb).await;
    assert_eq!(
        value(
            &scrape,
            "lbhost_requests_total",
            &[
                ("backend", "none"),
                ("method", "GET"),
                ("status_class", "5xx")
            ]
        ),
        Some(2.0)
    );
    assert_eq!(
        total(&scrape, "lbhost_requests_total", &[("backend", &addr)]),
        0.0
    );
    assert_eq!(
        value(&scrape, "lbhost_backend_up", &[("backend", &addr)]),
        Some(0.0)
    );
    assert!(
        value(
            &scrape,
            "lbhost_health_checks_total",
            &[("backend", &addr), ("result", "fail")]
        )
        .is_some_and(|n| n >= 1.0),
        "failed probes are counted"
    );
    assert!(
        histogram_count(
            &scrape,
            "lbhost_health_check_duration_seconds",
            &[("backend", &addr)]
        )
        .is_some_and(|n| n >= 1.0),
        "probes are timed"
    );

    let status = status(&http, &lb).await;
    assert_eq!(status["unavailable"]["5xx"], 2, "{status:#}");
    assert_eq!(status["backends"][0]["state"], "down", "{status:#}");
    assert_eq!(status["backends"][0]["eligible"], false, "{status:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampled_gauges_drop_backends_that_leave_the_pool() {
    let backends = start_backends(&["a", "b"]).await;
    let lb = Lb::start(config("round_robin", &backends)).await;
    let http = Http::new();
    let (kept, gone) = (
        backends[0].addr().to_string(),
        backends[1].addr().to_string(),
    );
    let before = scrape(&http, &lb).await;
    for addr in [&kept, &gone] {
        assert_eq!(
            value(&before, "lbhost_backend_up", &[("backend", addr)]),
            Some(1.0)
        );
    }

    let path = lb.dir().join("config.json");
    let mut written: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("reading the config"))
            .expect("the config is JSON");
    written["backends"] = json!([{ "url": backends[0].url() }]);
    std::fs::write(&path, written.to_string()).expect("writing the config");
    let request = Request::post(lb.admin_url("/reload"))
        .body(empty())
        .expect("a request");
    let reply = http.send(request).await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    wait_for_status(&http, &lb, "one backend is left", |s| {
        s["backends"].as_array().is_some_and(|b| b.len() == 1)
    })
    .await;
    let after = scrape(&http, &lb).await;
    for family in [
        "lbhost_backend_up",
        "lbhost_backend_in_flight",
        "lbhost_backend_circuit_state",
    ] {
        assert!(value(&after, family, &[("backend", &kept)]).is_some());
        assert_eq!(
            value(&after, family, &[("backend", &gone)]),
            None,
            "{family} still has the removed backend"
        );
    }
    assert!(value(&after, "lbhost_reloads_total", &[("result", "applied")]).unwrap_or(0.0) >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_with_the_documented_fields() {
    let backends = start_backends(&["a", "b"]).await;
    let addrs: HashSet<String> = backends.iter().map(|b| b.addr().to_string()).collect();
    let mut config = config("round_robin", &backends);
    config["access_log"] = json!(true);
    let lb = Lb::start_with_args(config, &["--log-format", "json"]).await;
    let http = Http::new();
    for _ in 0..6 {
        let reply = http.get(&lb.url("/hello?x=1")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }

    let access_lines = |log: &str| {
        log.lines()
            .filter(|l| l.contains("\"lbhost::access\""))
            .count()
    };
    lbhost_e2e::wait_until("six access log lines", Duration::from_secs(5), || {
        access_lines(&lb.log()) >= 6
    })
    .await;
    let log = lb.log();
    let mut access = 0;
    let mut ready = false;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let entry: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        let fields = entry
            .as_object()
            .unwrap_or_else(|| panic!("log line is not an object: {line}"));
        for key in ["timestamp", "level", "target"] {
            assert!(fields[key].is_string(), "no {key}: {line}");
        }
        assert!(
            !fields.contains_key("fields"),
            "fields are flattened: {line}"
        );
        if entry["message"] == "lbhost ready" {
            ready = true;
            assert_eq!(entry["listen"], lb.listen().to_string(), "{line}");
            assert_eq!(entry["admin"], lb.admin().to_string(), "{line}");
        }
        if entry["target"] == "lbhost::access" {
            access += 1;
            assert_eq!(entry["level"], "INFO", "{line}");
            assert_eq!(entry["method"], "GET", "{line}");
            assert_eq!(entry["path"], "/hello?x=1", "{line}");
            assert_eq!(entry["status"], 200, "{line}");
            assert_eq!(entry["client"], "127.0.0.1", "{line}");
            let backend = entry["backend"].as_str().unwrap_or_default();
            assert!(addrs.contains(backend), "{line}");
            assert!(entry["select_us"].is_u64(), "{line}");
            assert!(
                entry["upstream_ms"].as_f64().is_some_and(|ms| ms > 0.0),
                "{line}"
            );
        }
    }
    assert!(ready, "no \"lbhost ready\" line: {log}");
    assert_eq!(access, 6, "one access line per request: {log}");
}
