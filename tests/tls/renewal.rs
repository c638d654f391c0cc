//! Certificates renewed while lbhost serves: under HTTPS load, and in place with nothing else
//! done (a part of `tls.rs`, in a file of its own for length).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::{connect, der, get, start, try_connect, try_get};

/// Renewals under HTTPS load: four clients, each opening a new TLS connection per request (a full
/// handshake each), while `a.test`'s certificate is renewed four times (files renamed over the
/// old ones, the file watch reloading; the last also by `POST /reload`). No request fails, and
/// new handshakes end up with the last certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn certificates_renewed_under_load_fail_no_request() {
    let s = start().await;
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (addr, stop) = (s.tls, Arc::clone(&stop));
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0u32, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let answer = match try_connect(addr, "a.test", b"http/1.1").await {
                        Ok((tls, _)) => try_get(tls, false).await,
                        Err(e) => Err(e),
                    };
                    match answer {
                        Ok(200) => ok += 1,
                        Ok(status) => failed.push(format!("status {status}")),
                        Err(e) => failed.push(e),
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    let started = tokio::time::Instant::now();
    let mut last = Vec::new();
    for round in 0..4 {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        last = s.renew_a(&format!("a{round}"));
    }
    assert_eq!(s.reload().await.status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    let (mut ok, mut failed) = (0, Vec::new());
    for client in clients {
        let (o, f) = client.await.expect("a client");
        ok += o;
        failed.extend(f);
    }
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(
        f64::from(ok) >= 100.0 * seconds,
        "{ok} requests in {seconds:.1} s: under 100 per second"
    );
    let (_, presented) = connect(s.tls, "a.test", b"http/1.1").await;
    assert_eq!(presented, last, "new handshakes get the last renewal");
}

/// Renewed the way certbot does it (new files renamed over the old ones), with nothing else
/// done: the file watch reloads, and the next handshake gets the new certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_renewed_in_place_is_served_without_a_reload_call() {
    let s = start().await;
    let [_, a, _] = &s.files;
    let old = der(&a.0);
    let new = s.renew_a("a");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (_, presented) = connect(s.tls, "a.test", b"http/1.1").await;
        if presented == new {
            break;
        }
        assert_eq!(presented, old, "neither the old nor the new certificate");
        assert!(
            tokio::time::Instant::now() < deadline,
            "still the old certificate 5 s after the renewal"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (tls, _) = connect(s.tls, "a.test", b"h2").await;
    assert_eq!(get(tls, true).await, 200);
}
