//! Hash: consistent hashing on any request key, with a fallback for requests without one.

use lbhost_sdk::{
    BackendSet, Backends, KeySource, LeastRequest, Needs, Params, RendezvousTable, Request,
    SmoothWeighted, Strategy,
};

/// Sends every request with the same key to the same backend, by rendezvous hashing over the
/// eligible backends' stable keys (precomputed into a table, as `ip_hash` does): every lbhost
/// node with the same backend set agrees, whatever the order of its config; shares follow the
/// weights; when a backend leaves, only its own keys move. A request without its key goes to the
/// fallback.
///
/// Parameters:
/// - `key` (required): `client_ip`, `header:NAME`, `cookie:NAME`, `query:NAME` or `path`.
/// - `fallback`: for requests without the key, `round_robin` (default; smooth weighted when the
///   weights differ) or `least_request` (as `least_request.wasm` with its defaults).
pub struct Hash {
    key: KeySource,
    table: RendezvousTable,
    fallback: Fallback,
}

/// Where a request without its key goes.
enum Fallback {
    RoundRobin(SmoothWeighted),
    LeastRequest(LeastRequest),
}

impl Strategy for Hash {
    fn configure(params: &Params) -> Result<Self, String> {
        params.allow_only(&["key", "fallback"])?;
        let Some(key) = params.get("key") else {
            return Err(
                "strategy_config.key: required: client_ip, path, header:NAME, cookie:NAME or \
                 query:NAME"
                    .into(),
            );
        };
        let key: KeySource = key
            .parse()
            .map_err(|e| format!("strategy_config.key: {e} (got {key:?})"))?;
        let fallback = match params.get("fallback").unwrap_or("round_robin") {
            "round_robin" => Fallback::RoundRobin(SmoothWeighted::default()),
            "least_request" => {
                Fallback::LeastRequest(LeastRequest::new(LeastRequest::DEFAULT_BIAS)?)
            }
            other => {
                return Err(format!(
                "strategy_config.fallback: expected round_robin or least_request (got {other:?})"
            ))
            }
        };
        Ok(Hash {
            key,
            table: RendezvousTable::default(),
            fallback,
        })
    }

    fn needs(&self) -> Needs {
        Needs {
            in_flight: matches!(self.fallback, Fallback::LeastRequest(_)),
            ..Needs::default()
        }
    }

    fn backends_changed(&mut self, backends: &BackendSet) {
        self.table = RendezvousTable::new(backends);
        match &mut self.fallback {
            Fallback::RoundRobin(order) => *order = SmoothWeighted::new(backends),
            Fallback::LeastRequest(balancer) => balancer.backends_changed(backends),
        }
    }

    fn select(&mut self, backends: &Backends<'_>, request: &Request<'_>) -> Option<usize> {
        if let Some(hash) = self.key.hash(request) {
            return self.table.lookup(hash, backends);
        }
        match &mut self.fallback {
            Fallback::RoundRobin(order) => {
                let order = order.order();
                if order.is_empty() {
                    return None;
                }
                let start = (backends.sequence() % order.len() as u64) as usize;
                backends.first_candidate_from(order, start)
            }
            Fallback::LeastRequest(balancer) => balancer.select(backends),
        }
    }
}

lbhost_sdk::export_strategy!(Hash);

#[cfg(test)]
mod tests;
