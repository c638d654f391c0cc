//! Hot reload: a new config or strategy is checked off the request path and swapped in whole;
//! anything that fails a check is refused and the running state stays.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;

mod pools;

pub(crate) use pools::backends_of;

use crate::config::{self, Config};
use crate::discovery::{Discovery, DiscoveryError};
use crate::proxy::Proxy;
use crate::strategy::Loaded;
use crate::text::bounded;

mod rollout;
pub(crate) use rollout::Rollout;

/// Settings read only at start; a reload that changes them logs that a restart is needed.
const RESTART_ONLY: &str =
    "listen, admin, workers, sandbox, limits, timeouts.header_read, timeouts.client_idle, tls (but its certificates)";

/// The longest strategy name `POST /strategy` takes (a file name's limit on Linux, `.wasm`
/// included or not).
const MAX_NAME_BYTES: usize = 255;

/// What the CLI overrode; reapplied to every reloaded config.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub strategy: Option<PathBuf>,
    pub listen: Option<std::net::SocketAddr>,
    pub admin: Option<std::net::SocketAddr>,
    pub workers: Option<usize>,
}

impl Overrides {
    /// Applies the overrides to `config`.
    pub fn apply(&self, config: &mut Config) {
        if let Some(strategy) = &self.strategy {
            config.strategy.clone_from(strategy);
            for pool in config.pools.iter_mut().filter(|p| p.strategy_inherited) {
                pool.strategy.clone_from(strategy);
            }
        }
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(admin) = self.admin {
            config.admin = admin;
        }
        if let Some(workers) = self.workers.filter(|&n| n > 0) {
            config.workers = workers;
        }
    }
}

/// Work for the loader thread.
type Job = Box<dyn FnOnce() + Send>;

/// Starts the thread reload work runs on; it ends when the sender is dropped.
fn start_loader() -> std::sync::mpsc::Sender<Job> {
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    let spawned = std::thread::Builder::new()
        .name("lbhost-reload".into())
        .spawn(move || {
            while let Ok(job) = rx.recv() {
                job();
            }
        });
    if let Err(e) = spawned {
        tracing::error!(cause = %e, "cannot start the reload thread; reloads will be refused");
    }
    tx
}

/// Why a reload was refused. `Display` is the reason shown to the operator.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReloadError {
    #[error("config {0}")]
    Config(#[from] config::ConfigError),
    #[error("strategy {path}: {source}")]
    Strategy {
        path: PathBuf,
        source: crate::strategy::LoadError,
    },
    #[error("dns: {0}")]
    Dns(#[from] DiscoveryError),
    #[error("{0}")]
    BadRequest(String),
    /// The request does not fit the state (no canary to step or promote).
    #[error("{0}")]
    Conflict(String),
}

/// The outcome of the last reload attempt of one kind, for the admin status.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Attempt {
    /// Seconds since the Unix epoch.
    pub at_unix: u64,
    /// What triggered it (`file`, `sighup`, `admin`).
    pub trigger: String,
    /// `None` when it was applied.
    pub error: Option<String>,
}

/// Applies config and strategy changes; one at a time.
pub(crate) struct Reloader {
    proxy: Arc<Proxy>,
    /// Jobs for the loader thread (config parsing, strategy compiling).
    jobs: Mutex<std::sync::mpsc::Sender<Job>>,
    config_path: PathBuf,
    overrides: Overrides,
    /// The DNS backend entries and their last answers.
    discovery: Arc<Discovery>,
    /// Held while a backend list is composed and applied (a config reload, a DNS change), so
    /// the pool never gets one composed from an older config.
    applying: Mutex<()>,
    state: Mutex<ReloadState>,
}

#[derive(Debug, Default)]
struct ReloadState {
    /// Bumped on every applied config reload.
    config_version: u64,
    last_config: Option<Attempt>,
    last_strategy: Option<Attempt>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("config_path", &self.config_path)
            .finish_non_exhaustive()
    }
}

impl Reloader {
    /// A reloader for `proxy`, whose config came from `config_path` with `overrides`, and
    /// whose DNS entries `discovery` runs (already synced with the running config).
    pub(crate) fn new(
        proxy: Arc<Proxy>,
        config_path: PathBuf,
        overrides: Overrides,
        discovery: Arc<Discovery>,
    ) -> Self {
        Reloader {
            proxy,
            jobs: Mutex::new(start_loader()),
            config_path,
            overrides,
            discovery,
            applying: Mutex::new(()),
            state: Mutex::new(ReloadState {
                config_version: 1,
                ..ReloadState::default()
            }),
        }
    }

    /// The config file being watched.
    pub(crate) fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Re-reads the config file and applies it: backends (keeping the live state of those that
    /// stay), health checks, timeouts, trusted proxies and the strategy with its parameters.
    pub(crate) async fn reload_config(&self, trigger: &str) -> Result<(), ReloadError> {
        let result = self.try_reload_config().await;
        self.record(true, trigger, &result);
        result
    }

    async fn try_reload_config(&self) -> Result<(), ReloadError> {
        let path = self.config_path.clone();
        let mut next = self.off_path(move || config::load(&path)).await??;
        self.overrides.apply(&mut next);
        let current = self.proxy.config.load_full();
        if restart_only_changed(&current, &next) {
            tracing::warn!(
                fields = RESTART_ONLY,
                "config changes some settings that apply only after a restart"
            );
        }
        // Each pool whose strategy is new or changed gets it loaded now, off the request path.
        let loaded = self.load_pool_strategies(&next).await?;
        // The config's shadow (of the main pool), when it changed: a running shadow set
        // through the admin API stays while the config's says the same as before.
        let shadow = match (&next.shadow, next.shadow != current.shadow) {
            (Some(wanted), true) => {
                let loaded = self
                    .load(wanted.strategy.clone(), wanted.strategy_config.clone())
                    .await?;
                let shadow = crate::strategy::Shadow::new(loaded, wanted.sample)
                    .map_err(|e| ReloadError::BadRequest(format!("shadow.{e}")))?;
                Some(Some(shadow))
            }
            (None, true) => Some(None),
            (_, false) => None,
        };
        let canary = self.config_canary(&current, &next).await?;
        // DNS entries that are new or changed get their first answer now (bounded wait).
        self.discovery.sync(&next).await?;
        // Everything is checked: apply.
        {
            let _applying = self.lock_applying();
            self.apply_pools(&next, loaded);
            if let Some(shadow) = shadow {
                let name = shadow.as_ref().map(|s| s.name().to_string());
                let replaced = self.main_strategies().set_shadow(shadow);
                tracing::info!(shadow = ?name, replaced = ?replaced, "config's shadow applied");
            }
            if let Some(canary) = canary {
                self.apply_config_canary(canary);
            }
            self.proxy.set_certificates(&next);
            self.proxy.config.store(Arc::new(next));
        }
        let version = {
            let mut state = self.lock_state();
            state.config_version += 1;
            state.config_version
        };
        tracing::info!(version, "config reloaded");
        Ok(())
    }

    /// Applies the DNS entries' current answers to the pool, as a config reload applies a
    /// backend list: addresses that stay keep their live state, removed ones drain, new ones
    /// join and are health checked.
    pub(crate) fn apply_discovered(&self) {
        let _applying = self.lock_applying();
        let answers = self.discovery.answers();
        for service in &self.proxy.table.load().services {
            let backends = backends_of(&service.settings, &answers);
            service
                .runtime
                .update(&service.settings, &backends, &self.proxy.metrics);
        }
    }

    /// Follows the DNS entries: applies each change of their answers until the task is dropped.
    pub(crate) async fn follow_discovery(self: Arc<Self>) {
        loop {
            self.discovery.changed().await;
            self.apply_discovered();
        }
    }

    /// The DNS entries and their last answers.
    pub(crate) fn discovery(&self) -> &Discovery {
        &self.discovery
    }

    fn lock_applying(&self) -> std::sync::MutexGuard<'_, ()> {
        self.applying.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads the strategy at `path` (with the pool's current `strategy_config`, or `params`)
    /// and makes it active in `pool` (the main pool when `None`); the other pools keep theirs.
    /// The pool's `strategy` path now points at it for later reloads of the file.
    pub(crate) async fn switch_strategy(
        &self,
        pool: Option<&str>,
        path: PathBuf,
        params: Option<Vec<(String, String)>>,
        trigger: &str,
    ) -> Result<(), ReloadError> {
        let result = self.try_switch_strategy(pool, path, params).await;
        self.record(false, trigger, &result);
        result
    }

    /// The certificate and key files of the running config's TLS listener.
    pub(crate) fn certificate_files(&self) -> Vec<PathBuf> {
        let config = self.proxy.config.load();
        let mut files: Vec<PathBuf> = config.tls.as_ref().map_or_else(Vec::new, |tls| {
            tls.files
                .iter()
                .flat_map(|(cert, key)| [cert.clone(), key.clone()])
                .collect()
        });
        // The CA and client certificate files of every pool's `https://` backends.
        let backends = (config.pools.iter())
            .flat_map(|pool| &pool.backends)
            .filter_map(|b| b.tls.as_ref());
        files.extend(backends.flat_map(|tls| tls.files.iter().cloned()));
        files.sort();
        files.dedup();
        files
    }

    /// Loads the strategy at `path` (with `params`, or the running `strategy_config`) and puts
    /// it in shadow, asked on `sample` of first attempts; a shadow already there is replaced.
    /// The active strategy is untouched.
    pub(crate) async fn shadow_strategy(
        &self,
        pool: Option<&str>,
        path: PathBuf,
        params: Option<Vec<(String, String)>>,
        sample: f64,
    ) -> Result<(), ReloadError> {
        if !(sample > 0.0 && sample <= 1.0) {
            return Err(ReloadError::BadRequest(format!(
                "sample: must be above 0 and at most 1 (got {sample})"
            )));
        }
        let service = self.service(pool)?;
        let params = params.unwrap_or_else(|| service.settings.strategy_config.clone());
        let loaded = self.load(path, params).await?;
        let (name, sha256) = (loaded.name.clone(), loaded.sha256.clone());
        let shadow = crate::strategy::Shadow::new(loaded, sample)
            .map_err(|e| ReloadError::BadRequest(e.to_string()))?;
        let replaced = service.runtime.strategies.set_shadow(Some(shadow));
        tracing::info!(strategy = %name, sha256 = %&sha256[..12], sample, replaced = ?replaced, "strategy in shadow");
        Ok(())
    }

    /// Ends the shadow of `pool` (the main pool when `None`); whether there was one.
    pub(crate) fn end_shadow(&self, pool: Option<&str>) -> Result<bool, ReloadError> {
        let ended = self.service(pool)?.runtime.strategies.set_shadow(None);
        if let Some(name) = &ended {
            tracing::info!(strategy = %name, "shadow ended");
        }
        Ok(ended.is_some())
    }

    /// The file name `name` in `strategies_dir` (`ip_hash` or `ip_hash.wasm`), refusing paths
    /// and names longer than a file name can be.
    pub(crate) fn strategy_by_name(&self, name: &str) -> Result<PathBuf, ReloadError> {
        let name = name.trim();
        let valid = !name.is_empty()
            && name.len() <= MAX_NAME_BYTES
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            && !name.starts_with('.');
        if !valid {
            return Err(ReloadError::BadRequest(format!(
                "not a strategy name (at most {MAX_NAME_BYTES} letters, digits, _ - . only): {}",
                bounded(&format!("{name:?}"))
            )));
        }
        let file = if name.ends_with(".wasm") {
            name.to_string()
        } else {
            format!("{name}.wasm")
        };
        Ok(self.proxy.config.load().strategies_dir.join(file))
    }

    /// Every pool's strategy file (what the watcher follows).
    pub(crate) fn strategy_paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = self
            .proxy
            .table
            .load()
            .services
            .iter()
            .map(|s| s.settings.strategy.clone())
            .collect();
        paths.sort();
        paths.dedup();
        paths
    }

    /// The folder of strategies that can be switched to by name.
    pub(crate) fn strategy_dir(&self) -> PathBuf {
        let dir = self.proxy.config.load().strategies_dir.clone();
        dir.canonicalize().unwrap_or(dir)
    }

    /// The version and the last attempts, for the admin status.
    pub(crate) fn status(&self) -> serde_json::Value {
        let state = self.lock_state();
        serde_json::json!({
            "config_path": self.config_path,
            "config_version": state.config_version,
            "last_config_reload": state.last_config,
            "last_strategy_reload": state.last_strategy,
        })
    }

    async fn load(
        &self,
        path: PathBuf,
        params: Vec<(String, String)>,
    ) -> Result<Loaded, ReloadError> {
        let runtime = Arc::clone(self.main_strategies().runtime());
        let shown = path.clone();
        // Compiling takes milliseconds of CPU: keep it off the worker threads.
        self.off_path(move || runtime.load(&path, &params))
            .await?
            .map_err(|source| ReloadError::Strategy {
                path: shown,
                source,
            })
    }

    /// Runs `job` on the reloader's own thread (one at a time) and waits for it. One long-lived
    /// thread rather than tokio's blocking pool: a pool thread per reload under load would each
    /// get a malloc arena of its own, and memory would creep up over many swaps.
    async fn off_path<R: Send + 'static>(
        &self,
        job: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, ReloadError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let work: Job = Box::new(move || {
            let _ = tx.send(job());
        });
        let sent = self
            .jobs
            .lock()
            .map_err(|_| ReloadError::BadRequest("reload thread unavailable".into()))?
            .send(work);
        if sent.is_err() {
            return Err(ReloadError::BadRequest("reload thread stopped".into()));
        }
        rx.await
            .map_err(|_| ReloadError::BadRequest("reload job failed".into()))
    }

    /// Records an attempt: status and metrics first, then the log line, so whoever reads the
    /// log line finds the status already saying the same.
    fn record(&self, config: bool, trigger: &str, result: &Result<(), ReloadError>) {
        let kind = if config { "config" } else { "strategy" };
        let outcome = if result.is_ok() { "applied" } else { "refused" };
        let attempt = Attempt {
            at_unix: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            trigger: trigger.to_string(),
            error: result.as_ref().err().map(ToString::to_string),
        };
        {
            let mut state = self.lock_state();
            if config {
                state.last_config = Some(attempt);
            } else {
                state.last_strategy = Some(attempt);
            }
        }
        self.proxy.metrics.reload(kind, outcome);
        if let Err(e) = result {
            tracing::error!(kind, trigger, reason = %e, "reload refused; keeping the running {kind}");
        }
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, ReloadState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether the file at `path` no longer has content hash `sha256` (unreadable counts as changed,
/// so the load reports why).
fn file_hash_differs(path: &Path, sha256: &str) -> bool {
    std::fs::read(path).map_or(true, |bytes| crate::strategy::sha256_hex(&bytes) != sha256)
}

fn restart_only_changed(a: &Config, b: &Config) -> bool {
    a.listen != b.listen
        || a.admin != b.admin
        || a.tls
            .as_ref()
            .map(|t| (t.listen, t.handshake_timeout, t.max_handshakes))
            != b.tls
                .as_ref()
                .map(|t| (t.listen, t.handshake_timeout, t.max_handshakes))
        || a.workers != b.workers
        || a.sandbox != b.sandbox
        || a.limits != b.limits
        || a.timeouts.header_read != b.timeouts.header_read
        || a.timeouts.client_idle != b.timeouts.client_idle
}
