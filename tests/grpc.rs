//! gRPC through the real lbhost to real gRPC backends (tonic) over h2c on loopback, and over TLS
//! (h2, behind a rustls front with a certificate made at test time): calls of one client
//! connection balanced per request, statuses and trailers passed through, a backend killed
//! mid-stream, a backend's GOAWAY under load, `grpc-timeout`, lbhost's own errors as gRPC
//! statuses, and the gRPC health check. Every test is bounded in time (a few seconds each).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use lbhost_e2e::{make_certificate, metric, strategy, Http, Lb, Scratch, TlsFront};
use serde_json::{json, Value};
use tonic::Code;

#[path = "grpc/peers.rs"]
mod peers;
#[path = "grpc/plain_http.rs"]
mod plain_http;
use peers::{Ask, Client, GrpcBackend};

/// A round-robin config over `backends`, spoken to in h2c.
fn h2c_config(backends: &[&GrpcBackend]) -> Value {
    json!({
        "strategy": strategy("round_robin"),
        "backends": backends
            .iter()
            .map(|b| json!({"url": b.url(), "protocol": "h2c"}))
            .collect::<Vec<_>>(),
    })
}

/// Makes `calls` unary calls on `client` and checks that backends `a`, `b` and `c` each answered
/// a third of them, give or take `slack`.
async fn spread_evenly(client: &mut Client, calls: u32, slack: u32) {
    let mut shares: HashMap<String, u32> = HashMap::new();
    for _ in 0..calls {
        let backend = client.who(Ask::default()).await.expect("a unary call");
        *shares.entry(backend).or_default() += 1;
    }
    let third = calls / 3;
    for name in ["a", "b", "c"] {
        let n = shares.get(name).copied().unwrap_or(0);
        assert!(
            (third - slack..=third + slack).contains(&n),
            "{name} got {n} of {calls}: {shares:?}"
        );
    }
}

async fn metrics(lb: &Lb) -> String {
    Http::new().get(&lb.admin_url("/metrics")).await.text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connections_calls_spread_over_three_backends_with_statuses_and_trailers_intact() {
    let backends = [
        GrpcBackend::start("a"),
        GrpcBackend::start("b"),
        GrpcBackend::start("c"),
    ];
    let lb = Lb::start(h2c_config(&backends.iter().collect::<Vec<_>>())).await;
    let mut client = Client::connect(lb.listen()).await;
    spread_evenly(&mut client, 300, 5).await;

    // Server-streaming calls are balanced per call too, and each stream ends with its status.
    let mut streamed: HashMap<String, u32> = HashMap::new();
    for _ in 0..30 {
        let mut stream = client
            .count(Ask {
                count: 3,
                ..Ask::default()
            })
            .await
            .expect("a streaming call");
        let mut indexes = Vec::new();
        while let Some(reply) = stream.message().await.expect("a message") {
            indexes.push(reply.index);
            *streamed.entry(reply.backend).or_default() += 1;
        }
        assert_eq!(indexes, [0, 1, 2]);
    }
    assert_eq!(streamed.len(), 3, "{streamed:?}");
    assert!(streamed.values().all(|&n| n == 30), "{streamed:?}");

    // An application status in a trailers-only answer, and one in trailers after messages.
    let status = client
        .who(Ask {
            code: 5,
            ..Ask::default()
        })
        .await
        .expect_err("NOT_FOUND");
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), "asked for 5");
    let mut stream = client
        .count(Ask {
            count: 5,
            fail_after: 2,
            code: 8,
            ..Ask::default()
        })
        .await
        .expect("a streaming call");
    assert!(stream.message().await.expect("first").is_some());
    assert!(stream.message().await.expect("second").is_some());
    let status = stream
        .message()
        .await
        .expect_err("RESOURCE_EXHAUSTED in the trailers");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(status.message(), "asked for 8");

    let text = metrics(&lb).await;
    let ok = |b: &GrpcBackend| {
        metric(
            &text,
            &format!(
                "lbhost_grpc_responses_total{{backend=\"{}\",grpc_status=\"0\"}}",
                b.addr
            ),
        )
    };
    assert_eq!(backends.iter().map(ok).sum::<f64>(), 330.0, "{text}");
    assert!(text.contains("grpc_status=\"5\""), "{text}");
    assert!(text.contains("grpc_status=\"8\""), "{text}");
    // Multiplexed: at most one connection per backend and worker, not one per call.
    let status = Http::new().get(&lb.admin_url("/status")).await.json();
    let opened: u64 = status["backends"].as_array().map_or(0, |rows| {
        rows.iter()
            .filter_map(|r| r["upstream_connections"]["opened"].as_u64())
            .sum()
    });
    assert!(opened >= 3, "{status}");
    assert!(opened <= 6, "{opened} connections for 330 calls: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_killed_mid_stream_gives_unavailable_and_later_calls_go_elsewhere() {
    let mut backends = [GrpcBackend::start("a"), GrpcBackend::start("b")];
    let mut config = h2c_config(&backends.iter().collect::<Vec<_>>());
    config["passive"] = json!({"consecutive_failures": 1, "base_ejection": "30s"});
    let lb = Lb::start(config).await;
    let mut client = Client::connect(lb.listen()).await;

    let mut stream = client
        .count(Ask {
            count: 200,
            delay_ms: 20,
            ..Ask::default()
        })
        .await
        .expect("a streaming call");
    let first = stream.message().await.expect("a message").expect("one");
    let killed = backends
        .iter()
        .position(|b| b.name == first.backend)
        .expect("a known backend");
    backends[killed].kill();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(status) => return Some(status),
            }
        }
    })
    .await
    .expect("the stream ends");
    let status = ended.expect("the stream ends with a status, not cleanly");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    let other = &backends[1 - killed].name;
    for _ in 0..20 {
        let backend = client
            .who(Ask::default())
            .await
            .expect("a call after the kill");
        assert_eq!(&backend, other);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backends_goaway_and_restart_under_load_lose_no_call() {
    let mut backends = [
        GrpcBackend::start("a"),
        GrpcBackend::start("b"),
        GrpcBackend::start("c"),
    ];
    let mut config = h2c_config(&backends.iter().collect::<Vec<_>>());
    // While b is away, connections to it are refused: it is ejected, but not for long.
    config["passive"] = json!({"base_ejection": "200ms"});
    let lb = Lb::start(config).await;
    let client = Client::connect(lb.listen()).await;
    let stop_at = Instant::now() + Duration::from_millis(2500);
    let mut load = Vec::new();
    for _ in 0..8 {
        let mut client = client.clone();
        load.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while Instant::now() < stop_at {
                let ask = Ask {
                    delay_ms: 5,
                    ..Ask::default()
                };
                match client.who(ask).await {
                    Ok(_) => ok += 1,
                    Err(status) => failed.push(status),
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let addr = backends[1].addr;
    let before = backends[1].calls();
    assert!(before > 0, "b gets calls before it stops");
    // GOAWAY on every connection, calls in progress finish, the port closes; then it restarts.
    backends[1].stop().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    backends[1] = GrpcBackend::start_on("b", addr);
    let mut ok = 0;
    for task in load {
        let (n, failed) = task.await.expect("a load task");
        assert!(failed.is_empty(), "failed calls: {failed:?}");
        ok += n;
    }
    assert!(ok > 200, "only {ok} calls in 2.5 s");
    assert!(
        backends[1].calls() > 0,
        "b gets calls again after its restart"
    );
}

/// A TCP listener that accepts connections and never answers: a backend that hangs.
async fn silent_backend() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (addr, task)
}

/// One gRPC call over a plain HTTP/2 client (no client-side deadline of its own): the status,
/// `grpc-status` and `grpc-message` lbhost answered, and how long it took.
async fn raw_call(lb: SocketAddr, timeout: Option<&str>) -> (u16, String, String, Duration) {
    let io = TokioIo::new(tokio::net::TcpStream::connect(lb).await.expect("connect"));
    let (mut send, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let mut request = hyper::Request::post(format!("http://{lb}/test.Echo/Who"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(timeout) = timeout {
        request = request.header("grpc-timeout", timeout);
    }
    let request = request
        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .expect("a request");
    let started = Instant::now();
    let response = send.send_request(request).await.expect("an answer");
    let took = started.elapsed();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let collected = response.into_body().collect().await.expect("a body");
    let field = |name: &str| {
        headers
            .get(name)
            .or_else(|| collected.trailers().and_then(|t| t.get(name)))
            .map(|v| v.to_str().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    (status, field("grpc-status"), field("grpc-message"), took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_timeout_is_the_deadline_and_lbhosts_errors_are_grpc_statuses() {
    let (silent, _task) = silent_backend().await;
    let mut config = json!({
        "strategy": strategy("round_robin"),
        "backends": [{"url": format!("http://{silent}"), "protocol": "h2c"}],
        "timeouts": {"response_header": "20s"},
        "access_log": true,
    });
    let lb = Lb::start(config.clone()).await;
    let (status, grpc_status, message, took) = raw_call(lb.listen(), Some("300m")).await;
    assert_eq!((status, grpc_status.as_str()), (200, "4"), "{message}");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(!message.is_empty());
    drop(lb);

    // Without grpc-timeout, `timeouts.response_header` is the deadline, with the same status.
    config["timeouts"] = json!({"response_header": "400ms"});
    let lb = Lb::start(config).await;
    let (status, grpc_status, _, took) = raw_call(lb.listen(), None).await;
    assert_eq!((status, grpc_status.as_str()), (200, "4"));
    assert!(took >= Duration::from_millis(350), "{took:?}");
    assert!(lb.log().contains("grpc_status=4"), "{}", lb.log());
    drop(lb);

    // A backend that answers gets the time left of the call's deadline, not the client's
    // figure: what lbhost spent on the call is taken off.
    let backend = GrpcBackend::start("a");
    let lb = Lb::start(h2c_config(&[&backend])).await;
    let (status, grpc_status, message, _) = raw_call(lb.listen(), Some("5S")).await;
    assert_eq!((status, grpc_status.as_str()), (200, "0"), "{message}");
    let seen = backend.timeouts();
    let left: Vec<u64> = seen
        .iter()
        .filter_map(|t| t.strip_suffix('m')?.parse().ok())
        .collect();
    assert!(
        left.len() == 1 && (4_000..5_000).contains(&left[0]),
        "the backend saw {seen:?}"
    );
    drop(lb);

    // No backend that answers: UNAVAILABLE, not a 502 or 503.
    let closed = lbhost_e2e::free_addr();
    let lb = Lb::start(json!({
        "strategy": strategy("round_robin"),
        "backends": [{"url": format!("http://{closed}"), "protocol": "h2c"}],
    }))
    .await;
    let (status, grpc_status, message, _) = raw_call(lb.listen(), None).await;
    assert_eq!((status, grpc_status.as_str()), (200, "14"), "{message}");
    let text = metrics(&lb).await;
    assert_eq!(
        metric(
            &text,
            "lbhost_grpc_responses_total{backend=\"none\",grpc_status=\"14\"}"
        ),
        1.0,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_ejects_a_backend_and_not_found_does_not() {
    let backends = [GrpcBackend::start("a"), GrpcBackend::start("b")];
    let mut config = h2c_config(&backends.iter().collect::<Vec<_>>());
    config["passive"] = json!({"consecutive_failures": 3, "base_ejection": "30s"});
    config["retries"] = json!({"max": 0});
    let lb = Lb::start(config).await;
    let mut client = Client::connect(lb.listen()).await;
    for _ in 0..20 {
        let status = client
            .who(Ask {
                code: 5,
                ..Ask::default()
            })
            .await
            .expect_err("NOT_FOUND");
        assert_eq!(status.code(), Code::NotFound);
    }
    let text = metrics(&lb).await;
    assert_eq!(
        lbhost_e2e::metric_total(&text, "lbhost_backend_ejections_total"),
        0.0
    );
    for _ in 0..6 {
        let _ = client
            .who(Ask {
                code: 14,
                ..Ask::default()
            })
            .await;
    }
    let text = metrics(&lb).await;
    assert_eq!(
        lbhost_e2e::metric_total(&text, "lbhost_backend_ejections_total"),
        1.0,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_health_check_takes_a_not_serving_backend_out() {
    let backends = [GrpcBackend::start("a"), GrpcBackend::start("b")];
    for b in &backends {
        b.set_serving(true).await;
    }
    let mut config = h2c_config(&backends.iter().collect::<Vec<_>>());
    config["health_check"] = json!({
        "type": "grpc", "service": "test.Echo", "interval": "100ms", "timeout": "500ms",
        "healthy_threshold": 1, "unhealthy_threshold": 1,
    });
    let lb = Lb::start(config).await;
    let http = Http::new();
    let up = |text: &str, b: &GrpcBackend| {
        metric(
            text,
            &format!(
                "lbhost_backend_up{{backend=\"{}\",pool=\"default\"}}",
                b.addr
            ),
        )
    };
    backends[1].set_serving(false).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = http.get(&lb.admin_url("/metrics")).await.text();
        if up(&text, &backends[1]) == 0.0 && up(&text, &backends[0]) == 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "b never went down: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut client = Client::connect(lb.listen()).await;
    for _ in 0..10 {
        assert_eq!(client.who(Ask::default()).await.expect("a call"), "a");
    }
    backends[1].set_serving(true).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = http.get(&lb.admin_url("/metrics")).await.text();
        if up(&text, &backends[1]) == 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "b never came back: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_backends_over_tls_get_calls_balanced_probed_and_refused_without_h2() {
    let pki = Scratch::new();
    let (cert, key) = make_certificate(pki.path(), "backend", &["grpc.test"]);
    let backends = [
        GrpcBackend::start("a"),
        GrpcBackend::start("b"),
        GrpcBackend::start("c"),
    ];
    let mut fronts = Vec::new();
    for b in &backends {
        b.set_serving(true).await;
        fronts.push(TlsFront::start_h2(b.addr, &cert, &key).await);
    }
    // The same kind of server behind a front that agrees to no protocol by ALPN.
    let no_h2 = TlsFront::start(backends[0].addr, &cert, &key, None).await;
    let urls: Vec<Value> = fronts
        .iter()
        .map(|f| json!({"url": format!("https://{}", f.addr()), "protocol": "h2"}))
        .collect();
    let lb = Lb::start(json!({
        "strategy": strategy("round_robin"),
        "backends": urls,
        "upstream_tls": {"ca": pki.path().join("ca.pem"), "server_name": "grpc.test"},
        "health_check": {"type": "grpc", "service": "test.Echo", "interval": "100ms",
                         "timeout": "1s", "healthy_threshold": 1, "unhealthy_threshold": 1},
        "pools": {"plain_alpn": {"backends": [
            {"url": format!("https://{}", no_h2.addr()), "protocol": "h2"}]}},
        "routes": [{"match": {"path_prefix": "/test.Echo/Count"}, "pool": "plain_alpn"}],
        "default_pool": "default",
        "retries": {"max": 0},
    }))
    .await;

    let mut client = Client::connect(lb.listen()).await;
    spread_evenly(&mut client, 60, 2).await;
    let status = client
        .who(Ask {
            code: 5,
            ..Ask::default()
        })
        .await
        .expect_err("NOT_FOUND");
    assert_eq!(
        (status.code(), status.message()),
        (Code::NotFound, "asked for 5")
    );
    // Every front saw TLS handshakes that sent the configured name: the health probes' and a
    // few multiplexed connections', not one per call.
    for front in &fronts {
        assert!(front.handshakes() >= 1);
        assert!(front
            .server_names()
            .iter()
            .all(|n| n.as_deref() == Some("grpc.test")));
    }
    let status = Http::new().get(&lb.admin_url("/status")).await.json();
    let opened: u64 = status["backends"].as_array().map_or(0, |rows| {
        rows.iter()
            .filter_map(|r| r["upstream_connections"]["opened"].as_u64())
            .sum()
    });
    assert!(
        (3..=6).contains(&opened),
        "{opened} connections for 61 calls: {status}"
    );

    // A backend that does not agree to h2 is never spoken HTTP/2 to: the call fails as
    // UNAVAILABLE, the refusal is logged and counted, and the other pool keeps serving.
    let refused = client
        .count(Ask {
            count: 1,
            ..Ask::default()
        })
        .await
        .expect_err("no backend speaks h2 in that pool");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    let text = metrics(&lb).await;
    let alpn = metric(
        &text,
        &format!(
            "lbhost_upstream_tls_failures_total{{backend=\"{}\",reason=\"alpn\"}}",
            no_h2.addr()
        ),
    );
    assert!(alpn >= 1.0, "{text}");
    assert!(
        lb.log().contains("agreed to no protocol by ALPN, not h2"),
        "{}",
        lb.log()
    );
    assert_eq!(client.who(Ask::default()).await.expect("a call").len(), 1);
}
