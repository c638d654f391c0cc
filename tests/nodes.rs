//! Several lbhost nodes, no coordination: three processes on distinct loopback addresses with
//! the same config, their backends from one DNS name, agree on the backend of every client key
//! — at start, after a backend dies, and after the DNS answer changes — and each change moves
//! only the keys it must. (In production an L4 balancer in front picks the node; here the test
//! asks every node for every key.)

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use demo_backend::Backend;
use lbhost_e2e::dnsmasq::{Dnsmasq, ZONE};
use lbhost_e2e::{free_addr, get, loopback_backends, strategy, Http, Lb};
use serde_json::{json, Value};

/// Client keys asked of every node.
const KEYS: usize = 300;
/// How long the nodes may take to see a change (health checks, one DNS refresh).
const SETTLE: Duration = Duration::from_secs(6);

fn api() -> String {
    format!("api.{ZONE}")
}

fn hosts(backends: &[&Backend]) -> String {
    backends
        .iter()
        .map(|b| format!("{} {}\n", b.addr().ip(), api()))
        .collect()
}

/// Node `n`'s config: the same for all but the address it listens on.
fn node_config(n: u8, dns: &Dnsmasq, port: u16) -> Value {
    let listen = SocketAddr::from(([127, 0, 1, n], free_addr().port()));
    json!({
        "listen": listen.to_string(),
        "strategy": strategy("hash"),
        "strategy_config": { "key": "header:x-user" },
        "workers": 1,
        "backends": [{ "dns": api(), "port": port }],
        "dns": {
            "servers": [dns.addr().to_string()],
            "min_refresh": "250ms",
            "max_refresh": "1s",
            "timeout": "300ms",
        },
        "health_check": { "type": "tcp", "interval": "200ms", "timeout": "200ms" },
    })
}

/// The backend (its name, an address) of each key on `node`.
async fn placements(http: &Http, node: &Lb) -> Vec<String> {
    let mut placed = Vec::with_capacity(KEYS);
    for key in 0..KEYS {
        let reply = http
            .get_with(&node.url("/"), &[("x-user", &format!("user-{key}"))])
            .await;
        assert_eq!(reply.status, 200, "user-{key}: {}", reply.text());
        placed.push(reply.header("x-backend").unwrap_or_default().to_string());
    }
    placed
}

/// Every node's placements; panics unless all agree on every key.
async fn agreed(http: &Http, nodes: &[Lb], phase: &str) -> Vec<String> {
    let first = placements(http, &nodes[0]).await;
    for (n, node) in nodes.iter().enumerate().skip(1) {
        let placed = placements(http, node).await;
        let disagree = first.iter().zip(&placed).filter(|(a, b)| a != b).count();
        assert_eq!(
            disagree, 0,
            "{phase}: node {n} disagrees on {disagree} of {KEYS} keys"
        );
    }
    let mut shares: HashMap<&str, usize> = HashMap::new();
    for b in &first {
        *shares.entry(b).or_default() += 1;
    }
    eprintln!("{phase}: 3 nodes agree on {KEYS} of {KEYS} keys; keys per backend {shares:?}");
    first
}

/// Waits until `/status` of every node satisfies `holds`.
async fn until_all(nodes: &[Lb], what: &str, holds: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + SETTLE;
    for node in nodes {
        loop {
            let status = get(&node.admin_url("/status")).await.json();
            if holds(&status) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{what} not within {SETTLE:?}: {status}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Whether `status` shows the backend at `address` up: `None` when it is not in the pool.
fn backend_up(status: &Value, address: &str) -> Option<bool> {
    status["backends"]
        .as_array()?
        .iter()
        .find(|b| b["address"] == address)
        .map(|b| b["up"] == true)
}

/// Keys whose backend changed between `before` and `after`, other than those of `except`.
fn moved(before: &[String], after: &[String], except: &str) -> usize {
    before
        .iter()
        .zip(after)
        .filter(|(was, now)| was.as_str() != except && was != now)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_agree_on_every_key_through_a_backend_loss_and_a_dns_change() {
    let (port, mut backends) =
        loopback_backends(&["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]).await;
    let dns = Dnsmasq::start(&hosts(&[&backends[0], &backends[1], &backends[2]]), &[]).await;
    let mut nodes = Vec::new();
    for n in 1..=3 {
        nodes.push(Lb::start(node_config(n, &dns, port)).await);
    }
    let http = Http::new();
    let start = agreed(&http, &nodes, "start").await;
    for b in &backends[..3] {
        assert!(
            start.iter().filter(|p| *p == b.name()).count() > KEYS / 6,
            "uneven shares: {start:?}"
        );
    }

    // 127.0.0.4 dies: every node's health checks take it out; only its keys move.
    let lost = backends.remove(2);
    let (lost_name, lost_address) = (lost.name().to_string(), lost.addr().to_string());
    lost.stop().await;
    until_all(&nodes, "127.0.0.4 down everywhere", |s| {
        backend_up(s, &lost_address) == Some(false)
    })
    .await;
    let after_loss = agreed(&http, &nodes, "after a backend died").await;
    assert!(!after_loss.contains(&lost_name));
    assert_eq!(
        moved(&start, &after_loss, &lost_name),
        0,
        "keys of live backends moved"
    );

    // The DNS answer changes: the dead address leaves, 127.0.0.5 joins.
    let joined = backends[2].name().to_string();
    dns.set_hosts(&hosts(&[&backends[0], &backends[1], &backends[2]]));
    let joined_address = backends[2].addr().to_string();
    until_all(&nodes, "127.0.0.5 in, 127.0.0.4 out of every pool", |s| {
        backend_up(s, &joined_address).is_some() && backend_up(s, &lost_address).is_none()
    })
    .await;
    let after_dns = agreed(&http, &nodes, "after the DNS change").await;
    assert!(
        after_dns.contains(&joined),
        "no key went to the new backend"
    );
    let stray = after_loss
        .iter()
        .zip(&after_dns)
        .filter(|(was, now)| was != now && now.as_str() != joined)
        .count();
    assert_eq!(stray, 0, "keys moved between the backends that stayed");
}
