use super::*;
use crate::config::{HostMatch, PathMatch, RouteConfig, RouteMatch};

struct NoFields;
impl Fields for NoFields {
    fn field(&self, _: &str) -> Option<&[u8]> {
        None
    }
}

struct OneField(&'static str, &'static str);
impl Fields for OneField {
    fn field(&self, name: &str) -> Option<&[u8]> {
        (name == self.0).then_some(self.1.as_bytes())
    }
}

fn route(host: Option<HostMatch>, path: Option<PathMatch>) -> RouteConfig {
    RouteConfig {
        name: String::new(),
        matches: RouteMatch {
            host,
            path,
            method: None,
            headers: Vec::new(),
        },
        pool: "p".into(),
        strip_prefix: None,
        prefix_rewrite: None,
    }
}

fn view<'a>(host: &'a str, path: &'a str, fields: &'a dyn Fields) -> RequestView<'a> {
    RequestView {
        host,
        path,
        method: "GET",
        fields,
    }
}

#[test]
fn the_first_route_in_written_order_wins() {
    let routes = vec![
        route(None, Some(PathMatch::Prefix("/api/v2/".into()))),
        route(Some(HostMatch::Exact("api.example.com".into())), None),
        route(None, Some(PathMatch::Prefix("/api/".into()))),
        route(Some(HostMatch::Suffix(".example.com".into())), None),
    ];
    let router = Router::new(&routes);
    let cases = [
        ("api.example.com", "/api/v2/x", Some(0)),
        ("api.example.com", "/api/v1/x", Some(1)),
        ("other.org", "/api/v1/x", Some(2)),
        ("a.b.example.com", "/", Some(3)),
        ("example.com", "/", None),
        ("other.org", "/", None),
    ];
    for (host, path, want) in cases {
        let request = view(host, path, &NoFields);
        assert_eq!(router.find(&request), want, "{host}{path}");
        assert_eq!(first_match(&routes, &request), want, "{host}{path}");
    }
}

#[test]
fn hosts_are_compared_without_port_and_case() {
    assert_eq!(host_of(b"API.Example.com:8080"), "api.example.com");
    assert_eq!(host_of(b"api.example.com."), "api.example.com");
    assert_eq!(host_of(b"[::1]:80"), "[::1]");
    assert_eq!(host_of(b"user@h:1"), "h");
}

#[test]
fn a_route_strips_or_replaces_a_prefix() {
    let mut r = route(None, Some(PathMatch::Prefix("/static/".into())));
    r.strip_prefix = Some("/static".into());
    assert_eq!(
        rewrite(&r, "/static/app.js", Some("v=1")).as_deref(),
        Some("/app.js?v=1")
    );
    assert_eq!(rewrite(&r, "/static", None).as_deref(), Some("/"));
    assert_eq!(rewrite(&r, "/other", None), None);
    r.prefix_rewrite = Some("/assets/".into());
    assert_eq!(
        rewrite(&r, "/static/app.js", None).as_deref(),
        Some("/assets/app.js")
    );
}

#[test]
fn methods_and_fields_narrow_a_route() {
    let mut canary = route(Some(HostMatch::Suffix(".example.com".into())), None);
    canary.matches.headers = vec![("x-canary".into(), "1".into())];
    canary.matches.method = Some("GET".into());
    let routes = vec![canary, route(None, None)];
    let router = Router::new(&routes);
    let with = OneField("x-canary", "1");
    assert_eq!(router.find(&view("www.example.com", "/", &with)), Some(0));
    assert_eq!(
        router.find(&view("www.example.com", "/", &NoFields)),
        Some(1)
    );
}

/// Random tables and requests from small alphabets (so they collide often): the compiled
/// router answers exactly what trying the routes in order answers.
#[test]
fn the_compiled_router_agrees_with_a_linear_scan() {
    const HOSTS: [&str; 5] = ["a.com", "b.a.com", "x.b.a.com", "c.org", "a.c.org"];
    const PATHS: [&str; 7] = ["/", "/a", "/a/", "/a/b", "/ab", "/b/c", "/a/b/c"];
    const VALUES: [&str; 2] = ["1", "2"];
    let fields: [&dyn Fields; 3] = [&NoFields, &OneField("x-k", "1"), &OneField("x-k", "2")];
    let mut rng = fastrand::Rng::with_seed(24);
    for _table in 0..300 {
        let n = rng.usize(1..40);
        let routes: Vec<RouteConfig> = (0..n)
            .map(|_| {
                let host = match rng.u8(0..3) {
                    0 => None,
                    1 => Some(HostMatch::Exact(HOSTS[rng.usize(..HOSTS.len())].into())),
                    _ => {
                        let h = HOSTS[rng.usize(..HOSTS.len())];
                        let suffix = &h[h.find('.').unwrap_or(0)..];
                        Some(HostMatch::Suffix(suffix.into()))
                    }
                };
                let path = match rng.u8(0..3) {
                    0 => None,
                    1 => Some(PathMatch::Exact(PATHS[rng.usize(..PATHS.len())].into())),
                    _ => Some(PathMatch::Prefix(PATHS[rng.usize(..PATHS.len())].into())),
                };
                let mut r = route(host, path);
                if rng.u8(0..4) == 0 {
                    r.matches.method = Some(["GET", "POST"][rng.usize(..2)].into());
                }
                if rng.u8(0..4) == 0 {
                    r.matches.headers = vec![("x-k".into(), VALUES[rng.usize(..2)].into())];
                }
                r
            })
            .collect();
        let router = Router::new(&routes);
        for host in HOSTS.iter().chain(&["", "com", "zz"]) {
            for path in PATHS.iter().chain(&["/zz", "/a/bz"]) {
                for method in ["GET", "POST"] {
                    for f in fields {
                        let request = RequestView {
                            host,
                            path,
                            method,
                            fields: f,
                        };
                        assert_eq!(
                            router.find(&request),
                            first_match(&routes, &request),
                            "{host}{path} {method} against {routes:#?}"
                        );
                    }
                }
            }
        }
    }
}
