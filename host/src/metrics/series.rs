//! A backend's own series of the per-request metrics, looked up once and then reused.
//!
//! `with_label_values` hashes the labels (SipHash) and takes a read lock on every call: about 650
//! instructions a request for the two per-backend series (BENCHMARKS.md). The handles it returns
//! stay valid for the life of the backend: its series are removed from the families only when
//! it leaves its pool ([`super::Metrics::forget_backend`]), so each backend keeps the ones it
//! has used.

use std::sync::OnceLock;

use prometheus::{Histogram, IntCounter};

use super::{Metrics, METHOD_CLASSES, STATUS_CLASSES};

/// The handles of one backend's series, filled as they are first used.
#[derive(Debug, Default)]
pub struct BackendSeries {
    /// The [`Metrics`] they belong to, with the `lbhost_request_duration_seconds` series.
    duration: OnceLock<(u64, Histogram)>,
    /// `lbhost_requests_total`, by method class and status class.
    requests: [[OnceLock<IntCounter>; STATUS_CLASSES.len()]; METHOD_CLASSES.len()],
}

impl BackendSeries {
    /// The duration series of `backend` in `metrics`; `None` if these handles belong to another
    /// registry (only tests build more than one).
    pub(super) fn duration(
        &self,
        metrics: &Metrics,
        pool: &str,
        backend: &str,
    ) -> Option<&Histogram> {
        let (owner, histogram) = self.duration.get_or_init(|| {
            (
                metrics.id,
                metrics.request_duration.with_label_values(&[pool, backend]),
            )
        });
        (*owner == metrics.id).then_some(histogram)
    }

    /// The request counter of `backend` for the method and status classes at these indexes (of
    /// [`METHOD_CLASSES`] and [`STATUS_CLASSES`]); only once [`BackendSeries::duration`] has
    /// said these handles are `metrics`'.
    pub(super) fn requests(
        &self,
        metrics: &Metrics,
        pool: &str,
        backend: &str,
        method: usize,
        status: usize,
    ) -> &IntCounter {
        self.requests[method][status].get_or_init(|| {
            metrics.requests.with_label_values(&[
                pool,
                backend,
                METHOD_CLASSES[method],
                STATUS_CLASSES[status],
            ])
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use http::{Method, StatusCode};

    use super::*;

    fn count(metrics: &Metrics, labels: &[&str]) -> u64 {
        metrics.requests.with_label_values(labels).get()
    }

    #[test]
    fn kept_handles_count_in_the_same_series_as_a_lookup() {
        let metrics = Metrics::new().unwrap();
        let series = BackendSeries::default();
        let (started, took) = (Instant::now(), Duration::from_millis(1));
        for _ in 0..3 {
            metrics.backend_request(&series, "p", "a:1", &Method::GET, StatusCode::OK, took);
        }
        metrics.backend_request(
            &series,
            "p",
            "a:1",
            &Method::POST,
            StatusCode::BAD_GATEWAY,
            took,
        );
        metrics.request("p", "a:1", &Method::GET, StatusCode::OK, started);
        assert_eq!(count(&metrics, &["p", "a:1", "GET", "2xx"]), 4);
        assert_eq!(count(&metrics, &["p", "a:1", "POST", "5xx"]), 1);
        let histogram = metrics.request_duration.with_label_values(&["p", "a:1"]);
        assert_eq!(histogram.get_sample_count(), 5);
    }

    #[test]
    fn handles_of_another_registry_are_not_used() {
        let (first, second) = (Metrics::new().unwrap(), Metrics::new().unwrap());
        let series = BackendSeries::default();
        let took = Duration::from_millis(1);
        first.backend_request(&series, "p", "a:1", &Method::GET, StatusCode::OK, took);
        second.backend_request(&series, "p", "a:1", &Method::GET, StatusCode::OK, took);
        assert_eq!(count(&first, &["p", "a:1", "GET", "2xx"]), 1);
        assert_eq!(count(&second, &["p", "a:1", "GET", "2xx"]), 1);
    }
}
