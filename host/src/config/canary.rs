//! `canary`: a second strategy that routes a share of the clients, stepped by hand or on a
//! schedule, and rolled back by itself when it does worse than the active one. The same plan is
//! read from the config file and from `POST /strategy` with `"mode": "canary"`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::validate::{duration, params, plain_path};
use super::ConfigError;

/// A canary from the config: its component, its parameters and its plan.
#[derive(Clone, Debug, PartialEq)]
pub struct CanaryConfig {
    /// Its component.
    pub strategy: PathBuf,
    /// Its `strategy_config`.
    pub strategy_config: Vec<(String, String)>,
    /// Share, schedule, client key and rollback rule.
    pub plan: CanaryPlan,
}

/// How much traffic the canary gets, which clients, and when it is rolled back.
#[derive(Clone, Debug, PartialEq)]
pub struct CanaryPlan {
    /// A fixed share, or steps on a schedule.
    pub share: CanaryShare,
    /// What a client is told apart by (default its IP).
    pub key: CanaryKey,
    /// When the canary is rolled back by itself.
    pub rollback: RollbackConfig,
}

/// The canary's share of clients.
#[derive(Clone, Debug, PartialEq)]
pub enum CanaryShare {
    /// This share, from 0 to 1, until changed by hand.
    Fixed(f64),
    /// `steps[0]` at once, then the next step every `every`; the last one holds.
    Steps { steps: Vec<f64>, every: Duration },
}

impl CanaryShare {
    /// The share `elapsed` after the plan started, and the index of its step (0 for a fixed
    /// share).
    pub fn at(&self, elapsed: Duration) -> (f64, usize) {
        match self {
            CanaryShare::Fixed(share) => (*share, 0),
            CanaryShare::Steps { steps, every } => {
                let step = (elapsed.as_nanos() / every.as_nanos().max(1)) as usize;
                let step = step.min(steps.len().saturating_sub(1));
                (steps.get(step).copied().unwrap_or(0.0), step)
            }
        }
    }
}

/// What tells one client from another, hashed to put it on one side for good.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CanaryKey {
    /// The client IP (trusted proxies applied).
    ClientIp,
    /// A request header's value; the client IP when absent.
    Header(String),
    /// A cookie's value; the client IP when absent.
    Cookie(String),
}

impl CanaryKey {
    /// As written in the config: `client_ip`, `header:NAME` or `cookie:NAME`.
    pub fn describe(&self) -> String {
        match self {
            CanaryKey::ClientIp => "client_ip".into(),
            CanaryKey::Header(name) => format!("header:{name}"),
            CanaryKey::Cookie(name) => format!("cookie:{name}"),
        }
    }
}

/// The canary is rolled back when, over the last `window` and with at least `min_requests` of
/// its requests in it, any of its figures is worse than the active strategy's by more than the
/// margin: its share of faults or of errors (5xx answers and failed attempts) by more than
/// `max_fault_increase` or `max_error_increase` (absolute shares), or its p99 latency above the
/// active's × (1 + `max_p99_increase`) + `p99_slack` (compared once both sides have 100
/// requests in the window).
#[derive(Clone, Debug, PartialEq)]
pub struct RollbackConfig {
    /// The sliding window (default 30 s).
    pub window: Duration,
    /// Fewest canary requests in the window before it is judged (default 20); the active
    /// side's figures are used once they count as many.
    pub min_requests: u64,
    /// Default 0.05: 5 points more errors than the active side.
    pub max_error_increase: f64,
    /// Default 0.01.
    pub max_fault_increase: f64,
    /// Default 0.5: a p99 50 % above the active's (plus the slack).
    pub max_p99_increase: f64,
    /// Default 10 ms, so that sub-millisecond noise is no reason.
    pub p99_slack: Duration,
}

impl Default for RollbackConfig {
    fn default() -> Self {
        RollbackConfig {
            window: Duration::from_secs(30),
            min_requests: 20,
            max_error_increase: 0.05,
            max_fault_increase: 0.01,
            max_p99_increase: 0.5,
            p99_slack: Duration::from_millis(10),
        }
    }
}

/// `canary` in the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileCanary {
    strategy: String,
    #[serde(default)]
    strategy_config: serde_json::Map<String, serde_json::Value>,
    share: Option<f64>,
    steps: Option<Vec<f64>>,
    step_every: Option<String>,
    key: Option<String>,
    rollback: Option<serde_json::Value>,
}

/// `rollback`, in the file and in `POST /strategy`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRollback {
    window: Option<String>,
    min_requests: Option<u64>,
    max_error_increase: Option<f64>,
    max_fault_increase: Option<f64>,
    max_p99_increase: Option<f64>,
    p99_slack: Option<String>,
}

/// The config file's `canary`, its paths resolved against `base`.
pub(super) fn canary_config(file: FileCanary, base: &Path) -> Result<CanaryConfig, ConfigError> {
    let plan = canary_plan(
        "canary.",
        file.share,
        file.steps,
        file.step_every.as_deref(),
        file.key.as_deref(),
        file.rollback,
    )?;
    Ok(CanaryConfig {
        strategy: base.join(plain_path("canary.strategy", &file.strategy)?),
        strategy_config: params(file.strategy_config),
        plan,
    })
}

/// A canary plan from its parts as written (`prefix` goes before field names in errors):
/// either `share` (default 0.05) or `steps` with `step_every`; `key`; `rollback`.
pub fn canary_plan(
    prefix: &str,
    share: Option<f64>,
    steps: Option<Vec<f64>>,
    step_every: Option<&str>,
    key: Option<&str>,
    rollback: Option<serde_json::Value>,
) -> Result<CanaryPlan, ConfigError> {
    let field = |name: &str| format!("{prefix}{name}");
    let check = |name: String, v: f64| {
        if (0.0..=1.0).contains(&v) {
            Ok(v)
        } else {
            Err(ConfigError::field(name, format!("{v} is not from 0 to 1")))
        }
    };
    let share = match (share, steps) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::field(
                field("steps"),
                "give either \"share\" or \"steps\", not both",
            ))
        }
        (_, Some(steps)) => {
            if steps.is_empty() || steps.len() > 100 {
                return Err(ConfigError::field(field("steps"), "needs 1 to 100 shares"));
            }
            for (i, &s) in steps.iter().enumerate() {
                check(field(&format!("steps[{i}]")), s)?;
            }
            let Some(every) = step_every else {
                return Err(ConfigError::field(
                    field("step_every"),
                    "required with \"steps\" (e.g. \"60s\")",
                ));
            };
            let every = duration(&field("step_every"), Some(every), "60s")?;
            if every < Duration::from_millis(100) {
                return Err(ConfigError::field(
                    field("step_every"),
                    "must be at least 100ms",
                ));
            }
            CanaryShare::Steps { steps, every }
        }
        (share, None) => {
            if step_every.is_some() {
                return Err(ConfigError::field(
                    field("step_every"),
                    "only with \"steps\"",
                ));
            }
            CanaryShare::Fixed(check(field("share"), share.unwrap_or(0.05))?)
        }
    };
    Ok(CanaryPlan {
        share,
        key: canary_key(&field("key"), key)?,
        rollback: rollback_config(&field("rollback"), rollback)?,
    })
}

fn canary_key(field: &str, key: Option<&str>) -> Result<CanaryKey, ConfigError> {
    let key = key.unwrap_or("client_ip");
    let named = |name: &str| {
        let valid = !name.is_empty()
            && name.len() <= 256
            && name
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b';' && b != b'=');
        if valid {
            Ok(name.to_string())
        } else {
            Err(ConfigError::field(field, format!("{key:?}: not a name")))
        }
    };
    if key == "client_ip" {
        Ok(CanaryKey::ClientIp)
    } else if let Some(name) = key.strip_prefix("header:") {
        Ok(CanaryKey::Header(named(name)?))
    } else if let Some(name) = key.strip_prefix("cookie:") {
        Ok(CanaryKey::Cookie(named(name)?))
    } else {
        Err(ConfigError::field(
            field,
            format!("{key:?} is not client_ip, header:NAME or cookie:NAME"),
        ))
    }
}

fn rollback_config(
    field: &str,
    value: Option<serde_json::Value>,
) -> Result<RollbackConfig, ConfigError> {
    let file: FileRollback = match value {
        None => FileRollback::default(),
        Some(value) => {
            serde_json::from_value(value).map_err(|e| ConfigError::field(field, e.to_string()))?
        }
    };
    let defaults = RollbackConfig::default();
    let sub = |name: &str| format!("{field}.{name}");
    let share = |name: &str, v: Option<f64>, default: f64| match v {
        None => Ok(default),
        Some(v) if (0.0..=1.0).contains(&v) => Ok(v),
        Some(v) => Err(ConfigError::field(
            sub(name),
            format!("{v} is not from 0 to 1"),
        )),
    };
    let window = duration(&sub("window"), file.window.as_deref(), "30s")?;
    if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&window) {
        return Err(ConfigError::field(sub("window"), "must be from 1s to 1h"));
    }
    let max_p99_increase = match file.max_p99_increase {
        None => defaults.max_p99_increase,
        Some(v) if v.is_finite() && v >= 0.0 => v,
        Some(v) => {
            return Err(ConfigError::field(
                sub("max_p99_increase"),
                format!("{v} is not a ratio of 0 or more"),
            ))
        }
    };
    Ok(RollbackConfig {
        window,
        min_requests: match file.min_requests {
            Some(0) => {
                return Err(ConfigError::field(
                    sub("min_requests"),
                    "must be at least 1",
                ))
            }
            Some(n) => n,
            None => defaults.min_requests,
        },
        max_error_increase: share(
            "max_error_increase",
            file.max_error_increase,
            defaults.max_error_increase,
        )?,
        max_fault_increase: share(
            "max_fault_increase",
            file.max_fault_increase,
            defaults.max_fault_increase,
        )?,
        max_p99_increase,
        p99_slack: duration(&sub("p99_slack"), file.p99_slack.as_deref(), "10ms")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(json: &str) -> Result<CanaryPlan, String> {
        let v: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let get = |k: &str| v.get(k).cloned();
        canary_plan(
            "",
            get("share").and_then(|s| s.as_f64()),
            get("steps").and_then(|s| serde_json::from_value(s).ok()),
            get("step_every").as_ref().and_then(|s| s.as_str()),
            get("key").as_ref().and_then(|s| s.as_str()),
            get("rollback"),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn a_schedule_steps_and_holds_its_last_share() {
        let p = plan(r#"{"steps": [0.05, 0.25, 1.0], "step_every": "10s"}"#).unwrap();
        let at = |s: u64| p.share.at(Duration::from_secs(s));
        assert_eq!(at(0), (0.05, 0));
        assert_eq!(at(9), (0.05, 0));
        assert_eq!(at(10), (0.25, 1));
        assert_eq!(at(25), (1.0, 2));
        assert_eq!(at(1000), (1.0, 2));
        assert_eq!(plan("{}").unwrap().share, CanaryShare::Fixed(0.05));
        assert_eq!(
            plan(r#"{"key": "cookie:session"}"#).unwrap().key,
            CanaryKey::Cookie("session".into())
        );
    }

    #[test]
    fn bad_plans_name_the_field() {
        for (json, wanted) in [
            (r#"{"share": 1.5}"#, "share: 1.5 is not from 0 to 1"),
            (r#"{"share": 0.1, "steps": [0.1]}"#, "steps: give either"),
            (r#"{"steps": [0.1]}"#, "step_every: required"),
            (
                r#"{"steps": [0.1, 2], "step_every": "1s"}"#,
                "steps[1]: 2 is not",
            ),
            (
                r#"{"share": 0.1, "step_every": "1s"}"#,
                "step_every: only with",
            ),
            (r#"{"key": "ip"}"#, "key: \"ip\" is not client_ip"),
            (r#"{"key": "header:"}"#, "key: \"header:\": not a name"),
            (
                r#"{"rollback": {"windw": "1s"}}"#,
                "rollback: unknown field `windw`",
            ),
            (
                r#"{"rollback": {"window": "1ms"}}"#,
                "rollback.window: must be from 1s",
            ),
            (
                r#"{"rollback": {"min_requests": 0}}"#,
                "rollback.min_requests: must be",
            ),
            (
                r#"{"rollback": {"max_error_increase": 2}}"#,
                "rollback.max_error_increase: 2 is not",
            ),
        ] {
            let error = plan(json).expect_err(json);
            assert!(error.starts_with(wanted), "{json}: {error}");
        }
    }
}
