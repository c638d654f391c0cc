//! HTTPS to backends: real TLS servers (rustls, in front of demo backends) with certificates of
//! a private CA made at test time by `openssl`. Connections are verified, reused, named by SNI,
//! carry a client certificate when asked; a backend whose certificate does not verify gets 502
//! and is counted, and health probes over TLS take it down; bad files are refused by
//! `lbhost check`.

use std::path::PathBuf;
use std::time::Duration;

use lbhost_e2e::{
    make_certificate, make_expired_certificate, metric, start_backends, wait_until, Http, Lb,
    Scratch, TlsFront,
};
use serde_json::{json, Value};

/// Certificates of two unrelated CAs: `trusted/` (the one lbhost is given) and `other/`.
struct Pki {
    dir: Scratch,
}

impl Pki {
    fn new() -> Pki {
        let dir = Scratch::new();
        for sub in ["trusted", "other"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("a folder");
        }
        Pki { dir }
    }

    /// A leaf certificate for `names` signed by the trusted CA.
    fn trusted(&self, name: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        make_certificate(&self.dir.path().join("trusted"), name, names)
    }

    /// A leaf certificate for `names` signed by a CA lbhost does not know.
    fn untrusted(&self, name: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        make_certificate(&self.dir.path().join("other"), name, names)
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("trusted/ca.pem")
    }
}

fn https(front: &TlsFront) -> String {
    format!("https://{}", front.addr())
}

async fn statuses(lb: &Lb, n: usize) -> Vec<u16> {
    let http = Http::new();
    let mut seen = Vec::with_capacity(n);
    for _ in 0..n {
        seen.push(http.get(&lb.url("/")).await.status.as_u16());
    }
    seen
}

async fn metrics(lb: &Lb) -> String {
    Http::new().get(&lb.admin_url("/metrics")).await.text()
}

fn base(backends: Value) -> Value {
    json!({
        "strategy": lbhost_e2e::strategy("round_robin"),
        "workers": 1,
        "retries": {"max": 0},
        "backends": backends,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_backends_are_verified_reused_and_named_by_sni() {
    let pki = Pki::new();
    let demo = start_backends(&["alpha", "beta"]).await;
    let (cert, key) = pki.trusted("localhost", &["localhost"]);
    let by_host = TlsFront::start(demo[0].addr(), &cert, &key, None).await;
    let (cert, key) = pki.trusted("internal", &["api.internal"]);
    let by_override = TlsFront::start(demo[1].addr(), &cert, &key, None).await;
    let mut config = base(json!([
        // SNI from the URL's host.
        {"url": format!("https://localhost:{}", by_host.addr().port())},
        // SNI and verified name from `server_name`, the CA from `upstream_tls`.
        {"url": https(&by_override), "tls": {"server_name": "api.internal"}},
    ]));
    config["upstream_tls"] = json!({"ca": pki.ca()});
    let lb = Lb::start(config).await;
    let seen = statuses(&lb, 40).await;
    assert!(seen.iter().all(|&s| s == 200), "{seen:?}\n{}", lb.log());
    assert_eq!(demo[0].hits() + demo[1].hits(), 40);
    assert!(demo[0].hits() >= 19 && demo[1].hits() >= 19);
    // 20 requests each over at most two connections (one worker: one, unless a race).
    assert!(
        by_host.accepted() <= 2,
        "{} connections",
        by_host.accepted()
    );
    assert!(by_override.accepted() <= 2, "{}", by_override.accepted());
    assert!(by_host
        .server_names()
        .iter()
        .all(|n| n.as_deref() == Some("localhost")));
    assert!(
        by_override
            .server_names()
            .iter()
            .all(|n| n.as_deref() == Some("api.internal")),
        "{:?}",
        by_override.server_names()
    );
    // Key exchange by X25519, not the P-384 ring's defaults put first.
    let groups = by_host.groups();
    assert!(
        !groups.is_empty() && groups.iter().all(|g| g == "X25519"),
        "{groups:?}"
    );
    let text = metrics(&lb).await;
    let reused = metric(
        &text,
        &format!(
            "lbhost_upstream_connections_total{{backend=\"{}\",kind=\"reused\"}}",
            by_override.addr()
        ),
    );
    assert!(reused >= 18.0, "{reused}\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_requires_a_client_certificate_gets_lbhosts() {
    let pki = Pki::new();
    let demo = start_backends(&["alpha"]).await;
    let (cert, key) = pki.trusted("mtls", &["mtls.test"]);
    let front = TlsFront::start(demo[0].addr(), &cert, &key, Some(&pki.ca())).await;
    let (client_cert, client_key) = pki.trusted("client", &["lbhost.client"]);
    let without = Lb::start(base(json!([
        {"url": https(&front), "tls": {"ca": pki.ca(), "server_name": "mtls.test"}},
    ])))
    .await;
    assert_eq!(statuses(&without, 2).await, [502, 502], "{}", without.log());
    let text = metrics(&without).await;
    let refused = metric(
        &text,
        &format!(
            "lbhost_upstream_tls_failures_total{{backend=\"{}\",reason=\"refused_by_backend\"}}",
            front.addr()
        ),
    );
    assert_eq!(refused, 2.0, "{text}");
    let with = Lb::start(base(json!([
        {"url": https(&front), "tls": {"ca": pki.ca(), "server_name": "mtls.test",
                                      "cert": client_cert, "key": client_key}},
    ])))
    .await;
    assert_eq!(statuses(&with, 5).await, [200; 5], "{}", with.log());
    assert_eq!(demo[0].hits(), 5);
    // The client certificate's expiry (made for 30 days) in /status and /metrics.
    let status = Http::new().get(&with.admin_url("/status")).await.json();
    let listed = &status["certificates"][0];
    assert_eq!(listed["role"], "backend_client", "{status}");
    assert_eq!(listed["file"], client_cert.display().to_string());
    assert!(
        (28..=30).contains(&listed["expires_in_days"].as_i64().unwrap_or(-1)),
        "{status}"
    );
    let not_after = listed["not_after_unix"].as_i64().expect("not_after_unix");
    let text = metrics(&with).await;
    let series = format!(
        "lbhost_tls_certificate_expiry_seconds{{file=\"{}\",names=\"\"}}",
        client_cert.display()
    );
    assert_eq!(metric(&text, &series), not_after as f64, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_that_do_not_verify_get_502_are_counted_and_the_rest_serves() {
    let pki = Pki::new();
    let demo = start_backends(&["good", "bad"]).await;
    let (cert, key) = pki.trusted("good", &["good.test"]);
    let good = TlsFront::start(demo[0].addr(), &cert, &key, None).await;
    let (cert, key) = pki.untrusted("stranger", &["good.test"]);
    let stranger = TlsFront::start(demo[1].addr(), &cert, &key, None).await;
    let (cert, key) = pki.trusted("misnamed", &["other.test"]);
    let misnamed = TlsFront::start(demo[1].addr(), &cert, &key, None).await;
    let mut config = base(json!([
        {"url": https(&good)},
        {"url": https(&stranger)},
        {"url": https(&misnamed)},
    ]));
    config["upstream_tls"] = json!({"ca": pki.ca(), "server_name": "good.test"});
    let lb = Lb::start(config).await;
    let seen = statuses(&lb, 9).await;
    assert_eq!(seen.iter().filter(|&&s| s == 200).count(), 3, "{seen:?}");
    assert_eq!(seen.iter().filter(|&&s| s == 502).count(), 6, "{seen:?}");
    assert_eq!(demo[1].hits(), 0, "a request reached an unverified backend");
    let text = metrics(&lb).await;
    let failures = |front: &TlsFront, reason: &str| {
        metric(
            &text,
            &format!(
                "lbhost_upstream_tls_failures_total{{backend=\"{}\",reason=\"{reason}\"}}",
                front.addr()
            ),
        )
    };
    assert_eq!(failures(&stranger, "unknown_issuer"), 3.0, "{text}");
    assert_eq!(failures(&misnamed, "name_mismatch"), 3.0, "{text}");
    assert!(lb.log().contains("TLS handshake with a backend failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_false_accepts_any_certificate_and_says_so() {
    let pki = Pki::new();
    let demo = start_backends(&["alpha"]).await;
    let (cert, key) = pki.untrusted("self", &["self.test"]);
    let front = TlsFront::start(demo[0].addr(), &cert, &key, None).await;
    let lb = Lb::start(base(json!([
        {"url": https(&front), "tls": {"verify": false}},
    ])))
    .await;
    assert_eq!(statuses(&lb, 3).await, [200; 3], "{}", lb.log());
    let log = lb.log();
    assert!(
        log.contains("WARN") && log.contains("is not verified"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_probes_over_tls_take_a_backend_with_a_bad_certificate_down() {
    // "http" probes send a request over TLS; "tcp" probes connect and shake hands only.
    for kind in ["http", "tcp"] {
        let pki = Pki::new();
        let demo = start_backends(&["good", "bad"]).await;
        let (cert, key) = pki.trusted("good", &["good.test"]);
        let good = TlsFront::start(demo[0].addr(), &cert, &key, None).await;
        let (cert, key) = pki.untrusted("bad", &["good.test"]);
        let bad = TlsFront::start(demo[1].addr(), &cert, &key, None).await;
        let mut config = base(json!([{"url": https(&good)}, {"url": https(&bad)}]));
        config["upstream_tls"] = json!({"ca": pki.ca(), "server_name": "good.test"});
        config["health_check"] = json!({"type": kind, "interval": "200ms", "timeout": "1s"});
        let lb = Lb::start(config).await;
        let status_url = lb.admin_url("/status");
        let http = Http::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let status = http.get(&status_url).await.json();
            let up = |addr: String| {
                status["backends"]
                    .as_array()
                    .and_then(|b| b.iter().find(|b| b["address"] == addr.as_str()))
                    .map(|b| b["up"].clone())
            };
            if up(bad.addr().to_string()) == Some(json!(false)) {
                assert_eq!(up(good.addr().to_string()), Some(json!(true)), "{status}");
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{kind}: the bad backend is still up: {status}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(statuses(&lb, 6).await, [200; 6]);
        wait_until("probes of the good backend", Duration::from_secs(5), || {
            good.handshakes() >= 2
        })
        .await;
        let text = metrics(&lb).await;
        assert!(
            text.contains(&format!(
                "lbhost_upstream_tls_failures_total{{backend=\"{}\",reason=\"unknown_issuer\"}}",
                bad.addr()
            )),
            "{text}"
        );
    }
}

#[tokio::test]
async fn check_refuses_bad_upstream_tls_settings_in_one_line() {
    let pki = Pki::new();
    let (cert, key) = pki.trusted("client", &["client.test"]);
    let (_, wrong_key) = pki.trusted("other", &["other.test"]);
    let dir = pki.dir.path().join("trusted");
    let (expired, expired_key) = make_expired_certificate(&dir, "expired", "client.test");
    std::fs::write(dir.join("junk.pem"), "not a certificate").expect("write");
    // Relative paths: from the config's folder (`trusted/`).
    let cases = [
        (
            json!({"url": "https://127.0.0.1:9", "tls": {"ca": "junk.pem"}}),
            "backends[0].tls",
            "no certificate",
        ),
        (
            json!({"url": "https://127.0.0.1:9", "tls": {"ca": "missing.pem"}}),
            "backends[0].tls",
            "missing.pem",
        ),
        (
            json!({"url": "https://127.0.0.1:9", "tls": {"ca": "ca.pem", "cert": cert, "key": wrong_key}}),
            "backends[0].tls",
            "does not match",
        ),
        (
            json!({"url": "https://127.0.0.1:9", "tls": {"cert": cert}}),
            "backends[0].tls",
            "go together",
        ),
        (
            json!({"url": "https://127.0.0.1:9", "tls": {"ca": "ca.pem", "cert": expired, "key": expired_key}}),
            "backends[0].tls",
            "days ago",
        ),
        (
            json!({"url": "http://127.0.0.1:9", "tls": {"ca": "ca.pem"}}),
            "backends[0].tls",
            "https:// backends only",
        ),
        (
            json!({"url": "https://127.0.0.1:9", "tls": {"ca": "ca.pem", "server_name": "not a name"}}),
            "backends[0].tls.server_name",
            "not a DNS name",
        ),
        (
            json!({"url": "https://127.0.0.1:9", "tls": {"ca": "ca.pem", "verfy": false}}),
            "backends[0].tls",
            "unknown field",
        ),
    ];
    for (backend, field, expected) in cases {
        let config = json!({
            "strategy": lbhost_e2e::strategy("round_robin"),
            "backends": [backend],
        });
        let path = dir.join("config.json");
        std::fs::write(&path, config.to_string()).expect("write");
        let run = Lb::spawn_raw(["check", "--config", path.to_str().expect("UTF-8")]).await;
        let text = run.stderr;
        assert!(!run.status.success(), "accepted: {backend}");
        assert!(text.contains(field), "{field}: {text}");
        assert!(text.contains(expected), "{expected}: {text}");
        assert_eq!(text.trim().lines().count(), 1, "{text}");
    }
    // The top level is checked even when no backend uses it.
    let config = json!({
        "strategy": lbhost_e2e::strategy("round_robin"),
        "backends": [{"url": "http://127.0.0.1:9"}],
        "upstream_tls": {"ca": "junk.pem"},
    });
    let path = dir.join("config.json");
    std::fs::write(&path, config.to_string()).expect("write");
    let run = Lb::spawn_raw(["check", "--config", path.to_str().expect("UTF-8")]).await;
    assert!(!run.status.success());
    assert!(run.stderr.contains("upstream_tls"), "{}", run.stderr);
    // And a good one passes, relative paths and all.
    let config = json!({
        "strategy": lbhost_e2e::strategy("round_robin"),
        "backends": [{"url": "https://127.0.0.1:9", "tls": {"ca": "ca.pem", "cert": "client.pem", "key": "client.key"}}],
    });
    std::fs::write(&path, config.to_string()).expect("write");
    let run = Lb::spawn_raw(["check", "--config", path.to_str().expect("UTF-8")]).await;
    assert!(run.status.success(), "{}", run.stderr);
    let _ = key;
}
