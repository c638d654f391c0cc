//! Proxy semantics through the real lbhost: headers, error statuses, limits, streaming,
//! upgrades, HTTP/2, graceful shutdown and upstream connection pooling.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use hyper::{Request, StatusCode, Version};
use lbhost_e2e::{
    config, free_addr, send_raw, send_raw_for, start_backends, wait_until, zeros, Http, Lb,
};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const MIB: u64 = 1024 * 1024;

/// Every value the backend saw for header `name`, joined with ", ".
fn seen(echo: &Value, name: &str) -> Option<String> {
    let values = echo["headers"].get(name)?.as_array()?;
    let values: Vec<&str> = values.iter().filter_map(Value::as_str).collect();
    Some(values.join(", "))
}

/// `GET /echo` through `lb` with `headers`; the request as the backend saw it.
async fn echo(lb: &Lb, headers: &[(&str, &str)]) -> Value {
    let reply = Http::new().get_with(&lb.url("/echo"), headers).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_removed_and_others_kept() {
    let backends = start_backends(&["a"]).await;
    let lb = Lb::start(config("round_robin", &backends)).await;
    let echo = echo(
        &lb,
        &[
            ("connection", "x-foo"),
            ("x-foo", "named by Connection"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("te", "gzip"),
            ("upgrade", "foo/1"),
            ("x-ordinary", "kept"),
            ("authorization", "Bearer kept-too"),
        ],
    )
    .await;
    for name in [
        "x-foo",
        "keep-alive",
        "proxy-authorization",
        "te",
        "upgrade",
    ] {
        assert_eq!(
            seen(&echo, name),
            None,
            "{name} reached the backend: {echo}"
        );
    }
    if let Some(connection) = seen(&echo, "connection") {
        assert!(!connection.contains("x-foo"), "connection: {connection}");
    }
    assert_eq!(seen(&echo, "x-ordinary").as_deref(), Some("kept"));
    assert_eq!(
        seen(&echo, "authorization").as_deref(),
        Some("Bearer kept-too")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_is_preserved_and_forwarded_proto_and_host_are_set() {
    let backends = start_backends(&["a"]).await;
    let lb = Lb::start(config("round_robin", &backends)).await;
    let echo = echo(&lb, &[("host", "shop.example")]).await;
    assert_eq!(
        seen(&echo, "host").as_deref(),
        Some("shop.example"),
        "{echo}"
    );
    assert_eq!(seen(&echo, "x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        seen(&echo, "x-forwarded-host").as_deref(),
        Some("shop.example")
    );
    assert_eq!(echo["method"], "GET");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_from_an_untrusted_client_is_replaced() {
    let backends = start_backends(&["a"]).await;
    let mut config = config("round_robin", &backends);
    config["trusted_proxies"] = json!([]);
    let lb = Lb::start(config).await;
    let echo = echo(&lb, &[("x-forwarded-for", "6.6.6.6")]).await;
    assert_eq!(
        seen(&echo, "x-forwarded-for").as_deref(),
        Some("127.0.0.1"),
        "{echo}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_from_a_trusted_proxy_is_appended_to() {
    let backends = start_backends(&["a"]).await;
    let mut config = config("round_robin", &backends);
    config["trusted_proxies"] = json!(["127.0.0.1/32"]);
    let lb = Lb::start(config).await;
    let echo = echo(&lb, &[("x-forwarded-for", "1.2.3.4")]).await;
    assert_eq!(
        seen(&echo, "x-forwarded-for").as_deref(),
        Some("1.2.3.4, 127.0.0.1"),
        "{echo}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_backend_port_gives_502() {
    let nobody = free_addr();
    let config = json!({
        "strategy": lbhost_e2e::strategy("round_robin"),
        "backends": [{ "url": format!("http://{nobody}") }],
        "timeouts": { "connect": "1s" },
    });
    let lb = Lb::start(config).await;
    let reply = Http::new().get(&lb.url("/")).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_only_backend_gives_503() {
    let backends = start_backends(&["a"]).await;
    backends[0].set_health_status(500);
    let mut config = config("round_robin", &backends);
    config["health_check"] = json!({
        "path": "/health",
        "interval": "100ms",
        "timeout": "1s",
        "healthy_threshold": 1,
        "unhealthy_threshold": 1,
    });
    let lb = Lb::start(config).await;
    let http = Http::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = http.get(&lb.url("/")).await;
        if reply.status == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {} 5 s after the backend's health check started failing",
            reply.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_slower_than_the_response_header_timeout_gives_504() {
    let backends = start_backends(&["a"]).await;
    let mut config = config("round_robin", &backends);
    config["timeouts"] = json!({ "response_header": "300ms" });
    let lb = Lb::start(config).await;
    let started = Instant::now();
    let reply = Http::new().get(&lb.url("/slow?ms=2000")).await;
    assert_eq!(
        reply.status,
        StatusCode::GATEWAY_TIMEOUT,
        "{}",
        reply.text()
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "504 came after {:?}",
        started.elapsed()
    );
}

/// A backend connection keeps its timer from request to request: each request still gets the
/// whole `response_header` time from its own start, whether the timer was moved on from the
/// last request's deadline or had already fired while the connection sat idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_backend_connection_times_out_from_each_request_start() {
    let backends = start_backends(&["a"]).await;
    let mut config = config("round_robin", &backends);
    config["timeouts"] = json!({ "response_header": "300ms" });
    let lb = Lb::start(config).await;
    let http = Http::new();
    for idle in [Duration::from_millis(150), Duration::from_millis(600)] {
        assert_eq!(http.get(&lb.url("/")).await.status, StatusCode::OK);
        // 150 ms: the slow request starts while the last deadline is still ahead (it must not
        // fire then); 600 ms: the timer fired while the connection was idle.
        tokio::time::sleep(idle).await;
        let started = Instant::now();
        let reply = http.get(&lb.url("/slow?ms=2000")).await;
        let took = started.elapsed();
        assert_eq!(
            reply.status,
            StatusCode::GATEWAY_TIMEOUT,
            "after {idle:?} idle"
        );
        assert!(
            took >= Duration::from_millis(280) && took < Duration::from_millis(1500),
            "504 after {took:?}, {idle:?} after the last request (timeout 300 ms)"
        );
    }
    assert_eq!(http.get(&lb.url("/")).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_header_gives_431() {
    let backends = start_backends(&["a"]).await;
    let mut config = config("round_robin", &backends);
    config["limits"] = json!({ "max_header_bytes": 16384 });
    let lb = Lb::start(config).await;
    let big = "a".repeat(64 * 1024);
    let request = format!("GET / HTTP/1.1\r\nHost: lb\r\nX-Big: {big}\r\n\r\n");
    let answer = send_raw(lb.listen(), request.as_bytes()).await;
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "answer to a 64 KiB header: {answer:?}"
    );
    assert_eq!(backends[0].hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_request_line_gives_400() {
    let backends = start_backends(&["a"]).await;
    let lb = Lb::start(config("round_robin", &backends)).await;
    let answer = send_raw(lb.listen(), b"HELLO THERE\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "answer: {answer:?}");
    assert_eq!(backends[0].hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_request_head_gives_408_and_close() {
    let backends = start_backends(&["a"]).await;
    let mut config = config("round_robin", &backends);
    config["timeouts"] = json!({ "header_read": "500ms" });
    let lb = Lb::start(config).await;
    let started = Instant::now();
    // Half a request line, then nothing.
    let answer = send_raw_for(lb.listen(), b"GET /sl", Duration::from_secs(4)).await;
    let waited = started.elapsed();
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "answer after {waited:?}: {answer:?}"
    );
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(3),
        "connection closed after {waited:?} (header_read is 500ms)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_of_256_mib_streams_through_in_bounded_memory() {
    let backends = start_backends(&["a"]).await;
    let lb = Lb::start(config("round_robin", &backends)).await;
    let http = Http::new();
    assert_eq!(http.get(&lb.url("/")).await.status, 200);
    let idle = lb.rss_bytes();
    let watch = lb.watch_rss();
    let request = Request::post(lb.url("/upload"))
        .body(zeros(256 * MIB))
        .expect("a valid request");
    let reply = http.send(request).await;
    let peak = watch.stop();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), (256 * MIB).to_string());
    assert_memory_bounded("upload", idle, peak);
}

/// The body streamed: lbhost's peak RSS during the transfer stayed within 64 MiB of idle.
fn assert_memory_bounded(what: &str, idle: u64, peak: u64) {
    eprintln!(
        "lbhost RSS: {} MiB idle, {} MiB at most during the {what}",
        idle / MIB,
        peak / MIB
    );
    assert!(peak > 0, "no RSS sample of lbhost during the {what}");
    assert!(
        peak < idle + 64 * MIB,
        "RSS went from {} MiB idle to {} MiB during the {what}",
        idle / MIB,
        peak / MIB
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_of_256_mib_streams_through_in_bounded_memory() {
    let backends = start_backends(&["a"]).await;
    let lb = Lb::start(config("round_robin", &backends)).await;
    let http = Http::new();
    assert_eq!(http.get(&lb.url("/")).await.status, 200);
    let idle = lb.rss_bytes();
    let watch = lb.watch_rss();
    let download = async {
        let request = Request::get(lb.url(&format!("/download?bytes={}", 256 * MIB)))
            .body(lbhost_e2e::empty())
            .expect("a valid request");
        let response = http.try_send(request).await.expect("download response");
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        let mut received = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.expect("download body");
            received += frame.data_ref().map_or(0, |d| d.len() as u64);
        }
        received
    };
    let received = tokio::time::timeout(Duration::from_secs(60), download)
        .await
        .expect("the download finishes within 60 s");
    let peak = watch.stop();
    assert_eq!(received, 256 * MIB);
    assert_memory_bounded("download", idle, peak);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_passes_through() {
    let backends = start_backends(&["a"]).await;
    let lb = Lb::start(config("round_robin", &backends)).await;
    let conversation = async {
        let url = format!("ws://{}/ws", lb.listen());
        let (mut ws, response) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("WebSocket handshake through lbhost");
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        for i in 0..10 {
            let text = format!("message {i}");
            ws.send(Message::text(text.clone())).await.expect("send");
            let echoed = ws.next().await.expect("an echo").expect("a message");
            assert_eq!(echoed, Message::text(text));
        }
        ws.close(None).await.expect("close handshake");
    };
    tokio::time::timeout(Duration::from_secs(10), conversation)
        .await
        .expect("the WebSocket exchange finishes within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_client_is_served() {
    let backends = start_backends(&["a"]).await;
    let lb = Lb::start(config("round_robin", &backends)).await;
    let reply = Http::h2c().get(&lb.url("/")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.version, Version::HTTP_2);
    assert_eq!(reply.text(), "a\n");
}

/// SIGTERM to `lb` once the one slow request sent so far has reached `backend`.
async fn terminate_once_it_arrives(lb: &Lb, backend: &demo_backend::Backend) {
    wait_until(
        "the slow request reaches the backend",
        Duration::from_secs(5),
        || backend.hits() == 1,
    )
    .await;
    lb.terminate();
}

/// `lb` exits with status 0 within 5 s (of a SIGTERM).
async fn exits_0_within_5_s(lb: &mut Lb) {
    let status = lb
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("lbhost exits within 5 s of SIGTERM");
    assert!(status.success(), "lbhost exited with {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits_0() {
    let backends = start_backends(&["a"]).await;
    let mut lb = Lb::start(config("round_robin", &backends)).await;
    let url = lb.url("/slow?ms=1500");
    let slow = tokio::spawn(async move { lbhost_e2e::get(&url).await });
    terminate_once_it_arrives(&lb, &backends[0]).await;
    // New connections are refused while the slow request is still being served.
    let deadline = Instant::now() + Duration::from_secs(1);
    while tokio::net::TcpStream::connect(lb.listen()).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "lbhost still accepts connections 1 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !slow.is_finished(),
        "the slow request ended before the drain"
    );

    let reply = slow.await.expect("slow request task");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "a\n");
    exits_0_within_5_s(&mut lb).await;
}

/// HTTP/2: on SIGTERM the client's stream in progress finishes, and its connection then closes
/// cleanly (GOAWAY, not a reset), so a client knows to go elsewhere without losing a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_http2_clients_stream_finish_then_closes_its_connection() {
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let backends = start_backends(&["a"]).await;
    let mut lb = Lb::start(config("round_robin", &backends)).await;
    let io = TokioIo::new(
        tokio::net::TcpStream::connect(lb.listen())
            .await
            .expect("connect"),
    );
    let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .expect("HTTP/2 handshake");
    let conn = tokio::spawn(conn);
    let request = Request::get(lb.url("/slow?ms=1500"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("a request");
    let slow = tokio::spawn(send.send_request(request));
    terminate_once_it_arrives(&lb, &backends[0]).await;
    let response = slow
        .await
        .expect("slow request task")
        .expect("the stream in progress is answered");
    assert_eq!(response.status(), StatusCode::OK);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("the whole body");
    assert_eq!(body.to_bytes(), "a\n");
    let closed = tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .expect("lbhost closes the connection once its stream is done")
        .expect("connection task");
    assert!(
        closed.is_ok(),
        "the connection ended with an error: {closed:?}"
    );
    exits_0_within_5_s(&mut lb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_drain_delay_healthz_fails_first_while_traffic_is_still_served() {
    let backends = start_backends(&["a"]).await;
    let mut cfg = config("round_robin", &backends);
    cfg["drain_delay"] = json!("2s");
    let mut lb = Lb::start(cfg).await;
    let http = Http::new();
    assert_eq!(http.get(&lb.admin_url("/healthz")).await.status, 200);

    lb.terminate();
    let signalled = Instant::now();
    let deadline = signalled + Duration::from_secs(1);
    let mut health = http.get(&lb.admin_url("/healthz")).await;
    while health.status == 200 {
        assert!(
            Instant::now() < deadline,
            "/healthz still 200 1 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        health = http.get(&lb.admin_url("/healthz")).await;
    }
    assert_eq!(health.status, 503);
    assert_eq!(health.text(), "draining\n");
    // Within the delay, new connections are still accepted and served.
    let mut served = 0;
    while signalled.elapsed() < Duration::from_millis(1500) {
        let reply = lbhost_e2e::get(&lb.url("/")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        served += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        served > 5,
        "{served} requests served during the drain delay"
    );
    let status = lb
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("lbhost exits after the drain delay");
    assert!(status.success(), "lbhost exited with {status}");
    assert!(
        signalled.elapsed() >= Duration::from_secs(2),
        "lbhost stopped before its drain delay ({:?})",
        signalled.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_pooled() {
    let backends = start_backends(&["a"]).await;
    let lb = Lb::start(config("round_robin", &backends)).await;
    let http = Http::new();
    for _ in 0..500 {
        let reply = http.get(&lb.url("/")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    assert_eq!(backends[0].hits(), 500);
    let connections = backends[0].connections();
    assert!(
        connections <= 4,
        "500 sequential requests opened {connections} connections to the backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listener_answers_healthz_status_and_metrics() {
    let backends = start_backends(&["a"]).await;
    let lb = Lb::start(config("round_robin", &backends)).await;
    let http = Http::new();
    let healthz = http.get(&lb.admin_url("/healthz")).await;
    assert_eq!(healthz.status, 200);
    assert_eq!(healthz.text().trim(), "ok");
    let status = http.get(&lb.admin_url("/status")).await;
    assert_eq!(status.status, 200, "{}", status.text());
    assert!(status.json().is_object(), "{}", status.text());
    let metrics = http.get(&lb.admin_url("/metrics")).await;
    assert_eq!(metrics.status, 200, "{}", metrics.text());
    assert!(
        metrics
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "content-type {:?}",
        metrics.header("content-type")
    );
    assert!(metrics.text().contains("# TYPE"), "{}", metrics.text());
}
