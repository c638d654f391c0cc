//! Routing with 1,000 routes over 100 pools: loading the config (parse, validate, check the
//! table for shadowed routes and unreached pools), compiling the router, and matching one
//! request (compiled router against the linear scan it must agree with).
//! Run: `cargo bench -p lbhost --bench routes`.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use lbhost::config::from_file;
use lbhost::routes::{first_match, Fields, RequestView, Router};
use serde_json::{json, Value};

/// 400 exact hosts, 100 wildcard hosts, 400 path prefixes, 100 host and path pairs; pool `i % 100`.
fn config() -> String {
    let pools: serde_json::Map<String, Value> = (0..100)
        .map(|p| {
            let url = format!("http://10.0.{}.{}:8080", p / 200, p % 200 + 1);
            (format!("pool{p}"), json!({"backends": [{"url": url}]}))
        })
        .collect();
    let mut routes = Vec::new();
    for i in 0..400 {
        routes.push(json!({"match": {"host": format!("svc{i}.example.com")}, "pool": format!("pool{}", i % 100)}));
    }
    for i in 0..100 {
        routes.push(json!({"match": {"host": format!("*.team{i}.example.org")}, "pool": format!("pool{}", i % 100)}));
    }
    for i in 0..400 {
        routes.push(json!({"match": {"path_prefix": format!("/api/v{i}/")}, "pool": format!("pool{}", i % 100), "strip_prefix": format!("/api/v{i}")}));
    }
    for i in 0..100 {
        routes.push(json!({"match": {"host": format!("h{i}.example.net"), "path_prefix": format!("/p{i}/"), "method": "GET"}, "pool": format!("pool{}", i % 100)}));
    }
    json!({"strategy": "/nonexistent/round_robin.wasm", "pools": pools, "routes": routes})
        .to_string()
}

struct NoFields;
impl Fields for NoFields {
    fn field(&self, _: &str) -> Option<&[u8]> {
        None
    }
}

fn routes(c: &mut Criterion) {
    let text = config();
    let base = Path::new("/");
    c.bench_function("routes/load_config_1000_routes_100_pools", |b| {
        b.iter(|| from_file(black_box(&text), base).expect("a valid config"))
    });
    let config = from_file(&text, base).expect("a valid config");
    assert_eq!(config.routes.len(), 1000);
    c.bench_function("routes/compile_router_1000", |b| {
        b.iter(|| Router::new(black_box(&config.routes)))
    });
    let router = Router::new(&config.routes);
    let requests = [
        ("exact_host_last", "svc399.example.com", "/"),
        ("wildcard_host", "a.b.team99.example.org", "/x"),
        ("path_prefix_last", "unknown.example", "/api/v399/users/7"),
        ("host_and_path_last", "h99.example.net", "/p99/x"),
        ("miss", "unknown.example", "/nothing/here"),
    ];
    for (name, host, path) in requests {
        let request = RequestView {
            host,
            path,
            method: "GET",
            fields: &NoFields,
        };
        assert_eq!(router.find(&request), first_match(&config.routes, &request));
        c.bench_function(&format!("routes/match_1000/{name}"), |b| {
            b.iter(|| router.find(black_box(&request)))
        });
        c.bench_function(&format!("routes/linear_scan_1000/{name}"), |b| {
            b.iter(|| first_match(black_box(&config.routes), black_box(&request)))
        });
    }
}

criterion_group!(benches, routes);
criterion_main!(benches);
