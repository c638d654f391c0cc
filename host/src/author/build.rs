//! `lbhost strategy build [DIR]`: cargo builds the crate for `wasm32-unknown-unknown`, the module
//! is wrapped into a component (the `lbhost-wrap` crate, as `cargo xtask strategies` does), loaded
//! as the server loads a strategy (world, imports, a trial `configure`), and written as NAME.wasm.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use super::{say, AuthorError};
use crate::strategy::{LoadError, Runtime};

/// The target strategies are built for: no WASI, no ambient authority.
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Arguments of `lbhost strategy build`.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The strategy crate's folder (default: the current one).
    #[arg(value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
    /// Where to write the component (default: DIR/NAME.wasm, NAME the crate's name).
    #[arg(short, long, value_name = "FILE.wasm")]
    pub out: Option<PathBuf>,
    /// A `strategy_config` parameter for the trial `configure` (repeatable). Without any, a
    /// strategy that needs parameters is still written, with a note.
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = super::parse_param)]
    pub params: Vec<(String, String)>,
}

/// What a build produced.
#[derive(Debug)]
pub struct Built {
    /// The component written.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: usize,
}

/// Builds, wraps, checks and writes the component; reports its size.
pub fn run(args: &BuildArgs, out: &mut dyn Write) -> Result<Built, AuthorError> {
    let started = Instant::now();
    let dir = &args.dir;
    let manifest = dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(AuthorError::Usage(format!(
            "{}: no Cargo.toml (create a strategy with `lbhost strategy new NAME`)",
            dir.display()
        )));
    }
    check_wasm_target(dir)?;
    let crate_info = metadata(dir, &manifest)?;
    cargo_build(dir, &manifest)?;
    let core = crate_info
        .target_dir
        .join(WASM_TARGET)
        .join("release")
        .join(format!("{}.wasm", crate_info.lib_name));
    let module = std::fs::read(&core).map_err(AuthorError::io(&core))?;
    let component = lbhost_wrap::wrap(&module)?;
    let note = check(&crate_info.name, &component, &args.params)?;
    let path = args
        .out
        .clone()
        .unwrap_or_else(|| dir.join(format!("{}.wasm", crate_info.name)));
    std::fs::write(&path, &component).map_err(AuthorError::io(&path))?;
    say(
        out,
        format_args!(
            "built {}: {} ({} bytes), a strategy component lbhost loads; {:.1} s\n",
            path.display(),
            human_size(component.len()),
            component.len(),
            started.elapsed().as_secs_f64()
        ),
    )?;
    if let Some(note) = note {
        say(out, format_args!("note: {note}\n"))?;
    }
    Ok(Built {
        path,
        size: component.len(),
    })
}

/// Loads `component` as lbhost does. A `configure` refusal without parameters is a note, not
/// an error: the strategy may need its `strategy_config`.
fn check(
    name: &str,
    component: &[u8],
    params: &[(String, String)],
) -> Result<Option<String>, AuthorError> {
    let runtime = Runtime::new(&super::simulate::default_sandbox()?)?;
    match runtime.load_bytes(name, component, params) {
        Ok(_) => Ok(None),
        Err(LoadError::Configure(reason)) if params.is_empty() => Ok(Some(format!(
            "configure refused an empty strategy_config ({reason}); pass its parameters with \
             --param KEY=VALUE to check them"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Stops with the exact `rustup` command when the crate's toolchain lacks the wasm target.
fn check_wasm_target(dir: &Path) -> Result<(), AuthorError> {
    let output = Command::new("rustc")
        .args(["--print", "sysroot"])
        .current_dir(dir)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| {
            AuthorError::Tool(format!(
                "cannot run rustc ({e}): install Rust with rustup (https://rustup.rs)"
            ))
        })?;
    if !output.status.success() {
        return Err(AuthorError::Tool(format!(
            "rustc --print sysroot failed in {} ({}): is the crate's toolchain installed? \
             run `rustup toolchain install` there",
            dir.display(),
            output.status
        )));
    }
    let sysroot = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    if sysroot
        .join("lib/rustlib")
        .join(WASM_TARGET)
        .join("lib")
        .is_dir()
    {
        return Ok(());
    }
    let toolchain = sysroot
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    let command = match toolchain {
        Some(t) if sysroot.parent().is_some_and(|p| p.ends_with("toolchains")) => {
            format!("rustup target add {WASM_TARGET} --toolchain {t}")
        }
        _ => format!("rustup target add {WASM_TARGET}"),
    };
    Err(AuthorError::Tool(format!(
        "the Rust toolchain at {} has no {WASM_TARGET} target; add it with: {command}",
        sysroot.display()
    )))
}

/// What `cargo metadata` says of the crate.
#[derive(Debug)]
struct CrateInfo {
    name: String,
    /// The library target's name (the module is `<lib_name>.wasm`).
    lib_name: String,
    target_dir: PathBuf,
}

fn metadata(dir: &Path, manifest: &Path) -> Result<CrateInfo, AuthorError> {
    let output = cargo(dir)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(manifest)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| AuthorError::Tool(format!("cannot run cargo: {e}")))?;
    if !output.status.success() {
        return Err(AuthorError::Tool(format!(
            "cargo metadata failed ({})",
            output.status
        )));
    }
    let meta: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| AuthorError::Tool(format!("cargo metadata: {e}")))?;
    let target_dir = meta["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| AuthorError::Tool("cargo metadata: no target_directory".into()))?;
    let wanted = std::fs::canonicalize(manifest).map_err(AuthorError::io(manifest))?;
    let package = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| {
            p["manifest_path"]
                .as_str()
                .and_then(|m| std::fs::canonicalize(m).ok())
                .is_some_and(|m| m == wanted)
        })
        .ok_or_else(|| {
            AuthorError::Usage(format!(
                "{}: a workspace without a package; pass the strategy crate's folder",
                manifest.display()
            ))
        })?;
    let name = package["name"].as_str().unwrap_or_default().to_string();
    let lib = package["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| {
            t["crate_types"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "cdylib"))
        })
        .ok_or_else(|| {
            AuthorError::Usage(format!(
                "{name}: no library with crate-type \"cdylib\" (add `[lib] crate-type = [\"cdylib\", \"rlib\"]`)"
            ))
        })?;
    Ok(CrateInfo {
        lib_name: lib["name"].as_str().unwrap_or(&name).replace('-', "_"),
        name,
        target_dir,
    })
}

fn cargo_build(dir: &Path, manifest: &Path) -> Result<(), AuthorError> {
    let status = cargo(dir)
        .args([
            "build",
            "--release",
            "--target",
            WASM_TARGET,
            "--manifest-path",
        ])
        .arg(manifest)
        // Progress and compiler messages belong on stderr: stdout carries lbhost's report.
        .stdout(Stdio::null())
        .status()
        .map_err(|e| AuthorError::Tool(format!("cannot run cargo: {e}")))?;
    if !status.success() {
        return Err(AuthorError::Tool(format!(
            "cargo build --release --target {WASM_TARGET} failed ({status}); see above"
        )));
    }
    Ok(())
}

/// `cargo` in `dir` (so its rust-toolchain.toml applies), not the one that built lbhost.
fn cargo(dir: &Path) -> Command {
    let mut command = Command::new("cargo");
    command.current_dir(dir);
    command
}

/// `46312` → `45.2 KiB`.
pub fn human_size(bytes: usize) -> String {
    if bytes < 1024 {
        format!("{bytes} B")
    } else if bytes < 1024 * 1024 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
    }
}
