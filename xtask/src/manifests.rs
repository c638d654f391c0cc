//! Checks the Kubernetes manifests in `deploy/kubernetes/` offline, against the schemas of the
//! Kubernetes release that `kubernetes-validate` (PyPI) ships, in strict mode (an unknown field
//! is an error). Part of `cargo xtask test`.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// The validator, pinned: its version is the Kubernetes release whose schemas it ships.
const VALIDATOR: &str = "kubernetes-validate==1.37.0";

/// Validates every `*.yaml` of `deploy/kubernetes/`, installing the validator when missing.
pub fn check(root: &Path) -> Result<()> {
    let dir = root.join("deploy/kubernetes");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no manifests in {}", dir.display());
    }
    if !has_validator() {
        eprintln!("xtask: installing the manifest validator: pip install {VALIDATOR}");
        let status = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .arg(VALIDATOR)
            .status()
            .context("running python3 -m pip (python3 and pip are needed to check manifests)")?;
        if !status.success() || !has_validator() {
            bail!("could not install {VALIDATOR} with pip");
        }
    }
    let status = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict", "--quiet"])
        .args(&files)
        .status()
        .context("running kubernetes-validate")?;
    if !status.success() {
        bail!("deploy/kubernetes: a manifest does not validate (see above)");
    }
    eprintln!(
        "xtask: {} Kubernetes manifests validated (strict)",
        files.len()
    );
    Ok(())
}

fn has_validator() -> bool {
    Command::new("python3")
        .args(["-m", "kubernetes_validate", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
