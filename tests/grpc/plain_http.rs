//! Plain HTTP (not gRPC) through lbhost to h2c backends: bodies both ways past the flow-control
//! windows, and the fields an HTTP/1.1 or an HTTP/2 client's request reaches the backend with (a
//! part of `grpc.rs`, in a file of its own for length).

use std::time::{Duration, Instant};

use lbhost_e2e::{config, full, start_backends, Http, Lb};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_goes_to_h2c_backends_with_bodies_both_ways() {
    let backends = start_backends(&["a", "b"]).await;
    let mut config = config("round_robin", &backends);
    for b in config["backends"].as_array_mut().expect("backends") {
        b["protocol"] = json!("h2c");
    }
    let lb = Lb::start(config).await;
    let http = Http::new();
    let echo = http.get(&lb.url("/echo")).await.json();
    assert_eq!(echo["version"], "HTTP/2.0", "{echo}");
    assert_eq!(echo["headers"]["x-forwarded-for"][0], "127.0.0.1", "{echo}");
    assert!(echo["headers"].get("connection").is_none(), "{echo}");

    // An upload past the replay buffer, and a download large enough to need flow-control
    // windows to open many times over; from an HTTP/1.1 and from an HTTP/2 client (whose
    // stream has windows of its own, both ways).
    for (client, http) in [("HTTP/1.1", &http), ("HTTP/2", &Http::h2c())] {
        let upload = hyper::Request::post(lb.url("/upload"))
            .body(full(vec![7u8; 3 << 20]))
            .expect("a request");
        let reply = http.send(upload).await;
        assert_eq!(reply.text().trim(), (3u64 << 20).to_string(), "{client}");
        let started = Instant::now();
        let reply = http.get(&lb.url("/download?bytes=67108864")).await;
        assert_eq!(reply.body.len(), 64 << 20, "{client}");
        eprintln!(
            "64 MiB through lbhost from an h2c backend to an {client} client: {:?}",
            started.elapsed()
        );
    }
    let mut names = Vec::new();
    for _ in 0..4 {
        names.push(http.get(&lb.url("/")).await.text());
    }
    names.sort();
    assert_eq!(names, ["a\n", "a\n", "b\n", "b\n"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_clients_fields_reach_an_h2c_backend_as_an_http1_clients_do() {
    let backends = start_backends(&["a"]).await;
    let mut config = config("round_robin", &backends);
    config["backends"][0]["protocol"] = json!("h2c");
    let lb = Lb::start(config).await;
    let sent = [
        ("x-custom", "kept"),
        ("x-forwarded-for", "6.6.6.6"),
        ("forwarded", "for=6.6.6.6"),
        ("x-forwarded-proto", "https"),
    ];
    for client in [Http::new(), Http::h2c()] {
        let echo = client.get_with(&lb.url("/echo?q=1"), &sent).await.json();
        assert_eq!(echo["version"], "HTTP/2.0", "{echo}");
        let headers = &echo["headers"];
        assert_eq!(headers["x-custom"][0], "kept", "{echo}");
        // The client is no trusted proxy: its forwarding fields are replaced, not extended.
        assert_eq!(headers["x-forwarded-for"], json!(["127.0.0.1"]), "{echo}");
        assert_eq!(headers["x-forwarded-proto"], json!(["http"]), "{echo}");
        let forwarded = headers["forwarded"][0].as_str().expect("forwarded");
        assert!(
            forwarded.starts_with("for=127.0.0.1;proto=http;host="),
            "{echo}"
        );
        let host = lb
            .url("/")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        assert_eq!(headers["x-forwarded-host"], json!([host]), "{echo}");
        // The host the client named is the backend's :authority; no connection fields.
        assert_eq!(echo["uri"], format!("http://{host}/echo?q=1"), "{echo}");
        for absent in ["host", "connection", "te", "transfer-encoding"] {
            assert!(headers.get(absent).is_none(), "{absent}: {echo}");
        }
    }
}

/// An h2c backend that answers `name` (`/slow` after 600 ms), and on each connection's first
/// request for another path starts a graceful shutdown: GOAWAY, that request and those in
/// progress are still answered, then the connection closes. Counts the connections it accepted.
async fn goaway_on_a_first_quick_request(
    name: &'static str,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    use hyper_util::rt::{TokioExecutor, TokioIo};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::clone(&connections);
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let goaway = Arc::new(tokio::sync::Notify::new());
                let started = Arc::new(AtomicBool::new(false));
                let notify = Arc::clone(&goaway);
                let service = hyper::service::service_fn(move |request: hyper::Request<_>| {
                    let slow = request.uri().path() == "/slow";
                    let first = !slow && !started.swap(true, Ordering::Relaxed);
                    let notify = Arc::clone(&notify);
                    async move {
                        if slow {
                            tokio::time::sleep(Duration::from_millis(600)).await;
                        } else if first {
                            notify.notify_one();
                            // The GOAWAY goes out before this answer.
                            tokio::time::sleep(Duration::from_millis(30)).await;
                        }
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(full(
                            format!("{name}\n").into_bytes(),
                        )))
                    }
                });
                let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(socket), service);
                let mut conn = std::pin::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => return,
                    () = goaway.notified() => conn.as_mut().graceful_shutdown(),
                }
                let _ = conn.await;
            });
        }
    });
    (addr, connections)
}

/// A backend's GOAWAY costs no request, even with retries off: the connection it came on
/// (kept open by a slow stream) takes no new stream, and the next request opens another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backends_goaway_costs_no_request_even_without_retries() {
    let (addr, connections) = goaway_on_a_first_quick_request("a").await;
    let lb = Lb::start(json!({
        "strategy": lbhost_e2e::strategy("round_robin"),
        "backends": [{"url": format!("http://{addr}"), "protocol": "h2c"}],
        "retries": {"max": 0},
    }))
    .await;
    let http = Http::new();
    let slow_url = lb.url("/slow");
    let slow = tokio::spawn(async move { Http::new().get(&slow_url).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Says GOAWAY on the connection the slow stream holds open, and is answered.
    let reply = http.get(&lb.url("/")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    // Must not go on that connection.
    let reply = http.get(&lb.url("/")).await;
    assert_eq!(reply.status, 200, "after the GOAWAY: {}", reply.text());
    assert_eq!(reply.text(), "a\n");
    let reply = slow.await.expect("the slow request's task");
    assert_eq!(
        reply.status,
        200,
        "the stream in progress: {}",
        reply.text()
    );
    let opened = connections.load(std::sync::atomic::Ordering::Relaxed);
    assert!(opened >= 2, "a new connection after the GOAWAY: {opened}");
}

/// An h2c backend written frame by frame, that breaks HTTP/2's rules on purpose: `/upper` gets a
/// response head with a field name in upper case, `/stray` a DATA frame on stream 0 (a
/// connection error); other paths get `200 ok`. (lbhost sends a path as a plain literal, so
/// the path's bytes are in the HEADERS frame as they are.) Counts the connections it accepted.
async fn rule_breaking_backend() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One frame: length, type, flags, stream, payload.
    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).expect("small").to_be_bytes();
        let mut out = vec![len[1], len[2], len[3], kind, flags];
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }
    /// `:status 200` (static index 8), then `name: value` as a literal without indexing.
    fn head(name: &[u8], value: &[u8]) -> Vec<u8> {
        let mut block = vec![0x88, 0x00, u8::try_from(name.len()).expect("short")];
        block.extend_from_slice(name);
        block.push(u8::try_from(value.len()).expect("short"));
        block.extend_from_slice(value);
        block
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::clone(&connections);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let mut preface = [0u8; 24];
                if socket.read_exact(&mut preface).await.is_err() {
                    return;
                }
                let _ = socket.write_all(&frame(4, 0, 0, &[])).await;
                loop {
                    let mut header = [0u8; 9];
                    if socket.read_exact(&mut header).await.is_err() {
                        return;
                    }
                    let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
                    let mut payload = vec![0u8; len];
                    if socket.read_exact(&mut payload).await.is_err() {
                        return;
                    }
                    let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]])
                        & 0x7fff_ffff;
                    if header[3] == 4 && header[4] & 1 == 0 {
                        let _ = socket.write_all(&frame(4, 1, 0, &[])).await;
                    }
                    if header[3] != 1 {
                        continue;
                    }
                    let has = |path: &[u8]| payload.windows(path.len()).any(|w| w == path);
                    let answer = if has(b"/upper") {
                        // END_HEADERS | END_STREAM.
                        frame(1, 5, stream, &head(b"X-Upper", b"1"))
                    } else if has(b"/stray") {
                        frame(0, 0, 0, b"stray")
                    } else {
                        let mut out = frame(1, 4, stream, &head(b"x-fine", b"1"));
                        out.extend(frame(0, 1, stream, b"ok\n"));
                        out
                    };
                    if socket.write_all(&answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, connections)
}

/// A backend that breaks HTTP/2's rules costs only the request it broke them on: a malformed
/// response head fails its stream (502) and the connection serves on; a protocol error closes
/// the connection (502 for the request on it) and the next request opens another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_breaking_http2s_rules_costs_only_that_request() {
    let (addr, connections) = rule_breaking_backend().await;
    let lb = Lb::start(json!({
        "strategy": lbhost_e2e::strategy("round_robin"),
        "backends": [{"url": format!("http://{addr}"), "protocol": "h2c"}],
        "retries": {"max": 0},
        // One worker: the backend connections counted are one pool's, whichever worker a
        // client connection lands on.
        "workers": 1,
    }))
    .await;
    let http = Http::new();
    let count = || connections.load(std::sync::atomic::Ordering::Relaxed);
    let reply = http.get(&lb.url("/")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "ok\n");
    let reply = http.get(&lb.url("/upper")).await;
    assert_eq!(
        reply.status,
        502,
        "an upper-case field name: {}",
        reply.text()
    );
    let reply = http.get(&lb.url("/")).await;
    assert_eq!(
        reply.status,
        200,
        "after the malformed head: {}",
        reply.text()
    );
    assert_eq!(count(), 1, "the malformed head did not cost the connection");
    let reply = http.get(&lb.url("/stray")).await;
    assert_eq!(reply.status, 502, "DATA on stream 0: {}", reply.text());
    // The connection error closed that connection; the next request opens another.
    let reply = http.get(&lb.url("/")).await;
    assert_eq!(
        reply.status,
        200,
        "after the protocol error: {}",
        reply.text()
    );
    assert_eq!(reply.text(), "ok\n");
    assert_eq!(count(), 2, "a new connection after the protocol error");
}
