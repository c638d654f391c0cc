//! Requests that a lenient parser and a strict one read differently, sent byte for byte (vectors
//! from llhttp's tests and HTTP Garden's reports): a bare CR or LF where a line should end in
//! CRLF, chunk lines off the grammar, CONNECT, request targets in odd forms, transfer codings
//! other than chunked, a missing `Host`. Each is refused with the status RFC 9112 gives, before
//! anything of it reaches the backend that could be read as a request, or forwarded in the one
//! form every backend reads the same way. A backend that records the bytes it gets shows which.

use std::time::Duration;

use hyper::{Method, Request, StatusCode};
use lbhost_e2e::{send_raw_for, wait_until, Http, Lb, RecordingBackend};
use serde_json::json;

/// How long a raw exchange may take: lbhost answers and closes well within it.
const EXCHANGE: Duration = Duration::from_secs(4);

/// lbhost in front of `backend` alone, one worker.
async fn lb(backend: &RecordingBackend) -> Lb {
    Lb::start(json!({
        "strategy": lbhost_e2e::strategy("round_robin"),
        "backends": [{ "url": backend.url() }],
        "workers": 1,
    }))
    .await
}

/// Sends `request` on a new connection and returns all lbhost answers until it closes.
async fn exchange(lb: &Lb, request: &[u8]) -> String {
    send_raw_for(lb.listen(), request, EXCHANGE).await
}

/// Asserts that `answer` is one response with `status`, and nothing else.
fn assert_only(answer: &str, status: u16, request: &[u8]) {
    let request = String::from_utf8_lossy(request);
    assert!(
        answer.starts_with(&format!("HTTP/1.1 {status} ")),
        "{request:?}: {answer:?}"
    );
    assert_eq!(
        answer.matches("HTTP/1.1 ").count(),
        1,
        "{request:?}: {answer:?}"
    );
}

/// The request line and fields the backend got of the request for `path`, lower-cased.
fn forwarded_head(backend: &RecordingBackend, path: &str) -> String {
    let received = backend.received().to_ascii_lowercase();
    let start = received
        .find(&format!(" {path} http/1.1\r\n"))
        .and_then(|at| {
            received[..at]
                .rfind("\r\n")
                .map_or(Some(0), |line| Some(line + 2))
        })
        .unwrap_or_else(|| panic!("no request for {path} reached the backend: {received:?}"));
    let end = received[start..]
        .find("\r\n\r\n")
        .map_or(received.len(), |end| start + end);
    received[start..end].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_cr_in_a_chunk_line_is_a_bad_request_and_no_chunk_reaches_the_backend() {
    let backend = RecordingBackend::start().await;
    let lb = lb(&backend).await;
    // HTTP Garden's "transducer bug 3": a front end that passes the lone CR through would hand
    // a lenient back end 0x41 bytes that hold a request of their own.
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: a\r\nX: yyyyyyyyyyyyyyyyyyyyyyyyy\r\n\r\n";
    assert_eq!(smuggled.len(), 0x41);
    let cases = [
        format!("41;a=b\r\rXXXX\r\n{smuggled}\r\n0\r\n\r\n"),
        format!("41\r\rXXXX\r\n{smuggled}\r\n0\r\n\r\n"),
        "5;a\rb\r\nhello\r\n0\r\n\r\n".to_string(),
        // A bare LF inside an extension, which httparse lets through.
        "5;a\nb\r\nhello\r\n0\r\n\r\n".to_string(),
    ];
    for (i, body) in cases.iter().enumerate() {
        let request = format!(
            "POST /upload-{i} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
        );
        let answer = exchange(&lb, request.as_bytes()).await;
        assert_only(&answer, 400, request.as_bytes());
    }
    // The heads went out before their bodies were read; not one chunk followed them, and each
    // backend connection closed.
    wait_until("every backend connection ended", EXCHANGE, || {
        backend.connections().iter().all(|c| c.ended)
    })
    .await;
    for connection in backend.connections() {
        let text = connection.text();
        let (_, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert_eq!(body, "", "{text:?}");
    }
    assert!(!backend.received().contains("/smuggled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_lines_off_the_grammar_are_bad_requests() {
    let backend = RecordingBackend::start().await;
    let lb = lb(&backend).await;
    for body in [
        "2 \r\nhi\r\n0\r\n\r\n",
        "2;\r\nhi\r\n0\r\n\r\n",
        "2;a=\r\nhi\r\n0\r\n\r\n",
        "2;a=\"b\r\nhi\r\n0\r\n\r\n",
        "2;a b\r\nhi\r\n0\r\n\r\n",
        "2\r\nhi\r\n0\r\nx: 1\n\n",
    ] {
        let request =
            format!("POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
        let answer = exchange(&lb, request.as_bytes()).await;
        assert_only(&answer, 400, request.as_bytes());
    }
    // Chunk extensions on the grammar pass.
    let request = b"POST /fine HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\
                    Connection: close\r\n\r\n2 ; a = \"q;\\\"\" ;b=c\r\nhi\r\n0\r\n\r\n";
    let answer = exchange(&lb, request).await;
    assert_only(&answer, 200, request);
    assert!(backend.received().contains("\r\n2\r\nhi\r\n0\r\n\r\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_chunked_body_is_the_clients_fault_and_closes_the_backend_connection() {
    let backend = RecordingBackend::start().await;
    let lb = lb(&backend).await;
    for body in [
        "0x5\r\nhello\r\n0\r\n\r\n",
        "-5\r\nhello\r\n0\r\n\r\n",
        "10000000000000005\r\nhello\r\n0\r\n\r\n",
        "5\r\nhelloXX0\r\n\r\n",
        "zz\r\n",
    ] {
        let request =
            format!("POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
        let answer = exchange(&lb, request.as_bytes()).await;
        assert_only(&answer, 400, request.as_bytes());
        assert!(answer.contains("connection: close\r\n"), "{answer:?}");
    }
    wait_until("every backend connection ended", EXCHANGE, || {
        backend.connections().iter().all(|c| c.ended)
    })
    .await;
    // No body reached its end at the backend.
    assert!(
        !backend.received().contains("0\r\n\r\n"),
        "{:?}",
        backend.received()
    );
    // Nothing was held against the backend.
    let answer = exchange(
        &lb,
        b"GET /after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_lf_in_a_request_head_is_a_bad_request_and_reaches_no_backend() {
    let backend = RecordingBackend::start().await;
    let lb = lb(&backend).await;
    for request in [
        // Read by a lenient parser as two requests, by a strict one as one with a bad field.
        &b"GET / HTTP/1.1\r\nHost: a\r\nUseless:\n\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        // `Content-Length` hidden in the value of `Dummy` for a strict parser.
        b"POST /a HTTP/1.1\r\nHost: a\r\nDummy: x\nContent-Length: 23\r\n\r\n\
          GET /smuggled HTTP/1.1\r\n\r\n",
        b"GET /a HTTP/1.1\nHost: a\n\n",
        b"GET /a HTTP/1.1\r\nHost: a\r\n\n",
        b"\nGET /a HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        let answer = exchange(&lb, request).await;
        assert_only(&answer, 400, request);
    }
    assert_eq!(backend.received(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_is_answered_405_and_the_connection_closes() {
    let backend = RecordingBackend::start().await;
    let lb = lb(&backend).await;
    let request = b"CONNECT backend.example:443 HTTP/1.1\r\nHost: backend.example:443\r\n\r\n\
                    GET /tunnelled HTTP/1.1\r\nHost: a\r\n\r\n";
    let answer = exchange(&lb, request).await;
    assert_only(&answer, 405, request);
    assert!(answer.contains("connection: close\r\n"), "{answer:?}");
    assert!(
        !answer.to_ascii_lowercase().contains("\r\nallow:"),
        "{answer:?}"
    );
    // Over HTTP/2 too.
    let response = Http::h2c()
        .try_send(
            Request::builder()
                .method(Method::CONNECT)
                .uri(format!("http://{}", lb.listen()))
                .body(lbhost_e2e::empty())
                .expect("request"),
        )
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(backend.received(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_reach_the_backend_in_origin_form_and_other_forms_are_refused() {
    let backend = RecordingBackend::start().await;
    let lb = lb(&backend).await;
    for (request, line, host) in [
        (
            &b"GET http://shop.example?x=1 HTTP/1.1\r\nHost: other.example\r\n\
               Connection: close\r\n\r\n"[..],
            "get /?x=1 http/1.1",
            "shop.example",
        ),
        (
            b"GET HTTP://Shop.Example:8080 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            "get / http/1.1",
            "shop.example:8080",
        ),
        (
            b"GET https://shop.example/a/b?c HTTP/1.1\r\nHost: shop.example\r\n\
              Connection: close\r\n\r\n",
            "get /a/b?c http/1.1",
            "shop.example",
        ),
        (
            b"OPTIONS * HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n",
            "options * http/1.1",
            "shop.example",
        ),
    ] {
        let answer = exchange(&lb, request).await;
        assert_only(&answer, 200, request);
        let path = line.split(' ').nth(1).unwrap_or_default();
        let head = forwarded_head(&backend, path);
        assert!(head.starts_with(&format!("{line}\r\n")), "{head:?}");
        assert!(head.contains(&format!("\r\nhost: {host}\r\n")), "{head:?}");
        assert_eq!(head.matches("\r\nhost:").count(), 1, "{head:?}");
    }
    let before = backend.received();
    for request in [
        &b"GET ! HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        b"GET * HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET shop.example:80 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /a#fragment HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET http://user@shop.example/ HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET ftp://shop.example/ HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        let answer = exchange(&lb, request).await;
        assert_only(&answer, 400, request);
    }
    assert_eq!(backend.received(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_codings_other_than_chunked_reach_the_backend_with_the_body() {
    let backend = RecordingBackend::start().await;
    let lb = lb(&backend).await;
    let request = b"POST /coded HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\
                    Connection: close\r\n\r\n5\r\nGZIP!\r\n0\r\n\r\n";
    let answer = exchange(&lb, request).await;
    assert_only(&answer, 200, request);
    let head = forwarded_head(&backend, "/coded");
    assert!(
        head.contains("\r\ntransfer-encoding: gzip, chunked"),
        "{head:?}"
    );
    assert_eq!(head.matches("transfer-encoding").count(), 1, "{head:?}");
    assert!(
        backend
            .received()
            .contains("\r\n\r\n5\r\nGZIP!\r\n0\r\n\r\n"),
        "{:?}",
        backend.received()
    );
    // Codings in two fields are one list.
    let request = b"POST /two-fields HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: deflate\r\n\
                    Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n1\r\nD\r\n0\r\n\r\n";
    let answer = exchange(&lb, request).await;
    assert_only(&answer, 200, request);
    let head = forwarded_head(&backend, "/two-fields");
    assert!(
        head.contains("\r\ntransfer-encoding: deflate, chunked"),
        "{head:?}"
    );
    // Chunked must be the last coding, once (RFC 9112 §6.1, §6.3).
    let before = backend.received();
    for codings in ["gzip", "chunked, gzip", "chunked, chunked"] {
        let request = format!(
            "POST /bad HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {codings}\r\n\r\n0\r\n\r\n"
        );
        let answer = exchange(&lb, request.as_bytes()).await;
        assert_only(&answer, 400, request.as_bytes());
    }
    assert_eq!(backend.received(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_1_1_request_needs_exactly_one_host() {
    let backend = RecordingBackend::start().await;
    let lb = lb(&backend).await;
    for request in [
        &b"GET /a HTTP/1.1\r\n\r\n"[..],
        b"GET /a HTTP/1.1\r\nAccept: */*\r\n\r\n",
        b"GET http://shop.example/a HTTP/1.1\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    ] {
        let answer = exchange(&lb, request).await;
        assert_only(&answer, 400, request);
    }
    assert_eq!(backend.received(), "");
    // HTTP/1.0 needs none: the backend's own is sent.
    let answer = exchange(&lb, b"GET /old HTTP/1.0\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer:?}");
    let head = forwarded_head(&backend, "/old");
    let authority = backend.url().trim_start_matches("http://").to_string();
    assert!(
        head.contains(&format!("\r\nhost: {authority}\r\n")),
        "{head:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_2_requests_are_served_as_before() {
    let backend = RecordingBackend::start().await;
    let lb = lb(&backend).await;
    let http = Http::h2c();
    let reply = http.get(&lb.url("/h2?x=1")).await;
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (StatusCode::OK, "ok")
    );
    let request = Request::post(lb.url("/h2-upload"))
        .body(lbhost_e2e::full("hello"))
        .expect("request");
    assert_eq!(http.send(request).await.status, StatusCode::OK);
    let head = forwarded_head(&backend, "/h2?x=1");
    let authority = lb.listen().to_string();
    assert!(
        head.contains(&format!("\r\nhost: {authority}\r\n")),
        "{head:?}"
    );
    assert!(forwarded_head(&backend, "/h2-upload").contains("\r\ncontent-length: 5"));
}
