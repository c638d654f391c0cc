//! The upstream connection pool against backends that close connections on their own terms:
//! after an idle spell, after every response, in the middle of a body the client abandoned.
//! Whatever the backend does with its connections, the client sees only correct answers.

use std::time::Duration;

use http_body_util::BodyExt;
use hyper::{Method, Request, StatusCode};
use lbhost_e2e::{config, empty, start_backends, Http, Lb, RawBackend};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// How [`raw_backend`] treats its connections.
#[derive(Clone, Copy, Debug)]
enum Keep {
    /// Keep-alive, but close a connection idle for this long (Apache's default is 5 s).
    IdleFor(Duration),
    /// `Connection: close` on every response.
    Never,
}

/// A hand-written HTTP/1.1 backend: `GET /big` answers 4 MiB, anything else answers its path.
async fn raw_backend(keep: Keep) -> RawBackend {
    RawBackend::start(move |stream| serve(stream, keep)).await
}

/// Answers requests (heads only: the tests send no bodies) until `keep` says to close.
async fn serve(stream: TcpStream, keep: Keep) {
    let mut stream = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        let read = match keep {
            Keep::IdleFor(idle) => {
                match tokio::time::timeout(idle, stream.read_line(&mut request_line)).await {
                    Ok(read) => read,
                    Err(_) => return,
                }
            }
            Keep::Never => stream.read_line(&mut request_line).await,
        };
        if !matches!(read, Ok(n) if n > 0) {
            return;
        }
        loop {
            let mut line = String::new();
            match stream.read_line(&mut line).await {
                Ok(n) if n > 0 && line != "\r\n" => {}
                Ok(n) if n > 0 => break,
                _ => return,
            }
        }
        let path = request_line.split(' ').nth(1).unwrap_or("/").to_string();
        let body = if path == "/big" {
            vec![b'x'; 4 << 20]
        } else {
            path.into_bytes()
        };
        let connection = match keep {
            Keep::IdleFor(_) => "keep-alive",
            Keep::Never => "close",
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: {connection}\r\n\r\n",
            body.len()
        );
        let socket = stream.get_mut();
        if socket.write_all(head.as_bytes()).await.is_err()
            || socket.write_all(&body).await.is_err()
        {
            return;
        }
        if matches!(keep, Keep::Never) {
            return;
        }
    }
}

fn single_backend(url: &str) -> serde_json::Value {
    json!({
        "strategy": lbhost_e2e::strategy("round_robin"),
        "backends": [{ "url": url }],
        "workers": 2,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_closing_idle_connections_costs_no_request() {
    let backend = raw_backend(Keep::IdleFor(Duration::from_millis(100))).await;
    let lb = Lb::start(single_backend(&backend.url())).await;
    let http = Http::new();
    for i in 0..12 {
        // Bursts reuse a connection; the pauses outlast the backend's idle limit.
        for j in 0..5 {
            let path = format!("/{i}-{j}");
            let reply = http.get(&lb.url(&path)).await;
            assert_eq!(reply.status, 200, "{path}: {}", reply.text());
            assert_eq!(reply.text(), path);
        }
        tokio::time::sleep(Duration::from_millis(130)).await;
    }
    let accepted = backend.accepted();
    assert!(
        (12..=24).contains(&accepted),
        "12 bursts after idle closes opened {accepted} connections"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_close_answers_are_never_reused() {
    let backend = raw_backend(Keep::Never).await;
    let lb = Lb::start(single_backend(&backend.url())).await;
    let http = Http::new();
    for i in 0..50 {
        let path = format!("/{i}");
        let reply = http.get(&lb.url(&path)).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        assert_eq!(reply.text(), path);
    }
    assert_eq!(backend.accepted(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_the_client_abandoned_does_not_reach_the_next_request() {
    let backend = raw_backend(Keep::IdleFor(Duration::from_secs(30))).await;
    let lb = Lb::start(single_backend(&backend.url())).await;
    for round in 0..5 {
        // Read the head and a little of a 4 MiB body, then hang up.
        let client = Http::new();
        let response = client
            .try_send(Request::get(lb.url("/big")).body(empty()).expect("request"))
            .await
            .expect("response head");
        assert_eq!(response.status(), StatusCode::OK);
        let mut body = response.into_body();
        let first = body.frame().await.expect("a frame").expect("data");
        assert!(first.is_data());
        drop(body);
        drop(client);
        // The rest of that body must never be mistaken for the next response.
        let http = Http::new();
        for i in 0..10 {
            let path = format!("/after-{round}-{i}");
            let reply = http.get(&lb.url(&path)).await;
            assert_eq!(reply.status, 200, "{path}: {}", reply.text());
            assert_eq!(reply.text(), path);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_without_a_body_keep_their_connection() {
    let backends = start_backends(&["a"]).await;
    let lb = Lb::start(config("round_robin", &backends)).await;
    let http = Http::new();
    for _ in 0..100 {
        let head = Request::builder()
            .method(Method::HEAD)
            .uri(lb.url("/"))
            .body(empty())
            .expect("request");
        assert_eq!(http.send(head).await.status, 200);
    }
    backends[0].set_status(204);
    for _ in 0..100 {
        assert_eq!(http.get(&lb.url("/")).await.status, 204);
    }
    let connections = backends[0].connections();
    assert!(
        connections <= 4,
        "200 HEAD and 204 answers opened {connections} connections to the backend"
    );
}
