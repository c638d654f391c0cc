//! `select` per strategy and backend count, through the real loader and per-thread instances.
//! Needs the components: `cargo xtask strategies` first. Run: `cargo bench -p lbhost --bench select`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion};
use lbhost::config::{BackendConfig, Sandbox};
use lbhost::pool::Pool;
use lbhost::request::ClientHead;
use lbhost::strategy::{RequestData, Runtime, Strategies};

fn strategy_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../strategies")
        .join(format!("{name}.wasm"))
}

fn pool(n: usize) -> std::sync::Arc<Pool> {
    let configs: Vec<BackendConfig> = (0..n)
        .map(|i| BackendConfig {
            address: format!("10.0.{}.{}:8080", i / 256, i % 256),
            weight: 1 + (i % 3) as u32,
            labels: vec![("zone".into(), format!("z{}", i % 3))],
            tls: None,
            protocol: Default::default(),
        })
        .collect();
    Pool::new(&configs)
}

fn request(headers: usize) -> Box<RequestData> {
    let mut builder = http::Request::builder().uri("/api/users?id=7");
    for i in 0..headers {
        builder = builder.header(format!("x-header-{i}"), "some value of a typical length");
    }
    let (parts, ()) = builder.body(()).expect("valid request").into_parts();
    RequestData::new(
        ClientHead::from_parts(parts),
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
    )
}

/// Benchmarks `select` of `request` over `pool`'s backends, under id `id`.
fn measure(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: usize,
    strategies: &Strategies,
    pool: &Pool,
    request: Box<RequestData>,
) {
    let set = pool.load();
    let mut data = Some(request);
    group.bench_with_input(BenchmarkId::from_parameter(id), &id, |b, _| {
        b.iter(|| {
            let (back, choice) =
                strategies.select(pool, &set, &[], data.take().expect("request returned"));
            data = Some(back);
            black_box(choice)
        })
    });
}

fn bench_select(c: &mut Criterion) {
    let sandbox = Sandbox {
        deadline: std::time::Duration::from_millis(1),
        memory_limit_bytes: 16 << 20,
        quarantine: Default::default(),
    };
    let runtime = Runtime::new(&sandbox).expect("runtime");
    for name in ["round_robin", "weighted", "least_conn", "ip_hash", "random"] {
        let loaded = runtime
            .load(&strategy_path(name), &[])
            .unwrap_or_else(|e| panic!("{name}: {e} (run `cargo xtask strategies`)"));
        let strategies = Strategies::new(runtime.clone(), loaded);
        let mut group = c.benchmark_group(format!("select/{name}"));
        for n in [4usize, 16, 256] {
            measure(&mut group, n, &strategies, &pool(n), request(8));
        }
        group.finish();
    }
    // Header count must not matter: the request is borrowed, not copied.
    let loaded = runtime
        .load(&strategy_path("ip_hash"), &[])
        .expect("ip_hash");
    let strategies = Strategies::new(runtime.clone(), loaded);
    let pool = pool(16);
    let mut group = c.benchmark_group("select/ip_hash_headers");
    for headers in [0usize, 8, 64] {
        measure(&mut group, headers, &strategies, &pool, request(headers));
    }
    group.finish();
    // What the sandbox (fuel budget + memory limit) costs per call: the same strategy on a
    // runtime without them.
    let bare = Runtime::new_unsandboxed_for_benchmarks(&sandbox).expect("runtime");
    let mut group = c.benchmark_group("select/round_robin_sandbox");
    for (id, runtime) in [(1usize, &runtime), (0usize, &bare)] {
        let loaded = runtime
            .load(&strategy_path("round_robin"), &[])
            .expect("round_robin");
        let strategies = Strategies::new(Arc::clone(runtime), loaded);
        measure(&mut group, id, &strategies, &pool, request(8));
    }
    group.finish();
}

criterion_group!(benches, bench_select);
criterion_main!(benches);
