//! A strategy that learns from `on-response`, for the end-to-end test of feedback: it sends
//! requests to the first candidate whose last answer was not a server error (5xx, or none at
//! all), and to the first candidate when every one has failed.
//!
//! With `"report_header": NAME` and `"prefer": VALUE` it tests backend reports instead: requests
//! rotate until a backend has reported VALUE in its response field NAME, and go to that backend
//! from then on.

use std::time::Duration;

use lbhost_sdk::{BackendSet, Backends, Needs, Params, Request, Strategy};

/// See the crate docs.
pub struct AvoidFailing {
    /// Whether each backend's last answer was a failure, indexed like the backend set.
    failing: Vec<bool>,
    /// The response field backends report in, and the value to prefer.
    report: Option<(String, String)>,
    /// The last value each backend reported, indexed like the backend set.
    reported: Vec<Option<String>>,
}

impl Strategy for AvoidFailing {
    fn configure(params: &Params) -> Result<Self, String> {
        params.allow_only(&["report_header", "prefer"])?;
        let report = match (params.get("report_header"), params.get("prefer")) {
            (Some(name), Some(value)) => Some((name.to_string(), value.to_string())),
            (None, None) => None,
            _ => return Err("strategy_config: report_header and prefer go together".into()),
        };
        Ok(AvoidFailing {
            failing: Vec::new(),
            report,
            reported: Vec::new(),
        })
    }

    fn needs(&self) -> Needs {
        Needs {
            feedback: true,
            ..Needs::default()
        }
    }

    fn backends_changed(&mut self, backends: &BackendSet) {
        self.failing = vec![false; backends.len()];
        self.reported = vec![None; backends.len()];
    }

    fn report_header(&self) -> Option<String> {
        self.report.as_ref().map(|(name, _)| name.clone())
    }

    fn on_report(&mut self, backend: usize, report: &str) {
        if let Some(slot) = self.reported.get_mut(backend) {
            *slot = Some(report.to_string());
        }
    }

    fn select(&mut self, backends: &Backends<'_>, _request: &Request<'_>) -> Option<usize> {
        if let Some((_, prefer)) = &self.report {
            return backends
                .candidates()
                .find(|&i| self.reported.get(i).and_then(Option::as_deref) == Some(prefer))
                .or_else(|| backends.rotate(backends.sequence()));
        }
        backends
            .candidates()
            .find(|&i| !self.failing.get(i).copied().unwrap_or(false))
            .or_else(|| backends.candidates().next())
    }

    fn on_response(&mut self, backend: usize, status: u16, _latency: Duration) {
        if let Some(failing) = self.failing.get_mut(backend) {
            *failing = status == 0 || status >= 500;
        }
    }
}

lbhost_sdk::export_strategy!(AvoidFailing);
