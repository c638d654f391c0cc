//! Requests that a lenient parser and a strict one read differently, sent byte for byte (vectors
//! from llhttp's tests and HTTP Garden's reports): a bare LF where a line should end in CRLF.
//! Each is refused with the status RFC 9112 gives, before anything of it reaches the backend
//! that could be read as a request. A backend that records the bytes it gets shows which.

use std::time::Duration;

use lbhost_e2e::{send_raw_for, Lb, RecordingBackend};
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
