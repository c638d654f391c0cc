//! Makes the machine ready for a task: the wasm target, llvm-tools and Debian's packages.
//!
//! The toolchain itself is `rustup toolchain install`'s job (it reads `rust-toolchain.toml`): with
//! `RUSTUP_AUTO_INSTALL=0` cargo cannot even build xtask without it. Everything after that is
//! here, each part installed only when it is missing, and xtask says what it installs. Debian
//! packages come from apt-get when xtask runs as root; otherwise it stops with the command to run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::root;

/// The target the Rust guests are built for.
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Debian 12's packages of the C toolchain for wasm, which the C example strategy needs.
pub const C_PACKAGES: &[&str] = &["clang", "lld", "wasi-libc", "libclang-rt-14-dev-wasm32"];

/// The Debian packages the tests need besides the C toolchain: the status page test renders in
/// headless Chromium; the DNS tests run dnsmasq on a loopback port (`dnsmasq-base` is the
/// program alone, without the system service the `dnsmasq` package would start); the TLS
/// tests make their certificates with openssl and speak to lbhost with `openssl s_client` and
/// curl as well as with rustls.
const TEST_PACKAGES: &[&str] = &["chromium", "dnsmasq-base", "openssl", "curl"];

/// For `cargo xtask demo`: the wasm target, nothing else (the demo runs Rust strategies only).
pub fn for_demo() -> Result<()> {
    wasm_target()
}

/// For `cargo xtask strategies`: the wasm target and the C toolchain.
pub fn for_guests() -> Result<()> {
    wasm_target()?;
    debian_packages(C_PACKAGES)
}

/// For `cargo xtask test`: the wasm target, the C toolchain, Chromium and dnsmasq.
pub fn for_tests() -> Result<()> {
    wasm_target()?;
    debian_packages(&[C_PACKAGES, TEST_PACKAGES].concat())
}

/// For `cargo xtask dist`: what the guests need and `llvm-profdata`, whose path it returns.
pub fn for_dist() -> Result<PathBuf> {
    for_guests()?;
    llvm_profdata()
}

/// Adds the wasm target to the active toolchain when its standard library is missing.
fn wasm_target() -> Result<()> {
    let sysroot = PathBuf::from(rustc(&["--print", "sysroot"])?.trim());
    if has_target(&sysroot, WASM_TARGET) {
        return Ok(());
    }
    eprintln!(
        "xtask: the toolchain lacks the {WASM_TARGET} target: installing it \
         (rustup target add {WASM_TARGET})"
    );
    rustup(&["target", "add", WASM_TARGET])?;
    if !has_target(&sysroot, WASM_TARGET) {
        bail!(
            "rustup added {WASM_TARGET}, but not to the toolchain in {}",
            sysroot.display()
        );
    }
    Ok(())
}

/// Whether the toolchain in `sysroot` has the standard library of `target`.
fn has_target(sysroot: &Path, target: &str) -> bool {
    sysroot
        .join("lib/rustlib")
        .join(target)
        .join("lib")
        .is_dir()
}

/// `llvm-profdata` of the active toolchain, from rustup's `llvm-tools` component, which this adds
/// when it is missing.
fn llvm_profdata() -> Result<PathBuf> {
    let sysroot = rustc(&["--print", "sysroot"])?;
    let version = rustc(&["-vV"])?;
    let host = version
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .context("rustc -vV names no host")?;
    let tool = Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(host.trim())
        .join("bin/llvm-profdata");
    if !tool.exists() {
        eprintln!(
            "xtask: the toolchain lacks llvm-profdata: installing it \
             (rustup component add llvm-tools)"
        );
        rustup(&["component", "add", "llvm-tools"])?;
        if !tool.exists() {
            bail!("rustup added llvm-tools, but {} is missing", tool.display());
        }
    }
    Ok(tool)
}

/// Installs those of `packages` that are not installed, with apt-get as root; otherwise stops
/// with the command to run. Where there is no dpkg (not Debian), it checks nothing: the build
/// that needs a package then says what is missing.
fn debian_packages(packages: &[&str]) -> Result<()> {
    let mut missing = Vec::new();
    for &package in packages {
        match installed(package) {
            Some(true) => {}
            Some(false) => missing.push(package),
            None => return Ok(()),
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    if !is_root()? {
        bail!(
            "missing Debian packages: {list}; install them with\n  \
             sudo apt-get install -y {list}"
        );
    }
    eprintln!("xtask: installing the missing Debian packages: {list} (apt-get install)");
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    // dpkg's progress goes to stdout even with -qq; errors go to stderr.
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null()))
}

/// Whether `package` is installed, or `None` where dpkg-query cannot run. `dpkg -s` is not
/// enough: it succeeds for a removed package whose configuration files are still there.
fn installed(package: &str) -> Option<bool> {
    let output = Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Abbrev}", package])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    Some(output.status.success() && output.stdout.starts_with(b"ii"))
}

/// Whether xtask runs as root.
fn is_root() -> Result<bool> {
    let output = Command::new("id")
        .arg("-u")
        .output()
        .context("running id -u")?;
    Ok(String::from_utf8_lossy(&output.stdout).trim() == "0")
}

/// Runs `rustc` with `args` in the workspace root (so `rust-toolchain.toml` picks the toolchain)
/// and returns what it printed.
fn rustc(args: &[&str]) -> Result<String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(&rustc)
        .args(args)
        .current_dir(root())
        .output()
        .with_context(|| format!("running {rustc}"))?;
    if !out.status.success() {
        bail!("{rustc} {} failed ({})", args.join(" "), out.status);
    }
    String::from_utf8(out.stdout).context("rustc printed something that is not UTF-8")
}

/// Runs `rustup` with `args` in the workspace root, for the toolchain `rust-toolchain.toml` names.
fn rustup(args: &[&str]) -> Result<()> {
    run(Command::new("rustup").args(args).current_dir(root())).context(
        "rustup is needed to install Rust's parts (https://rustup.rs); \
         or install them another way",
    )
}

/// Runs `cmd` and fails unless it succeeds.
fn run(cmd: &mut Command) -> Result<()> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let status = cmd.status().with_context(|| format!("running {program}"))?;
    if !status.success() {
        bail!("{program} failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_there_when_its_standard_library_is() {
        let sysroot = std::env::temp_dir().join(format!("xtask-sysroot-{}", std::process::id()));
        assert!(!has_target(&sysroot, WASM_TARGET));
        let lib = sysroot.join("lib/rustlib").join(WASM_TARGET).join("lib");
        std::fs::create_dir_all(&lib).expect("creating a fake sysroot");
        assert!(has_target(&sysroot, WASM_TARGET));
        assert!(!has_target(&sysroot, "x86_64-unknown-none"));
        std::fs::remove_dir_all(&sysroot).expect("removing the fake sysroot");
    }
}
