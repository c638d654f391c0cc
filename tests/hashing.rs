//! The hashing strategies across nodes: several lbhost processes with the same backend set send
//! every key to the same backend, whatever the order of their configs, and a node without one
//! backend moves only what that backend had (and, for Maglev, a little more).

use std::collections::HashMap;

use demo_backend::Backend;
use lbhost_e2e::{start_backends, strategy, Http, Lb};
use serde_json::{json, Value};

/// Keys sent to every node.
const KEYS: usize = 600;

/// A config of the built-in strategy `name` with `params`, over `backends` in this order.
fn keyed(name: &str, backends: &[&Backend], params: Value) -> Value {
    json!({
        "strategy": strategy(name),
        "strategy_config": params,
        "backends": backends
            .iter()
            .map(|b| json!({ "url": b.url() }))
            .collect::<Vec<_>>(),
    })
}

/// Which backend `lb` sends user `key` to.
async fn backend_for(http: &Http, lb: &Lb, key: &str) -> String {
    let reply = http.get_with(&lb.url("/"), &[("x-user", key)]).await;
    assert_eq!(reply.status, 200, "user {key}: {}", reply.text());
    reply
        .header("x-backend")
        .expect("the demo backend names itself")
        .to_string()
}

/// The backend of each key on `lb`.
async fn placements(http: &Http, lb: &Lb) -> Vec<String> {
    let mut placed = Vec::with_capacity(KEYS);
    for key in 0..KEYS {
        placed.push(backend_for(http, lb, &format!("user-{key}")).await);
    }
    placed
}

/// Three nodes with the same config (the third lists the backends in reverse) agree on every
/// key, and each key keeps its backend; a fourth node without `c` keeps the keys of `a` and `b`
/// where they were (rendezvous moves none of them; Maglev at most 2 % of all keys).
async fn nodes_agree(strategy: &str, params: Value, stray_allowed: f64) {
    let backends = start_backends(&["a", "b", "c"]).await;
    let [a, b, c] = [&backends[0], &backends[1], &backends[2]];
    let nodes = [
        Lb::start(keyed(strategy, &[a, b, c], params.clone())).await,
        Lb::start(keyed(strategy, &[a, b, c], params.clone())).await,
        Lb::start(keyed(strategy, &[c, b, a], params.clone())).await,
    ];
    let http = Http::new();
    let first = placements(&http, &nodes[0]).await;
    assert_eq!(
        placements(&http, &nodes[0]).await,
        first,
        "{strategy}: a key changed backend on the same node"
    );
    for (n, node) in nodes.iter().enumerate().skip(1) {
        let placed = placements(&http, node).await;
        let disagree = first.iter().zip(&placed).filter(|(x, y)| x != y).count();
        assert_eq!(
            disagree, 0,
            "{strategy}: node {n} disagrees on {disagree} of {KEYS} keys"
        );
    }
    let mut shares: HashMap<&str, usize> = HashMap::new();
    for name in &first {
        *shares.entry(name).or_default() += 1;
    }
    eprintln!("{strategy}: keys per backend {shares:?}");
    assert!(
        ["a", "b", "c"]
            .iter()
            .all(|n| shares.get(n).copied().unwrap_or(0) > KEYS / 6),
        "{strategy}: uneven shares {shares:?}"
    );

    let without_c = Lb::start(keyed(strategy, &[a, b], params)).await;
    let after = placements(&http, &without_c).await;
    let stray = first
        .iter()
        .zip(&after)
        .filter(|(was, now)| *was != "c" && was != now)
        .count();
    eprintln!("{strategy}: without c, {stray} keys of a and b moved");
    assert!(
        stray as f64 <= stray_allowed * KEYS as f64,
        "{strategy}: {stray} keys of a remaining backend moved"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_by_header_agrees_on_every_key_across_three_nodes() {
    nodes_agree("hash", json!({"key": "header:x-user"}), 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maglev_by_header_agrees_on_every_key_across_three_nodes() {
    nodes_agree("maglev", json!({"key": "header:x-user"}), 0.02).await;
}

/// `hash` sends requests without the key to its fallback: round-robin, exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_without_the_key_falls_back_to_round_robin() {
    let backends = start_backends(&["a", "b", "c"]).await;
    let refs: Vec<&Backend> = backends.iter().collect();
    let lb = Lb::start(keyed("hash", &refs, json!({"key": "cookie:sid"}))).await;
    let http = Http::new();
    for _ in 0..30 {
        let reply = http.get(&lb.url("/")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let hits: Vec<u64> = backends.iter().map(Backend::hits).collect();
    assert_eq!(hits, [10, 10, 10]);
}
