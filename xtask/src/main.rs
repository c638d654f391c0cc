//! Project tasks: `cargo xtask strategies | demo | test | dist`. See the README.

mod c_guest;
mod children;
mod component;
mod dist;
mod guests;
mod manifests;
mod setup;
mod smoke;
mod train;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};

use children::Children;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("strategies") => setup::for_guests().and_then(|()| guests::build_all(&root())),
        Some("demo") => demo(&args[1..]),
        Some("test") => test(&args[1..]),
        Some("dist") => dist::build(&root()),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n\
                 commands:\n  \
                 strategies   build every guest component (strategies, examples, test guests)\n  \
                 demo         build lbhost and the strategies, run it in front of three demo backends\n  \
                              (--smoke: check it answers through all three, then stop)\n  \
                 test         build everything and run every test (extra args go to cargo test)\n  \
                 dist         the production build: target/dist/lbhost, profile-guided (PGO)"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Runs `cargo` with `args` in the workspace root.
fn cargo(args: &[&str]) -> Result<()> {
    cargo_env(args, &[])
}

/// Runs `cargo` with `args` in the workspace root, with `env` set.
fn cargo_env(args: &[&str], env: &[(&str, OsString)]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(root())
        .status()
        .with_context(|| format!("running {cargo}"))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Installs what the tests need, checks the Kubernetes manifests, builds the components and the
/// host, then runs every test of the workspace.
fn test(extra: &[String]) -> Result<()> {
    setup::for_tests()?;
    manifests::check(&root())?;
    guests::build_all(&root())?;
    cargo(&["build", "--release", "--workspace", "--bins"])?;
    let mut args = vec!["test", "--release", "--workspace"];
    args.extend(extra.iter().map(String::as_str));
    cargo(&args)
}

/// Builds lbhost and the built-in strategies, then runs lbhost in front of three demo backends
/// until it exits or xtask is stopped (Ctrl-C, SIGTERM); they all stop with xtask.
fn demo(extra: &[String]) -> Result<()> {
    setup::for_demo()?;
    guests::build_strategies(&root())?;
    // The same build as `test`, so both share one compiled wasmtime.
    cargo(&["build", "--release", "--workspace", "--bins"])?;
    // The demo's active strategy: a copy, so swapping it leaves the built-in files alone.
    let strategies = root().join("strategies");
    std::fs::copy(
        strategies.join("round_robin.wasm"),
        strategies.join("active.wasm"),
    )
    .context("copying strategies/round_robin.wasm to strategies/active.wasm")?;
    let bin = root().join("target/release");
    let mut children = Children::new();
    for (name, port) in [("alpha", 9001), ("beta", 9002), ("gamma", 9003)] {
        children.spawn(
            name,
            Command::new(bin.join("demo-backend")).args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--name",
                name,
            ]),
        )?;
    }
    println!(
        "\nlbhost demo: three backends on 127.0.0.1:9001-9003, proxy on 127.0.0.1:8080\n\
         try:\n  curl -s http://127.0.0.1:8080/            # round-robin over alpha, beta, gamma\n  \
         curl -s http://127.0.0.1:9901/status      # admin: backends and strategy\n  \
         curl -s http://127.0.0.1:9901/metrics     # Prometheus metrics\n\
         swap the strategy while it runs (ip_hash: one client, one backend):\n  \
         cp strategies/ip_hash.wasm strategies/.next && mv strategies/.next strategies/active.wasm\n  \
         curl -s -XPOST localhost:9901/strategy -d '{{\"name\": \"weighted\"}}'\n\
         Ctrl-C stops everything.\n"
    );
    let smoke = extra.iter().any(|a| a == "--smoke");
    let lbhost_args = extra.iter().filter(|a| *a != "--smoke");
    children.spawn(
        "lbhost",
        Command::new(bin.join("lbhost"))
            .args(["--config", "examples/demo.json"])
            .args(lbhost_args)
            .current_dir(root()),
    )?;
    if smoke {
        // Stops lbhost and the backends (Drop) whether the check passed or not.
        return smoke::check();
    }
    let status = children.wait_for("lbhost")?;
    if status.is_none() {
        eprintln!("xtask: stopping lbhost and the demo backends");
    }
    // Stops the backends (and lbhost, after a signal) and waits for them.
    drop(children);
    match status {
        Some(status) if !status.success() => bail!("lbhost exited with {status}"),
        _ => Ok(()),
    }
}
