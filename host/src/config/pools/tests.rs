use std::path::Path;

use std::time::Duration;

use super::super::{from_file, Config};
use super::*;

fn parse(json: &str) -> Result<Config, String> {
    from_file(json, Path::new("/etc/lbhost")).map_err(|e| e.to_string())
}

const B1: &str = r#"[{"url": "http://127.0.0.1:9001"}]"#;
const B2: &str = r#"[{"url": "http://127.0.0.1:9002"}]"#;

fn three(routes: &str) -> String {
    format!(
        r#"{{"strategy": "s/rr.wasm", "retries": {{"max": 1}},
            "pools": {{"api": {{"backends": {B1}, "strategy": "s/lc.wasm", "retries": {{"max": 0}}}},
                      "web": {{"backends": {B2}}},
                      "static": {{"backends": {B1}, "timeouts": {{"connect": "250ms"}}}}}},
            "routes": {routes}}}"#
    )
}

#[test]
fn a_config_without_pools_is_the_pool_default_behind_a_catch_all_route() {
    let c = parse(&format!(r#"{{"backends": {B1}}}"#)).unwrap();
    assert_eq!(c.pools.len(), 1);
    assert_eq!(c.pools[0].name, "default");
    assert_eq!(c.pools[0].backends, c.backends);
    assert_eq!(c.pools[0].strategy, c.strategy);
    assert_eq!(c.routes.len(), 1);
    assert_eq!(c.routes[0].matches, RouteMatch::default());
    assert!(!c.has_pools());
    assert_eq!(c.main_pool().name, "default");
}

#[test]
fn pools_take_what_they_do_not_set_from_the_top_level() {
    let c = parse(&three(
        r#"[{"match": {"host": "API.example.com"}, "pool": "api"},
            {"match": {"path_prefix": "/static/"}, "pool": "static", "strip_prefix": "/static"},
            {"match": {"host": "*.example.com", "header": {"X-Canary": "1"}}, "pool": "web"}]"#,
    ))
    .unwrap();
    let pool = |name: &str| c.pools.iter().find(|p| p.name == name).unwrap();
    assert_eq!(pool("api").strategy, Path::new("/etc/lbhost/s/lc.wasm"));
    assert!(!pool("api").strategy_inherited);
    assert_eq!(pool("web").strategy, Path::new("/etc/lbhost/s/rr.wasm"));
    assert_eq!(pool("api").retries.max, 0);
    assert_eq!(pool("web").retries.max, 1);
    assert_eq!(pool("static").connect_timeout, Duration::from_millis(250));
    assert_eq!(pool("web").connect_timeout, Duration::from_secs(1));
    assert_eq!(
        c.routes[0].matches.host,
        Some(HostMatch::Exact("api.example.com".into()))
    );
    assert_eq!(
        c.routes[2].matches.host,
        Some(HostMatch::Suffix(".example.com".into()))
    );
    assert_eq!(
        c.routes[2].matches.headers,
        [("x-canary".to_string(), "1".to_string())]
    );
    assert!(c.backends.is_empty());
}

#[test]
fn bad_routing_tables_are_refused_with_one_line() {
    let cases = [
        (
            three(r#"[{"match": {"host": "a"}, "pool": "apii"}]"#),
            "routes[0].pool: \"apii\" is not a pool (pools: api, static, web)",
        ),
        (
            three(
                r#"[{"match": {"host": "a"}, "pool": "api"},
                    {"match": {"path_prefix": "/s"}, "pool": "static"},
                    {"match": {}, "pool": "web"}]"#,
            )
            .replace("\"routes\"", "\"default_pool\": \"nope\", \"routes\""),
            "default_pool: \"nope\" is not a pool",
        ),
        (
            three(
                r#"[{"match": {"host": "a"}, "pool": "api"},
                    {"match": {"path_prefix": "/"}, "pool": "web"}]"#,
            ),
            "pools.static: no route leads to it (and it is not default_pool)",
        ),
        (
            three(
                r#"[{"match": {"host": "*.example.com"}, "pool": "api"},
                    {"match": {"path_prefix": "/s"}, "pool": "static"},
                    {"match": {"host": "www.example.com", "path_prefix": "/x"}, "pool": "web"}]"#,
            ),
            "routes[2]: never matches: routes[0] comes first and matches every request it would",
        ),
        (
            three(
                r#"[{"match": {"path_prefix": "/api"}, "pool": "api"},
                    {"match": {"path_exact": "/api/v1"}, "pool": "static"},
                    {"pool": "web"}]"#,
            ),
            "routes[1]: never matches: routes[0]",
        ),
        (
            three(r#"[{"match": {"host": "a:80"}, "pool": "api"}]"#),
            "routes[0].match.host: \"a:80\" is not a host name",
        ),
        (
            three(r#"[{"match": {"path_prefix": "api"}, "pool": "api"}]"#),
            "routes[0].match.path_prefix: must start with /",
        ),
        (
            three(r#"[{"pool": "api", "prefix_rewrite": "/v2"}]"#),
            "routes[0].prefix_rewrite: needs \"strip_prefix\"",
        ),
        (
            format!(r#"{{"pools": {{"a b": {{"backends": {B1}}}}}, "default_pool": "a b"}}"#),
            "pools.a b: a pool name is 1 to 64 letters",
        ),
        (
            r#"{"pools": {"a": {"backends": [{"url": "ftp://x:1"}]}}, "default_pool": "a"}"#
                .to_string(),
            "pools.a.backends[0].url: scheme \"ftp\" is not supported",
        ),
        (
            format!(
                r#"{{"pools": {{"a": {{"backends": {B1}, "health_check": {{"path": "x"}}}}}}, "default_pool": "a"}}"#
            ),
            "pools.a.health_check.path: must start with /",
        ),
        (
            format!(r#"{{"backends": {B1}, "routes": []}}"#),
            "routes: needs \"pools\" to route to",
        ),
        (
            format!(r#"{{"backends": {B1}, "pools": {{"default": {{"backends": {B2}}}}}}}"#),
            "pools.default: the top level's \"backends\" are the pool \"default\" already",
        ),
        (
            format!(r#"{{"pools": {{"a": {{"backends": {B1}, "bogus": 1}}}}}}"#),
            "pools.a.bogus: unknown field `bogus`",
        ),
    ];
    for (json, want) in cases {
        let got = parse(&json).expect_err(&json);
        assert!(got.starts_with(want), "{got}\nwanted: {want}");
        assert!(!got.contains('\n'), "one line: {got}");
    }
}

#[test]
fn top_level_backends_beside_pools_are_the_pool_default() {
    let c = parse(&format!(
        r#"{{"backends": {B1}, "pools": {{"api": {{"backends": {B2}}}}},
            "routes": [{{"match": {{"host": "api"}}, "pool": "api"}}], "default_pool": "default"}}"#
    ))
    .unwrap();
    let names: Vec<_> = c.pools.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["default", "api"]);
    assert_eq!(c.main_pool().name, "default");
}

#[test]
fn shadowing_is_judged_on_every_condition() {
    let m = |host: Option<HostMatch>, path: Option<PathMatch>| RouteMatch {
        host,
        path,
        method: None,
        headers: Vec::new(),
    };
    let star = Some(HostMatch::Suffix(".example.com".into()));
    let deeper = Some(HostMatch::Suffix(".a.example.com".into()));
    let exact = Some(HostMatch::Exact("a.example.com".into()));
    assert!(covers(&m(star.clone(), None), &m(deeper.clone(), None)));
    assert!(!covers(&m(deeper, None), &m(star.clone(), None)));
    assert!(covers(&m(star.clone(), None), &m(exact.clone(), None)));
    assert!(!covers(&m(exact.clone(), None), &m(star, None)));
    let mut with_method = m(None, None);
    with_method.method = Some("GET".into());
    assert!(!covers(&with_method, &m(None, None)));
    assert!(covers(&m(None, None), &with_method));
    let mut with_header = m(exact.clone(), None);
    with_header.headers = vec![("x".into(), "1".into())];
    assert!(!covers(&with_header, &m(exact.clone(), None)));
    assert!(covers(&m(exact, None), &with_header));
}
