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
            "backends[0].wieght: unknown field `wieght`, expected one of `url`, `dns`, `srv`, `port`, `weight`, `labels`",
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

#[test]
fn failure_handling_defaults_and_overrides() {
    let c = parse(r#"{"backends": [{"url": "http://127.0.0.1:9001"}]}"#).unwrap();
    assert_eq!(c.passive, PassiveConfig::default());
    assert_eq!(c.retries, RetryConfig::default());
    assert_eq!(c.circuit_breaker, CircuitBreakerConfig::default());
    assert!(c.rate_limit.is_none(), "rate limiting is off by default");
    let c = parse(
        r#"{
      "backends": [{"url": "http://127.0.0.1:9001"}],
      "health_check": {"type": "tcp", "interval": "1s"},
      "passive": {"consecutive_failures": 3, "base_ejection": "1s", "max_ejection": "8s",
                  "max_ejected_percent": 100},
      "retries": {"max": 1, "budget_percent": 10, "min_per_second": 0.5},
      "circuit_breaker": {"enabled": false, "window": "2s"},
      "rate_limit": {"requests_per_second": 10}
    }"#,
    )
    .unwrap();
    assert_eq!(c.health_check.unwrap().kind, ProbeKind::Tcp);
    assert_eq!(c.passive.consecutive_failures, 3);
    assert_eq!(c.passive.max_ejection, Duration::from_secs(8));
    assert_eq!(c.retries.min_per_second, 0.5);
    assert!(!c.circuit_breaker.enabled);
    let limit = c.rate_limit.unwrap();
    assert_eq!((limit.requests_per_second, limit.burst), (10.0, 20));
    let c = parse(
        r#"{"backends": [{"url": "http://127.0.0.1:9001"}],
            "health_check": {"expected_statuses": [200, 204]}}"#,
    )
    .unwrap();
    assert_eq!(c.health_check.unwrap().expected_statuses, vec![200, 204]);
}

#[test]
fn failure_handling_errors_name_the_field() {
    let b = r#""backends": [{"url": "http://127.0.0.1:1"}]"#;
    let cases = [
        (
            r#""health_check": {"type": "udp"}"#,
            "health_check.type: \"udp\" is not a probe type",
        ),
        (
            r#""health_check": {"type": "tcp", "expected_statuses": [200]}"#,
            "health_check.expected_statuses: applies to \"type\": \"http\" only",
        ),
        (
            r#""health_check": {"expected_statuses": [200, 700]}"#,
            "health_check.expected_statuses: 700 is not an HTTP status",
        ),
        (
            r#""health_check": {"expected_statuses": []}"#,
            "health_check.expected_statuses: must list at least one",
        ),
        (
            r#""passive": {"consecutive_failures": 0}"#,
            "passive.consecutive_failures: must be at least 1",
        ),
        (
            r#""passive": {"base_ejection": "1m", "max_ejection": "10s"}"#,
            "passive.max_ejection: must be at least passive.base_ejection",
        ),
        (
            r#""passive": {"max_ejected_percent": 101}"#,
            "passive.max_ejected_percent: must be between 0 and 100",
        ),
        (
            r#""passive": {"base": "1s"}"#,
            "passive.base: unknown field `base`",
        ),
        (
            r#""retries": {"max": 11}"#,
            "retries.max: must be at most 10",
        ),
        (
            r#""retries": {"budget_percent": -1}"#,
            "retries.budget_percent: must be between 0 and 100",
        ),
        (
            r#""circuit_breaker": {"failure_ratio": 1.5}"#,
            "circuit_breaker.failure_ratio: must be above 0 and at most 1",
        ),
        (
            r#""circuit_breaker": {"cooldown": "soon"}"#,
            "circuit_breaker.cooldown: \"soon\" is not a duration",
        ),
        (
            r#""circuit_breaker": {"half_open_probes": 0}"#,
            "circuit_breaker.half_open_probes: must be between 1 and 1000",
        ),
        (
            r#""rate_limit": {"requests_per_second": 0}"#,
            "rate_limit.requests_per_second: must be above 0",
        ),
        (
            r#""rate_limit": {"burst": 0}"#,
            "rate_limit.burst: must be at least 1",
        ),
        (
            r#""rate_limit": {"rps": 5}"#,
            "rate_limit.rps: unknown field `rps`",
        ),
        (
            r#""health_check": {"type": "http", "service": "a.B"}"#,
            "health_check.service: applies to \"type\": \"grpc\" only",
        ),
        (
            r#""grpc": {"failure_codes": [14, 0]}"#,
            "grpc.failure_codes: 0 is not a gRPC error code (1-16)",
        ),
        (
            r#""grpc": {"codes": [14]}"#,
            "grpc.codes: unknown field `codes`",
        ),
    ];
    for (field, expected) in cases {
        let json = format!("{{{b}, {field}}}");
        let err = parse(&json).unwrap_err();
        assert!(
            err.starts_with(expected),
            "{json}\n  gave: {err}\n  want: {expected}…"
        );
        assert!(!err.contains('\n'), "one line: {err}");
    }
}

#[test]
fn dns_entries_and_settings_parse_with_defaults() {
    let c = parse(
        r#"{"backends": [
            {"url": "http://127.0.0.1:9001"},
            {"dns": "api.internal", "port": 8080, "weight": 2, "labels": {"zone": "a"}},
            {"srv": "_http._tcp.api.internal"}
        ], "dns": {"servers": ["127.0.0.1:5353", "::1"]}}"#,
    )
    .unwrap();
    assert_eq!(c.backends.len(), 1);
    assert_eq!(
        c.dns_backends[0].lookup,
        DnsLookup::Address {
            name: "api.internal".into(),
            port: 8080
        }
    );
    assert_eq!(c.dns_backends[0].weight, 2);
    assert_eq!(c.dns_backends[0].labels, vec![("zone".into(), "a".into())]);
    assert_eq!(
        c.dns_backends[1].lookup,
        DnsLookup::Srv {
            name: "_http._tcp.api.internal".into()
        }
    );
    assert_eq!(c.dns.servers[0].to_string(), "127.0.0.1:5353");
    assert_eq!(c.dns.servers[1].to_string(), "[::1]:53");
    assert_eq!(c.dns.min_refresh, Duration::from_secs(1));
    assert_eq!(c.dns.max_refresh, Duration::from_secs(30));
    let only_dns = parse(r#"{"backends": [{"dns": "api", "port": 80}]}"#).unwrap();
    assert!(only_dns.backends.is_empty() && only_dns.dns.servers.is_empty());
    let twice = parse(
        r#"{"backends": [{"dns": "api", "port": 80}, {"dns": "api", "port": 80, "weight": 3}]}"#,
    )
    .unwrap_err();
    assert_eq!(twice, "backends[1].dns: api port 80 is already backends[0]");
}

#[test]
fn backends_speak_http1_or_h2c_and_grpc_settings_have_defaults() {
    let c = parse(
        r#"{"backends": [{"url": "http://127.0.0.1:9001"},
                         {"url": "http://127.0.0.1:9002", "protocol": "h2c"}],
            "health_check": {"type": "grpc", "service": "shop.Cart"}}"#,
    )
    .unwrap();
    assert_eq!(c.backends[0].protocol, super::BackendProtocol::Http1);
    assert_eq!(c.backends[1].protocol, super::BackendProtocol::H2c);
    let check = c.health_check.unwrap();
    assert_eq!(check.kind, ProbeKind::Grpc);
    assert_eq!(check.service, "shop.Cart");
    assert_eq!(c.grpc.failure_codes, vec![13, 14]);
    for (url, protocol, expected) in [
        (
            "http://127.0.0.1:9001",
            "h3",
            "backends[0].protocol: \"h3\" is not a protocol",
        ),
        (
            "http://127.0.0.1:9001",
            "h2",
            "backends[0].protocol: \"h2\" is HTTP/2 over TLS: an http:// backend speaks \"h2c\"",
        ),
        (
            "https://127.0.0.1:9001",
            "h2c",
            "backends[0].protocol: \"h2c\" is HTTP/2 over cleartext TCP: an https:// backend speaks \"h2\"",
        ),
    ] {
        let tls = if url.starts_with("https:") {
            r#", "tls": {"verify": false}"#
        } else {
            ""
        };
        let json =
            format!(r#"{{"backends": [{{"url": "{url}", "protocol": "{protocol}"{tls}}}]}}"#);
        let err = parse(&json).unwrap_err();
        assert!(err.starts_with(expected), "{err}");
    }
    let dns = parse(r#"{"backends": [{"dns": "api.internal", "port": 443, "protocol": "h2"}]}"#)
        .unwrap_err();
    assert!(
        dns.starts_with("backends[0].protocol: \"h2\" is HTTP/2 over TLS, and the addresses"),
        "{dns}"
    );
}

#[test]
fn h2_backends_offer_h2_by_alpn_and_pool_apart_from_http1() {
    let c = parse(
        r#"{"backends": [{"url": "https://127.0.0.1:9001", "protocol": "h2"},
                         {"url": "https://127.0.0.1:9002"}],
            "upstream_tls": {"verify": false}}"#,
    )
    .unwrap();
    assert_eq!(c.backends[0].protocol, super::BackendProtocol::H2);
    let (h2, h1) = (
        c.backends[0].tls.as_ref().unwrap(),
        c.backends[1].tls.as_ref().unwrap(),
    );
    assert_eq!(h2.client.alpn_protocols, vec![b"h2".to_vec()]);
    assert_eq!(h1.client.alpn_protocols, vec![b"http/1.1".to_vec()]);
    assert_ne!(h2.fingerprint, h1.fingerprint);
}
