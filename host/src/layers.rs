//! The layers of the crate's modules, bottom first, and a test that keeps them: a module uses
//! modules of its own layer or below, never above, and no two modules of one layer use each
//! other except where listed in [`SAME_LAYER_CYCLES`]. Read from the `crate::` paths in the
//! source (comments aside), as `cargo modules` would show them.

/// Bottom first. A module may use any module of its own layer or a lower one.
const LAYERS: &[&[&str]] = &[
    // Foreign text made safe to show.
    &["text"],
    // HTTP/1.1 on the wire, HTTP/2 streams' bodies and PINGs, the request head as everything
    // above reads it, body types.
    &["http1", "http2", "request", "body"],
    // Certificates and rustls settings: clients' TLS, and the client side towards backends.
    &["tls"],
    // Config and metric families.
    &["config", "metrics"],
    // Backends and their state, the wasm strategies, per-client limits, backends from DNS,
    // the compiled routes.
    &["pool", "strategy", "ratelimit", "discovery", "routes"],
    // Connections to backends, active health checks.
    &["upstream", "health"],
    // A request's way through: limits, selection, retries, forwarding, logging.
    &["proxy"],
    // What runs it: the listener, the admin API, reload and its triggers.
    &["server", "admin", "reload", "watch"],
    // The author's commands (`lbhost strategy new | build | simulate`): offline, on the
    // strategy runtime and a pool of their own.
    &["author"],
    // Fuzzing harnesses over the parsers (tests and the `fuzzing` feature only).
    &["fuzz"],
];

/// Pairs in one layer that use each other: `request` keeps a parsed head's fields as the
/// `http1` spans they were parsed at, and `http1` builds that head.
const SAME_LAYER_CYCLES: &[(&str, &str)] = &[("http1", "request")];

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    use super::*;

    /// The `crate::x` modules the files under `path` use, comments aside.
    fn uses(path: &Path, out: &mut BTreeSet<String>) {
        if path.is_dir() {
            for entry in std::fs::read_dir(path).expect("reading the source tree") {
                uses(&entry.expect("a directory entry").path(), out);
            }
            return;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            return;
        }
        let text = std::fs::read_to_string(path).expect("reading a source file");
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (at, _) in line.match_indices("crate::") {
                let name: String = line[at + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                out.insert(name);
            }
        }
    }

    #[test]
    fn modules_use_only_their_layer_and_the_ones_below() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let layer_of: BTreeMap<&str, usize> = LAYERS
            .iter()
            .enumerate()
            .flat_map(|(i, layer)| layer.iter().map(move |m| (*m, i)))
            .collect();
        let mut graph = BTreeMap::new();
        for (module, layer) in &layer_of {
            let dir = src.join(module);
            let path = if dir.is_dir() {
                dir
            } else {
                src.join(format!("{module}.rs"))
            };
            assert!(path.exists(), "{module} is in LAYERS but not in src/");
            let mut used = BTreeSet::new();
            uses(&path, &mut used);
            used.remove(*module);
            for other in &used {
                let Some(other_layer) = layer_of.get(other.as_str()) else {
                    continue;
                };
                assert!(
                    other_layer <= layer,
                    "{module} (layer {layer}) uses {other} (layer {other_layer}), a layer above"
                );
            }
            graph.insert(*module, used);
        }
        for (module, used) in &graph {
            for other in used {
                let both = graph
                    .get(other.as_str())
                    .is_some_and(|u| u.contains(*module));
                let listed = SAME_LAYER_CYCLES
                    .iter()
                    .any(|&(a, b)| (a, b) == (module, other) || (b, a) == (module, other));
                assert!(!both || listed, "{module} and {other} use each other");
            }
        }
        // Every top-level module has its place.
        for entry in std::fs::read_dir(&src).expect("reading src/") {
            let path = entry.expect("a directory entry").path();
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default();
            if ["lib", "main", "layers"].contains(&name) {
                continue;
            }
            assert!(
                layer_of.contains_key(name),
                "src/{name} has no layer in LAYERS"
            );
        }
    }
}
