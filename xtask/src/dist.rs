//! `cargo xtask dist`: the production build of lbhost, optimised with the profile of a training
//! run (profile-guided optimisation, PGO).
//!
//! lbhost's request path runs through tokio, its own HTTP/1.1 code, wasmtime and httparse: more
//! code per request than the instruction cache holds, so where the compiler puts the hot paths
//! matters (BENCHMARKS.md: ~20 % less user-space CPU per request than `cargo build --release`).
//! Three steps, each in its own target directory under `target/pgo/` so the ordinary release
//! build stays as it is:
//! 1. build lbhost instrumented (`-Cprofile-generate`);
//! 2. run it in front of three demo backends under HTTP/1.1 and HTTP/2 load ([`crate::train`]);
//!    every lbhost process writes its counts when it exits;
//! 3. merge the counts with `llvm-profdata` and build lbhost again with them (`-Cprofile-use`).
//!
//! The result is `target/dist/lbhost`, with the built-in strategies beside it in
//! `target/dist/strategies/`. What PGO does for HTTP/2 clients depends on the training's mix
//! more than for HTTP/1.1 (README, BENCHMARKS.md).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::{cargo, cargo_env, guests, setup, train};

/// How long the training load runs.
const TRAINING: Duration = Duration::from_secs(8);

/// Builds `target/dist/lbhost` with PGO.
pub fn build(root: &Path) -> Result<()> {
    let profdata = setup::for_dist()?;
    guests::build_all(root)?;
    cargo(&["build", "--release", "-p", "demo-backend"])?;

    let pgo = root.join("target/pgo");
    let profiles = pgo.join("profiles");
    if profiles.exists() {
        std::fs::remove_dir_all(&profiles)
            .with_context(|| format!("removing old profiles in {}", profiles.display()))?;
    }
    eprintln!("xtask dist: 1/3 building lbhost instrumented");
    let instrumented = pgo.join("instrumented");
    build_lbhost(
        &instrumented,
        &format!("-Cprofile-generate={}", profiles.display()),
    )?;

    eprintln!("xtask dist: 2/3 training run");
    let backend = root.join("target/release/demo-backend");
    let trained = train::run(
        root,
        &instrumented.join("release/lbhost"),
        &backend,
        &pgo,
        TRAINING,
    )?;
    eprintln!(
        "xtask dist: {} requests in the training run, {} of them over HTTP/2 ({} answered \
         with an error status)",
        trained.requests, trained.h2_requests, trained.failed
    );

    let merged = pgo.join("merged.profdata");
    let raw = profile_files(&profiles)?;
    let status = Command::new(&profdata)
        .arg("merge")
        .arg("-o")
        .arg(&merged)
        .args(&raw)
        .status()
        .with_context(|| format!("running {}", profdata.display()))?;
    if !status.success() {
        bail!("llvm-profdata merge failed ({status})");
    }

    // Named by its contents: cargo does not look into the file, but a new name in RUSTFLAGS
    // makes it rebuild everything with the new profile.
    let bytes = std::fs::read(&merged).with_context(|| format!("reading {}", merged.display()))?;
    let profile = pgo.join(format!("lbhost-{:016x}.profdata", hash(&bytes)));
    remove_old_profiles(&pgo)?;
    std::fs::rename(&merged, &profile)
        .with_context(|| format!("renaming {} to {}", merged.display(), profile.display()))?;

    eprintln!("xtask dist: 3/3 building lbhost with the profile");
    let optimized = pgo.join("optimized");
    build_lbhost(&optimized, &format!("-Cprofile-use={}", profile.display()))?;

    eprintln!("xtask dist: checking the optimised binary");
    let checked = train::run(
        root,
        &optimized.join("release/lbhost"),
        &backend,
        &pgo,
        Duration::from_secs(1),
    )?;
    eprintln!("xtask dist: it served {} requests", checked.requests);

    let dist = root.join("target/dist");
    std::fs::create_dir_all(dist.join("strategies"))
        .with_context(|| format!("creating {}", dist.display()))?;
    copy(&optimized.join("release/lbhost"), &dist.join("lbhost"))?;
    for (_, out) in guests::STRATEGIES {
        let file = Path::new(out)
            .file_name()
            .context("a strategy's path names no file")?;
        copy(&root.join(out), &dist.join("strategies").join(file))?;
    }
    eprintln!(
        "xtask dist: built {} (and its strategies in {})",
        dist.join("lbhost").display(),
        dist.join("strategies").display()
    );
    Ok(())
}

/// `cargo build --release -p lbhost` into `target_dir` with `flag` added to RUSTFLAGS.
fn build_lbhost(target_dir: &Path, flag: &str) -> Result<()> {
    let mut rustflags = std::env::var_os("RUSTFLAGS").unwrap_or_default();
    if !rustflags.is_empty() {
        rustflags.push(" ");
    }
    rustflags.push(flag);
    cargo_env(
        &["build", "--release", "-p", "lbhost"],
        &[
            ("RUSTFLAGS", rustflags),
            ("CARGO_TARGET_DIR", OsString::from(target_dir)),
        ],
    )
}

/// The `.profraw` files the training run left in `dir`.
fn profile_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("reading profiles in {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "profraw") {
            files.push(path);
        }
    }
    if files.is_empty() {
        bail!(
            "the training run left no profile in {} (did lbhost exit cleanly?)",
            dir.display()
        );
    }
    Ok(files)
}

/// Removes the `lbhost-*.profdata` files of earlier runs from `dir`.
fn remove_old_profiles(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("lbhost-") && name.ends_with(".profdata") {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}

/// A 64-bit hash of `bytes` (to name a file by its contents, not for security).
fn hash(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to)
        .map(drop)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))
}
