//! Wraps a core wasm module (with wit-bindgen's type section) into a component, as
//! `lbhost strategy build` does (the shared `lbhost-wrap` crate).

use std::path::Path;

use anyhow::{Context, Result};

/// Reads the core module at `core`, wraps it into a component and writes it to `out`.
pub fn wrap(core: &Path, out: &Path) -> Result<()> {
    let module = std::fs::read(core).with_context(|| format!("reading {}", core.display()))?;
    let component = lbhost_wrap::wrap(&module).with_context(|| core.display().to_string())?;
    std::fs::write(out, component).with_context(|| format!("writing {}", out.display()))
}
