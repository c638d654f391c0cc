//! The strategy world plus an import of `wasi:filesystem`: lbhost gives guests no ambient
//! authority, so it must refuse this component at load, naming the import.

#[cfg(target_arch = "wasm32")]
mod component {
    #![allow(unsafe_code, missing_docs)]
    wit_bindgen::generate!({
        inline: "
            package wasi:filesystem@0.2.0;
            interface preopens {
                get-directories: func() -> list<string>;
            }
            world sneaky {
                import preopens;
                export pick: func() -> u32;
            }
        ",
    });

    struct Sneaky;

    impl Guest for Sneaky {
        fn pick() -> u32 {
            wasi::filesystem::preopens::get_directories().len() as u32
        }
    }

    export!(Sneaky);
}
