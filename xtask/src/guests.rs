//! Builds the guest components of the repository from their crates (or C source).

use std::path::Path;

use anyhow::Result;

use crate::setup::WASM_TARGET;
use crate::{c_guest, cargo, component};

/// The built-in strategies: (package, output path relative to the workspace root).
pub const STRATEGIES: &[(&str, &str)] = &[
    ("strategy-round-robin", "strategies/round_robin.wasm"),
    ("strategy-weighted", "strategies/weighted.wasm"),
    ("strategy-least-conn", "strategies/least_conn.wasm"),
    ("strategy-ip-hash", "strategies/ip_hash.wasm"),
    ("strategy-random", "strategies/random.wasm"),
    ("strategy-p2c-ewma", "strategies/p2c_ewma.wasm"),
    ("strategy-least-request", "strategies/least_request.wasm"),
    ("strategy-maglev", "strategies/maglev.wasm"),
    ("strategy-hash", "strategies/hash.wasm"),
    ("strategy-sticky-cookie", "strategies/sticky_cookie.wasm"),
    ("strategy-locality", "strategies/locality.wasm"),
];

/// The other Rust guests: the example strategy, the tests' guests and the bench's call floor.
const OTHER_RUST_GUESTS: &[(&str, &str)] = &[
    ("example-canary", "examples/canary/canary.wasm"),
    ("guest-hostile", "tests/guests/hostile.wasm"),
    ("guest-feedback", "tests/guests/feedback.wasm"),
    ("guest-wrong-world", "tests/guests/wrong_world.wasm"),
    ("guest-wasi-import", "tests/guests/wasi_import.wasm"),
    ("guest-loud-refusal", "tests/guests/loud_refusal.wasm"),
    ("guest-feedback-trap", "tests/guests/feedback_trap.wasm"),
    ("guest-v0-1", "tests/guests/v0_1.wasm"),
    ("bench-call-floor", "bench/call_floor.wasm"),
];

/// Builds the built-in strategies: all the demo runs, and it needs only Rust.
pub fn build_strategies(root: &Path) -> Result<()> {
    build_rust(root, STRATEGIES)
}

/// Builds every guest: the Rust ones, and the C example strategy (which needs clang).
pub fn build_all(root: &Path) -> Result<()> {
    build_rust(root, &[STRATEGIES, OTHER_RUST_GUESTS].concat())?;
    c_guest::build(root)
}

/// Builds `guests` for wasm32-unknown-unknown and wraps each into a component.
fn build_rust(root: &Path, guests: &[(&str, &str)]) -> Result<()> {
    let mut args = vec!["build", "--release", "--target", WASM_TARGET];
    for (package, _) in guests {
        args.extend(["-p", package]);
    }
    cargo(&args)?;
    // Where cargo put them: `CARGO_TARGET_DIR` when set (a shared build folder), else `target/`.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), |dir| root.join(dir))
        .join(WASM_TARGET)
        .join("release");
    for (package, out) in guests {
        let core = target.join(format!("{}.wasm", package.replace('-', "_")));
        component::wrap(&core, &root.join(out))?;
    }
    eprintln!("xtask: built {} components", guests.len());
    Ok(())
}
