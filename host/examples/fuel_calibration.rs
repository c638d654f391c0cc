//! How long a guest runs on its fuel budget on this machine: `select` of the hostile test guest
//! (a tight loop, multiply-add loops of a given length, and a loop of 2 MiB `memory.copy`s, which
//! wasmtime charges per byte) under the default 1 ms deadline.
//! Needs the guest: `cargo xtask test` builds it (or `cargo build -p hostile --release
//! --target wasm32-unknown-unknown` plus the component step). Run:
//! `cargo run --release -p lbhost --example fuel_calibration`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use lbhost::config::{BackendConfig, QuarantineConfig, Sandbox};
use lbhost::pool::Pool;
use lbhost::request::ClientHead;
use lbhost::strategy::{Choice, RequestData, Runtime, Strategies};

fn main() {
    let sandbox = Sandbox {
        deadline: Duration::from_millis(1),
        memory_limit_bytes: 16 << 20,
        // Never quarantine here: every call should run into its budget.
        quarantine: QuarantineConfig {
            min_faults: u32::MAX,
            ..Default::default()
        },
    };
    let runtime = Runtime::new(&sandbox).expect("wasm runtime");
    let configs: Vec<BackendConfig> = (0..3)
        .map(|i| BackendConfig {
            address: format!("10.0.0.{i}:80"),
            weight: 1,
            labels: vec![],
            tls: None,
            protocol: Default::default(),
        })
        .collect();
    let pool = Pool::new(&configs);
    let set = pool.load();
    let guest = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/guests/hostile.wasm");
    println!("deadline 1 ms, {} fuel", lbhost::strategy::FUEL_PER_MS);
    for (mode, micros) in [
        ("slow", 100),
        ("slow", 300),
        ("slow", 1000),
        ("infinite_loop", 0),
        ("bulk_copy", 0),
        ("host_call_flood", 0),
    ] {
        let params = vec![
            ("mode".to_string(), mode.to_string()),
            ("micros".to_string(), micros.to_string()),
        ];
        let loaded = runtime
            .load(&guest, &params)
            .unwrap_or_else(|e| panic!("{}: {e}", guest.display()));
        let strategies = Strategies::new(runtime.clone(), loaded);
        let (parts, ()) = http::Request::builder()
            .uri("/")
            .body(())
            .expect("request")
            .into_parts();
        let mut data = RequestData::new(
            ClientHead::from_parts(parts),
            IpAddr::V4(Ipv4Addr::LOCALHOST),
        );
        let mut times = Vec::new();
        let mut faults = 0;
        let mut kind = "";
        for _ in 0..15 {
            let started = Instant::now();
            let (back, choice) = strategies.select(&pool, &set, &[], data);
            times.push(started.elapsed());
            data = back;
            if let Choice::Fallback(_, fault) = choice {
                faults += 1;
                kind = fault.kind();
            }
        }
        times.sort();
        let what = if mode == "slow" {
            format!("slow, {micros} x 1000 multiply-adds")
        } else {
            mode.to_string()
        };
        println!(
            "{what:>32}: median {:>9.1?}, faults {faults}/15 {kind}",
            times[times.len() / 2]
        );
    }
}
