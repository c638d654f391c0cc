//! Backends that misbehave on purpose, load, and metric reading for tests/resilience.rs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use demo_backend::Backend;
use hyper::StatusCode;
use lbhost_e2e::{Http, Lb, RawBackend};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Active checks every 200 ms; two results in a row flip a backend.
pub fn health_check(interval_ms: u64, healthy: u32, unhealthy: u32) -> Value {
    json!({
        "path": "/health",
        "interval": format!("{interval_ms}ms"),
        "timeout": "200ms",
        "healthy_threshold": healthy,
        "unhealthy_threshold": unhealthy,
    })
}

/// The sum of every sample of metric `name` whose label text contains each of `labels`
/// (e.g. `backend="127.0.0.1:4000"`); 0 when there is none.
pub async fn metric(http: &Http, lb: &Lb, name: &str, labels: &[&str]) -> f64 {
    let reply = http.get(&lb.admin_url("/metrics")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply
        .text()
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, label_text) = series.split_once('{').unwrap_or((series, ""));
            (metric == name && labels.iter().all(|l| label_text.contains(l)))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// `backend="<addr>"` for [`metric`].
pub fn label(backend: &Backend) -> String {
    format!("backend=\"{}\"", backend.addr())
}

/// GETs `url` from `clients` concurrent keep-alive clients until stopped; counts answers and
/// keeps the first few that were not 200.
pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    errors: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(url: String, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..clients)
            .map(|_| {
                let (url, stop, ok, errors) =
                    (url.clone(), stop.clone(), ok.clone(), errors.clone());
                tokio::spawn(async move {
                    let http = Http::new();
                    while !stop.load(Ordering::Relaxed) {
                        let reply = http.get(&url).await;
                        if reply.status == StatusCode::OK {
                            ok.fetch_add(1, Ordering::Relaxed);
                        } else {
                            errors.lock().expect("errors lock").push(format!(
                                "{} {}",
                                reply.status,
                                reply.text().trim()
                            ));
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            errors,
            tasks,
        }
    }

    /// Stops the clients; returns (answers 200, the others).
    pub async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("a load client panicked");
        }
        let errors = self.errors.lock().expect("errors lock").clone();
        (self.ok.load(Ordering::Relaxed), errors)
    }
}

/// A backend whose `/health` alternates 200, 500, 200, ... on each probe (every other path: 200).
pub async fn flapping_backend() -> (std::net::SocketAddr, Arc<AtomicU64>) {
    let probes = Arc::new(AtomicU64::new(0));
    let counter = probes.clone();
    let backend = RawBackend::start(move |mut stream| {
        let counter = counter.clone();
        async move {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let status = if head.starts_with(b"GET /health ")
                && counter.fetch_add(1, Ordering::SeqCst) % 2 == 1
            {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            let answer =
                format!("HTTP/1.1 {status}\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n");
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    })
    .await;
    (backend.addr(), probes)
}

/// A backend that reads each request whole (head and `content-length` body), counts it, and
/// closes the connection without answering: a reset before the response head.
pub async fn black_hole() -> (std::net::SocketAddr, Arc<AtomicU64>) {
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let backend = RawBackend::start(move |mut stream| {
        let counter = counter.clone();
        async move {
            let mut data = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if data.len() >= end + 4 + length {
                        counter.fetch_add(1, Ordering::SeqCst);
                        return; // dropped: closed with no answer
                    }
                }
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => data.extend_from_slice(&buf[..n]),
                }
            }
        }
    })
    .await;
    (backend.addr(), received)
}
