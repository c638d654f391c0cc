//! The author's path, as someone outside this repository walks it: `lbhost strategy new` in an
//! empty folder under the system temp dir, `lbhost strategy build`, `lbhost strategy simulate`,
//! then the built component serving traffic through the real lbhost.
//!
//! Building a fresh guest crate compiles wit-bindgen (from the registry): the one build of a run
//! shares `target/authoring/` of this workspace as its CARGO_TARGET_DIR, so reruns are quick.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use lbhost_e2e::{guest, lbhost_bin, start_backends, workspace_root, Http, Lb, Scratch};
use serde_json::{json, Value};

/// Longest the one cold build may take (~1.5 min measured on 2 shared cores).
const BUILD_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest any other `lbhost strategy` command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `lbhost <args>` in `dir` with the shared target folder, bounded by `within`.
async fn lbhost(dir: &Path, args: &[&str], within: Duration) -> Output {
    let mut command = tokio::process::Command::new(lbhost_bin());
    command
        .args(args)
        .current_dir(dir)
        .env(
            "CARGO_TARGET_DIR",
            workspace_root().join("target/authoring"),
        )
        .env_remove("RUST_LOG")
        .kill_on_drop(true);
    let output = tokio::time::timeout(within, command.output())
        .await
        .unwrap_or_else(|_| panic!("lbhost {args:?} did not finish within {within:?}"))
        .expect("running lbhost");
    eprintln!(
        "lbhost {args:?}: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_build_simulate_then_serve_from_an_empty_folder() {
    let scratch = Scratch::new();
    let home = scratch.path();

    // 1. new: a crate with the SDK beside it.
    let started = Instant::now();
    let new = lbhost(home, &["strategy", "new", "sticky"], COMMAND_TIMEOUT).await;
    assert!(new.status.success());
    let dir = home.join("sticky");
    for file in [
        "Cargo.toml",
        "rust-toolchain.toml",
        "src/lib.rs",
        "lbhost-sdk/Cargo.toml",
        "lbhost-sdk/src/lib.rs",
        "wit/strategy.wit",
    ] {
        assert!(dir.join(file).is_file(), "{file} was not written");
    }
    let again = lbhost(home, &["strategy", "new", "sticky"], COMMAND_TIMEOUT).await;
    assert!(!again.status.success(), "a non-empty folder is refused");

    // 2. build: NAME.wasm, checked, its size said.
    let build = lbhost(&dir, &["strategy", "build"], BUILD_TIMEOUT).await;
    assert!(build.status.success());
    let built = dir.join("sticky.wasm");
    let size = std::fs::metadata(&built).expect("sticky.wasm").len();
    assert!(
        stdout(&build).contains(&format!("({size} bytes)")),
        "the size is said"
    );
    eprintln!(
        "new + build from an empty folder: {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // 3. simulate: 4 backends, one killed halfway, one added later.
    let sim = lbhost(
        &dir,
        &[
            "strategy",
            "simulate",
            "sticky.wasm",
            "--backends",
            "4",
            "--requests",
            "20000",
            "--kill",
            "1@10000",
            "--add",
            "15000",
            "--json",
            "--chart",
            "shares.svg",
        ],
        COMMAND_TIMEOUT,
    )
    .await;
    assert!(sim.status.success());
    let report: Value = serde_json::from_slice(&sim.stdout).expect("one JSON object");
    let shares = report["shares"].as_object().expect("shares");
    assert_eq!(shares.len(), 5, "4 backends and the added one");
    let total: u64 = shares.values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(total, 20000, "every request was served: {report}");
    assert_eq!(report["unserved"], 0);
    let killed = &report["backends"][1];
    assert_eq!(killed["killed_at"], 10000);
    assert_eq!(killed["requests_after_kill"], 0, "{killed}");
    assert!(
        killed["requests"].as_u64().unwrap() > 1000,
        "it served before"
    );
    let added = &report["backends"][4];
    assert!(added["requests"].as_u64().unwrap() > 500, "{added}");
    // Rendezvous hashing: killing 1 of 4 moves its quarter of the clients and nobody else.
    let kill = &report["changes"][0];
    assert_eq!(kill["event"], "kill 1");
    let moved = kill["moved_share"].as_f64().unwrap();
    assert!((0.15..0.35).contains(&moved), "{kill}");
    assert_eq!(kill["moved_needlessly"], 0, "{kill}");
    let add = &report["changes"][1];
    assert_eq!(add["event"], "add 4");
    assert_eq!(
        add["moved_needlessly"], 0,
        "clients move only to the new one: {add}"
    );
    let overall = report["moved_share"].as_f64().unwrap();
    assert!((0.1..0.4).contains(&overall), "{report}");
    let select = &report["select_us"];
    let (p50, p99) = (
        select["p50"].as_f64().unwrap(),
        select["p99"].as_f64().unwrap(),
    );
    assert!(p50 > 0.0 && p50 <= p99, "{select}");
    assert_eq!(report["faults"]["total"], 0);
    let svg = std::fs::read_to_string(dir.join("shares.svg")).expect("the chart");
    assert!(svg.starts_with("<svg") && svg.contains("polyline"));

    // 4. The built file serves traffic through the real lbhost, sticky per client.
    let backends = start_backends(&["a", "b", "c"]).await;
    let lb = Lb::start(json!({
        "strategy": built.to_string_lossy(),
        // The test's clients are told apart by X-Forwarded-For from the loopback peer.
        "trusted_proxies": ["127.0.0.1/32"],
        "backends": backends.iter().map(|b| json!({"url": b.url()})).collect::<Vec<_>>(),
    }))
    .await;
    let http = Http::new();
    let mut seen = std::collections::BTreeSet::new();
    for client in 0..30 {
        let ip = format!("10.9.0.{client}");
        let mut first = None;
        for _ in 0..3 {
            let reply = http
                .get_with(&lb.url("/"), &[("x-forwarded-for", &ip)])
                .await;
            assert_eq!(reply.status, 200, "{}", reply.text());
            let backend = reply.header("x-backend").unwrap().to_string();
            assert_eq!(
                first.get_or_insert(backend.clone()),
                &backend,
                "{ip} sticks"
            );
            seen.insert(backend);
        }
    }
    assert_eq!(seen.len(), 3, "30 clients spread over the 3 backends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_counts_faults_and_refuses_bad_arguments() {
    let scratch = Scratch::new();
    let hostile = guest("hostile");
    // Every 10th select panics: lbhost's fallback serves those, the report counts them.
    let sim = lbhost(
        scratch.path(),
        &[
            "strategy",
            "simulate",
            &hostile,
            "--param",
            "mode=panic_every_nth",
            "--requests",
            "2000",
            "--json",
        ],
        COMMAND_TIMEOUT,
    )
    .await;
    assert!(sim.status.success());
    let report: Value = serde_json::from_slice(&sim.stdout).expect("one JSON object");
    let faults = report["faults"]["total"].as_u64().unwrap();
    assert!((150..=250).contains(&faults), "{}", report["faults"]);
    assert!(report["faults"]["kinds"]["trap"].as_u64().unwrap() > 0);
    let total: u64 = report["shares"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 2000, "faulted requests are still served");

    for (args, says) in [
        (vec!["--kill", "9@10"], "--kill 9@10"),
        (vec!["--kill", "x"], "expected I@N"),
        (vec!["--requests", "0"], "--requests"),
    ] {
        let mut all = vec!["strategy", "simulate", hostile.as_str()];
        all.extend(args);
        let run = lbhost(scratch.path(), &all, COMMAND_TIMEOUT).await;
        assert!(!run.status.success());
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(stderr.contains(says), "{stderr}");
        assert!(stderr.lines().count() <= 4, "a short error: {stderr}");
    }
    let missing = lbhost(
        scratch.path(),
        &["strategy", "build", "no-such-dir"],
        COMMAND_TIMEOUT,
    )
    .await;
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no Cargo.toml"));
}
