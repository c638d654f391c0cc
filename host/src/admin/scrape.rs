//! `GET /metrics`: refreshes the families that are sampled rather than counted, then renders
//! every family in the Prometheus text format.

use std::sync::{Mutex, PoisonError};

use prometheus::IntCounterVec;

use crate::proxy::Proxy;

/// Serializes scrapes, so that sampling (reset, then set) and rendering never interleave.
#[derive(Debug, Default)]
pub(super) struct Scraper {
    lock: Mutex<()>,
}

impl Scraper {
    /// The exposition of every family, with sampled values as of now.
    pub(super) fn render(&self, proxy: &Proxy) -> String {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        sample(proxy);
        proxy.metrics.render()
    }
}

/// Sets the gauges that mirror live state, and brings counters kept outside the registry up
/// to date.
fn sample(proxy: &Proxy) {
    let metrics = &proxy.metrics;
    let table = proxy.table.load();
    // Reset first: a backend that left its pool leaves the exposition too.
    metrics.backend_up.reset();
    metrics.backend_in_flight.reset();
    metrics.circuit_state.reset();
    let sets: Vec<_> = table
        .services
        .iter()
        .map(|s| s.runtime.pool.load())
        .collect();
    for backend in sets.iter().flat_map(|set| &set.backends) {
        let labels = backend.metric_labels();
        metrics
            .backend_up
            .with_label_values(&labels)
            .set(i64::from(backend.is_up()));
        metrics
            .backend_in_flight
            .with_label_values(&labels)
            .set(i64::from(backend.in_flight()));
        metrics
            .circuit_state
            .with_label_values(&labels)
            .set(backend.circuit_state() as i64);
    }

    let strategies = &table.main().runtime.strategies;
    let active = strategies.active();
    let faults = strategies.fault_status();
    metrics.quarantined.reset();
    metrics
        .quarantined
        .with_label_values(&[active.name.as_str()])
        .set(i64::from(faults.quarantined));

    for row in proxy.upstream.connections().snapshot() {
        catch_up(
            &metrics.upstream_connections,
            &[&row.backend, "opened"],
            row.opened,
        );
        catch_up(
            &metrics.upstream_connections,
            &[&row.backend, "reused"],
            row.reused,
        );
    }
}

/// Raises the counter `family{labels}` to `total`, a count kept elsewhere that only grows.
/// Only [`Scraper::render`] (one at a time) moves these counters, so they equal the last total.
fn catch_up(family: &IntCounterVec, labels: &[&str], total: u64) {
    let counter = family.with_label_values(labels);
    let behind = total.saturating_sub(counter.get());
    if behind > 0 {
        counter.inc_by(behind);
    }
}
