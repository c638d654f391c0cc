//! The admin API off loopback: `POST /reload` and `POST /strategy` need the bearer token of
//! `admin_token_file`, or are refused when none is set; reading endpoints stay open.

use hyper::Request;
use lbhost_e2e::{config, free_addr, full, metric, start_backends, Http, Lb, Reply, Scratch};
use serde_json::{json, Value};

/// An admin address that is not loopback (every interface), and the loopback URL base the test
/// reaches it through.
fn admin_everywhere() -> (String, String) {
    let port = free_addr().port();
    (
        format!("0.0.0.0:{port}"),
        format!("http://127.0.0.1:{port}"),
    )
}

async fn post(http: &Http, url: &str, body: &str, token: Option<&str>) -> Reply {
    let mut request = Request::post(url);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    http.send(
        request
            .body(full(body.to_string()))
            .expect("a valid request"),
    )
    .await
}

async fn refused_total(http: &Http, base: &str, reason: &str) -> f64 {
    let text = http.get(&format!("{base}/metrics")).await.text();
    metric(
        &text,
        &format!("lbhost_admin_refused_total{{reason=\"{reason}\"}}"),
    )
}

#[tokio::test]
async fn off_loopback_without_a_token_file_changes_are_refused_and_reads_stay_open() {
    let backends = start_backends(&["a"]).await;
    let (admin, base) = admin_everywhere();
    let mut cfg: Value = config("round_robin", &backends);
    cfg["admin"] = json!(admin);
    let lb = Lb::start(cfg).await;
    let http = Http::new();

    for path in ["/healthz", "/metrics", "/status", "/"] {
        let reply = http.get(&format!("{base}{path}")).await;
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.text());
    }
    let reload = post(&http, &format!("{base}/reload"), "", None).await;
    assert_eq!(reload.status, 403, "{}", reload.text());
    assert!(
        reload.text().contains("admin_token_file"),
        "{}",
        reload.text()
    );
    let switch = post(
        &http,
        &format!("{base}/strategy"),
        r#"{"name":"ip_hash"}"#,
        None,
    )
    .await;
    assert_eq!(switch.status, 403, "{}", switch.text());
    // A token does not help when none is configured.
    let with_token = post(&http, &format!("{base}/reload"), "", Some("guess")).await;
    assert_eq!(with_token.status, 403);

    assert_eq!(refused_total(&http, &base, "no_token").await, 3.0);
    let status = http.get(&format!("{base}/status")).await.json();
    assert_eq!(status["strategy"]["name"], "round_robin", "nothing changed");
    assert!(lb.log().contains("admin request refused"), "{}", lb.log());
    // Traffic is not affected.
    assert_eq!(http.get(&lb.url("/")).await.status, 200);
}

#[tokio::test]
async fn with_a_token_file_only_the_right_bearer_token_changes_anything() {
    let backends = start_backends(&["a", "b"]).await;
    let scratch = Scratch::new();
    let token_file = scratch.write("admin-token", "first-s3cret-token\n");
    let (admin, base) = admin_everywhere();
    let mut cfg: Value = config("round_robin", &backends);
    cfg["admin"] = json!(admin);
    cfg["admin_token_file"] = json!(token_file);
    let lb = Lb::start(cfg).await;
    let http = Http::new();
    let strategy_url = format!("{base}/strategy");

    let missing = post(&http, &strategy_url, r#"{"name":"ip_hash"}"#, None).await;
    assert_eq!(missing.status, 401, "{}", missing.text());
    assert_eq!(
        missing.header("www-authenticate"),
        Some("Bearer realm=\"lbhost-admin\"")
    );
    let wrong = post(
        &http,
        &strategy_url,
        r#"{"name":"ip_hash"}"#,
        Some("first-s3cret-toke"),
    )
    .await;
    assert_eq!(wrong.status, 401, "{}", wrong.text());
    assert_eq!(refused_total(&http, &base, "unauthorized").await, 2.0);
    let status = http.get(&format!("{base}/status")).await.json();
    assert_eq!(status["strategy"]["name"], "round_robin", "nothing changed");

    let right = post(
        &http,
        &strategy_url,
        r#"{"name":"ip_hash"}"#,
        Some("first-s3cret-token"),
    )
    .await;
    assert_eq!(right.status, 200, "{}", right.text());
    let status = http.get(&format!("{base}/status")).await.json();
    assert_eq!(status["strategy"]["name"], "ip_hash");

    // A rotated secret applies at the next request: the old token is refused, the new one works.
    scratch.write("admin-token", "second-token");
    let old = post(
        &http,
        &format!("{base}/reload"),
        "",
        Some("first-s3cret-token"),
    )
    .await;
    assert_eq!(old.status, 401, "{}", old.text());
    let new = post(&http, &format!("{base}/reload"), "", Some("second-token")).await;
    assert_eq!(new.status, 200, "{}", new.text());

    // The token never reaches the log.
    let log = lb.log();
    assert!(log.contains("admin request refused"), "{log}");
    assert!(
        !log.contains("s3cret") && !log.contains("second-token"),
        "{log}"
    );
}

#[tokio::test]
async fn an_empty_or_missing_token_file_is_a_config_error() {
    let scratch = Scratch::new();
    let empty = scratch.write("empty-token", "  \n");
    for (file, reason) in [
        (empty.display().to_string(), "is empty"),
        (
            scratch.path().join("absent").display().to_string(),
            "cannot read",
        ),
    ] {
        let cfg = json!({
            "strategy": lbhost_e2e::strategy("round_robin"),
            "backends": [{"url": "http://127.0.0.1:9"}],
            "admin_token_file": file,
        });
        let path = scratch.write("config.json", cfg.to_string());
        let run = Lb::spawn_raw([
            std::ffi::OsStr::new("check"),
            std::ffi::OsStr::new("--config"),
            path.as_os_str(),
        ])
        .await;
        assert!(!run.status.success(), "{}", run.stderr);
        assert!(
            run.stderr.contains("admin_token_file") && run.stderr.contains(reason),
            "{}",
            run.stderr
        );
        assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.stderr);
    }
}
