//! `lbhost strategy new NAME`: writes a strategy crate that builds outside this repository.
//!
//! The guest SDK is not on crates.io, so lbhost carries it (sources, a standalone manifest and
//! the WIT package, embedded at build time by `host/build.rs`) and writes it into the new crate's
//! folder as a path dependency: `lbhost-sdk/` and `wit/` (the SDK finds the WIT at `../wit`).
//! wit-bindgen, the SDK's one dependency, comes from crates.io when the crate is first built for
//! wasm. The SDK written is the one this lbhost serves, so the two always agree on the world.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{say, AuthorError};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_sdk.rs"));
}

pub use embedded::TOOLCHAIN;

/// Arguments of `lbhost strategy new`.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The crate's name (letters, digits, `-`, `_`); the component is built as NAME.wasm.
    pub name: String,
    /// The crate's folder (default: ./NAME). It must be empty or not exist yet.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Writes the crate and says what to do next.
pub fn run(args: &NewArgs, out: &mut dyn Write) -> Result<(), AuthorError> {
    check_name(&args.name)?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    write_crate(&dir, &args.name)?;
    say(
        out,
        format_args!(
            "created strategy crate {name} in {dir} (lbhost-sdk {version} beside it)\n\
             next:\n  \
             cd {dir}\n  \
             cargo test                                        # the native test\n  \
             lbhost strategy build                             # -> {name}.wasm\n  \
             lbhost strategy simulate {name}.wasm --kill 1@5000  # a preview under load\n",
            name = args.name,
            dir = dir.display(),
            version = env!("CARGO_PKG_VERSION"),
        ),
    )
}

/// Refuses names cargo would refuse (or that make awkward file names).
fn check_name(name: &str) -> Result<(), AuthorError> {
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name != "lbhost-sdk"
        && name != "lbhost_sdk";
    if valid {
        Ok(())
    } else {
        Err(AuthorError::Usage(format!(
            "{name:?}: a strategy name starts with a letter and has at most 64 letters, digits, \
             `-` or `_` (and is not lbhost-sdk)"
        )))
    }
}

/// Writes every file of the new crate into `dir`, which must be empty or absent.
pub fn write_crate(dir: &Path, name: &str) -> Result<(), AuthorError> {
    if let Ok(mut entries) = std::fs::read_dir(dir) {
        if entries.next().is_some() {
            return Err(AuthorError::Usage(format!(
                "{}: not empty; pass --dir with a new or empty folder",
                dir.display()
            )));
        }
    }
    for (path, contents) in files(name) {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(AuthorError::io(parent))?;
        }
        std::fs::write(&path, contents).map_err(AuthorError::io(&path))?;
    }
    Ok(())
}

/// The crate's files: (path relative to its folder, contents).
fn files(name: &str) -> Vec<(String, String)> {
    let strategy_type = type_name(name);
    let mut files = vec![
        ("Cargo.toml".to_string(), cargo_toml(name)),
        ("rust-toolchain.toml".into(), rust_toolchain()),
        ("README.md".into(), readme(name)),
        (".gitignore".into(), "/target\n*.wasm\n*.svg\n".into()),
        (
            "src/lib.rs".into(),
            LIB_RS
                .replace("__NAME__", name)
                .replace("__TYPE__", &strategy_type),
        ),
        (
            "lbhost-sdk/Cargo.toml".into(),
            embedded::SDK_MANIFEST.to_string(),
        ),
    ];
    for (path, contents) in embedded::SDK_FILES {
        files.push((format!("lbhost-sdk/{path}"), (*contents).to_string()));
    }
    for (path, contents) in embedded::WIT_FILES {
        files.push((format!("wit/{path}"), (*contents).to_string()));
    }
    files
}

/// `my-sticky_lb` → `MyStickyLb`.
fn type_name(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn cargo_toml(name: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
# cdylib: the wasm module `lbhost strategy build` wraps; rlib: `cargo test` runs natively.
crate-type = ["cdylib", "rlib"]

[dependencies]
# lbhost's guest SDK, written here by `lbhost strategy new` (lbhost {version}): it is not on
# crates.io. wit-bindgen, its one dependency, comes from crates.io.
lbhost-sdk = {{ path = "lbhost-sdk" }}

# A workspace of its own, even inside another one.
[workspace]

[profile.release]
# Strategies are small: a few tens of KiB.
opt-level = "s"
strip = "debuginfo"
"#,
        version = env!("CARGO_PKG_VERSION"),
    )
}

fn rust_toolchain() -> String {
    format!(
        "# The toolchain this lbhost was built and tested with, and the target strategies are built\n\
         # for. `rustup toolchain install` (in this folder) installs both; if the toolchain is there\n\
         # without the target: `rustup target add wasm32-unknown-unknown --toolchain {TOOLCHAIN}`.\n\
         [toolchain]\n\
         channel = \"{TOOLCHAIN}\"\n\
         profile = \"minimal\"\n\
         targets = [\"wasm32-unknown-unknown\"]\n"
    )
}

fn readme(name: &str) -> String {
    README_MD
        .replace("__NAME__", name)
        .replace("__TOOLCHAIN__", TOOLCHAIN)
}

const README_MD: &str = r#"# __NAME__

An lbhost load-balancing strategy. `src/lib.rs` holds its logic (`select`) and a native test.

```sh
rustup toolchain install            # once: Rust __TOOLCHAIN__ and the wasm32-unknown-unknown target
cargo test                          # runs the strategy natively through the SDK's Harness
lbhost strategy build               # builds __NAME__.wasm, checked as lbhost checks it
lbhost strategy simulate __NAME__.wasm --backends 4 --requests 20000 --kill 1@10000 --chart shares.svg
lbhost --config lb.json --strategy __NAME__.wasm
```

`lbhost-sdk/` and `wit/` are lbhost's guest SDK and its WIT contract, written here by
`lbhost strategy new`: keep them, and refresh them from a newer lbhost by creating a crate with
it and copying both folders over. The strategy is built for `wasm32-unknown-unknown` and wrapped
into a component by `lbhost strategy build`; a `wasm32-wasip2` build imports WASI, which lbhost
refuses.

Parameters come from the config's `strategy_config`; this strategy takes `key` (`client_ip`,
`header:NAME`, `cookie:NAME`, `query:NAME` or `path`; default `client_ip`), e.g.
`"strategy_config": {"key": "cookie:session"}`. Simulate with `--param key=cookie:session`.
"#;

const LIB_RS: &str = r#"//! __NAME__: an lbhost load-balancing strategy.
//!
//! Sends every client to the same backend, so its caches stay warm: rendezvous hashing of a
//! request key over the backends' stable keys. Every lbhost node agrees without coordination, and
//! when a backend leaves only its own clients move. Change `select` to route as you need.

use lbhost_sdk::{BackendSet, Backends, KeySource, Params, RendezvousTable, Request, Strategy};

/// Sticky routing on a request key.
///
/// Parameter `key` (from the config's `strategy_config`): `client_ip` (default), `header:NAME`,
/// `cookie:NAME`, `query:NAME` or `path`. Requests without that key are keyed by client IP.
pub struct __TYPE__ {
    key: KeySource,
    /// Rebuilt whenever the backend set changes, never per request.
    table: RendezvousTable,
}

impl Strategy for __TYPE__ {
    fn configure(params: &Params) -> Result<Self, String> {
        params.allow_only(&["key"])?;
        let key = match params.get("key") {
            Some(text) => text
                .parse()
                .map_err(|e| format!("strategy_config.key: {e}"))?,
            None => KeySource::ClientIp,
        };
        Ok(__TYPE__ {
            key,
            table: RendezvousTable::default(),
        })
    }

    fn backends_changed(&mut self, backends: &BackendSet) {
        self.table = RendezvousTable::new(backends);
    }

    fn select(&mut self, backends: &Backends<'_>, request: &Request<'_>) -> Option<usize> {
        let key = self
            .key
            .hash(request)
            .unwrap_or_else(|| request.client_ip_hash());
        self.table.lookup(key, backends)
    }
}

lbhost_sdk::export_strategy!(__TYPE__);

#[cfg(test)]
mod tests {
    use super::*;
    use lbhost_sdk::testing::{backend, Harness, TestRequest};
    use std::net::{IpAddr, Ipv4Addr};

    fn client(i: u32) -> TestRequest {
        TestRequest::from_ip(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)))
    }

    fn pool() -> Vec<lbhost_sdk::Backend> {
        (0..4).map(|i| backend(&format!("10.1.0.{i}:8080"))).collect()
    }

    #[test]
    fn a_client_sticks_and_only_the_clients_of_a_down_backend_move() {
        let mut h = Harness::<__TYPE__>::new(&[]).unwrap();
        h.set_backends(pool());
        let before: Vec<_> = (0..1000).map(|i| h.select(&client(i)).unwrap()).collect();
        assert_eq!(before[7], h.select(&client(7)).unwrap(), "sticky");
        let mut down = pool();
        down[1] = down[1].clone().down();
        h.set_backends(down);
        for (i, &was) in before.iter().enumerate() {
            let now = h.select(&client(i as u32)).unwrap();
            assert_ne!(now, 1, "the down backend is never chosen");
            if was != 1 {
                assert_eq!(now, was, "client {i} moved without reason");
            }
        }
    }

    #[test]
    fn a_cookie_key_is_used_and_a_bad_key_refused() {
        let mut h = Harness::<__TYPE__>::new(&[("key", "cookie:session")]).unwrap();
        h.set_backends(pool());
        let a = h.select(&client(1).with_cookie("session", "s-42"));
        assert_eq!(a, h.select(&client(2).with_cookie("session", "s-42")));
        let err = Harness::<__TYPE__>::new(&[("key", "bogus")]).unwrap_err();
        assert!(err.contains("strategy_config.key"), "{err}");
    }
}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_typed() {
        assert!(check_name("sticky-lb").is_ok());
        assert!(check_name("1abc").is_err());
        assert!(check_name("a/b").is_err());
        assert!(check_name("lbhost-sdk").is_err());
        assert_eq!(type_name("my-sticky_lb"), "MyStickyLb");
    }

    #[test]
    fn the_sdk_travels_whole_and_standalone() {
        let files = files("x");
        let has = |p: &str| files.iter().any(|(path, _)| path == p);
        assert!(has("lbhost-sdk/src/lib.rs") && has("lbhost-sdk/src/__glue.rs"));
        assert!(has("wit/strategy.wit"));
        assert!(!embedded::SDK_MANIFEST.contains("workspace"));
        assert!(embedded::SDK_MANIFEST.contains("wit-bindgen = {"));
        assert!(!TOOLCHAIN.is_empty());
    }

    #[test]
    fn a_non_empty_folder_is_refused() {
        let dir = std::env::temp_dir().join(format!("lbhost-new-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("keep"), "x").unwrap();
        assert!(matches!(write_crate(&dir, "x"), Err(AuthorError::Usage(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
