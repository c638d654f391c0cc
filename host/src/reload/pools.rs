//! Reloading pools and routes: pools that keep their name keep their live state (backends'
//! health, ejections, circuits, the strategy instance unless its file or parameters changed,
//! the retry budget, health checks); new pools start; removed pools stop and their metric
//! series go. The routing table is rebuilt and swapped whole, so a request in flight finishes
//! on the pool it started with.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::{file_hash_differs, ReloadError, Reloader};
use crate::config::{BackendConfig, Config, PoolConfig};
use crate::proxy::service::{PoolRuntime, Service, Table};
use crate::strategy::{Loaded, Strategies};

/// The backends of `pool`: its static ones and the answers of its DNS entries (`answers` in
/// the order of the config's `dns_backends`).
pub(crate) fn backends_of(pool: &PoolConfig, answers: &[Vec<BackendConfig>]) -> Vec<BackendConfig> {
    crate::discovery::compose(
        &pool.backends,
        pool.dns.iter().filter_map(|&i| answers.get(i).cloned()),
    )
}

impl Reloader {
    /// The main pool's strategy slot (`shadow` of the config, the `lbhost_strategy_info`
    /// metric and the top level of `/status` are its).
    pub(crate) fn main_strategies(&self) -> Arc<Strategies> {
        Arc::clone(&self.proxy.table.load().main().runtime.strategies)
    }

    /// The running pool named `name`, or the main pool.
    pub(crate) fn service(&self, name: Option<&str>) -> Result<Service, ReloadError> {
        let table = self.proxy.table.load();
        match name {
            None => Ok(table.main().clone()),
            Some(name) => table.service(name).cloned().ok_or_else(|| {
                ReloadError::BadRequest(crate::text::bounded_owned(format!(
                    "pool: {name:?} is not a pool"
                )))
            }),
        }
    }

    /// Each pool's name and strategy file.
    pub(crate) fn strategy_files(&self) -> Vec<(String, PathBuf)> {
        self.proxy
            .table
            .load()
            .services
            .iter()
            .map(|s| (s.name().to_string(), s.settings.strategy.clone()))
            .collect()
    }

    /// Whether the file of `pool`'s strategy no longer holds what runs.
    pub(crate) fn strategy_file_changed(&self, pool: &str) -> bool {
        self.proxy.table.load().service(pool).is_some_and(|s| {
            file_hash_differs(&s.settings.strategy, &s.runtime.strategies.active().sha256)
        })
    }

    /// Loads the strategy of every pool of `next` that is new, or whose strategy file, content
    /// or parameters differ from what runs; by pool name.
    pub(super) async fn load_pool_strategies(
        &self,
        next: &Config,
    ) -> Result<HashMap<String, Loaded>, ReloadError> {
        let table = self.proxy.table.load_full();
        let mut loaded = HashMap::new();
        for pool in &next.pools {
            let changed = match table.service(&pool.name) {
                None => true,
                Some(running) => {
                    running.settings.strategy != pool.strategy
                        || running.settings.strategy_config != pool.strategy_config
                        || file_hash_differs(
                            &pool.strategy,
                            &running.runtime.strategies.active().sha256,
                        )
                }
            };
            if changed {
                let strategy = self
                    .load(pool.strategy.clone(), pool.strategy_config.clone())
                    .await?;
                loaded.insert(pool.name.clone(), strategy);
            }
        }
        Ok(loaded)
    }

    /// Makes `next`'s pools and routes the running ones (see the module docs); `loaded` has
    /// the strategies [`Reloader::load_pool_strategies`] loaded. Called under the applying
    /// lock.
    pub(super) fn apply_pools(&self, next: &Config, mut loaded: HashMap<String, Loaded>) {
        let metrics = &self.proxy.metrics;
        let current = self.proxy.table.load_full();
        let answers = self.discovery.answers();
        let main = next.main_pool().name.clone();
        let mut services = Vec::with_capacity(next.pools.len());
        for pool in &next.pools {
            let backends = backends_of(pool, &answers);
            let strategy = loaded.remove(&pool.name);
            let runtime = match (current.service(&pool.name), strategy) {
                (Some(running), strategy) => {
                    let runtime = Arc::clone(&running.runtime);
                    runtime.update(pool, &backends, metrics);
                    if let Some(strategy) = strategy {
                        self.activate(&runtime, strategy, pool.name == main);
                    }
                    runtime
                }
                (None, Some(strategy)) => {
                    tracing::info!(pool = %pool.name, strategy = %strategy.name, "pool added");
                    let runtime = Arc::clone(current.main().runtime.strategies.runtime());
                    let slot = Strategies::new(runtime, strategy).with_metrics(Arc::clone(metrics));
                    PoolRuntime::start(pool, &backends, Arc::new(slot), metrics)
                }
                // Not reached: a new pool always has its strategy loaded.
                (None, None) => continue,
            };
            services.push(Service::new(runtime, next, pool));
        }
        for gone in &current.services {
            if !next.pools.iter().any(|p| p.name == gone.name()) {
                tracing::info!(pool = %gone.name(), "pool removed");
                gone.runtime.forget(metrics);
            }
        }
        let table = Table::new(next, services);
        if current.main().name() != table.main().name() {
            let active = table.main().runtime.strategies.active();
            metrics.set_active_strategy(&active.name, &active.sha256);
        }
        self.proxy.table.store(Arc::new(table));
    }

    /// Makes `loaded` the active strategy of `runtime`'s pool (`main`: the main pool's, whose
    /// `lbhost_strategy_info` says which runs).
    pub(super) fn activate(&self, runtime: &PoolRuntime, loaded: Loaded, main: bool) {
        tracing::info!(pool = %runtime.name(), strategy = %loaded.name, sha256 = %&loaded.sha256[..12], "strategy swapped in");
        if main {
            self.proxy
                .metrics
                .set_active_strategy(&loaded.name, &loaded.sha256);
        }
        runtime.strategies.swap(loaded);
    }

    pub(super) async fn try_switch_strategy(
        &self,
        pool: Option<&str>,
        path: PathBuf,
        params: Option<Vec<(String, String)>>,
    ) -> Result<(), ReloadError> {
        let service = self.service(pool)?;
        let params = params.unwrap_or_else(|| service.settings.strategy_config.clone());
        if path == service.settings.strategy
            && params == service.settings.strategy_config
            && !file_hash_differs(&path, &service.runtime.strategies.active().sha256)
        {
            return Ok(());
        }
        let loaded = self.load(path.clone(), params.clone()).await?;
        // Under the applying lock, on the config as it is now: a config reload or a DNS change
        // that landed while the strategy compiled is kept, not undone by a stale copy.
        let _applying = self.lock_applying();
        let current = self.proxy.table.load_full();
        let Some(running) = current.service(service.name()) else {
            return Err(ReloadError::BadRequest(
                "the pool was removed by a reload meanwhile".into(),
            ));
        };
        let next = (*self.proxy.config.load_full()).clone();
        let main = next.main_pool().name == running.name();
        self.activate(&running.runtime, loaded, main);
        self.store_strategy_settings(next, running.name(), path, params);
        Ok(())
    }

    /// Stores `next` (the running config) with `pool`'s strategy settings saying what now runs
    /// in it, and the table with the same runtimes over those settings. Under the applying lock.
    pub(super) fn store_strategy_settings(
        &self,
        mut next: Config,
        pool: &str,
        path: PathBuf,
        params: Vec<(String, String)>,
    ) {
        let current = self.proxy.table.load_full();
        let main = next.main_pool().name == pool;
        for settings in next.pools.iter_mut().filter(|p| p.name == pool) {
            settings.strategy.clone_from(&path);
            settings.strategy_config.clone_from(&params);
        }
        if main && !next.has_pools() {
            next.strategy = path;
            next.strategy_config = params;
        }
        let services = next
            .pools
            .iter()
            .filter_map(|p| {
                let runtime = Arc::clone(&current.service(&p.name)?.runtime);
                Some(Service::new(runtime, &next, p))
            })
            .collect();
        self.proxy
            .table
            .store(Arc::new(Table::new(&next, services)));
        self.proxy.config.store(Arc::new(next));
    }
}
