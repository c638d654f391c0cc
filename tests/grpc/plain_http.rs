//! Plain HTTP (not gRPC) through lbhost to h2c backends: bodies both ways past the flow-control
//! windows, and the fields an HTTP/1.1 or an HTTP/2 client's request reaches the backend with (a
//! part of `grpc.rs`, in a file of its own for length).

use std::time::Instant;

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
