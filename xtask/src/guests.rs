//! Builds every guest component of the repository from its crate (or C source).

use std::path::Path;

use anyhow::Result;

use crate::{cargo, component};

/// Rust guest crates: (package, output path relative to the workspace root).
pub const RUST_GUESTS: &[(&str, &str)] = &[
    ("strategy-round-robin", "strategies/round_robin.wasm"),
    ("strategy-weighted", "strategies/weighted.wasm"),
    ("strategy-least-conn", "strategies/least_conn.wasm"),
    ("strategy-ip-hash", "strategies/ip_hash.wasm"),
    ("strategy-random", "strategies/random.wasm"),
    ("example-canary", "examples/canary/canary.wasm"),
    ("guest-hostile", "tests/guests/hostile.wasm"),
    ("guest-feedback", "tests/guests/feedback.wasm"),
    ("guest-wrong-world", "tests/guests/wrong_world.wasm"),
    ("guest-wasi-import", "tests/guests/wasi_import.wasm"),
    ("guest-loud-refusal", "tests/guests/loud_refusal.wasm"),
    ("guest-feedback-trap", "tests/guests/feedback_trap.wasm"),
    ("bench-call-floor", "bench/call_floor.wasm"),
];

/// Builds all guest crates for wasm32-unknown-unknown and wraps each into a component.
pub fn build_all(root: &Path) -> Result<()> {
    let mut args = vec!["build", "--release", "--target", "wasm32-unknown-unknown"];
    for (package, _) in RUST_GUESTS {
        args.extend(["-p", package]);
    }
    cargo(&args)?;
    let target = root.join("target/wasm32-unknown-unknown/release");
    for (package, out) in RUST_GUESTS {
        let core = target.join(format!("{}.wasm", package.replace('-', "_")));
        component::wrap(&core, &root.join(out))?;
    }
    eprintln!("xtask: built {} components", RUST_GUESTS.len());
    crate::c_guest::build(root)?;
    Ok(())
}
