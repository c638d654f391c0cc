//! A valid component of another world: lbhost must refuse it with a message saying so.

#[cfg(target_arch = "wasm32")]
mod component {
    #![allow(unsafe_code, missing_docs)]
    wit_bindgen::generate!({
        inline: "
            package test:other@1.0.0;
            world calculator {
                export add: func(a: u32, b: u32) -> u32;
            }
        ",
    });

    struct Calculator;

    impl Guest for Calculator {
        fn add(a: u32, b: u32) -> u32 {
            a.wrapping_add(b)
        }
    }

    export!(Calculator);
}
