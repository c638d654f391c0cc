//! What backends put on the wire, byte for byte: chunked bodies with trailers, answers that
//! trickle in a byte at a time, interim 100s, bodies delimited by closing, answers that come
//! before the upload ends, answers framed leniently, transfer codings other than chunked, and
//! answers that are not HTTP at all. lbhost reads backends with its own HTTP/1.1 client, so
//! these are written by hand. The client gets the backend's answer, or a 502 for a broken one,
//! and the next request is served either way.

use std::time::Duration;

use http_body_util::BodyExt;
use hyper::{Request, StatusCode};
use lbhost_e2e::{full, send_raw, Http, Lb, RawBackend};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
    5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-trailer: 1\r\n\r\n";

/// What the scripted backend answers to `path`, and whether it closes the connection after.
fn script(path: &str) -> (Vec<u8>, bool) {
    let fixed = |text: &str| {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{text}",
            text.len()
        )
        .into_bytes()
    };
    match path {
        "/chunked" | "/trickle-chunked" => (CHUNKED.to_vec(), false),
        "/continue" => (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\ncontinued".to_vec(),
            false,
        ),
        "/until-close" => (b"HTTP/1.0 200 OK\r\n\r\nread until the end".to_vec(), true),
        "/cut-short" => (b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten..".to_vec(), true),
        "/garbage" => (b"this is not HTTP\r\n\r\n".to_vec(), true),
        "/bad-length" => (b"HTTP/1.1 200 OK\r\ncontent-length: ten\r\n\r\n".to_vec(), true),
        "/two-lengths" => (
            b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab".to_vec(),
            true,
        ),
        "/huge-head" => {
            let mut head = b"HTTP/1.1 200 OK\r\nx-big: ".to_vec();
            head.resize(head.len() + 70 * 1024, b'a');
            head.extend_from_slice(b"\r\ncontent-length: 0\r\n\r\n");
            (head, true)
        }
        "/unasked-101" => (
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\nconnection: upgrade\r\n\r\n".to_vec(),
            true,
        ),
        "/hop-by-hop" => (
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: timeout=5\r\n\
              X-Secret: 1\r\nProxy-Connection: keep-alive\r\nX-Kept: yes\r\n\
              content-length: 2\r\n\r\nok"
                .to_vec(),
            false,
        ),
        // Bare LF line ends (which httparse takes), blanks around a value, an empty value,
        // a repeated field and the backend's own date.
        "/fields" => (
            b"HTTP/1.1 200 OK\nServer: scripted\nDate: Tue, 01 Dec 2026 10:00:00 GMT\n\
              Set-Cookie: a=1\nset-cookie: b=2\nX-Empty:\nX-Padded:   padded   \n\
              content-length: 2\n\nok"
                .to_vec(),
            false,
        ),
        "/bad-chunk" => (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n".to_vec(),
            true,
        ),
        // Lines off the grammar whose framing is still clear: read, and the connection closed.
        "/bare-lf-head" => (b"HTTP/1.1 200 OK\ncontent-length: 2\n\nok".to_vec(), false),
        "/chunk-trailing-blank" => (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2  \r\nok\r\n0\r\n\r\n".to_vec(),
            false,
        ),
        "/chunk-empty-extension" => (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2;\r\nok\r\n0\r\n\r\n".to_vec(),
            false,
        ),
        "/deflate" => (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: deflate, chunked\r\n\r\n5\r\nDEFL!\r\n0\r\n\r\n"
                .to_vec(),
            false,
        ),
        "/gzip-until-close" => (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nGZIP!".to_vec(),
            true,
        ),
        "/too-large" => (
            b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 8\r\nconnection: close\r\n\r\ntoo much".to_vec(),
            true,
        ),
        other => (fixed(other), false),
    }
}

/// A backend answering each request as [`script`] says; `/trickle*` answers a byte at a time,
/// and `/once-per-connection*` closes the connection, unanswered, when it is not the first
/// request on it.
/// It reads a request's `content-length` body before answering, except on `/too-large`, which
/// answers after the head and then drains what comes.
async fn scripted() -> RawBackend {
    RawBackend::start(serve).await
}

async fn serve(stream: TcpStream) {
    let mut stream = BufReader::new(stream);
    for served in 0.. {
        let mut request_line = String::new();
        if !matches!(stream.read_line(&mut request_line).await, Ok(n) if n > 0) {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            match stream.read_line(&mut line).await {
                Ok(n) if n > 0 && line != "\r\n" => {
                    if let Some((name, value)) = line.split_once(':') {
                        if name.eq_ignore_ascii_case("content-length") {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                }
                Ok(n) if n > 0 => break,
                _ => return,
            }
        }
        let path = request_line.split(' ').nth(1).unwrap_or("/").to_string();
        if path != "/too-large" {
            let mut body = vec![0u8; length];
            if stream.read_exact(&mut body).await.is_err() {
                return;
            }
        }
        if path.starts_with("/once-per-connection") && served > 0 {
            // What a backend closing an idle connection looks like when a request was on its way.
            return;
        }
        let (answer, close) = script(&path);
        let socket = stream.get_mut();
        if path.starts_with("/trickle") {
            for byte in &answer {
                if socket.write_all(std::slice::from_ref(byte)).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        } else if socket.write_all(&answer).await.is_err() {
            return;
        }
        if close {
            // Close the sending side, and read what the client still sends, so the kernel does not
            // reset the connection (and the answer with it) over unread bytes.
            let _ = socket.shutdown().await;
            let mut sink = vec![0u8; 64 * 1024];
            let drain = async { while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {} };
            let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
            return;
        }
    }
}

/// One backend; passive ejection and circuit breaking off, so a test can send it broken
/// answers in a row and still be served by it after.
fn only(backend: &RawBackend) -> serde_json::Value {
    json!({
        "strategy": lbhost_e2e::strategy("round_robin"),
        "backends": [{ "url": backend.url() }],
        "passive": { "enabled": false },
        "circuit_breaker": { "enabled": false },
        "workers": 1,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_arrives_whole_with_its_trailers_and_keeps_the_connection() {
    let backend = scripted().await;
    let lb = Lb::start(only(&backend)).await;
    let http = Http::new();
    for _ in 0..20 {
        let reply = http.get(&lb.url("/chunked")).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), "hello, world");
    }
    // Trailers reach an HTTP/2 client (HTTP/1.1 clients get them only if they asked).
    let response = Http::h2c()
        .try_send(
            Request::get(lb.url("/chunked"))
                .body(lbhost_e2e::empty())
                .expect("request"),
        )
        .await
        .expect("response");
    let collected = response.into_body().collect().await.expect("body");
    let trailers = collected.trailers().cloned().expect("trailers");
    assert_eq!(collected.to_bytes(), "hello, world");
    assert_eq!(trailers["x-trailer"], "1");
    assert_eq!(
        backend.accepted(),
        1,
        "every chunked answer reused one connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_trickling_in_a_byte_at_a_time_arrive_whole() {
    let backend = scripted().await;
    let lb = Lb::start(only(&backend)).await;
    let http = Http::new();
    for _ in 0..2 {
        let reply = http.get(&lb.url("/trickle-fixed")).await;
        assert_eq!(
            (reply.status, reply.text().as_str()),
            (StatusCode::OK, "/trickle-fixed")
        );
        let reply = http.get(&lb.url("/trickle-chunked")).await;
        assert_eq!(
            (reply.status, reply.text().as_str()),
            (StatusCode::OK, "hello, world")
        );
    }
    assert_eq!(backend.accepted(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backends_hop_by_hop_fields_stay_behind_over_http1_and_http2() {
    let backend = scripted().await;
    let lb = Lb::start(only(&backend)).await;
    for client in [Http::new(), Http::h2c()] {
        for _ in 0..2 {
            let reply = client.get(&lb.url("/hop-by-hop")).await;
            assert_eq!(
                (reply.status, reply.text().as_str()),
                (StatusCode::OK, "ok")
            );
            assert_eq!(reply.header("x-kept"), Some("yes"));
            for name in ["x-secret", "keep-alive", "proxy-connection"] {
                assert_eq!(reply.header(name), None, "{name} reached the client");
            }
            if let Some(connection) = reply.header("connection") {
                assert!(
                    !connection.to_ascii_lowercase().contains("x-secret"),
                    "connection: {connection}"
                );
            }
        }
    }
    // The backend's keep-alive was honoured: one connection carried all four answers.
    assert_eq!(backend.accepted(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backends_fields_reach_the_client_whole_in_order_and_in_crlf_lines() {
    let backend = scripted().await;
    let lb = Lb::start(only(&backend)).await;
    // HTTP/1.1, byte for byte: the fields are copied from the backend's head.
    let answer = send_raw(
        lb.listen(),
        b"GET /fields HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
    )
    .await;
    let (head, body) = answer.split_once("\r\n\r\n").expect("a whole head");
    assert_eq!(body, "ok");
    assert!(
        !head.replace("\r\n", "").contains('\n'),
        "a bare LF reached the client: {head:?}"
    );
    let lines: Vec<&str> = head.split("\r\n").collect();
    assert_eq!(lines[0], "HTTP/1.1 200 OK");
    let dates: Vec<&&str> = lines
        .iter()
        .filter(|l| l.to_ascii_lowercase().starts_with("date:"))
        .collect();
    assert_eq!(dates, [&"Date: Tue, 01 Dec 2026 10:00:00 GMT"], "{head}");
    let cookies: Vec<&&str> = lines
        .iter()
        .filter(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .collect();
    assert_eq!(cookies, [&"Set-Cookie: a=1", &"set-cookie: b=2"], "{head}");
    assert!(lines.contains(&"X-Empty:"), "{head}");
    assert!(lines.contains(&"X-Padded:   padded"), "{head}");
    assert!(lines.contains(&"content-length: 2"), "{head}");
    // HTTP/2: the same fields, from a header map.
    let reply = Http::h2c().get(&lb.url("/fields")).await;
    assert_eq!(reply.text(), "ok");
    let cookies: Vec<_> = reply.headers.get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    assert_eq!(reply.header("date"), Some("Tue, 01 Dec 2026 10:00:00 GMT"));
    assert_eq!(reply.header("x-empty"), Some(""));
    assert_eq!(reply.header("x-padded"), Some("padded"));
    assert_eq!(reply.header("server"), Some("scripted"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interim_100_is_skipped_and_the_final_answer_relayed() {
    let backend = scripted().await;
    let lb = Lb::start(only(&backend)).await;
    let reply = Http::new().get(&lb.url("/continue")).await;
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (StatusCode::OK, "continued")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_delimited_by_closing_arrives_whole_and_its_connection_is_not_reused() {
    let backend = scripted().await;
    let lb = Lb::start(only(&backend)).await;
    let http = Http::new();
    for _ in 0..5 {
        let reply = http.get(&lb.url("/until-close")).await;
        assert_eq!(
            (reply.status, reply.text().as_str()),
            (StatusCode::OK, "read until the end")
        );
        // The backend's HTTP/1.0 is its own business: the client is answered in HTTP/1.1.
        assert_eq!(reply.version, hyper::Version::HTTP_11);
    }
    assert_eq!(backend.accepted(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_answers_give_502_and_the_next_request_is_served() {
    let backend = scripted().await;
    let lb = Lb::start(only(&backend)).await;
    let http = Http::new();
    for path in [
        "/garbage",
        "/bad-length",
        "/two-lengths",
        "/huge-head",
        "/unasked-101",
    ] {
        let reply = http.get(&lb.url(path)).await;
        assert_eq!(reply.status, 502, "{path}: {}", reply.text());
        let after = format!("/after{path}");
        let reply = http.get(&lb.url(&after)).await;
        assert_eq!((reply.status, reply.text()), (StatusCode::OK, after));
    }
    let log = lb.log();
    assert!(log.contains("malformed response head"), "{log}");
    assert!(log.contains("invalid Content-Length"), "{log}");
    assert!(log.contains("response head larger than"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_cut_short_or_malformed_fails_the_client_stream_and_nothing_else() {
    let backend = scripted().await;
    let lb = Lb::start(only(&backend)).await;
    for path in ["/cut-short", "/bad-chunk"] {
        let http = Http::new();
        let request = Request::get(lb.url(path))
            .body(lbhost_e2e::empty())
            .expect("request");
        // The head may or may not have gone out before the body failed; the body never ends well.
        let whole = match http.try_send(request).await {
            Ok(response) => response.into_body().collect().await.is_ok(),
            Err(_) => false,
        };
        assert!(!whole, "{path}: the client saw a complete body");
        let reply = Http::new().get(&lb.url("/fine")).await;
        assert_eq!(
            (reply.status, reply.text().as_str()),
            (StatusCode::OK, "/fine")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_before_the_upload_ends_reaches_the_client() {
    let backend = scripted().await;
    let lb = Lb::start(only(&backend)).await;
    // The client announces 8 MiB and sends 64 KiB of it: the backend's 413 must come back
    // while the rest never does. (A raw client: hyper's own stops at its failed write.)
    let mut client = TcpStream::connect(lb.listen()).await.expect("connect");
    let head = format!(
        "POST /too-large HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
        8 << 20
    );
    client.write_all(head.as_bytes()).await.expect("head");
    client
        .write_all(&[0u8; 64 * 1024])
        .await
        .expect("some body");
    let mut answer = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = client.read(&mut buf).await {
            answer.extend_from_slice(&buf[..n]);
            if answer.ends_with(b"too much") {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");
    assert!(answer.ends_with("too much"), "{answer:?}");
    let request = Request::post(lb.url("/echo-length"))
        .body(full("abc"))
        .expect("request");
    let reply = Http::new().send(request).await;
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (StatusCode::OK, "/echo-length")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_closed_under_a_get_costs_the_client_nothing() {
    let backend = scripted().await;
    let lb = Lb::start(only(&backend)).await;
    let http = Http::new();
    for i in 0..5 {
        let path = format!("/once-per-connection-{i}");
        let reply = http.get(&lb.url(&path)).await;
        assert_eq!((reply.status, reply.text()), (StatusCode::OK, path));
    }
    assert_eq!(
        backend.accepted(),
        5,
        "each GET after the first went again on a new connection"
    );
    // A POST may have been acted on: it is not sent twice.
    let request = Request::post(lb.url("/once-per-connection-post"))
        .body(lbhost_e2e::empty())
        .expect("request");
    assert_eq!(http.send(request).await.status, 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_framed_leniently_is_relayed_and_its_connection_not_reused() {
    let backend = scripted().await;
    let lb = Lb::start(only(&backend)).await;
    let http = Http::new();
    for path in [
        "/bare-lf-head",
        "/chunk-trailing-blank",
        "/chunk-empty-extension",
    ] {
        let before = backend.accepted();
        for _ in 0..3 {
            let reply = http.get(&lb.url(path)).await;
            assert_eq!(
                (reply.status, reply.text().as_str()),
                (StatusCode::OK, "ok"),
                "{path}"
            );
        }
        assert_eq!(
            backend.accepted() - before,
            3,
            "{path}: each answer closed its connection"
        );
    }
    // Answers framed to the grammar keep theirs.
    let before = backend.accepted();
    for _ in 0..3 {
        let reply = http.get(&lb.url("/chunked")).await;
        assert_eq!(reply.text(), "hello, world");
    }
    assert_eq!(backend.accepted() - before, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answers_transfer_codings_reach_an_http_1_1_client_and_others_get_502() {
    let backend = scripted().await;
    let lb = Lb::start(only(&backend)).await;
    for (path, body) in [
        ("/deflate", "5\r\nDEFL!\r\n"),
        ("/gzip-until-close", "5\r\nGZIP!\r\n"),
    ] {
        let request = format!("GET {path} HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n");
        let answer = send_raw(lb.listen(), request.as_bytes()).await;
        let (head, rest) = answer.split_once("\r\n\r\n").expect("a whole head");
        assert!(
            head.starts_with("HTTP/1.1 200 OK\r\n"),
            "{path}: {answer:?}"
        );
        let coded = if path == "/deflate" {
            "deflate"
        } else {
            "gzip"
        };
        assert!(
            head.contains(&format!("\r\ntransfer-encoding: {coded}, chunked\r\n")),
            "{path}: {head:?}"
        );
        assert_eq!(
            head.matches("transfer-encoding").count(),
            1,
            "{path}: {head:?}"
        );
        assert!(!head.contains("content-length"), "{path}: {head:?}");
        assert_eq!(rest, format!("{body}0\r\n\r\n"), "{path}");
    }
    // HTTP/1.0 has no transfer codings, HTTP/2 none either: the body cannot be relayed as coded.
    let answer = send_raw(lb.listen(), b"GET /deflate HTTP/1.0\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 502 "), "{answer:?}");
    let reply = Http::h2c().get(&lb.url("/deflate")).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    // And the next request is served.
    let reply = Http::new().get(&lb.url("/after")).await;
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (StatusCode::OK, "/after")
    );
}
