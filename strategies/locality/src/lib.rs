//! Locality: prefer the backends of this node's zone, spill over to the others as they fail.

use lbhost_sdk::hash::scale;
use lbhost_sdk::{Backend, BackendSet, Backends, Params, Request, SmoothWeighted, Strategy};

/// Envoy's default overprovisioning factor is 1.4: a zone keeps all its traffic while at least
/// 1 / 1.4 ≈ 71 % of it is healthy.
const DEFAULT_MIN_LOCAL_SHARE: f64 = 0.7;

/// Sends requests to the backends whose label `label` is `local` (this node's zone) while
/// enough of them are healthy, and spills the rest over to the other backends as they fail.
///
/// The local healthy share `h` is the weight of the eligible local backends over the weight of
/// all local backends. While `h ≥ min_local_share` every request stays local; below, the local
/// backends get the fraction `h / min_local_share` of the requests and the others the rest (Envoy's
/// priority spillover with an overprovisioning factor of `1 / min_local_share`), so traffic
/// moves out gradually as local backends fail, and back as they return. With no eligible local
/// backend everything goes to the others, and the other way round. Within each side: smooth
/// weighted round-robin. A retry goes to the other side when its own has no backend left.
///
/// Parameters: `label` (default `zone`), `local` (required: this node's value of the label),
/// `min_local_share` (default 0.7, above 0 and at most 1).
pub struct Locality {
    label: String,
    local: String,
    min_local_share: f64,
    /// The share of requests kept local, in millionths.
    local_ppm: u64,
    local_order: SmoothWeighted,
    remote_order: SmoothWeighted,
}

impl Strategy for Locality {
    fn configure(params: &Params) -> Result<Self, String> {
        params.allow_only(&["label", "local", "min_local_share"])?;
        let label = params.get("label").unwrap_or("zone").to_string();
        if label.is_empty() {
            return Err("strategy_config.label: must not be empty".into());
        }
        let Some(local) = params.get("local") else {
            return Err(
                "strategy_config.local: required: this node's value of the label, e.g. \"eu-west-1a\""
                    .into(),
            );
        };
        let min_local_share: f64 = params.parse_or("min_local_share", DEFAULT_MIN_LOCAL_SHARE)?;
        if !(min_local_share > 0.0 && min_local_share <= 1.0) {
            return Err(format!(
                "strategy_config.min_local_share: must be above 0 and at most 1 (got {min_local_share})"
            ));
        }
        Ok(Locality {
            label,
            local: local.to_string(),
            min_local_share,
            local_ppm: 0,
            local_order: SmoothWeighted::default(),
            remote_order: SmoothWeighted::default(),
        })
    }

    fn backends_changed(&mut self, backends: &BackendSet) {
        let is_local = |b: &Backend| b.label(&self.label) == Some(self.local.as_str());
        let weight = |b: &Backend| u64::from(b.weight);
        let all = backends.all();
        let local_total: u64 = all.iter().filter(|b| is_local(b)).map(weight).sum();
        let local_eligible: u64 = backends
            .eligible()
            .iter()
            .map(|&i| &all[i])
            .filter(|b| is_local(b))
            .map(weight)
            .sum();
        let healthy = if local_total == 0 {
            0.0
        } else {
            local_eligible as f64 / local_total as f64
        };
        let kept = (healthy / self.min_local_share).min(1.0);
        self.local_ppm = (kept * 1e6).round() as u64;
        self.local_order = SmoothWeighted::new(&only(backends, |b| is_local(b)));
        self.remote_order = SmoothWeighted::new(&only(backends, |b| !is_local(b)));
    }

    fn select(&mut self, backends: &Backends<'_>, _request: &Request<'_>) -> Option<usize> {
        let local_first = scale(backends.random(), 1_000_000) < self.local_ppm;
        let (first, second) = if local_first {
            (&self.local_order, &self.remote_order)
        } else {
            (&self.remote_order, &self.local_order)
        };
        rotate(first, backends).or_else(|| rotate(second, backends))
    }
}

/// The set with only the backends `keep` picks left eligible (indices unchanged).
fn only(set: &BackendSet, keep: impl Fn(&Backend) -> bool) -> BackendSet {
    BackendSet::new(
        set.all()
            .iter()
            .map(|b| Backend {
                eligible: b.eligible && keep(b),
                ..b.clone()
            })
            .collect(),
    )
}

/// The next candidate of `order`, turning with the global sequence.
fn rotate(order: &SmoothWeighted, backends: &Backends<'_>) -> Option<usize> {
    let order = order.order();
    if order.is_empty() {
        return None;
    }
    let start = (backends.sequence() % order.len() as u64) as usize;
    backends.first_candidate_from(order, start)
}

lbhost_sdk::export_strategy!(Locality);

#[cfg(test)]
mod tests;
