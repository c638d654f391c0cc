//! The rollback rule: whether a canary's figures over the window are worse than the active
//! side's by more than the configured margins.

use super::super::window::Figures;
use crate::config::RollbackConfig;

/// Fewest requests on each side before p99 latencies are compared: the p99 of fewer is
/// their slowest one, which one hiccup of the machine decides.
const MIN_LATENCY_SAMPLES: u64 = 100;

/// Whether `canary`'s window figures are worse than `active`'s (or, with no active figures,
/// than none at all) by more than `rule` allows: the reason's label and its words.
pub(super) fn judge(
    canary: &Figures,
    active: Option<&Figures>,
    rule: &RollbackConfig,
) -> Option<(&'static str, String)> {
    let none = Figures::default();
    let base = active.unwrap_or(&none);
    let window = humantime::format_duration(rule.window);
    let compare = |what: &str, c: f64, a: f64, margin: f64| {
        format!(
            "{what}: {:.1} % of {} canary requests in the last {window} against {:.1} % of {} \
             active ones (margin {:.1} points)",
            c * 100.0,
            canary.requests,
            a * 100.0,
            base.requests,
            margin * 100.0
        )
    };
    let (c, a) = (canary.fault_rate(), base.fault_rate());
    if c - a > rule.max_fault_increase {
        return Some(("faults", compare("faults", c, a, rule.max_fault_increase)));
    }
    let (c, a) = (canary.error_rate(), base.error_rate());
    if c - a > rule.max_error_increase {
        return Some(("errors", compare("errors", c, a, rule.max_error_increase)));
    }
    if canary.requests < MIN_LATENCY_SAMPLES || base.requests < MIN_LATENCY_SAMPLES {
        return None;
    }
    let (Some(c99), Some(a99)) = (canary.p99_ms, active.and_then(|a| a.p99_ms)) else {
        return None;
    };
    let limit = a99 * (1.0 + rule.max_p99_increase) + rule.p99_slack.as_secs_f64() * 1000.0;
    (c99 > limit).then(|| {
        let reason = format!(
            "latency: p99 {c99:.1} ms over {} canary requests in the last {window} against \
             {a99:.1} ms over {} active ones (limit {limit:.1} ms)",
            canary.requests, base.requests
        );
        ("latency", reason)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(requests: u64, errors: u64, faults: u64, p99_ms: f64) -> Figures {
        Figures {
            requests,
            errors,
            faults,
            p50_ms: Some(p99_ms / 2.0),
            p90_ms: Some(p99_ms),
            p99_ms: Some(p99_ms),
        }
    }

    #[test]
    fn the_canary_is_judged_against_the_active_side_by_the_margins() {
        let rule = RollbackConfig::default();
        let active = figures(100, 1, 0, 20.0);
        assert_eq!(judge(&figures(50, 3, 0, 25.0), Some(&active), &rule), None);
        let (label, reason) = judge(&figures(50, 4, 0, 25.0), Some(&active), &rule).unwrap();
        assert_eq!(label, "errors");
        assert!(
            reason.starts_with("errors: 8.0 % of 50 canary requests"),
            "{reason}"
        );
        assert_eq!(
            judge(&figures(50, 0, 1, 25.0), Some(&active), &rule).map(|r| r.0),
            Some("faults")
        );
        // 20 ms × 1.5 + 10 ms = 40 ms, judged from 100 requests on each side.
        assert_eq!(judge(&figures(150, 0, 0, 40.0), Some(&active), &rule), None);
        assert_eq!(
            judge(&figures(150, 0, 0, 41.0), Some(&active), &rule).map(|r| r.0),
            Some("latency")
        );
        assert_eq!(judge(&figures(99, 0, 0, 900.0), Some(&active), &rule), None);
        // Without active figures: errors and faults against none, latency not judged.
        assert_eq!(judge(&figures(50, 0, 0, 900.0), None, &rule), None);
        assert_eq!(
            judge(&figures(50, 3, 0, 1.0), None, &rule).map(|r| r.0),
            Some("errors")
        );
    }
}
