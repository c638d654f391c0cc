//! Steady client load for tests that change something under traffic: a few keep-alive clients
//! sending `GET`s in a loop, counting what succeeded and what failed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::Request;
use tokio::task::JoinHandle;

use crate::{empty, Http};

/// The longest one request of the load may take; slower counts as failed.
const REQUEST_LIMIT: Duration = Duration::from_secs(5);

/// What a load saw.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Requests answered 200 with their whole body.
    pub ok: u64,
    /// Requests that failed: an error, another status, a cut body, or over 5 s.
    pub failed: u64,
    /// The first failures, as text.
    pub first_failures: Vec<String>,
}

/// Clients sending requests until [`Load::stop`].
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    clients: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts `clients` keep-alive clients, each sending `GET url` one after the other.
    pub fn start(url: &str, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let clients = (0..clients)
            .map(|_| {
                let (stop, ok, failed, failures) = (
                    Arc::clone(&stop),
                    Arc::clone(&ok),
                    Arc::clone(&failed),
                    Arc::clone(&failures),
                );
                let url = url.to_string();
                tokio::spawn(async move {
                    let http = Http::new();
                    while !stop.load(Ordering::Relaxed) {
                        match one(&http, &url).await {
                            Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                            Err(e) => {
                                let mut first = failures.lock().unwrap_or_else(|p| p.into_inner());
                                if first.len() < 10 {
                                    first.push(e);
                                }
                                failed.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            failures,
            clients,
        }
    }

    /// What it saw so far.
    pub fn summary(&self) -> Summary {
        Summary {
            ok: self.ok.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            first_failures: self
                .failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    /// Stops the clients (each finishes its request) and returns what they saw.
    pub async fn stop(self) -> Summary {
        self.stop.store(true, Ordering::Relaxed);
        for client in &self.clients {
            while !client.is_finished() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        self.summary()
    }
}

async fn one(http: &Http, url: &str) -> Result<(), String> {
    let request = Request::get(url).body(empty()).map_err(|e| e.to_string())?;
    let exchange = async {
        let response = http.try_send(request).await?;
        let status = response.status();
        http_body_util::BodyExt::collect(response.into_body())
            .await
            .map_err(|e| format!("body: {e}"))?;
        if status == 200 {
            Ok(())
        } else {
            Err(format!("status {status}"))
        }
    };
    tokio::time::timeout(REQUEST_LIMIT, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {REQUEST_LIMIT:?}")))
}
