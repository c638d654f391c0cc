//! The compiled route table: routes are filed by host (a map of exact hosts, a map of wildcard
//! suffixes, and the routes for any host), and within a host by path (a map of exact paths, a
//! byte-wise prefix tree, and the routes for any path). A lookup gathers the few candidate
//! lists that can hold a match; each list is in written order, so the first candidate whose
//! method and fields match is that list's best, and the smallest index over the lists is the
//! first route in written order that matches. Cost: one hash lookup per host label of a
//! wildcard, one per exact host, and one tree step per path byte, whatever the number of routes.

use rustc_hash::FxHashMap;

use super::{rest_matches, RequestView};
use crate::config::{HostMatch, PathMatch, RouteConfig, RouteMatch};

/// A route table compiled for lookups.
#[derive(Debug, Default)]
pub struct Router {
    /// Each route's conditions, by index (the method and fields are checked from here).
    routes: Vec<RouteMatch>,
    /// Routes naming one host.
    exact_hosts: FxHashMap<Box<str>, Paths>,
    /// Routes naming `*.suffix`, keyed by `.suffix`.
    suffix_hosts: FxHashMap<Box<str>, Paths>,
    /// Routes naming no host.
    any_host: Paths,
    /// The first route has no condition (a config without pools has just such a route): it
    /// takes every request, and [`Router::find`] looks at none (~100 instructions a request).
    first_takes_all: bool,
}

/// The routes of one host key, filed by path.
#[derive(Debug, Default)]
struct Paths {
    exact: FxHashMap<Box<str>, Vec<u32>>,
    prefixes: Tree,
    any: Vec<u32>,
}

/// A byte-wise prefix tree; node 0 is the root (the empty prefix).
#[derive(Debug)]
struct Tree {
    nodes: Vec<Node>,
}

#[derive(Debug, Default)]
struct Node {
    /// Children by next byte, sorted by byte.
    children: Vec<(u8, u32)>,
    /// Routes whose prefix ends here, in written order.
    routes: Vec<u32>,
}

impl Default for Tree {
    fn default() -> Self {
        Tree {
            nodes: vec![Node::default()],
        }
    }
}

impl Tree {
    fn insert(&mut self, prefix: &[u8], route: u32) {
        let mut at = 0usize;
        for &byte in prefix {
            let children = &self.nodes[at].children;
            at = match children.binary_search_by_key(&byte, |c| c.0) {
                Ok(i) => children[i].1 as usize,
                Err(i) => {
                    let next = self.nodes.len();
                    self.nodes.push(Node::default());
                    self.nodes[at].children.insert(i, (byte, next as u32));
                    next
                }
            };
        }
        self.nodes[at].routes.push(route);
    }

    fn is_empty(&self) -> bool {
        self.nodes.len() == 1 && self.nodes[0].routes.is_empty()
    }
}

impl Paths {
    fn insert(&mut self, path: Option<&PathMatch>, route: u32) {
        match path {
            None => self.any.push(route),
            Some(PathMatch::Exact(p)) => {
                self.exact.entry(p.as_str().into()).or_default().push(route)
            }
            Some(PathMatch::Prefix(p)) => self.prefixes.insert(p.as_bytes(), route),
        }
    }

    /// Lowers `best` to the first route here that takes `request`.
    fn best(&self, routes: &[RouteMatch], request: &RequestView<'_>, best: &mut u32) {
        let mut consider = |list: &[u32]| {
            for &i in list {
                if i >= *best {
                    return;
                }
                if rest_matches(&routes[i as usize], request) {
                    *best = i;
                    return;
                }
            }
        };
        consider(&self.any);
        if !self.exact.is_empty() {
            if let Some(list) = self.exact.get(request.path) {
                consider(list);
            }
        }
        if self.prefixes.is_empty() {
            return;
        }
        let nodes = &self.prefixes.nodes;
        let mut at = 0usize;
        for &byte in request.path.as_bytes() {
            let children = &nodes[at].children;
            match children.binary_search_by_key(&byte, |c| c.0) {
                Ok(i) => at = children[i].1 as usize,
                Err(_) => break,
            }
            consider(&nodes[at].routes);
        }
    }
}

impl Router {
    /// Compiles `routes`.
    pub fn new(routes: &[RouteConfig]) -> Self {
        let mut router = Router {
            routes: routes.iter().map(|r| r.matches.clone()).collect(),
            first_takes_all: routes
                .first()
                .is_some_and(|r| r.matches == RouteMatch::default()),
            ..Router::default()
        };
        for (i, route) in routes.iter().enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            let paths = match &route.matches.host {
                None => &mut router.any_host,
                Some(HostMatch::Exact(h)) => {
                    router.exact_hosts.entry(h.as_str().into()).or_default()
                }
                Some(HostMatch::Suffix(s)) => {
                    router.suffix_hosts.entry(s.as_str().into()).or_default()
                }
            };
            paths.insert(route.matches.path.as_ref(), i);
        }
        router
    }

    /// The index of the first route (in written order) that takes `request`.
    pub fn find(&self, request: &RequestView<'_>) -> Option<usize> {
        if self.first_takes_all {
            return Some(0);
        }
        let mut best = u32::MAX;
        self.any_host.best(&self.routes, request, &mut best);
        if !self.exact_hosts.is_empty() {
            if let Some(paths) = self.exact_hosts.get(request.host) {
                paths.best(&self.routes, request, &mut best);
            }
        }
        if !self.suffix_hosts.is_empty() {
            // `*.example.com` takes `a.example.com` and `a.b.example.com`: every suffix that
            // starts at a dot after the first label.
            let host = request.host;
            for (at, _) in host.match_indices('.').filter(|&(at, _)| at > 0) {
                if let Some(paths) = self.suffix_hosts.get(&host[at..]) {
                    paths.best(&self.routes, request, &mut best);
                }
            }
        }
        (best != u32::MAX).then_some(best as usize)
    }

    /// Whether a route matches on the host: if none does, [`Router::find`] does not read
    /// [`RequestView::host`].
    pub fn matches_hosts(&self) -> bool {
        !self.exact_hosts.is_empty() || !self.suffix_hosts.is_empty()
    }

    /// How many routes it holds.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether it holds no route.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}
