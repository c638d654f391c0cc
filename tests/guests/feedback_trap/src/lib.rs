//! A strategy that asks for feedback and panics in `on-response` every time, while its `select`
//! is a plain rotation: for the test that faults outside `select` are counted like any other.

use std::time::Duration;

use lbhost_sdk::{Backends, Needs, Params, Request, Strategy};

/// See the crate docs.
pub struct FeedbackTrap;

impl Strategy for FeedbackTrap {
    fn configure(params: &Params) -> Result<Self, String> {
        params.allow_only(&[])?;
        Ok(FeedbackTrap)
    }

    fn needs(&self) -> Needs {
        Needs {
            feedback: true,
            ..Needs::default()
        }
    }

    fn select(&mut self, backends: &Backends<'_>, _request: &Request<'_>) -> Option<usize> {
        backends.rotate(backends.sequence())
    }

    fn on_response(&mut self, backend: usize, status: u16, _latency: Duration) {
        panic!("on-response for backend {backend} (status {status}) panics on purpose");
    }
}

lbhost_sdk::export_strategy!(FeedbackTrap);
