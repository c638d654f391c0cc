//! Failure handling through the real lbhost and real backends on loopback: active health checks,
//! passive ejection and its panic rule, retries and their budget, circuit breaking, per-client
//! rate limiting (those three in `resilience/retries.rs`), and a total outage. Every test is bounded in time (a few seconds each).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use demo_backend::Backend;
use lbhost_e2e::{config, start_backends, wait_until, Http, Lb, RawBackend, RecordingBackend};
use serde_json::json;

#[path = "resilience/fixtures.rs"]
mod fixtures;
use fixtures::{flapping_backend, health_check, label, metric, Load};

#[path = "resilience/retries.rs"]
mod retries;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_one_of_three_backends_loses_no_request_and_it_comes_back_after_restart() {
    let mut backends = start_backends(&["a", "b", "c"]).await;
    let mut config = config("round_robin", &backends);
    config["health_check"] = health_check(200, 2, 2);
    let lb = Lb::start(config).await;
    let http = Http::new();
    let load = Load::start(lb.url("/"), 4);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(backends[1].hits() > 0, "b gets traffic before it is killed");

    let killed = backends.remove(1);
    let port = killed.addr().port();
    let b = label(&killed);
    killed.stop().await;
    // The first failure takes b down: after a moment nothing more is tried on it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tried_early = metric(&http, &lb, "lbhost_retries_total", &[&b]).await;
    let hits_before = (backends[0].hits(), backends[1].hits());
    tokio::time::sleep(Duration::from_millis(600)).await;
    let tried_late = metric(&http, &lb, "lbhost_retries_total", &[&b]).await;
    assert!(
        tried_early <= 8.0,
        "{tried_early} attempts failed on the dead backend (4 clients)"
    );
    assert_eq!(
        tried_late, tried_early,
        "attempts on b after it was seen failing"
    );
    assert!(backends[0].hits() > hits_before.0 && backends[1].hits() > hits_before.1);
    assert_eq!(metric(&http, &lb, "lbhost_backend_up", &[&b]).await, 0.0);

    // Restarted on its port, it is back within healthy_threshold (2) probe intervals.
    let restarted = Backend::builder("b")
        .port(port)
        .start()
        .await
        .expect("restarting b on its port");
    let back = Instant::now();
    wait_until("b gets traffic again", Duration::from_secs(3), || {
        restarted.hits() > 0
    })
    .await;
    let back_after = back.elapsed();
    eprintln!(
        "killed backend: {tried_early} failed attempts on it; back {back_after:?} after restart"
    );
    assert!(
        back_after < Duration::from_millis(2 * 200 * 11 / 10 + 300),
        "back after {back_after:?} (2 intervals of 200 ms)"
    );
    let (ok, errors) = load.finish().await;
    assert!(errors.is_empty(), "client-visible errors: {errors:?}");
    assert!(ok > 200, "only {ok} requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_health_check_takes_a_backend_out_after_the_threshold_and_back_after_recovery() {
    let backends = start_backends(&["a", "b"]).await;
    let mut config = config("round_robin", &backends);
    config["health_check"] = health_check(100, 2, 3);
    let lb = Lb::start(config).await;
    let http = Http::new();
    let b = label(&backends[1]);
    tokio::time::sleep(Duration::from_millis(250)).await;

    let failing = Instant::now();
    backends[1].set_health_status(500);
    let deadline = Instant::now() + Duration::from_secs(3);
    while metric(&http, &lb, "lbhost_backend_up", &[&b]).await != 0.0 {
        assert!(
            Instant::now() < deadline,
            "b still up 3 s after /health turned 500"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let out_after = failing.elapsed();
    let failed_probes = metric(
        &http,
        &lb,
        "lbhost_health_checks_total",
        &[&b, "result=\"fail\""],
    )
    .await;
    assert!(
        failed_probes >= 3.0,
        "down after {failed_probes} failed probes"
    );
    assert!(
        out_after >= Duration::from_millis(170),
        "down after {out_after:?}: before the third failed probe"
    );
    let hits = backends[1].hits();
    for _ in 0..10 {
        let reply = http.get(&lb.url("/")).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("x-backend"), Some("a"));
    }
    assert_eq!(
        backends[1].hits(),
        hits,
        "no traffic to a backend that is down"
    );

    let recovering = Instant::now();
    backends[1].set_health_status(200);
    let deadline = Instant::now() + Duration::from_secs(3);
    while metric(&http, &lb, "lbhost_backend_up", &[&b]).await != 1.0 {
        assert!(Instant::now() < deadline, "b still down 3 s after recovery");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let back_after = recovering.elapsed();
    eprintln!("health: out {out_after:?} after /health 500 (3 × 100 ms), back {back_after:?} after recovery (2 × 100 ms)");
    for _ in 0..4 {
        http.get(&lb.url("/")).await;
    }
    assert!(backends[1].hits() > hits, "b gets traffic again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_check_that_alternates_does_not_flap() {
    let (addr, probes) = flapping_backend().await;
    let config = json!({
        "strategy": lbhost_e2e::strategy("round_robin"),
        "backends": [{ "url": format!("http://{addr}") }],
        "health_check": health_check(50, 2, 2),
    });
    let lb = Lb::start(config).await;
    let http = Http::new();
    let b = format!("backend=\"{addr}\"");
    let deadline = Instant::now() + Duration::from_millis(1200);
    while Instant::now() < deadline {
        assert_eq!(
            metric(&http, &lb, "lbhost_backend_up", &[&b]).await,
            1.0,
            "went down after {} alternating probes",
            probes.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let failed = metric(
        &http,
        &lb,
        "lbhost_health_checks_total",
        &[&b, "result=\"fail\""],
    )
    .await;
    assert!(
        failed >= 5.0,
        "only {failed} failed probes: the test proves nothing"
    );
    assert!(!lb.log().contains("backend down"), "{}", lb.log());
    assert_eq!(http.get(&lb.url("/")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_answering_503_is_ejected_for_longer_each_time() {
    let backends = start_backends(&["a", "b", "c"]).await;
    backends[2].set_status(503);
    let mut config = config("round_robin", &backends);
    config["passive"] = json!({
        "consecutive_failures": 3, "base_ejection": "300ms", "max_ejection": "5s",
    });
    config["circuit_breaker"] = json!({ "enabled": false });
    let lb = Lb::start(config).await;
    let http = Http::new();
    // When each of c's answers came.
    let mut c_answers: Vec<Instant> = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(2300) {
        let reply = http.get(&lb.url("/")).await;
        match reply.header("x-backend") {
            Some("c") => {
                assert_eq!(reply.status, 503);
                c_answers.push(Instant::now());
            }
            Some(_) => assert_eq!(reply.status, 200),
            None => panic!("lbhost answered itself: {} {}", reply.status, reply.text()),
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Gaps in c's answers while traffic kept flowing are its ejections.
    let ejections: Vec<Duration> = c_answers
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|gap| *gap > Duration::from_millis(150))
        .collect();
    eprintln!("503 backend: ejections {ejections:?}");
    assert!(ejections.len() >= 2, "ejections {ejections:?}");
    assert!(
        ejections[0] >= Duration::from_millis(280) && ejections[0] < Duration::from_millis(550),
        "first ejection {:?} (base 300 ms)",
        ejections[0]
    );
    assert!(
        ejections[1] >= Duration::from_millis(580) && ejections[1] < Duration::from_millis(900),
        "second ejection {:?} (twice the base)",
        ejections[1]
    );
    let c = label(&backends[2]);
    assert!(metric(&http, &lb, "lbhost_backend_ejections_total", &[&c]).await >= 2.0);
    assert!(lb.log().contains("in_a_row=2"), "{}", lb.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_threshold_keeps_traffic_flowing_when_every_backend_fails() {
    // max_ejected_percent 100: all three get ejected, and the panic rule sends traffic to all.
    let backends = start_backends(&["a", "b", "c"]).await;
    for b in &backends {
        b.set_status(503);
    }
    let mut config1 = config("round_robin", &backends);
    config1["passive"] = json!({
        "consecutive_failures": 2, "base_ejection": "10s", "max_ejected_percent": 100,
    });
    config1["circuit_breaker"] = json!({ "enabled": false });
    let lb = Lb::start(config1).await;
    let http = Http::new();
    for _ in 0..12 {
        http.get(&lb.url("/")).await;
    }
    assert!(lb.log().contains("panic mode"), "{}", lb.log());
    let hits: Vec<u64> = backends.iter().map(Backend::hits).collect();
    for _ in 0..30 {
        let reply = http.get(&lb.url("/")).await;
        assert_eq!(reply.status, 503);
        assert!(
            reply.header("x-backend").is_some(),
            "lbhost answered itself instead of a backend: {}",
            reply.text()
        );
    }
    for (b, before) in backends.iter().zip(hits) {
        assert!(
            b.hits() >= before + 5,
            "{} got {} of 30",
            b.name(),
            b.hits() - before
        );
    }

    // The default max_ejected_percent (50): of four failing backends, two are ejected.
    let backends = start_backends(&["a", "b", "c", "d"]).await;
    for b in &backends {
        b.set_status(503);
    }
    let mut config2 = config("round_robin", &backends);
    config2["passive"] = json!({ "consecutive_failures": 2, "base_ejection": "10s" });
    config2["circuit_breaker"] = json!({ "enabled": false });
    let lb = Lb::start(config2).await;
    for _ in 0..40 {
        assert_eq!(http.get(&lb.url("/")).await.status, 503);
    }
    let ejected = metric(&http, &lb, "lbhost_backend_ejections_total", &[]).await;
    assert_eq!(ejected, 2.0);
    let serving = backends.iter().filter(|b| b.hits() > 10).count();
    assert_eq!(serving, 2, "the two not ejected take the traffic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_backends_down_gives_503_quickly_and_traffic_resumes_by_itself() {
    let backends = start_backends(&["a", "b"]).await;
    let port = backends[0].addr().port();
    let mut config = config("round_robin", &backends);
    config["health_check"] = health_check(200, 2, 2);
    let lb = Lb::start(config).await;
    let http = Http::new();
    assert_eq!(http.get(&lb.url("/")).await.status, 200);
    for b in backends {
        b.stop().await;
    }
    // The first requests find them gone (502, or 503 once both are known down); from then on
    // lbhost answers 503 at once.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let status = http.get(&lb.url("/")).await.status;
        if status == 503 {
            break;
        }
        assert_eq!(status, 502);
        assert!(
            Instant::now() < deadline,
            "no 503 2 s after every backend died"
        );
    }
    let mut slowest = Duration::ZERO;
    for _ in 0..50 {
        let sent = Instant::now();
        let reply = http.get(&lb.url("/")).await;
        slowest = slowest.max(sent.elapsed());
        assert_eq!(reply.status, 503, "{}", reply.text());
    }
    assert!(
        slowest < Duration::from_millis(100),
        "a 503 took {slowest:?}"
    );

    let restarted = Backend::builder("a")
        .port(port)
        .start()
        .await
        .expect("restarting a on its port");
    let back = Instant::now();
    let deadline = back + Duration::from_secs(3);
    loop {
        let reply = http.get(&lb.url("/")).await;
        if reply.status == 200 {
            assert_eq!(reply.text().trim(), "a");
            break;
        }
        assert_eq!(reply.status, 503);
        assert!(
            Instant::now() < deadline,
            "no traffic 3 s after a backend came back"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "total outage: slowest of 50 503s {slowest:?}; traffic back {:?} after restart",
        back.elapsed()
    );
    assert!(restarted.hits() >= 1);
}

/// Probes go through the connector and codec traffic uses: `GET path` in HTTP/1.1 with the
/// backend's `host`, each on a new connection that says `connection: close` and is closed after
/// the answer; a backend whose answer is not HTTP/1.1 fails them and is taken out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_probes_are_http1_on_a_new_connection_each_and_bad_answers_fail_them() {
    let recording = RecordingBackend::start().await;
    let garbage = RawBackend::start(|mut stream| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf).await;
        let _ = stream.write_all(b"HTTP/1.1 2OO OK\r\n\r\n").await;
    })
    .await;
    let mut config = json!({
        "backends": [{"url": recording.url()}, {"url": garbage.url()}],
        "strategy": lbhost_e2e::strategy("round_robin"),
    });
    config["health_check"] = health_check(100, 1, 1);
    let lb = Lb::start(config).await;
    let http = Http::new();
    let bad = format!(
        "backend=\"{}\"",
        garbage.url().trim_start_matches("http://")
    );
    let deadline = Instant::now() + Duration::from_secs(3);
    while metric(&http, &lb, "lbhost_backend_up", &[&bad]).await != 0.0 {
        assert!(
            Instant::now() < deadline,
            "the garbage backend still up after 3 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_until(
        "three probes of the recording backend",
        Duration::from_secs(3),
        || recording.connections().iter().filter(|c| c.ended).count() >= 3,
    )
    .await;
    let host = recording.url().trim_start_matches("http://").to_string();
    for probe in recording.connections().iter().filter(|c| c.ended) {
        let text = probe.text().to_ascii_lowercase();
        assert!(text.starts_with("get /health http/1.1\r\n"), "{text}");
        assert!(text.contains(&format!("\r\nhost: {host}\r\n")), "{text}");
        assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
        assert!(
            text.contains("\r\nuser-agent: lbhost-health-check\r\n"),
            "{text}"
        );
        assert_eq!(
            text.matches("http/1.1\r\n").count(),
            1,
            "one probe per connection: {text}"
        );
    }
    // Traffic still flows, to the backend that answers.
    for _ in 0..4 {
        assert_eq!(http.get(&lb.url("/")).await.status, 200);
    }
}
