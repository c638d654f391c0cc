//! Compiling a strategy to native code: in a short-lived child process when this process is the
//! `lbhost` binary, in process otherwise (tests, benchmarks, other embedders).
//!
//! Cranelift is a large compiler: compiling a component in the serving process leaves ~10 MiB of
//! its machine code resident in lbhost's RSS for good (measured: 23 MiB → 13 MiB after start),
//! and every hot swap compiles again. So `lbhost` runs itself as `lbhost compile-strategy` (a
//! hidden subcommand), writes the component to the child's stdin and reads back wasmtime's
//! serialized artifact from its stdout, then loads that: the serving process only ever maps
//! wasmtime's runtime. The child builds its engine from the same settings, and wasmtime refuses an
//! artifact from an engine with other settings or another version.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::OnceLock;

use wasmtime::component::Component;
use wasmtime::Engine;

use super::runtime::engine_config;
use super::LoadError;
use crate::text::bounded_owned;

/// The child's exit code when the component does not compile (its stderr says why).
const INVALID: u8 = 3;

/// Set once by the `lbhost` binary: compile strategies in a child running this executable.
static CHILD_EXE: OnceLock<PathBuf> = OnceLock::new();

/// Makes every runtime of this process compile strategies in a child process running the current
/// executable, which must handle `compile-strategy` with [`child_main`]. Called by `lbhost`'s
/// `main` before anything is loaded.
pub fn compile_in_child_process() {
    // /proc/self/exe still runs after the binary on disk was replaced by an upgrade.
    let exe = if cfg!(target_os = "linux") {
        Some(PathBuf::from("/proc/self/exe"))
    } else {
        std::env::current_exe().ok()
    };
    if let Some(exe) = exe {
        let _ = CHILD_EXE.set(exe);
    }
}

/// The settings an engine is built from, which the child must share.
#[derive(Clone, Copy, Debug)]
pub struct EngineSettings {
    /// Fuel metering on (every runtime but the unsandboxed benchmark one).
    pub fuel: bool,
    /// Linear memory cap per instance.
    pub memory_limit_bytes: usize,
}

/// Compiles `bytes` for `engine` (built from `settings`).
pub(super) fn compile(
    engine: &Engine,
    settings: EngineSettings,
    bytes: &[u8],
) -> Result<Component, LoadError> {
    let in_process = || {
        Component::new(engine, bytes)
            .map_err(|e| LoadError::Invalid(bounded_owned(format!("{e:#}"))))
    };
    let Some(exe) = CHILD_EXE.get() else {
        return in_process();
    };
    match compile_in_child(exe, settings, bytes) {
        Ok(artifact) => load_artifact(engine, &artifact),
        Err(ChildError::Invalid(reason)) => Err(LoadError::Invalid(reason)),
        Err(ChildError::Failed(reason)) => {
            tracing::warn!(%reason, "compiling the strategy in a child process failed; compiling in process");
            in_process()
        }
    }
}

enum ChildError {
    /// The component does not compile.
    Invalid(String),
    /// The child could not run or died.
    Failed(String),
}

fn compile_in_child(
    exe: &PathBuf,
    settings: EngineSettings,
    bytes: &[u8],
) -> Result<Vec<u8>, ChildError> {
    let mut child = Command::new(exe)
        .arg("compile-strategy")
        .arg("--memory-limit-bytes")
        .arg(settings.memory_limit_bytes.to_string())
        .args(if settings.fuel {
            &[][..]
        } else {
            &["--no-fuel"][..]
        })
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| ChildError::Failed(format!("starting {}: {e}", exe.display())))?;
    // The child reads all of its input before it writes anything, so this cannot deadlock.
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(bytes)
            .map_err(|e| ChildError::Failed(format!("writing to the compiler: {e}")))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| ChildError::Failed(format!("waiting for the compiler: {e}")))?;
    let stderr = bounded_owned(String::from_utf8_lossy(&output.stderr).trim().to_string());
    match output.status.code() {
        Some(0) => Ok(output.stdout),
        Some(code) if code == i32::from(INVALID) => Err(ChildError::Invalid(stderr)),
        _ => Err(ChildError::Failed(format!(
            "the compiler exited with {}: {stderr}",
            output.status
        ))),
    }
}

/// Loads an artifact made by [`child_main`] from this very executable.
#[allow(unsafe_code)]
fn load_artifact(engine: &Engine, artifact: &[u8]) -> Result<Component, LoadError> {
    // SAFETY: `artifact` is native code, which wasmtime cannot verify. It was just written by
    // `Engine::precompile_component` in a child running this same executable (/proc/self/exe),
    // with an engine built from the same settings, over a pipe only this process holds. wasmtime
    // still checks its header (version, engine settings) and refuses a mismatch with an error.
    unsafe { Component::deserialize(engine, artifact) }.map_err(|e| {
        LoadError::Engine(bounded_owned(format!(
            "loading the compiled strategy: {e:#}"
        )))
    })
}

/// `lbhost compile-strategy`: reads a component on stdin, writes the compiled artifact to stdout.
/// Exit 0 on success, 3 (with the reason on stderr) for a component that does not compile.
pub fn child_main(settings: EngineSettings) -> ExitCode {
    let mut bytes = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut bytes) {
        eprintln!("reading the component: {e}");
        return ExitCode::FAILURE;
    }
    let engine = match Engine::new(&engine_config(settings)) {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("wasm engine: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let artifact = match engine.precompile_component(&bytes) {
        Ok(artifact) => artifact,
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::from(INVALID);
        }
    };
    match std::io::stdout().lock().write_all(&artifact) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("writing the artifact: {e}");
            ExitCode::FAILURE
        }
    }
}
