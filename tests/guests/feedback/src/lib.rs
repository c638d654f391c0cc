//! A strategy that learns from `on-response`, for the end-to-end test of feedback: it sends
//! requests to the first candidate whose last answer was not a server error (5xx, or none at
//! all), and to the first candidate when every one has failed.

use std::time::Duration;

use lbhost_sdk::{BackendSet, Backends, Needs, Params, Request, Strategy};

/// See the crate docs.
pub struct AvoidFailing {
    /// Whether each backend's last answer was a failure, indexed like the backend set.
    failing: Vec<bool>,
}

impl Strategy for AvoidFailing {
    fn configure(params: &Params) -> Result<Self, String> {
        params.allow_only(&[])?;
        Ok(AvoidFailing {
            failing: Vec::new(),
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
    }

    fn select(&mut self, backends: &Backends<'_>, _request: &Request<'_>) -> Option<usize> {
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
