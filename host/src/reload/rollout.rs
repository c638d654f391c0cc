//! Rollouts through the reloader: a canary started, stepped or ended by `POST /strategy` or by
//! the config's `canary`, and a canary or a shadow promoted to active — under the applying lock
//! and with the config's `strategy` pointing at it, as a switch does, so that the watcher follows
//! the promoted file and nothing stale undoes it.

use std::path::PathBuf;
use std::sync::Arc;

use super::{ReloadError, Reloader};
use crate::config::{CanaryPlan, CanaryShare, Config};
use crate::strategy::{Canary, CanaryError, CanaryState, Loaded};

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
    /// Loads the strategy at `path` (with `params`, or the running `strategy_config`) and puts
    /// it in canary with `plan`; a canary already there is replaced.
    pub(crate) async fn canary_strategy(
        &self,
        path: PathBuf,
        params: Option<Vec<(String, String)>>,
        plan: CanaryPlan,
    ) -> Result<(), ReloadError> {
        let params = params.unwrap_or_else(|| self.proxy.config.load().strategy_config.clone());
        let loaded = self.load(path, params).await?;
        self.start_canary(Canary::new(Arc::new(loaded), plan));
        Ok(())
    }

    fn start_canary(&self, canary: Canary) {
        let (name, sha256) = (canary.name().to_string(), canary.loaded().sha256.clone());
        let share = canary.status().share;
        let replaced = self.proxy.strategies.set_canary(Some(canary));
        tracing::info!(strategy = %name, sha256 = %&sha256[..12], share, replaced = ?replaced, "strategy in canary");
    }

    /// The name of the canary that runs, if one does.
    pub(crate) fn running_canary(&self) -> Option<String> {
        self.proxy
            .strategies
            .canary()
            .filter(|c| c.is_running())
            .map(|c| c.name().to_string())
    }

    /// Gives the running canary a new share or schedule, from now; returns the share now.
    pub(crate) fn step_canary(&self, share: CanaryShare) -> Result<f64, ReloadError> {
        let canary = self.proxy.strategies.canary().ok_or(CanaryError::None)?;
        let now = canary.step(share)?;
        tracing::info!(strategy = %canary.name(), share = now, "canary stepped by hand");
        Ok(now)
    }

    /// Makes the running canary (or, with none, the shadow) the active strategy; `which` picks
    /// one. Returns its name.
    pub(crate) fn promote(&self, which: Option<Rollout>) -> Result<String, ReloadError> {
        let (name, result) = match self.try_promote(which) {
            Ok(name) => (name, Ok(())),
            Err(e) => (String::new(), Err(e)),
        };
        self.record(false, "admin", &result);
        result.map(|()| name)
    }

    fn try_promote(&self, which: Option<Rollout>) -> Result<String, ReloadError> {
        let strategies = &self.proxy.strategies;
        let _applying = self.lock_applying();
        let which = match which {
            Some(which) => which,
            None if self.running_canary().is_some() => Rollout::Canary,
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
        tracing::info!(strategy = %loaded.name, sha256 = %&loaded.sha256[..12], from = ?which, "strategy promoted to active");
        self.proxy
            .metrics
            .set_active_strategy(&loaded.name, &loaded.sha256);
        strategies.swap_shared(Arc::clone(&loaded));
        let mut next = (*self.proxy.config.load_full()).clone();
        next.strategy.clone_from(&loaded.path);
        next.strategy_config = loaded.params().to_vec();
        self.proxy.config.store(Arc::new(next));
        Ok(loaded.name.clone())
    }

    /// Ends the running canary (as aborted) and the shadow, or only `which`; returns whether
    /// each was there to end.
    pub(crate) fn abort(&self, which: Option<Rollout>) -> (bool, bool) {
        let canary = which != Some(Rollout::Shadow)
            && match self
                .proxy
                .strategies
                .end_canary(CanaryState::Aborted, "aborted by hand")
            {
                Ok(canary) => {
                    tracing::info!(strategy = %canary.name(), "canary aborted");
                    true
                }
                Err(_) => false,
            };
        let shadow = which != Some(Rollout::Canary) && self.end_shadow();
        (canary, shadow)
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

    /// Applies what [`Reloader::config_canary`] prepared.
    pub(super) fn apply_config_canary(&self, canary: Option<Canary>) {
        match canary {
            Some(canary) => self.start_canary(canary),
            None => {
                if let Some(name) = self.proxy.strategies.set_canary(None) {
                    tracing::info!(strategy = %name, "config's canary removed");
                }
            }
        }
    }
}
