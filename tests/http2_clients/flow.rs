//! Flow control both ways: lbhost sends a client no more DATA than the client's windows allow,
//! and takes a request body larger than its own windows as fast as it credits it.

use std::time::Duration;

use lbhost_e2e::h2raw::WAIT;
use lbhost_e2e::RawBackend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// The body of every answer of [`pattern_backend`]: 1 MiB whose byte `i` is `i % 251` (a period
/// no frame size divides, so a lost, repeated or reordered frame shows).
fn pattern() -> Vec<u8> {
    (0..1024 * 1024).map(|i| (i % 251) as u8).collect()
}

/// An HTTP/1.1 backend answering every request (bodies are not expected) with `200` and
/// [`pattern`], on keep-alive connections.
async fn pattern_backend() -> RawBackend {
    RawBackend::start(|mut stream| async move {
        let body = pattern();
        let mut answer =
            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
        answer.extend(body);
        let mut pending = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                pending.drain(..end + 4);
                if stream.write_all(&answer).await.is_err() {
                    return;
                }
            }
            match stream.read(&mut buf).await {
                Ok(n @ 1..) => pending.extend_from_slice(&buf[..n]),
                _ => return,
            }
        }
    })
    .await
}

async fn lb_for(backend: &RawBackend) -> Lb {
    Lb::start(json!({
        "strategy": lbhost_e2e::strategy("round_robin"),
        "backends": [{ "url": backend.url() }],
    }))
    .await
}

/// A client announcing SETTINGS_INITIAL_WINDOW_SIZE 0 gets the response head and no DATA until
/// it sends WINDOW_UPDATEs; then the whole body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_a_zero_window_gets_the_head_and_data_only_once_it_gives_credit() {
    bounded(async {
        let backend = pattern_backend().await;
        let lb = lb_for(&backend).await;
        let mut h2 = H2::handshake(lb.listen(), &[(setting::INITIAL_WINDOW_SIZE, 0)]).await;
        h2.manual_credit = true;
        h2.get(1, "/").await;
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while let Ok(Some(frame)) = h2.frame_until(deadline).await {
            seen.push(frame);
        }
        assert_eq!(
            on_stream(&seen, 1, kind::HEADERS).count(),
            1,
            "the response head on a zero window: {seen:?}"
        );
        let data: Vec<_> = on_stream(&seen, 1, kind::DATA)
            .filter(|f| !f.payload.is_empty())
            .collect();
        assert!(data.is_empty(), "DATA beyond a zero window: {data:?}");
        h2.window_update(0, 16 * 1024 * 1024).await;
        h2.window_update(1, 2 * 1024 * 1024).await;
        let response = h2.read_until_response(1).await;
        assert_eq!(response.status, 200);
        assert!(
            response.body == pattern(),
            "the body is not the backend's: {} bytes",
            response.body.len()
        );
    })
    .await;
}

/// A client whose stream window is 16 KiB and which gives 16 KiB of credit at a time gets a
/// 1 MiB body whole and byte-exact, never more than its window at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_giving_16_kib_at_a_time_gets_a_1_mib_body_byte_exact() {
    const STEP: u32 = 16 * 1024;
    bounded(async {
        let backend = pattern_backend().await;
        let lb = lb_for(&backend).await;
        let mut h2 = H2::handshake(lb.listen(), &[(setting::INITIAL_WINDOW_SIZE, STEP)]).await;
        h2.manual_credit = true;
        h2.window_update(0, 16 * 1024 * 1024).await;
        h2.get(1, "/").await;
        let (mut granted, mut received) = (u64::from(STEP), 0u64);
        loop {
            let frame = h2
                .next_frame(WAIT)
                .await
                .expect("lbhost keeps the connection open while the body is under way");
            if frame.stream != 1 {
                continue;
            }
            if frame.kind == kind::RST_STREAM {
                panic!("stream 1 reset: {:?}", frame.error_code());
            }
            if frame.kind == kind::DATA {
                received += frame.payload.len() as u64;
                assert!(
                    received <= granted,
                    "lbhost sent {received} bytes on a window of {granted}"
                );
                assert!(
                    frame.payload.len() <= 16_384,
                    "a DATA frame of {} bytes",
                    frame.payload.len()
                );
            }
            if frame.has(flag::END_STREAM) {
                break;
            }
            if received == granted {
                h2.window_update(1, STEP).await;
                granted += u64::from(STEP);
            }
        }
        let response = h2.read_until_response(1).await;
        assert_eq!(response.status, 200);
        assert_eq!(response.body.len(), 1024 * 1024);
        assert!(
            response.body == pattern(),
            "the body differs from the backend's"
        );
    })
    .await;
}

/// A 3 MiB request body, more than lbhost's windows, sent as lbhost's WINDOW_UPDATEs allow,
/// reaches the backend whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_3_mib_upload_sent_as_lbhost_gives_credit_reaches_the_backend_whole() {
    const TOTAL: usize = 3 * 1024 * 1024;
    bounded(async {
        let backends = start_backends(&["a"]).await;
        let lb = lb_with(&backends, json!({})).await;
        let mut h2 = H2::handshake(lb.listen(), &[]).await;
        let max_frame = h2
            .peer_settings
            .get(&setting::MAX_FRAME_SIZE)
            .map_or(16_384, |size| *size as usize);
        let length = TOTAL.to_string();
        let upload = request_block("POST", "/upload", AUTHORITY, &[("content-length", &length)]);
        h2.headers(1, &upload, false).await;
        let chunk: Vec<u8> = (0..max_frame).map(|i| (i % 253) as u8).collect();
        let mut sent = 0;
        while sent < TOTAL {
            let room = h2.send_room(1);
            if room <= 0 {
                h2.next_frame(WAIT)
                    .await
                    .unwrap_or_else(|| panic!("lbhost closed the connection after {sent} bytes"));
                continue;
            }
            let n = (room as usize).min(max_frame).min(TOTAL - sent);
            h2.data(1, &chunk[..n], sent + n == TOTAL).await;
            sent += n;
        }
        let response = h2.read_until_response(1).await;
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.text(), TOTAL.to_string(), "bytes the backend got");
    })
    .await;
}
