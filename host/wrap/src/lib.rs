//! Wraps a core wasm module into a component: the step between `cargo build --target
//! wasm32-unknown-unknown` and a `.wasm` file lbhost loads.
//!
//! A guest built with lbhost-sdk carries its component type (the `lb:strategy` world, emitted by
//! wit-bindgen) in a custom section of the core module; [`wrap`] reads it and encodes the
//! component around the module. Used by `lbhost strategy build` and by `cargo xtask strategies`,
//! so both produce the same bytes from the same module.

/// Why a module could not be wrapped.
#[derive(Debug, thiserror::Error)]
pub enum WrapError {
    /// The module is not wasm, or has no component type section (not built with the SDK, or
    /// stripped of its custom sections).
    #[error(
        "not a core module with component type info (built without lbhost-sdk, or stripped?): {0}"
    )]
    NoTypeInfo(String),
    /// The module's imports and exports do not fit its own component type.
    #[error("cannot encode the component: {0}")]
    Encode(String),
}

/// The component around the core module `module`, validated.
pub fn wrap(module: &[u8]) -> Result<Vec<u8>, WrapError> {
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(module)
        .map_err(|e| WrapError::NoTypeInfo(format!("{e:#}")))?
        .encode()
        .map_err(|e| WrapError::Encode(format!("{e:#}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_bare_modules_are_refused_with_a_reason() {
        assert!(matches!(wrap(b"not wasm"), Err(WrapError::NoTypeInfo(_))));
        // The smallest valid core module: no component type section. It encodes as an empty
        // component or is refused; either way no panic.
        let empty = [0, b'a', b's', b'm', 1, 0, 0, 0];
        let _ = wrap(&empty);
    }
}
