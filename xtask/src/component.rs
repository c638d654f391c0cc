//! Wraps a core wasm module (with wit-bindgen's type section) into a component.

use std::path::Path;

use anyhow::{Context, Result};
use wit_component::ComponentEncoder;

/// Reads the core module at `core`, wraps it into a component and writes it to `out`.
pub fn wrap(core: &Path, out: &Path) -> Result<()> {
    let module = std::fs::read(core).with_context(|| format!("reading {}", core.display()))?;
    let component = ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .with_context(|| format!("{}: not a module with component type info", core.display()))?
        .encode()
        .with_context(|| format!("encoding {} as a component", core.display()))?;
    std::fs::write(out, component).with_context(|| format!("writing {}", out.display()))
}
