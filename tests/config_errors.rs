//! `lbhost check`: a valid config passes; each broken one fails with one line on stderr that
//! names the file, the field and the reason, with no panic or debug dump.

use std::ffi::OsStr;
use std::path::Path;

use lbhost_e2e::{strategy, Lb, RawRun, Scratch};
use serde_json::{json, Value};

/// A config that `check` accepts.
fn valid() -> Value {
    json!({
        "listen": "127.0.0.1:18080",
        "admin": "127.0.0.1:19901",
        "strategy": strategy("round_robin"),
        "backends": [
            { "url": "http://127.0.0.1:9001", "weight": 3, "labels": { "version": "v1" } },
            { "url": "http://127.0.0.1:9002" }
        ],
        "timeouts": { "connect": "1s", "response_header": "30s" },
        "trusted_proxies": ["127.0.0.1/32"]
    })
}

/// Runs `lbhost check --config <dir>/config.json` with `text` as the file.
async fn check_text(scratch: &Scratch, text: &str) -> RawRun {
    let path = scratch.write("config.json", text);
    check_file(&path).await
}

async fn check(scratch: &Scratch, config: &Value) -> RawRun {
    check_text(scratch, &config.to_string()).await
}

async fn check_file(path: &Path) -> RawRun {
    Lb::spawn_raw([
        OsStr::new("check"),
        OsStr::new("--config"),
        path.as_os_str(),
    ])
    .await
}

/// The run failed cleanly with a single `error: ...` line containing every one of `wanted`
/// (case-insensitive); returns that line.
fn one_line_error(run: &RawRun, wanted: &[&str]) -> String {
    let stderr = run.stderr.trim_end();
    assert!(!run.status.success(), "check passed; stderr: {stderr:?}");
    assert!(
        run.status.code().is_some_and(|c| c != 101),
        "check died ({}) instead of exiting with an error; stderr: {stderr:?}",
        run.status
    );
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr:?}");
    assert!(stderr.starts_with("error: "), "{stderr:?}");
    for debris in ["panicked", "RUST_BACKTRACE", "Error: ", "Caused by"] {
        assert!(!stderr.contains(debris), "{debris:?} in {stderr:?}");
    }
    let lower = stderr.to_lowercase();
    for word in wanted {
        assert!(
            lower.contains(&word.to_lowercase()),
            "{word:?} not in {stderr:?}"
        );
    }
    stderr.to_string()
}

#[tokio::test]
async fn valid_config_passes() {
    let scratch = Scratch::new();
    let run = check(&scratch, &valid()).await;
    assert!(
        run.status.success(),
        "check failed ({}): {}",
        run.status,
        run.stderr
    );
    assert!(!run.stderr.contains("error"), "{}", run.stderr);
}

#[tokio::test]
async fn missing_config_file_is_named() {
    let scratch = Scratch::new();
    let run = check_file(&scratch.path().join("nowhere.json")).await;
    one_line_error(&run, &["nowhere.json"]);
}

#[tokio::test]
async fn invalid_json_is_one_line() {
    let scratch = Scratch::new();
    let run = check_text(
        &scratch,
        "{ \"listen\": \"127.0.0.1:8080\",\n  \"backends\": [ }",
    )
    .await;
    one_line_error(&run, &["config.json"]);
}

#[tokio::test]
async fn unknown_field_is_named() {
    let scratch = Scratch::new();
    let mut config = valid();
    config["colour"] = json!("blue");
    let run = check(&scratch, &config).await;
    one_line_error(&run, &["config.json", "colour"]);
}

#[tokio::test]
async fn bad_backend_url_names_its_index() {
    let scratch = Scratch::new();
    let mut config = valid();
    config["backends"][1]["url"] = json!("http//no colon");
    let run = check(&scratch, &config).await;
    one_line_error(&run, &["config.json", "backends[1].url"]);
}

#[tokio::test]
async fn bad_duration_names_its_field() {
    let scratch = Scratch::new();
    let mut config = valid();
    config["timeouts"]["connect"] = json!("soon");
    let run = check(&scratch, &config).await;
    one_line_error(&run, &["config.json", "timeouts.connect"]);
}

#[tokio::test]
async fn missing_strategy_file_is_named() {
    let scratch = Scratch::new();
    let mut config = valid();
    let missing = scratch.path().join("missing.wasm");
    config["strategy"] = json!(missing.to_string_lossy());
    let run = check(&scratch, &config).await;
    one_line_error(&run, &["missing.wasm"]);
}

#[tokio::test]
async fn garbage_strategy_is_not_a_component() {
    let scratch = Scratch::new();
    let garbage = scratch.write("garbage.wasm", "this is not WebAssembly\n");
    let mut config = valid();
    config["strategy"] = json!(garbage.to_string_lossy());
    let run = check(&scratch, &config).await;
    let line = one_line_error(&run, &["garbage.wasm", "not a"]).to_lowercase();
    assert!(
        ["component", "webassembly", "wasm file"]
            .iter()
            .any(|w| line.contains(w)),
        "the message should say the file is not a WebAssembly component: {line:?}"
    );
}

#[tokio::test]
async fn core_module_is_not_a_component() {
    let scratch = Scratch::new();
    // The smallest valid core module: magic and version 1, no sections.
    let module = scratch.write("core.wasm", b"\0asm\x01\0\0\0");
    let mut config = valid();
    config["strategy"] = json!(module.to_string_lossy());
    let run = check(&scratch, &config).await;
    one_line_error(&run, &["core.wasm", "core", "module", "not a component"]);
}

#[tokio::test]
async fn a_huge_unknown_key_with_line_breaks_is_quoted_bounded_on_one_line() {
    let scratch = Scratch::new();
    let mut config = valid();
    let key = format!("colour\nerror: forged\x1b[2J{}", "x".repeat(100_000));
    config[key.as_str()] = json!("blue");
    let run = check(&scratch, &config).await;
    let line = one_line_error(&run, &["config.json", "unknown field", "colour", "cut"]);
    assert!(line.len() < 4096, "{} bytes", line.len());
    assert!(!line.contains('\x1b'), "{line:?}");
}

#[tokio::test]
async fn labels_must_be_plain_text() {
    let scratch = Scratch::new();
    for (key, value) in [
        ("version", "v1\nforged".to_string()),
        ("version", "v".repeat(2000)),
        ("ver\u{202e}sion", "v1".to_string()),
    ] {
        let mut config = valid();
        config["backends"][0]["labels"] = json!({ key: value });
        let run = check(&scratch, &config).await;
        let line = one_line_error(&run, &["config.json", "backends[0].labels", "plain text"]);
        assert!(line.len() < 4096, "{} bytes", line.len());
    }
}

#[tokio::test]
async fn a_strategy_path_must_be_plain_text() {
    let scratch = Scratch::new();
    for path in [
        format!("{}\nerror: forged", strategy("round_robin")),
        format!("/{}", "p/".repeat(3000)),
    ] {
        let mut config = valid();
        config["strategy"] = json!(path);
        let run = check(&scratch, &config).await;
        let line = one_line_error(&run, &["config.json", "strategy", "no control characters"]);
        assert!(line.len() < 4096, "{} bytes", line.len());
    }
}

#[tokio::test]
/// Backends from DNS: a bad name, a port out of range or missing, fields that do not go together,
/// inverted refresh bounds, a server that is not an address; a good entry passes (check looks
/// nothing up).
async fn bad_dns_entries_are_refused_with_one_clear_line() {
    let scratch = Scratch::new();
    let base = |backends: Value, dns: Value| {
        json!({
            "listen": "127.0.0.1:18080",
            "admin": "127.0.0.1:19901",
            "strategy": strategy("round_robin"),
            "backends": backends,
            "dns": dns,
        })
    };
    let servers = json!({ "servers": ["127.0.0.1:5353"] });
    let cases = [
        (
            json!([{ "dns": "api..internal", "port": 80 }]),
            servers.clone(),
            vec!["backends[0].dns", "not a DNS name"],
        ),
        (
            json!([{ "dns": "api.internal", "port": 70000 }]),
            servers.clone(),
            vec!["backends[0].port", "70000 is not a port (1-65535)"],
        ),
        (
            json!([{ "dns": "api.internal" }]),
            servers.clone(),
            vec!["backends[0].port", "required"],
        ),
        (
            json!([{ "srv": "api.internal" }]),
            servers.clone(),
            vec!["backends[0].srv", "_service._proto."],
        ),
        (
            json!([{ "srv": "_http._tcp.api.internal", "port": 80 }]),
            servers.clone(),
            vec!["backends[0].port", "srv"],
        ),
        (
            json!([{ "url": "http://127.0.0.1:9001", "dns": "api.internal", "port": 80 }]),
            servers.clone(),
            vec!["backends[0]", "exclude each other"],
        ),
        (
            json!([{ "weight": 2 }]),
            servers.clone(),
            vec!["backends[0]", "needs \"url\""],
        ),
        (
            json!([{ "dns": "api.internal", "port": 80 }]),
            json!({ "min_refresh": "30s", "max_refresh": "1s" }),
            vec!["dns.min_refresh", "30s is above dns.max_refresh (1s)"],
        ),
        (
            json!([{ "dns": "api.internal", "port": 80 }]),
            json!({ "servers": ["dns.example"] }),
            vec!["dns.servers[0]", "not an IP address"],
        ),
    ];
    for (backends, dns, wanted) in cases {
        let path = scratch.write("config.json", base(backends, dns).to_string());
        let run = Lb::spawn_raw([
            OsStr::new("check"),
            OsStr::new("--config"),
            path.as_os_str(),
        ])
        .await;
        let stderr = run.stderr.trim_end();
        assert!(!run.status.success(), "check passed: {wanted:?}");
        assert_eq!(run.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "not one line: {stderr:?}");
        assert!(stderr.starts_with("error: "), "{stderr:?}");
        for word in wanted {
            assert!(stderr.contains(word), "{word:?} not in {stderr:?}");
        }
    }
    // A good one passes (check looks nothing up).
    let good = base(
        json!([{ "dns": "api.internal", "port": 80 }, { "srv": "_http._tcp.api.internal" }]),
        servers,
    );
    let path = scratch.write("config.json", good.to_string());
    let run = Lb::spawn_raw([
        OsStr::new("check"),
        OsStr::new("--config"),
        path.as_os_str(),
    ])
    .await;
    assert!(run.status.success(), "{}", run.stderr);
}
