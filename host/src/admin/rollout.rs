//! `POST /strategy` for rollouts: `"mode": "canary"` starts a canary or steps the running one,
//! `{"promote": true}` makes the canary or the shadow active.
//!
//! A canary request names its strategy, its `share` (or `steps` and `step_every`), and
//! optionally its `config`, `key` and `rollback`. One without a name, or naming the running
//! canary with nothing but a share or a schedule, steps that canary from now, its figures kept.

use http::{Response, StatusCode};
use serde_json::json;

use super::{json_error, outcome, text, SwitchRequest};
use crate::config::CanaryPlan;
use crate::proxy::ProxyBody;
use crate::reload::{Reloader, Rollout};
use crate::text::bounded;

/// A `"mode": "canary"` request, checked.
pub(super) struct CanaryChange {
    name: Option<String>,
    params: Option<Vec<(String, String)>>,
    plan: CanaryPlan,
    /// Nothing but a share or a schedule: it may step the running canary.
    share_only: bool,
    /// The pool (default: the main pool).
    pool: Option<String>,
}

/// `mode` of a promote or an abort: `canary`, `shadow`, or none (both, or whichever runs).
pub(super) fn which(mode: Option<&str>) -> Result<Option<Rollout>, String> {
    match mode {
        None => Ok(None),
        Some("canary") => Ok(Some(Rollout::Canary)),
        Some("shadow") => Ok(Some(Rollout::Shadow)),
        Some(other) => Err(bounded(&format!(
            "mode: {other:?} is not one of canary, shadow (with promote or abort)"
        ))
        .into_owned()),
    }
}

impl CanaryChange {
    pub(super) fn new(request: SwitchRequest) -> Result<Self, String> {
        if request.sample.is_some() {
            return Err("sample: only with \"mode\": \"shadow\"".into());
        }
        let share_only =
            request.config.is_none() && request.key.is_none() && request.rollback.is_none();
        if request.name.is_none() {
            if !share_only {
                return Err("name: required to start a canary".into());
            }
            if request.share.is_none() && request.steps.is_none() {
                return Err("share or steps: required to step the canary".into());
            }
        }
        let plan = crate::config::canary_plan(
            "",
            request.share,
            request.steps,
            request.step_every.as_deref(),
            request.key.as_deref(),
            request.rollback,
        )
        .map_err(|e| e.to_string())?;
        Ok(CanaryChange {
            name: request.name,
            params: request.config.map(crate::config::params),
            plan,
            share_only,
            pool: request.pool,
        })
    }

    pub(super) async fn apply(self, reloader: &Reloader) -> Response<ProxyBody> {
        let pool = self.pool.as_deref();
        let running = match reloader.running_canary(pool) {
            Ok(running) => running,
            Err(e) => return outcome(Err(e)),
        };
        let step = match &self.name {
            None => true,
            Some(name) => {
                self.share_only
                    && running.as_deref().is_some_and(|r| {
                        r == name.trim() || Some(r) == name.trim().strip_suffix(".wasm")
                    })
            }
        };
        if step {
            return match reloader.step_canary(pool, self.plan.share) {
                Ok(share) => text(
                    StatusCode::OK,
                    "application/json",
                    json!({"result": "applied", "share": share}).to_string() + "\n",
                ),
                Err(e) => outcome(Err(e)),
            };
        }
        let Some(name) = self.name else {
            return json_error(StatusCode::BAD_REQUEST, "name: required to start a canary");
        };
        let path = match reloader.strategy_by_name(&name) {
            Ok(path) => path,
            Err(e) => return json_error(StatusCode::BAD_REQUEST, &e.to_string()),
        };
        outcome(
            reloader
                .canary_strategy(pool, path, self.params, self.plan)
                .await,
        )
    }
}

/// `{"promote": true}`: 200 with the promoted strategy's name, or 409 when there is nothing to
/// promote.
pub(super) fn promote(
    reloader: &Reloader,
    pool: Option<&str>,
    which: Option<Rollout>,
) -> Response<ProxyBody> {
    match reloader.promote(pool, which) {
        Ok(name) => text(
            StatusCode::OK,
            "application/json",
            json!({"result": "applied", "promoted": name}).to_string() + "\n",
        ),
        Err(e) => outcome(Err(e)),
    }
}
