//! Where the built artifacts are: the `lbhost` binary and the strategy components.

use std::path::PathBuf;

/// The workspace root (this crate lives in `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// The `lbhost` binary next to the test binary's profile directory: a test runs from
/// `target/release/deps/<test>`, so the binary is `target/release/lbhost`.
///
/// Panics, saying how to build it, when it is missing.
pub fn lbhost_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its own path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lives in target/<profile>/deps");
    let bin = profile_dir.join("lbhost");
    assert!(
        bin.is_file(),
        "{} is missing: build it first: cargo build --release -p lbhost",
        bin.display()
    );
    bin
}

/// The absolute path of the built-in strategy component `<root>/strategies/<name>.wasm`, as a
/// string ready for a config.
///
/// Panics, saying how to build it, when it is missing.
pub fn strategy(name: &str) -> String {
    component("strategies", name)
}

/// The absolute path of the test guest component `<root>/tests/guests/<name>.wasm` (hostile
/// strategies and components of other worlds).
pub fn guest(name: &str) -> String {
    component("tests/guests", name)
}

/// The absolute path of the benchmark's guest component `<root>/bench/<name>.wasm`.
pub fn bench_guest(name: &str) -> String {
    component("bench", name)
}

/// `<root>/<folder>/<name>.wasm`, built by `cargo xtask strategies`.
fn component(folder: &str, name: &str) -> String {
    let path = workspace_root().join(folder).join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run cargo xtask strategies",
        path.display()
    );
    path.to_string_lossy().into_owned()
}
