//! Builds the example strategy written in C (`examples/c_strategy/`) into a component.
//!
//! clang compiles the C sources together with the committed wit-bindgen bindings for
//! `wasm32-wasi` against wasi-libc, but with no start files and no entry point: only malloc, free
//! and the string functions are linked, none of which touch WASI. The core module is then wrapped
//! like a Rust guest's. The build fails, instead of lbhost later, when the bindings are older than
//! `wit/strategy.wit` or when the module imports anything but the request's methods (a stray libc
//! function that needs WASI).
//!
//! The example is built against the 0.1.0 contract (`wit/v0_1/strategy.wit`), which lbhost still
//! loads unchanged: it needs nothing 0.2.0 added, and it keeps proving that a component built
//! before 0.2.0, in another language, still runs.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use wasmparser::{Parser, Payload};

use crate::component;
use crate::setup::C_PACKAGES;

/// The example's directory, relative to the workspace root.
const DIR: &str = "examples/c_strategy";

/// The component it builds, relative to the workspace root.
const OUT: &str = "examples/c_strategy/c_strategy.wasm";

/// The interfaces the component may import: the request resource, and the type-only `types`
/// instance that every component of the `balancer` world imports (the Rust ones too).
const ALLOWED_IMPORTS: &[&str] = &[HTTP, "lb:strategy/types@0.1.0"];

/// The interface that provides the request resource: the only one with functions to import.
const HTTP: &str = "lb:strategy/http@0.1.0";

/// Compiles `examples/c_strategy/*.c` with its bindings and wraps it into
/// `examples/c_strategy/c_strategy.wasm`.
pub fn build(root: &Path) -> Result<()> {
    let dir = root.join(DIR);
    check_bindings_fresh(root, &dir)?;
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    check_toolchain(&clang)?;
    let sysroot = wasi_sysroot()?;

    let mut sources = c_files(&dir)?;
    sources.push(dir.join("bindings/balancer.c"));
    let type_object = dir.join("bindings/balancer_component_type.o");
    let build_dir = root.join("target/c_strategy");
    std::fs::create_dir_all(&build_dir)
        .with_context(|| format!("creating {}", build_dir.display()))?;
    let core = build_dir.join("c_strategy.core.wasm");

    let mut cmd = Command::new(&clang);
    cmd.args([
        "--target=wasm32-wasi",
        "-O2",
        "-std=c11",
        "-Wall",
        "-Wextra",
    ]);
    if let Some(sysroot) = &sysroot {
        cmd.arg(format!("--sysroot={}", sysroot.display()));
    }
    // A library, not a program: no crt1 (whose `_start` would import WASI), no entry point.
    cmd.args(["-nostartfiles", "-Wl,--no-entry", "-Wl,--strip-debug"]);
    cmd.args(&sources).arg(&type_object).arg("-o").arg(&core);
    let status = cmd.status().with_context(|| format!("running {clang}"))?;
    if !status.success() {
        bail!("compiling {DIR} with {clang} failed ({status})");
    }

    check_core_imports(&core)?;
    let out = root.join(OUT);
    component::wrap(&core, &out)?;
    check_imports(&out)?;
    eprintln!("xtask: built {OUT}");
    Ok(())
}

/// Fails when the WIT the example is built against (`wit/v0_1/strategy.wit`) changed since the
/// committed bindings were generated: they keep a copy of the WIT they were made from
/// (`bindings/generated-from.wit`).
fn check_bindings_fresh(root: &Path, dir: &Path) -> Result<()> {
    let wit = root.join("wit/v0_1/strategy.wit");
    let stamp = dir.join("bindings/generated-from.wit");
    let current = std::fs::read(&wit).with_context(|| format!("reading {}", wit.display()))?;
    if std::fs::read(&stamp).ok() != Some(current) {
        bail!(
            "{DIR}/bindings were generated from another version of wit/v0_1/strategy.wit; \
             regenerate them as {DIR}/README.md says"
        );
    }
    Ok(())
}

/// Fails with the packages to install when clang, wasm-ld or the wasm32 builtins are missing.
fn check_toolchain(clang: &str) -> Result<()> {
    let hint = format!(
        "install the C toolchain for wasm: apt-get install {}",
        C_PACKAGES.join(" ")
    );
    let query = |flag: &str| -> Result<String> {
        let output = Command::new(clang)
            .args(["--target=wasm32-wasi", flag])
            .output()
            .with_context(|| format!("cannot run `{clang}`; {hint}"))?;
        if !output.status.success() {
            bail!("`{clang} {flag}` failed; {hint}");
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    };
    let linker = query("-print-prog-name=wasm-ld")?;
    if !Path::new(&linker).is_file() {
        bail!("{clang} finds no wasm-ld (package lld); {hint}");
    }
    let builtins = query("-print-libgcc-file-name")?;
    if !Path::new(&builtins).is_file() {
        bail!("{clang} has no wasm32 builtins ({builtins}); {hint}");
    }
    Ok(())
}

/// The `--sysroot` to pass for wasi-libc, or `None` where clang finds it by itself (Debian
/// installs it into /usr/include/wasm32-wasi and /usr/lib/wasm32-wasi). `WASI_SYSROOT` overrides.
fn wasi_sysroot() -> Result<Option<PathBuf>> {
    if let Some(dir) = std::env::var_os("WASI_SYSROOT") {
        let dir = PathBuf::from(dir);
        if !dir.is_dir() {
            bail!("WASI_SYSROOT={} is not a directory", dir.display());
        }
        return Ok(Some(dir));
    }
    let shared = Path::new("/usr/share/wasi-sysroot");
    if shared.is_dir() {
        return Ok(Some(shared.to_path_buf()));
    }
    if Path::new("/usr/lib/wasm32-wasi/libc.a").is_file() {
        return Ok(None);
    }
    bail!(
        "wasi-libc not found (neither /usr/share/wasi-sysroot nor /usr/lib/wasm32-wasi; \
         set WASI_SYSROOT to use another); install the C toolchain for wasm: \
         apt-get install {}",
        C_PACKAGES.join(" ")
    )
}

/// The `*.c` files directly in `dir`, sorted.
fn c_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "c") {
            files.push(path);
        }
    }
    if files.is_empty() {
        bail!("no .c files in {}", dir.display());
    }
    files.sort();
    Ok(files)
}

/// Fails, naming the culprits, when the core module imports anything but the request resource
/// (typically WASI functions pulled in by stdio, time or environment functions of libc).
fn check_core_imports(core: &Path) -> Result<()> {
    let bytes = std::fs::read(core).with_context(|| format!("reading {}", core.display()))?;
    let mut unexpected = Vec::new();
    for payload in Parser::new(0).parse_all(&bytes) {
        if let Payload::ImportSection(section) =
            payload.with_context(|| format!("parsing {}", core.display()))?
        {
            for import in section.into_imports() {
                let import = import?;
                if import.module != HTTP {
                    unexpected.push(format!("{}::{}", import.module, import.name));
                }
            }
        }
    }
    if !unexpected.is_empty() {
        bail!(
            "{} imports {}: the C code may use only what needs no WASI \
             (malloc, free, string functions), and the request methods of {HTTP}",
            core.display(),
            unexpected.join(", ")
        );
    }
    Ok(())
}

/// Fails when the component imports anything but the interfaces of the `balancer` world.
fn check_imports(component: &Path) -> Result<()> {
    let bytes =
        std::fs::read(component).with_context(|| format!("reading {}", component.display()))?;
    let mut depth = 0usize;
    let mut unexpected = Vec::new();
    for payload in Parser::new(0).parse_all(&bytes) {
        match payload.with_context(|| format!("parsing {}", component.display()))? {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(section) if depth == 1 => {
                for import in section {
                    let name = import?.name.name;
                    if !ALLOWED_IMPORTS.contains(&name) {
                        unexpected.push(name.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    if !unexpected.is_empty() {
        bail!(
            "{} imports {} (a libc function that needs WASI?); only {} may be imported",
            component.display(),
            unexpected.join(", "),
            ALLOWED_IMPORTS.join(", ")
        );
    }
    Ok(())
}
