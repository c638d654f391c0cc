//! Embeds the guest SDK (its sources and a standalone manifest), the WIT package and the pinned
//! toolchain into lbhost, for `lbhost strategy new`: an author outside this repository gets the
//! SDK as a path dependency written beside the new crate (the SDK is not on crates.io).
//!
//! Writes `$OUT_DIR/embedded_sdk.rs` with `SDK_FILES`, `WIT_FILES` (path, contents via
//! `include_str!`), `SDK_MANIFEST` (guest-sdk/Cargo.toml with every `workspace = true` replaced by
//! the workspace's value, `[lints]` dropped) and `TOOLCHAIN` (rust-toolchain.toml's channel).

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

fn main() -> Result<()> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest_dir
        .parent()
        .ok_or("host/ has no parent folder")?
        .to_path_buf();
    let sdk = root.join("guest-sdk");
    let wit = root.join("wit");
    for watched in [
        sdk.join("src"),
        sdk.join("Cargo.toml"),
        wit.clone(),
        root.join("Cargo.toml"),
        root.join("rust-toolchain.toml"),
    ] {
        println!("cargo:rerun-if-changed={}", watched.display());
    }

    let mut out = String::new();
    out.push_str("/// The guest SDK's source files: (path in its crate folder, contents).\n");
    embed(
        &mut out,
        "SDK_FILES",
        &sdk,
        &files_under(&sdk.join("src"), "rs")?,
    )?;
    out.push_str("/// The WIT package: (file name, contents).\n");
    embed(&mut out, "WIT_FILES", &wit, &files_under(&wit, "wit")?)?;
    let workspace = fs::read_to_string(root.join("Cargo.toml"))?;
    let manifest = standalone_manifest(&fs::read_to_string(sdk.join("Cargo.toml"))?, &workspace)?;
    writeln!(
        out,
        "/// guest-sdk/Cargo.toml, standalone (no workspace inheritance).\n\
         pub(crate) const SDK_MANIFEST: &str = {manifest:?};"
    )?;
    let toolchain = fs::read_to_string(root.join("rust-toolchain.toml"))?;
    let channel = toml_value(&toolchain, "toolchain", "channel")
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "stable".into());
    writeln!(
        out,
        "/// The Rust toolchain lbhost is built and tested with.\n\
         pub const TOOLCHAIN: &str = {channel:?};"
    )?;
    let dest = PathBuf::from(std::env::var("OUT_DIR")?).join("embedded_sdk.rs");
    fs::write(dest, out)?;
    Ok(())
}

/// Every file with extension `ext` under `dir`, recursively, sorted.
fn files_under(dir: &Path, ext: &str) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == ext) {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Writes `pub const NAME: &[(&str, &str)]` with each file's path relative to `base`.
fn embed(out: &mut String, name: &str, base: &Path, files: &[PathBuf]) -> Result<()> {
    writeln!(out, "pub(crate) const {name}: &[(&str, &str)] = &[")?;
    for file in files {
        let relative = file
            .strip_prefix(base)?
            .to_str()
            .ok_or("a file name that is not UTF-8")?
            .replace('\\', "/");
        let absolute = file.to_str().ok_or("a path that is not UTF-8")?;
        writeln!(out, "    ({relative:?}, include_str!({absolute:?})),")?;
    }
    out.push_str("];\n");
    Ok(())
}

/// `sdk` (a member's Cargo.toml) with `KEY.workspace = true` lines replaced by the values of
/// `[workspace.package]` or `[workspace.dependencies]` in `workspace`, and `[lints]` dropped.
fn standalone_manifest(sdk: &str, workspace: &str) -> Result<String> {
    let package = toml_table(workspace, "workspace.package");
    let dependencies = toml_table(workspace, "workspace.dependencies");
    let mut out = String::new();
    let mut section = String::new();
    for line in sdk.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            section = trimmed.trim_matches(|c| c == '[' || c == ']').to_string();
            if section == "lints" {
                continue;
            }
        }
        if section == "lints" {
            continue;
        }
        if let Some(key) = trimmed.strip_suffix(".workspace = true") {
            let table = if section == "package" {
                &package
            } else {
                &dependencies
            };
            let value = table
                .get(key)
                .ok_or_else(|| format!("guest-sdk/Cargo.toml: {key} is not in the workspace"))?;
            writeln!(out, "{key} = {value}")?;
        } else {
            writeln!(out, "{line}")?;
        }
    }
    Ok(out.replacen("[package]\n", "[package]\npublish = false\n", 1))
}

/// The `key = value` lines of table `[name]` (one-line values only, which is all these files use).
fn toml_table(text: &str, name: &str) -> BTreeMap<String, String> {
    let mut in_table = false;
    let mut table = BTreeMap::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            in_table = trimmed == format!("[{name}]");
            continue;
        }
        if !in_table || trimmed.starts_with('#') {
            continue;
        }
        if let Some((key, value)) = trimmed.split_once('=') {
            table.insert(key.trim().to_string(), value.trim().to_string());
        }
    }
    table
}

/// One value of table `[table]`.
fn toml_value(text: &str, table: &str, key: &str) -> Option<String> {
    toml_table(text, table).remove(key)
}
