//! What HTTP/2 clients see of lbhost's HTTP/2 server, hostile ones included, spoken to frame by
//! frame over h2c with prior knowledge (`support/h2raw.rs`) in front of plain HTTP/1.1 backends:
//! the stream limit, malformed requests costing only their stream, connection errors ending only
//! their connection with the GOAWAY code RFC 9113 gives, floods (rapid reset, CONTINUATION,
//! PING, SETTINGS, empty DATA) ended or absorbed with bounded memory while other clients are
//! served, flow control both ways, trailers. Every test is bounded in time.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use demo_backend::Backend;
use lbhost_e2e::h2raw::{
    block, code, flag, frame, kind, request_block, setting, Answer, Frame, H2,
};
use lbhost_e2e::{config, start_backends, Http, Lb, RecordingBackend};
use serde_json::{json, Value};

#[path = "http2_clients/connection_errors.rs"]
mod connection_errors;
#[path = "http2_clients/floods.rs"]
mod floods;
#[path = "http2_clients/flow.rs"]
mod flow;

/// The `:authority` of every request here.
const AUTHORITY: &str = "lbhost.test";
/// No test takes longer than this, whatever lbhost does.
const TEST_LIMIT: Duration = Duration::from_secs(90);

/// Runs a test's body, failing it after [`TEST_LIMIT`].
async fn bounded<F: Future>(body: F) -> F::Output {
    tokio::time::timeout(TEST_LIMIT, body)
        .await
        .unwrap_or_else(|_| panic!("the test did not finish within {TEST_LIMIT:?}"))
}

/// lbhost over `backends` (round-robin, plain HTTP/1.1 towards them), with `extra` fields set in
/// its config.
async fn lb_with(backends: &[Backend], extra: Value) -> Lb {
    let mut config = config("round_robin", backends);
    merge(&mut config, extra);
    Lb::start(config).await
}

fn merge(config: &mut Value, extra: Value) {
    if let (Some(fields), Value::Object(extra)) = (config.as_object_mut(), extra) {
        fields.extend(extra);
    }
}

/// A well-behaved HTTP/2 client (hyper's, h2c) asking `GET /` every 20 ms until stopped; every
/// answer must be `200 a`.
struct Bystander {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
    /// The longest wait for an answer so far, in milliseconds.
    slowest_ms: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Bystander {
    fn start(lb: &Lb) -> Bystander {
        let url = lb.url("/");
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let slowest_ms = Arc::new(AtomicUsize::new(0));
        let (stopping, count, slowest) = (
            Arc::clone(&stop),
            Arc::clone(&answered),
            Arc::clone(&slowest_ms),
        );
        let task = tokio::spawn(async move {
            let http = Http::h2c();
            while !stopping.load(Ordering::Relaxed) {
                let asked = std::time::Instant::now();
                let reply = http.get(&url).await;
                let waited = usize::try_from(asked.elapsed().as_millis()).unwrap_or(usize::MAX);
                slowest.fetch_max(waited, Ordering::Relaxed);
                assert_eq!(reply.status, 200, "the other client: {}", reply.text());
                assert_eq!(reply.text(), "a\n");
                count.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Bystander {
            stop,
            answered,
            slowest_ms,
            task,
        }
    }

    /// The longest wait for an answer so far.
    fn slowest(&self) -> Duration {
        Duration::from_millis(self.slowest_ms.load(Ordering::Relaxed) as u64)
    }

    /// Stops asking; fails the test if any answer was wrong. Returns how many were answered.
    async fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let answered = Arc::clone(&self.answered);
        self.task
            .await
            .expect("the other client's requests all succeed");
        answered.load(Ordering::Relaxed)
    }
}

/// A new HTTP/2 connection to `lb` is served: `GET /` on it is answered 200.
async fn served_on_a_new_connection(lb: &Lb) {
    let mut h2 = H2::handshake(lb.listen(), &[]).await;
    h2.get(1, "/").await;
    let response = h2.read_until_response(1).await;
    assert_eq!(
        response.status,
        200,
        "a new connection: {}",
        response.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_past_200_open_streams_has_the_201st_refused_and_the_200_answered() {
    bounded(async {
        let backends = start_backends(&["a"]).await;
        let lb = lb_with(&backends, json!({})).await;
        let mut h2 = H2::handshake(lb.listen(), &[]).await;
        assert_eq!(
            h2.peer_settings.get(&setting::MAX_CONCURRENT_STREAMS),
            Some(&200),
            "lbhost's SETTINGS: {:?}",
            h2.peer_settings
        );
        // 201 uploads whose bodies have not begun: none can be answered before its body ends.
        let upload = request_block("POST", "/upload", AUTHORITY, &[]);
        let mut opening = Vec::new();
        for id in (1..=401).step_by(2) {
            opening.extend(frame(kind::HEADERS, flag::END_HEADERS, id, &upload));
        }
        h2.send(&opening).await;
        assert_eq!(
            h2.expect_rst(401).await,
            code::REFUSED_STREAM,
            "the 201st stream"
        );
        let mut ending = Vec::new();
        for id in (1..=399).step_by(2) {
            ending.extend(frame(kind::DATA, flag::END_STREAM, id, &[]));
        }
        h2.send(&ending).await;
        for id in (1..=399).step_by(2) {
            let response = h2.read_until_response(id).await;
            assert_eq!(response.status, 200, "stream {id}: {}", response.text());
            assert_eq!(response.text(), "0", "stream {id}'s upload");
        }
        assert_eq!(backends[0].hits(), 200);
    })
    .await;
}

/// A head larger than `limits.max_header_bytes` costs its stream (a 431, or a reset), not the
/// connection, and does not reach the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_past_max_header_bytes_costs_only_its_stream() {
    bounded(async {
        let backends = start_backends(&["a"]).await;
        let lb = lb_with(&backends, json!({"limits": {"max_header_bytes": 4096}})).await;
        let mut h2 = H2::handshake(lb.listen(), &[]).await;
        let big = "b".repeat(8 * 1024);
        let head = request_block("GET", "/", AUTHORITY, &[("x-big", &big)]);
        h2.headers(1, &head, true).await;
        let answer = h2.answer(1).await;
        eprintln!(
            "an 8 KiB field past max_header_bytes 4096: {}",
            describe(&answer)
        );
        match answer {
            Answer::Response(response) => {
                assert_eq!(response.status, 431, "the large head: {}", response.text());
            }
            Answer::Reset(_) => {}
            Answer::Closed(goaway) => {
                panic!("the large head cost the connection (GOAWAY {goaway:?})")
            }
        }
        h2.get(3, "/").await;
        let response = h2.read_until_response(3).await;
        assert_eq!(
            response.status,
            200,
            "after the large head: {}",
            response.text()
        );
        assert_eq!(response.text(), "a\n");
        assert_eq!(
            backends[0].hits(),
            1,
            "only the small head reached the backend"
        );
    })
    .await;
}

/// One malformed request: its header block and, when it has one, its body.
struct Malformed {
    what: &'static str,
    path: &'static str,
    fields: Vec<(&'static str, &'static str)>,
    body: Option<&'static [u8]>,
}

fn malformed_requests() -> Vec<Malformed> {
    // Every case names itself in `x-case`, so that the backend's bytes show whether it came.
    let usual = |path| {
        vec![
            (":method", "GET"),
            (":scheme", "http"),
            (":path", path),
            (":authority", AUTHORITY),
            ("x-case", path),
        ]
    };
    let with = |what, path, extra: (&'static str, &'static str)| {
        let mut fields = usual(path);
        fields.push(extra);
        Malformed {
            what,
            path,
            fields,
            body: None,
        }
    };
    let mut short_body = usual("/bad-length");
    short_body[0] = (":method", "POST");
    short_body.push(("content-length", "10"));
    vec![
        with("an upper-case field name", "/bad-upper", ("X-Upper", "1")),
        Malformed {
            what: "no :path",
            path: "/bad-no-path",
            fields: vec![
                (":method", "GET"),
                (":scheme", "http"),
                (":authority", AUTHORITY),
                ("x-case", "/bad-no-path"),
            ],
            body: None,
        },
        with("an unknown pseudo-field", "/bad-pseudo", (":foo", "1")),
        Malformed {
            what: "a pseudo-field after a regular field",
            path: "/bad-order",
            fields: vec![
                (":method", "GET"),
                (":scheme", "http"),
                ("x-case", "/bad-order"),
                (":path", "/bad-order"),
                (":authority", AUTHORITY),
            ],
            body: None,
        },
        with("two :method", "/bad-two-methods", (":method", "POST")),
        with(
            "connection: keep-alive",
            "/bad-connection",
            ("connection", "keep-alive"),
        ),
        with("te: gzip", "/bad-te", ("te", "gzip")),
        Malformed {
            what: "content-length: 10 with 5 bytes of DATA",
            path: "/bad-length",
            fields: short_body,
            body: Some(b"hello"),
        },
    ]
}

/// Each malformed request is refused on its stream (RST_STREAM PROTOCOL_ERROR, or a 400), the
/// next stream on the same connection is answered, and the backend never gets the malformed
/// request (a head sent on before its body turned out short must not be completed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_cost_only_their_stream() {
    bounded(async {
        let backend = RecordingBackend::start().await;
        let lb = Lb::start(json!({
            "strategy": lbhost_e2e::strategy("round_robin"),
            "backends": [{ "url": backend.url() }],
            "retries": {"max": 0},
        }))
        .await;
        let mut wrong = Vec::new();
        for case in malformed_requests() {
            let mut h2 = H2::handshake(lb.listen(), &[]).await;
            let head = block(&case.fields);
            match case.body {
                None => h2.headers(1, &head, true).await,
                Some(body) => {
                    h2.headers(1, &head, false).await;
                    h2.data(1, body, true).await;
                }
            }
            let refused = h2.answer(1).await;
            let refused_well = match &refused {
                Answer::Reset(code) => *code == code::PROTOCOL_ERROR,
                Answer::Response(response) => response.status == 400,
                Answer::Closed(_) => false,
            };
            h2.get(3, &format!("{}-after", case.path)).await;
            let after = h2.answer(3).await;
            let after_ok = matches!(&after, Answer::Response(r) if r.status == 200);
            eprintln!(
                "{}: {}; the next stream: {}",
                case.what,
                describe(&refused),
                describe(&after)
            );
            if !refused_well || !after_ok {
                wrong.push(format!(
                    "{}: {} then the next stream: {}",
                    case.what,
                    describe(&refused),
                    describe(&after)
                ));
            }
        }
        for case in malformed_requests() {
            let marker = format!("x-case: {}\r\n", case.path);
            let reached = backend
                .connections()
                .into_iter()
                .find(|c| c.text().to_ascii_lowercase().contains(&marker));
            let Some(connection) = reached else { continue };
            let text = connection.text();
            let whole = case.body.is_some() && !body_cut_short(&text, &marker);
            if case.body.is_none() || whole {
                wrong.push(format!("{}: reached the backend: {text:?}", case.what));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    })
    .await;
}

/// Whether the request whose head holds `marker` in `text` (what a backend connection
/// brought) has less of a body than its framing announces: cut short, never a whole request.
fn body_cut_short(text: &str, marker: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    let Some(at) = lower.find(marker) else {
        return true;
    };
    let start = lower[..at].rfind("\r\n\r\n").map_or(0, |end| end + 4);
    let Some(head_end) = lower[at..].find("\r\n\r\n").map(|end| at + end) else {
        return true;
    };
    let head = &lower[start..head_end];
    let rest = &lower[head_end + 4..];
    if head.contains("transfer-encoding") {
        !rest.contains("\r\n0\r\n") && !rest.starts_with("0\r\n")
    } else if head.contains("content-length: 10") {
        rest.len() < 10
    } else {
        // Any other framing: the 5 bytes would be a whole request.
        false
    }
}

/// How a stream ended, in a line of a failure message.
fn describe(answer: &Answer) -> String {
    match answer {
        Answer::Response(r) => format!("a {} response ({:?})", r.status, r.text()),
        Answer::Reset(code) => format!("RST_STREAM {code:#x}"),
        Answer::Closed(goaway) => format!("the connection closed (GOAWAY {goaway:?})"),
    }
}

/// A request with a body and trailers, and one whose HEADERS carries END_STREAM with its head
/// continued in a CONTINUATION frame, are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_and_end_stream_in_the_headers_frame_are_accepted() {
    bounded(async {
        let backends = start_backends(&["a"]).await;
        let lb = lb_with(&backends, json!({})).await;
        let mut h2 = H2::handshake(lb.listen(), &[]).await;
        let upload = request_block("POST", "/upload", AUTHORITY, &[("te", "trailers")]);
        h2.headers(1, &upload, false).await;
        h2.data(1, b"hello", false).await;
        h2.headers(1, &block(&[("x-checksum", "5d41402a")]), true)
            .await;
        let response = h2.read_until_response(1).await;
        assert_eq!(response.status, 200, "with trailers: {}", response.text());
        assert_eq!(response.text(), "5");

        let head = request_block("GET", "/", AUTHORITY, &[("x-split", "1")]);
        let (first, rest) = head.split_at(head.len() / 2);
        h2.frame(kind::HEADERS, flag::END_STREAM, 3, first).await;
        h2.frame(kind::CONTINUATION, flag::END_HEADERS, 3, rest)
            .await;
        let response = h2.read_until_response(3).await;
        assert_eq!(
            response.status,
            200,
            "a continued head: {}",
            response.text()
        );
        assert_eq!(response.text(), "a\n");
    })
    .await;
}

/// A connection idle for longer than a PING interval (`timeouts.client_idle`), its buffers
/// given back meanwhile, gets PINGs, answers them, and serves its next requests, a 256 KiB
/// upload among them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_idle_past_a_ping_interval_is_pinged_and_serves_on() {
    bounded(async {
        let backends = start_backends(&["a"]).await;
        let lb = lb_with(&backends, json!({"timeouts": {"client_idle": "1s"}})).await;
        let mut h2 = H2::handshake(lb.listen(), &[]).await;
        h2.headers(1, &request_block("GET", "/", AUTHORITY, &[]), true)
            .await;
        assert_eq!(h2.read_until_response(1).await.status, 200);
        // Reading (and answering) for 2.5 s: at least two PINGs come.
        let deadline = tokio::time::Instant::now() + Duration::from_millis(2500);
        let mut pings = 0;
        while let Ok(Some(frame)) = h2.frame_until(deadline).await {
            if frame.kind == kind::PING && !frame.has(flag::ACK) {
                pings += 1;
            }
        }
        assert!(pings >= 2, "{pings} PINGs in 2.5 s of a 1 s interval");
        h2.headers(3, &request_block("GET", "/", AUTHORITY, &[]), true)
            .await;
        let response = h2.read_until_response(3).await;
        assert_eq!(
            response.status,
            200,
            "after the idle time: {}",
            response.text()
        );
        let upload = request_block("POST", "/upload", AUTHORITY, &[]);
        h2.headers(5, &upload, false).await;
        h2.data(5, &vec![7u8; 16 * 1024], false).await;
        for _ in 0..14 {
            h2.data(5, &vec![7u8; 16 * 1024], false).await;
        }
        h2.data(5, &vec![7u8; 16 * 1024], true).await;
        let response = h2.read_until_response(5).await;
        assert_eq!(response.status, 200, "an upload: {}", response.text());
        assert_eq!(response.text(), (256 * 1024).to_string());
    })
    .await;
}

/// The frames of `frames` that are on `stream` and of `kind`.
fn on_stream(frames: &[Frame], stream: u32, kind: u8) -> impl Iterator<Item = &Frame> {
    frames
        .iter()
        .filter(move |f| f.stream == stream && f.kind == kind)
}
