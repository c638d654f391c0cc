//! Rollouts through the reloader: a canary started, stepped or ended by `POST /strategy` or by
//! the config's `canary`, and a canary or a shadow promoted to active — under the applying lock
//! and with the config's `strategy` pointing at it, as a switch does, so that the watcher follows
//! the promoted file and nothing stale undoes it.

use std::path::PathBuf;
use std::sync::Arc;

use super::{ReloadError, Reloader};
use crate::config::{CanaryPlan, CanaryShare, Config};
use crate::strategy::{Canary, CanaryError, CanaryState, Loaded, Strategies};

/// Which rollout a promote or an abort is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rollout {
    Canary,
    Shadow,
}

impl From<CanaryError> for ReloadError {
    fn from(e: CanaryError) -> Self {
        ReloadError::Conflict(e.to_string())
    }
}

impl Reloader {
    /// Loads the strategy at `path` (with `params`, or the pool's running `strategy_config`) and
    /// puts it in canary in `pool` (the main pool when `None`) with `plan`; a canary already
    /// there is replaced.
    pub(crate) async fn canary_strategy(
        &self,
        pool: Option<&str>,
        path: PathBuf,
        params: Option<Vec<(String, String)>>,
        plan: CanaryPlan,
    ) -> Result<(), ReloadError> {
        let service = self.service(pool)?;
        let params = params.unwrap_or_else(|| service.settings.strategy_config.clone());
        let loaded = self.load(path, params).await?;
        Self::start_canary(
            &service.runtime.strategies,
            Canary::new(Arc::new(loaded), plan),
        );
        Ok(())
    }

    fn start_canary(strategies: &Strategies, canary: Canary) {
        let (name, sha256) = (canary.name().to_string(), canary.loaded().sha256.clone());
        let share = canary.status().share;
        let replaced = strategies.set_canary(Some(canary));
        tracing::info!(strategy = %name, sha256 = %&sha256[..12], share, replaced = ?replaced, "strategy in canary");
    }

    /// The name of the canary that runs in `pool` (the main pool when `None`), if one does.
    pub(crate) fn running_canary(&self, pool: Option<&str>) -> Result<Option<String>, ReloadError> {
        Ok(self
            .service(pool)?
            .runtime
            .strategies
            .canary()
            .filter(|c| c.is_running())
            .map(|c| c.name().to_string()))
    }

    /// Gives the running canary of `pool` a new share or schedule, from now; returns the share
    /// now.
    pub(crate) fn step_canary(
        &self,
        pool: Option<&str>,
        share: CanaryShare,
    ) -> Result<f64, ReloadError> {
        let service = self.service(pool)?;
        let canary = service
            .runtime
            .strategies
            .canary()
            .ok_or(CanaryError::None)?;
        let now = canary.step(share)?;
        tracing::info!(strategy = %canary.name(), share = now, "canary stepped by hand");
        Ok(now)
    }

    /// Makes the running canary (or, with none, the shadow) of `pool` its active strategy;
    /// `which` picks one. Returns its name.
    pub(crate) fn promote(
        &self,
        pool: Option<&str>,
        which: Option<Rollout>,
    ) -> Result<String, ReloadError> {
        let (name, result) = match self.try_promote(pool, which) {
            Ok(name) => (name, Ok(())),
            Err(e) => (String::new(), Err(e)),
        };
        self.record(false, "admin", &result);
        result.map(|()| name)
    }

    fn try_promote(
        &self,
        pool: Option<&str>,
        which: Option<Rollout>,
    ) -> Result<String, ReloadError> {
        let _applying = self.lock_applying();
        let service = self.service(pool)?;
        let strategies = &service.runtime.strategies;
        let which = match which {
            Some(which) => which,
            None if strategies.canary().is_some_and(|c| c.is_running()) => Rollout::Canary,
            None if strategies.shadow_status().is_some() => Rollout::Shadow,
            None => {
                return Err(ReloadError::Conflict(
                    "no canary or shadow to promote".into(),
                ))
            }
        };
        let loaded: Arc<Loaded> = match which {
            Rollout::Canary => {
                let canary = strategies.end_canary(CanaryState::Promoted, "promoted")?;
                Arc::clone(canary.loaded())
            }
            Rollout::Shadow => strategies
                .take_shadow()
                .ok_or_else(|| ReloadError::Conflict("no shadow to promote".into()))?,
        };
        tracing::info!(pool = %service.name(), strategy = %loaded.name, sha256 = %&loaded.sha256[..12], from = ?which, "strategy promoted to active");
        let next = (*self.proxy.config.load_full()).clone();
        if next.main_pool().name == service.name() {
            self.proxy
                .metrics
                .set_active_strategy(&loaded.name, &loaded.sha256);
        }
        strategies.swap_shared(Arc::clone(&loaded));
        self.store_strategy_settings(
            next,
            service.name(),
            loaded.path.clone(),
            loaded.params().to_vec(),
        );
        Ok(loaded.name.clone())
    }

    /// Ends the running canary (as aborted) and the shadow of `pool`, or only `which`; returns
    /// whether each was there to end.
    pub(crate) fn abort(
        &self,
        pool: Option<&str>,
        which: Option<Rollout>,
    ) -> Result<(bool, bool), ReloadError> {
        let service = self.service(pool)?;
        let canary = which != Some(Rollout::Shadow)
            && match service
                .runtime
                .strategies
                .end_canary(CanaryState::Aborted, "aborted by hand")
            {
                Ok(canary) => {
                    tracing::info!(strategy = %canary.name(), "canary aborted");
                    true
                }
                Err(_) => false,
            };
        let shadow = which != Some(Rollout::Canary) && self.end_shadow(pool)?;
        Ok((canary, shadow))
    }

    /// The config's canary when it changed from `current`'s to `next`'s: `Some(None)` removes
    /// it. A canary started through the admin API stays while the config's says the same.
    pub(super) async fn config_canary(
        &self,
        current: &Config,
        next: &Config,
    ) -> Result<Option<Option<Canary>>, ReloadError> {
        if next.canary == current.canary {
            return Ok(None);
        }
        let Some(wanted) = &next.canary else {
            return Ok(Some(None));
        };
        let loaded = self
            .load(wanted.strategy.clone(), wanted.strategy_config.clone())
            .await?;
        Ok(Some(Some(Canary::new(
            Arc::new(loaded),
            wanted.plan.clone(),
        ))))
    }

    /// Applies what [`Reloader::config_canary`] prepared, to the main pool.
    pub(super) fn apply_config_canary(&self, canary: Option<Canary>) {
        let strategies = self.main_strategies();
        match canary {
            Some(canary) => Self::start_canary(&strategies, canary),
            None => {
                if let Some(name) = strategies.set_canary(None) {
                    tracing::info!(strategy = %name, "config's canary removed");
                }
            }
        }
    }
}
