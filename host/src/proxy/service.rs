//! Pools at run time and the routing table that leads to them.
//!
//! A [`PoolRuntime`] is everything a pool keeps across reloads: its backends with their health,
//! ejections and circuits ([`Pool`]), its strategy slot (active strategy and shadow,
//! [`Strategies`]), its retry budget and its health checker. A [`Table`] is what one config
//! makes of them: the compiled routes, and for each pool its runtime with the running config
//! as it applies to that pool. The table is swapped whole on reload; a request loads it once,
//! so it finishes on the pools and routes it started with.
//!
//! Connections to backends are not per pool: the proxy's one [`crate::upstream::Upstream`]
//! keeps idle connections per backend address (per worker thread), so an address in two pools
//! is one set of connections. Health, ejections and circuits are per pool: two pools may
//! probe different paths with different thresholds, and a backend that fails one pool's
//! requests (its `/api` is broken) may serve the other's (`/static`) well, as HAProxy and
//! Envoy keep them per backend section / cluster.

use std::sync::{Arc, Mutex};

use rustc_hash::FxHashMap;

use super::RetryBudget;
use crate::config::{Config, PoolConfig, RouteConfig};
use crate::health::HealthChecker;
use crate::metrics::Metrics;
use crate::pool::{BackendSet, Pool};
use crate::routes::{RequestView, Router};
use crate::strategy::Strategies;

/// A pool's live state, kept across reloads while the pool keeps its name.
#[derive(Debug)]
pub(crate) struct PoolRuntime {
    /// The backends and their live state.
    pub(crate) pool: Arc<Pool>,
    /// The strategy slot: the active strategy (hot-swapped alone) and any shadow.
    pub(crate) strategies: Arc<Strategies>,
    /// Tokens for this pool's retries.
    pub(crate) retry_budget: RetryBudget,
    /// Active health checks of its backends.
    health: Mutex<HealthChecker>,
}

impl PoolRuntime {
    /// A runtime for `config`'s pool with `backends` (its static and discovered ones) and the
    /// strategy slot `strategies`; health checks start at once.
    pub(crate) fn start(
        config: &PoolConfig,
        backends: &[crate::config::BackendConfig],
        strategies: Arc<Strategies>,
        metrics: &Arc<Metrics>,
    ) -> Arc<Self> {
        let pool = Pool::named(&config.name, backends);
        let mut health = HealthChecker::new(Arc::clone(&pool), Arc::clone(metrics));
        health.sync(config.health_check.as_ref());
        Arc::new(PoolRuntime {
            pool,
            strategies,
            retry_budget: RetryBudget::new(&config.retries),
            health: Mutex::new(health),
        })
    }

    /// Its name.
    pub(crate) fn name(&self) -> &str {
        self.pool.name()
    }

    /// Brings the backend set in line with `backends` (live state of those that stay is kept;
    /// the metric series of those that left are removed) and the health checks with `config`.
    pub(crate) fn update(
        &self,
        config: &PoolConfig,
        backends: &[crate::config::BackendConfig],
        metrics: &Metrics,
    ) {
        let before = self.pool.load();
        self.pool.update(backends);
        forget_departed(&before, &self.pool.load(), metrics);
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        health.sync(config.health_check.as_ref());
    }

    /// Removes the metric series of all its backends (the pool is gone).
    pub(crate) fn forget(&self, metrics: &Metrics) {
        forget_departed(&self.pool.load(), &BackendSet::default(), metrics);
    }
}

/// Removes the series of the backends of `before` that `after` no longer has.
fn forget_departed(before: &BackendSet, after: &BackendSet, metrics: &Metrics) {
    for gone in before
        .backends
        .iter()
        .filter(|b| !after.backends.iter().any(|a| a.address == b.address))
    {
        metrics.forget_backend(&gone.pool, &gone.address);
    }
}

/// A pool as requests of one config see it.
#[derive(Debug, Clone)]
pub(crate) struct Service {
    /// Its live state.
    pub(crate) runtime: Arc<PoolRuntime>,
    /// The running config with this pool's backends, strategy, health check, passive
    /// ejection, retries, circuit breaker and backend timeouts in place of the top level's.
    pub(crate) config: Arc<Config>,
    /// Its settings as configured.
    pub(crate) settings: PoolConfig,
}

impl Service {
    /// `runtime` under `config`, for the pool `settings`.
    pub(crate) fn new(runtime: Arc<PoolRuntime>, config: &Config, settings: &PoolConfig) -> Self {
        let mut own = config.clone();
        own.backends.clone_from(&settings.backends);
        own.strategy.clone_from(&settings.strategy);
        own.strategy_config.clone_from(&settings.strategy_config);
        own.health_check.clone_from(&settings.health_check);
        own.passive = settings.passive.clone();
        own.retries = settings.retries.clone();
        own.circuit_breaker = settings.circuit_breaker.clone();
        own.timeouts.connect = settings.connect_timeout;
        own.timeouts.response_header = settings.response_header_timeout;
        // Nobody reads these of a pool's view; not copying them keeps a table of 100 pools
        // from holding 100 copies of the routes.
        own.routes = Vec::new();
        own.pools = Vec::new();
        Service {
            runtime,
            config: Arc::new(own),
            settings: settings.clone(),
        }
    }

    /// Its name.
    pub(crate) fn name(&self) -> &str {
        self.runtime.name()
    }
}

/// The routes and pools of one config, compiled.
#[derive(Debug)]
pub(crate) struct Table {
    /// The pools, in config order.
    pub(crate) services: Vec<Service>,
    /// The routes, in written order.
    pub(crate) routes: Vec<RouteConfig>,
    /// For each route, the index of its pool in `services`.
    route_service: Vec<usize>,
    router: Router,
    /// The pool of requests no route takes, if any.
    default: Option<usize>,
    /// The pool the top-level `/status` fields, the config's `strategy`, `shadow` and
    /// `POST /strategy` without `"pool"` mean: `default_pool`, else the pool `default`, else
    /// the first.
    main: usize,
    by_name: FxHashMap<String, usize>,
}

impl Table {
    /// The table for `config`, over `services` (one per pool of `config`, in its order).
    pub(crate) fn new(config: &Config, services: Vec<Service>) -> Self {
        let by_name: FxHashMap<String, usize> = services
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name().to_string(), i))
            .collect();
        // Validation made sure every route names a pool; a missing one would route to the first.
        let route_service = config
            .routes
            .iter()
            .map(|r| by_name.get(&r.pool).copied().unwrap_or(0))
            .collect();
        let default = config
            .default_pool
            .as_ref()
            .and_then(|name| by_name.get(name).copied());
        let main = default
            .or_else(|| by_name.get(crate::config::DEFAULT_POOL).copied())
            .unwrap_or(0);
        Table {
            router: Router::new(&config.routes),
            routes: config.routes.clone(),
            route_service,
            services,
            default,
            main,
            by_name,
        }
    }

    /// The route (none when `default_pool` took it) and pool that take `request`, or `None`:
    /// 404.
    pub(crate) fn route(
        &self,
        request: &RequestView<'_>,
    ) -> Option<(Option<&RouteConfig>, &Service)> {
        match self.router.find(request) {
            Some(i) => Some((
                self.routes.get(i),
                self.services.get(*self.route_service.get(i)?)?,
            )),
            None => Some((None, self.default_service()?)),
        }
    }

    /// Whether a route matches on the request's host (if not, [`Table::route`] does not look
    /// at it).
    pub(crate) fn routes_by_host(&self) -> bool {
        self.router.matches_hosts()
    }

    /// The pool of requests no route takes, if any.
    fn default_service(&self) -> Option<&Service> {
        self.services.get(self.default?)
    }

    /// The pool named `name`.
    pub(crate) fn service(&self, name: &str) -> Option<&Service> {
        self.services.get(*self.by_name.get(name)?)
    }

    /// The main pool (see [`Table::main`]'s field).
    pub(crate) fn main(&self) -> &Service {
        // A table always has a pool: a config has at least one.
        &self.services[self.main.min(self.services.len().saturating_sub(1))]
    }
}
