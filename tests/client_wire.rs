//! What clients put on the wire, byte for byte: pipelined requests, chunked uploads,
//! `Expect: 100-continue`, HTTP/1.0, HEAD, request framing that could smuggle a second
//! request past a proxy, and a client still uploading when the answer comes. lbhost serves
//! HTTP/1.1 clients with its own server, so these are written by hand on raw sockets.

use std::time::Duration;

use lbhost_e2e::{config, send_raw, start_backends, Lb, RawBackend};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One response as the client read it.
#[derive(Debug)]
struct Answer {
    /// The head, lower-cased.
    head: String,
    body: String,
}

impl Answer {
    fn status(&self) -> &str {
        self.head.lines().next().unwrap_or_default()
    }
}

/// Reads `count` responses (`content-length` or chunked bodies, none for HEAD when `head` is
/// set) from `stream`; fails after 5 s.
async fn read_answers(stream: &mut TcpStream, count: usize, head: bool) -> Vec<Answer> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut received = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(answers) = parse_answers(&received, count, head) {
            return answers;
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n @ 1..)) => received.extend_from_slice(&buf[..n]),
            other => panic!(
                "no {count} answers ({other:?}) in {:?}",
                String::from_utf8_lossy(&received)
            ),
        }
    }
}

/// `count` complete answers at the start of `bytes`, if they are all there.
fn parse_answers(bytes: &[u8], count: usize, head: bool) -> Option<Vec<Answer>> {
    let mut answers = Vec::new();
    let mut rest = bytes;
    while answers.len() < count {
        let end = rest.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let text = String::from_utf8_lossy(&rest[..end]).to_lowercase();
        rest = &rest[end..];
        let mut body = Vec::new();
        if text.starts_with("http/1.1 100") {
            continue;
        }
        if head {
        } else if text.contains("transfer-encoding: chunked") {
            loop {
                let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
                let size =
                    usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).ok()?, 16).ok()?;
                if rest.len() < line_end + 2 + size + 2 {
                    return None;
                }
                body.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
                rest = &rest[line_end + 2 + size + 2..];
                if size == 0 {
                    break;
                }
            }
        } else {
            let length: usize = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().expect("a numeric content-length"));
            if rest.len() < length {
                return None;
            }
            body.extend_from_slice(&rest[..length]);
            rest = &rest[length..];
        }
        answers.push(Answer {
            head: text,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    Some(answers)
}

/// Whether the server closes `stream` (a clean end of stream) within 3 s, reading on.
async fn closes(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    matches!(
        tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf)).await,
        Ok(Ok(0))
    )
}

async fn lb() -> (Vec<demo_backend::Backend>, Lb) {
    let backends = start_backends(&["a"]).await;
    let lb = Lb::start(config("round_robin", &backends)).await;
    (backends, lb)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let (backends, lb) = lb().await;
    let mut stream = TcpStream::connect(lb.listen()).await.expect("connect");
    stream
        .write_all(
            b"GET /echo HTTP/1.1\r\nhost: a\r\n\r\n\
              POST /upload HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\nhello\
              GET / HTTP/1.1\r\nhost: a\r\n\r\n",
        )
        .await
        .expect("write");
    let answers = read_answers(&mut stream, 3, false).await;
    assert_eq!(answers[0].status(), "http/1.1 200 ok");
    assert!(
        answers[0].body.contains("\"method\":\"GET\""),
        "{answers:?}"
    );
    assert_eq!(
        (answers[1].status(), answers[1].body.as_str()),
        ("http/1.1 200 ok", "5")
    );
    assert_eq!(answers.len(), 3);
    assert_eq!(backends[0].hits(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_upload_arrives_whole_and_the_connection_serves_on() {
    let (_backends, lb) = lb().await;
    let mut stream = TcpStream::connect(lb.listen()).await.expect("connect");
    stream
        .write_all(
            b"POST /upload HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n\
              5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-checksum: 1\r\n\r\n",
        )
        .await
        .expect("write");
    let answers = read_answers(&mut stream, 1, false).await;
    assert_eq!(
        (answers[0].status(), answers[0].body.as_str()),
        ("http/1.1 200 ok", "11")
    );
    // Pieces of a chunked body arriving apart, on the same connection.
    for piece in [
        &b"POST /upload HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n3\r"[..],
        b"\nabc\r\n",
        b"0\r\n\r\n",
    ] {
        stream.write_all(piece).await.expect("write");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answers = read_answers(&mut stream, 1, false).await;
    assert_eq!(answers[0].body, "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_answered_before_the_body_is_sent() {
    let (_backends, lb) = lb().await;
    let mut stream = TcpStream::connect(lb.listen()).await.expect("connect");
    stream
        .write_all(
            b"PUT /upload HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n",
        )
        .await
        .expect("write");
    let mut interim = [0u8; 25];
    tokio::time::timeout(Duration::from_secs(3), stream.read_exact(&mut interim))
        .await
        .expect("a 100 Continue before the body")
        .expect("read");
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"hello").await.expect("body");
    let answers = read_answers(&mut stream, 1, false).await;
    assert_eq!(
        (answers[0].status(), answers[0].body.as_str()),
        ("http/1.1 200 ok", "5")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_that_could_smuggle_a_request_is_refused_and_reaches_no_backend() {
    let (backends, lb) = lb().await;
    for framing in [
        "transfer-encoding: chunked\r\ncontent-length: 4\r\n",
        "content-length: 4\r\ncontent-length: 40\r\n",
        "content-length: +4\r\n",
        "transfer-encoding: chunked, identity\r\n",
    ] {
        let request =
            format!("POST /upload HTTP/1.1\r\nhost: a\r\n{framing}\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n");
        let answer = send_raw(lb.listen(), request.as_bytes()).await;
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "{framing:?}: {answer:?}"
        );
        assert_eq!(
            answer.matches("HTTP/1.1").count(),
            1,
            "{framing:?}: {answer:?}"
        );
    }
    let old = send_raw(
        lb.listen(),
        b"POST /upload HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .await;
    assert!(old.starts_with("HTTP/1.1 400"), "{old:?}");
    assert_eq!(backends[0].hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_1_0_clients_are_answered_in_http_1_1_and_keep_alive_only_when_asked() {
    let (_backends, lb) = lb().await;
    let mut stream = TcpStream::connect(lb.listen()).await.expect("connect");
    stream
        .write_all(b"GET / HTTP/1.0\r\n\r\n")
        .await
        .expect("write");
    let answers = read_answers(&mut stream, 1, false).await;
    assert_eq!(answers[0].status(), "http/1.1 200 ok");
    assert!(
        closes(&mut stream).await,
        "an HTTP/1.0 connection closes after its answer"
    );

    let mut stream = TcpStream::connect(lb.listen()).await.expect("connect");
    for _ in 0..2 {
        stream
            .write_all(b"GET / HTTP/1.0\r\nconnection: keep-alive\r\n\r\n")
            .await
            .expect("write");
        let answers = read_answers(&mut stream, 1, false).await;
        assert!(
            answers[0].head.contains("connection: keep-alive\r\n"),
            "{answers:?}"
        );
    }
    // HTTP/1.1 asking to close.
    let mut stream = TcpStream::connect(lb.listen()).await.expect("connect");
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let answers = read_answers(&mut stream, 1, false).await;
    assert!(
        answers[0].head.contains("connection: close\r\n"),
        "{answers:?}"
    );
    assert!(closes(&mut stream).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_answer_keeps_the_length_and_has_no_body() {
    let (_backends, lb) = lb().await;
    let mut stream = TcpStream::connect(lb.listen()).await.expect("connect");
    stream
        .write_all(b"HEAD /download?bytes=1000 HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .expect("write");
    let answers = read_answers(&mut stream, 1, true).await;
    assert_eq!(answers[0].status(), "http/1.1 200 ok");
    assert!(
        answers[0].head.contains("content-length: 1000\r\n"),
        "{answers:?}"
    );
    // Had a body followed, this would read it as the next answer.
    stream
        .write_all(b"GET /echo HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .expect("write");
    let answers = read_answers(&mut stream, 1, false).await;
    assert_eq!(answers[0].status(), "http/1.1 200 ok");
    assert!(answers[0].body.starts_with('{'), "{answers:?}");
}

/// A backend that answers 413 as soon as it has a request head and reads nothing more for
/// a while (so the upload stalls).
async fn refusing_backend() -> RawBackend {
    RawBackend::start(|mut stream: TcpStream| async move {
        let mut seen = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(n @ 1..) => seen.extend_from_slice(&buf[..n]),
                _ => return,
            }
        }
        let answer = b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 8\r\nconnection: close\r\n\r\ntoo much";
        if stream.write_all(answer).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_still_uploading_when_the_answer_comes_reads_it_and_a_clean_close() {
    let backend = refusing_backend().await;
    let lb = Lb::start(serde_json::json!({
        "strategy": lbhost_e2e::strategy("round_robin"),
        "backends": [{ "url": backend.url() }],
    }))
    .await;
    // 16 MiB sent in one go, most of it unread by anyone once the 413 is out: without a
    // lingering close the kernel answers the unread bytes with a reset, which also throws away
    // whatever of the answer the client has not read yet.
    let body = vec![b'x'; 16 * 1024 * 1024];
    let mut request = format!(
        "POST /big HTTP/1.1\r\nhost: a\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    let stream = TcpStream::connect(lb.listen()).await.expect("connect");
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&request).await;
        write
    });
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match read.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => received.extend_from_slice(&buf[..n]),
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    let answer = String::from_utf8_lossy(&received);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");
    assert!(answer.ends_with("too much"), "{answer:?}");
    assert!(answer.contains("connection: close\r\n"), "{answer:?}");
    assert!(
        matches!(ended, Ok(Ok(()))),
        "the connection ends with a clean close, not {ended:?}"
    );
    let _ = writer.await;
}

/// A backend that answers each request with what it received: the head's field lines, `|`,
/// the body (its length from a `Content-Length` in any case).
async fn mirroring_backend() -> RawBackend {
    RawBackend::start(|mut stream: TcpStream| async move {
        let mut seen = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") else {
                match stream.read(&mut buf).await {
                    Ok(n @ 1..) => seen.extend_from_slice(&buf[..n]),
                    _ => return,
                }
                continue;
            };
            let head = String::from_utf8_lossy(&seen[..end]).into_owned();
            let length: usize = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                .map_or(0, |(_, v)| v.trim().parse().unwrap_or(0));
            while seen.len() < end + 4 + length {
                match stream.read(&mut buf).await {
                    Ok(n @ 1..) => seen.extend_from_slice(&buf[..n]),
                    _ => return,
                }
            }
            let fields = head.split_once("\r\n").map_or("", |(_, fields)| fields);
            let body = String::from_utf8_lossy(&seen[end + 4..end + 4 + length]).into_owned();
            let mirrored = format!("{fields}\r\n|{body}");
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{mirrored}",
                mirrored.len()
            );
            if stream.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
            seen.drain(..end + 4 + length);
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_fields_reach_the_backend_in_its_casing_and_order_without_hop_by_hop_ones() {
    let backend = mirroring_backend().await;
    let lb = Lb::start(serde_json::json!({
        "strategy": lbhost_e2e::strategy("round_robin"),
        "backends": [{ "url": backend.url() }],
        "workers": 1,
    }))
    .await;
    let mut stream = TcpStream::connect(lb.listen()).await.unwrap();
    stream
        .write_all(
            "POST /upload HTTP/1.1\r\nHOST: Shop.Example\r\nX-Trace-Id: a1\r\n\
             Connection: X-Secret, keep-alive\r\nx-SECRET: dropped\r\nKeep-Alive: timeout=5\r\n\
             TE: trailers\r\nX-Forwarded-For: 6.6.6.6\r\nAccept-Language: fr-CH, fr;q=0.9\r\n\
             X-Trace-Id: a2\r\nX-Name: Zoë\r\nContent-Length: 5\r\n\r\nhello"
                .as_bytes(),
        )
        .await
        .unwrap();
    let answer = read_answers(&mut stream, 1, false).await.remove(0);
    assert!(answer.status().contains(" 200 "), "{answer:?}");
    let (fields, body) = answer.body.split_once('|').unwrap();
    assert_eq!(
        body, "hello",
        "the body, framed by a mixed-case Content-Length"
    );
    let lines: Vec<&str> = fields.lines().collect();
    let client_fields: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("X-Trace") || l.starts_with("Accept-") || l.starts_with("X-Name"))
        .collect();
    assert_eq!(
        client_fields,
        [
            "X-Trace-Id: a1",
            "Accept-Language: fr-CH, fr;q=0.9",
            "X-Trace-Id: a2",
            "X-Name: Zoë"
        ],
        "{fields}"
    );
    let named = |name: &str| -> Vec<&str> {
        lines
            .iter()
            .filter_map(|l| l.split_once(": "))
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .collect()
    };
    for hop_by_hop in ["connection", "x-secret", "keep-alive", "te"] {
        assert!(named(hop_by_hop).is_empty(), "{hop_by_hop} in {fields}");
    }
    assert_eq!(named("host"), ["Shop.Example"], "{fields}");
    assert_eq!(named("x-forwarded-host"), ["Shop.Example"], "{fields}");
    assert_eq!(named("x-forwarded-for"), ["127.0.0.1"], "{fields}");
    assert_eq!(named("content-length"), ["5"], "{fields}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_length_given_as_a_list_of_equal_values_reaches_the_backend_as_one_number() {
    // RFC 9110 §8.6: `Content-Length: 5, 5` is 5. The backend gets the body framed by a length
    // it can read, whatever list the client wrote.
    let backend = mirroring_backend().await;
    let lb = Lb::start(serde_json::json!({
        "strategy": lbhost_e2e::strategy("round_robin"),
        "backends": [{ "url": backend.url() }],
        "workers": 1,
        "timeouts": { "response_header": "3s" },
    }))
    .await;
    let mut stream = TcpStream::connect(lb.listen()).await.unwrap();
    stream
        .write_all(b"PUT /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answers = read_answers(&mut stream, 2, false).await;
    let (fields, body) = answers[0].body.split_once('|').unwrap();
    assert!(answers[0].status().contains(" 200 "), "{answers:?}");
    assert_eq!(body, "hello");
    let lengths: Vec<&str> = fields
        .lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v)
        .collect();
    assert_eq!(lengths, ["5"], "{fields}");
    assert!(answers[1].status().contains(" 200 "), "{answers:?}");
}
