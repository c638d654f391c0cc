use std::path::Path;
use std::time::Duration;

use super::*;

fn parse(json: &str) -> Result<Config, String> {
    from_file(json, Path::new("/etc/lbhost")).map_err(|e| e.to_string())
}

#[test]
fn minimal_config_gets_documented_defaults() {
    let c = parse(r#"{"backends": [{"url": "http://127.0.0.1:9001"}]}"#).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.admin.to_string(), "127.0.0.1:9901");
    assert_eq!(
        c.strategy,
        Path::new("/etc/lbhost/strategies/round_robin.wasm")
    );
    assert_eq!(c.strategies_dir, Path::new("/etc/lbhost/strategies"));
    assert_eq!(c.backends[0].address, "127.0.0.1:9001");
    assert_eq!(c.backends[0].weight, 1);
    assert_eq!(c.timeouts.connect, Duration::from_secs(1));
    assert_eq!(c.sandbox.deadline, Duration::from_millis(1));
    assert!(c.health_check.is_none());
}

#[test]
fn the_documented_example_parses() {
    let c = parse(
        r#"{
      "listen": "127.0.0.1:8080", "admin": "127.0.0.1:9901",
      "strategy": "strategies/round_robin.wasm", "strategy_config": {"header": "x-user", "n": 3},
      "backends": [
        {"url": "http://127.0.0.1:9001", "weight": 3, "labels": {"version": "v1"}},
        {"url": "http://127.0.0.1:9002"}
      ],
      "health_check": {"path": "/health", "interval": "5s", "timeout": "1s",
                       "healthy_threshold": 2, "unhealthy_threshold": 2},
      "timeouts": {"connect": "1s", "response_header": "30s", "client_idle": "60s"},
      "trusted_proxies": ["127.0.0.1/32"]
    }"#,
    )
    .unwrap();
    assert_eq!(c.backends[0].labels, vec![("version".into(), "v1".into())]);
    assert_eq!(
        c.strategy_config,
        vec![("header".into(), "x-user".into()), ("n".into(), "3".into())]
    );
    assert_eq!(c.health_check.unwrap().interval, Duration::from_secs(5));
}

#[test]
fn errors_name_the_field() {
    let cases = [
        (
            r#"{"backends": [{"url": "http://127.0.0.1:1"}, {"url": "ftp://x"}]}"#,
            "backends[1].url: scheme",
        ),
        (
            r#"{"backends": [{"url": "http://127.0.0.1:1", "wieght": 2}]}"#,
            "backends[0].wieght: unknown field `wieght`, expected one of `url`, `weight`, `labels`",
        ),
        (
            r#"{"backends": [{"url": "http://127.0.0.1:1"}], "timeouts": {"connect": "soon"}}"#,
            "timeouts.connect: \"soon\" is not a duration",
        ),
        (r#"{"backends": []}"#, "backends: at least one backend"),
        (
            r#"{"backends": [{"url": "http://127.0.0.1:1"}], "listen": "8080"}"#,
            "listen: \"8080\" is not an address",
        ),
        (
            r#"{"backends": [{"url": "http://127.0.0.1:1"}], "trusted_proxies": ["10.0.0.0/40"]}"#,
            "trusted_proxies[0]:",
        ),
        (
            r#"{"backends": [{"url": "http://127.0.0.1:1"}, {"url": "http://127.0.0.1:1/"}]}"#,
            "backends[1].url: 127.0.0.1:1 is already backends[0]",
        ),
        (
            r#"{"backends": [{"url": "http://127.0.0.1:1/api"}]}"#,
            "backends[0].url: a backend URL has no path",
        ),
        (
            r#"{"backends": [{"url": "http://127.0.0.1:1", "weight": -1}]}"#,
            "backends[0].weight: invalid value",
        ),
        (r#"{"listen": 5}"#, "listen: invalid type"),
        (
            r#"{"backends": [{"url": "http://127.0.0.1:1"}"#,
            "invalid JSON",
        ),
        (r#"{}"#, "config: missing field `backends`"),
    ];
    for (json, expected) in cases {
        let err = parse(json).unwrap_err();
        assert!(
            err.starts_with(expected),
            "{json}\n  gave: {err}\n  want: {expected}…"
        );
        assert!(!err.contains('\n'), "one line: {err}");
    }
}
