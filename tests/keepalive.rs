//! Client keep-alive through the real lbhost: idle connections are parked (taken back from the
//! HTTP machinery and kept as bare sockets) and then serve again as if nothing happened;
//! deadlines, pipelining, HTTP/2 and shutdown still hold for them.

use std::time::{Duration, Instant};

use lbhost_e2e::{config, start_backends, Http, Lb};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longer than a connection needs to be parked (it is after 50–100 ms of idleness).
const IDLE: Duration = Duration::from_millis(300);

const GET: &[u8] = b"GET /echo HTTP/1.1\r\nhost: keepalive.test\r\n\r\n";

/// Reads from `stream` until `count` whole responses arrived (heads plus `content-length`
/// bodies), or fails after 5 s. Returns their status lines.
async fn read_responses(stream: &mut TcpStream, count: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut received = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(statuses) = complete_responses(&received, count) {
            return statuses;
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) => panic!(
                "connection closed after {:?}",
                String::from_utf8_lossy(&received)
            ),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => panic!("read failed: {e}"),
            Err(_) => panic!(
                "no {count} responses within 5 s: {:?}",
                String::from_utf8_lossy(&received)
            ),
        }
    }
}

/// The status lines of `count` complete responses at the start of `bytes`, if all are there.
fn complete_responses(bytes: &[u8], count: usize) -> Option<Vec<String>> {
    let mut statuses = Vec::new();
    let mut rest = bytes;
    while statuses.len() < count {
        let end = rest.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let head = String::from_utf8_lossy(&rest[..end]).to_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().expect("a numeric content-length"));
        if rest.len() < end + length {
            return None;
        }
        statuses.push(head.lines().next().unwrap_or_default().to_string());
        rest = &rest[end + length..];
    }
    Some(statuses)
}

/// A new connection to `lb` that has been answered one `GET`.
async fn answered_connection(lb: &Lb) -> TcpStream {
    let mut stream = TcpStream::connect(lb.listen()).await.expect("connect");
    stream.write_all(GET).await.expect("write");
    assert_eq!(read_responses(&mut stream, 1).await, ["http/1.1 200 ok"]);
    stream
}

/// `lbhost_client_connections{state}` from the admin listener.
async fn client_connections(lb: &Lb, state: &str) -> Option<f64> {
    let text = Http::new().get(&lb.admin_url("/metrics")).await.text();
    let wanted = format!("lbhost_client_connections{{state=\"{state}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&wanted))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_parked_and_then_serves_again() {
    let backends = start_backends(&["a"]).await;
    let lb = Lb::start(config("round_robin", &backends)).await;
    let mut stream = TcpStream::connect(lb.listen()).await.expect("connect");
    for round in 0..3 {
        stream.write_all(GET).await.expect("write");
        let statuses = read_responses(&mut stream, 1).await;
        assert_eq!(statuses, ["http/1.1 200 ok"], "round {round}");
        tokio::time::sleep(IDLE).await;
        assert_eq!(
            client_connections(&lb, "parked").await,
            Some(1.0),
            "round {round}: the idle connection is parked"
        );
        assert_eq!(client_connections(&lb, "serving").await, Some(0.0));
    }
    // Busy again: it is served by the HTTP machinery, not parked.
    stream.write_all(GET).await.expect("write");
    read_responses(&mut stream, 1).await;
    assert_eq!(backends[0].hits(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_head_split_across_a_pause_is_kept_when_parking() {
    let backends = start_backends(&["a"]).await;
    let lb = Lb::start(config("round_robin", &backends)).await;
    let mut stream = TcpStream::connect(lb.listen()).await.expect("connect");
    // A whole request and the first half of the next one, then a pause long enough to park.
    stream
        .write_all(b"GET /echo HTTP/1.1\r\nhost: a\r\n\r\nGET /echo HTTP/1.1\r\nho")
        .await
        .expect("write");
    assert_eq!(read_responses(&mut stream, 1).await.len(), 1);
    tokio::time::sleep(IDLE).await;
    stream.write_all(b"st: b\r\n\r\n").await.expect("write");
    assert_eq!(read_responses(&mut stream, 1).await, ["http/1.1 200 ok"]);
    assert_eq!(backends[0].hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_a_body_then_idle_still_serves() {
    let backends = start_backends(&["a"]).await;
    let lb = Lb::start(config("round_robin", &backends)).await;
    let mut stream = TcpStream::connect(lb.listen()).await.expect("connect");
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\nhello")
        .await
        .expect("write");
    read_responses(&mut stream, 1).await;
    tokio::time::sleep(IDLE).await;
    stream.write_all(GET).await.expect("write");
    assert_eq!(read_responses(&mut stream, 1).await, ["http/1.1 200 ok"]);
    tokio::time::sleep(IDLE).await;
    assert_eq!(client_connections(&lb, "parked").await, Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_connection_still_times_out_when_idle() {
    let backends = start_backends(&["a"]).await;
    let mut config = config("round_robin", &backends);
    config["timeouts"] = json!({ "client_idle": "800ms" });
    let lb = Lb::start(config).await;
    let mut stream = answered_connection(&lb).await;
    let idle_since = Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await;
    let waited = idle_since.elapsed();
    assert!(
        matches!(read, Ok(Ok(0))),
        "expected lbhost to close the idle connection, got {read:?}"
    );
    assert!(
        waited >= Duration::from_millis(600),
        "closed after {waited:?}, client_idle is 800ms"
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    while client_connections(&lb, "parked").await != Some(0.0) {
        assert!(
            Instant::now() < deadline,
            "the closed connection stays counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_connections_do_not_hold_up_shutdown() {
    let backends = start_backends(&["a"]).await;
    let mut lb = Lb::start(config("round_robin", &backends)).await;
    let mut stream = answered_connection(&lb).await;
    tokio::time::sleep(IDLE).await;
    let stopping = Instant::now();
    lb.terminate();
    let status = lb
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("lbhost exits within 5 s of SIGTERM (shutdown_timeout is 30 s)");
    assert!(status.success(), "lbhost exited with {status}");
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the parked connection was closed: {read:?}"
    );
    eprintln!("exited {:?} after SIGTERM", stopping.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_connections_cost_little_memory() {
    const CONNECTIONS: usize = 1000;
    let backends = start_backends(&["a"]).await;
    let mut config = config("round_robin", &backends);
    config["workers"] = json!(1);
    let lb = Lb::start(config).await;
    // Warm up (first request, upstream pool), then measure.
    let _first = answered_connection(&lb).await;
    tokio::time::sleep(IDLE).await;
    let before = lb.rss_bytes();
    let mut streams = Vec::with_capacity(CONNECTIONS);
    for chunk in 0..CONNECTIONS / 100 {
        let mut opened = Vec::new();
        for _ in 0..100 {
            let mut stream = TcpStream::connect(lb.listen()).await.expect("connect");
            stream.write_all(GET).await.expect("write");
            opened.push(stream);
        }
        for stream in &mut opened {
            assert_eq!(read_responses(stream, 1).await.len(), 1, "chunk {chunk}");
        }
        streams.extend(opened);
    }
    // Parked within ~100 ms; the memory they free goes back to the OS within ~1 s.
    let per_connection =
        || lb.rss_bytes().saturating_sub(before) as f64 / CONNECTIONS as f64 / 1024.0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while (client_connections(&lb, "parked").await != Some((CONNECTIONS + 1) as f64)
        || per_connection() >= 10.0)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let per_connection = per_connection();
    eprintln!("{CONNECTIONS} idle connections: {per_connection:.1} KiB each");
    assert_eq!(
        client_connections(&lb, "parked").await,
        Some((CONNECTIONS + 1) as f64)
    );
    // hyper holds ~20 KiB per idle connection; parked ones cost a few.
    assert!(
        per_connection < 10.0,
        "{per_connection:.1} KiB per idle connection"
    );
    // And they all still answer.
    for stream in streams.iter_mut().step_by(50) {
        stream.write_all(GET).await.expect("write");
        assert_eq!(read_responses(stream, 1).await, ["http/1.1 200 ok"]);
    }
}
