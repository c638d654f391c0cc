//! Maglev: consistent hashing on a request key through a Maglev lookup table, optionally with
//! bounded loads.

use lbhost_sdk::maglev::{is_prime, next_prime, DEFAULT_TABLE_SIZE, MAX_TABLE_SIZE};
use lbhost_sdk::{BackendSet, Backends, KeySource, MaglevTable, Needs, Params, Request, Strategy};

/// Sends every request with the same key to the same backend, by a Maglev table over the
/// eligible backends' stable keys (Google's Maglev; Envoy's `MAGLEV`): every lbhost node with the
/// same backend set agrees, whatever the order of the backends in its config; shares follow the
/// weights; when one of N backends leaves, about 1/N of the keys move. The table is rebuilt only
/// when the backend set changes; a lookup is O(1).
///
/// Parameters:
/// - `key`: `client_ip` (default), `header:NAME`, `cookie:NAME`, `query:NAME` or `path`. A
///   request without the header, cookie or parameter is hashed on its client IP.
/// - `table_size`: a prime, default 65537; grown to the next prime of at least 100 slots per
///   backend of the config when there are more than `table_size / 100` backends.
/// - `bounded_load`: a factor `c` of at least 1 (e.g. 1.25) for consistent hashing with bounded
///   loads: a key whose backend has `⌈c × average⌉` requests in flight or more goes to the owner
///   of the next table slot that has fewer, so no backend holds more than that.
pub struct Maglev {
    key: KeySource,
    table_size: u64,
    bounded_load: Option<f64>,
    table: MaglevTable,
}

impl Strategy for Maglev {
    fn configure(params: &Params) -> Result<Self, String> {
        params.allow_only(&["key", "table_size", "bounded_load"])?;
        let key = params.parse_or("key", KeySource::ClientIp)?;
        let table_size = params.parse_or("table_size", DEFAULT_TABLE_SIZE)?;
        if !(101..=MAX_TABLE_SIZE).contains(&table_size) {
            return Err(format!(
                "strategy_config.table_size: must be between 101 and {MAX_TABLE_SIZE}"
            ));
        }
        if !is_prime(table_size) {
            return Err(format!(
                "strategy_config.table_size: must be a prime (the next one is {})",
                next_prime(table_size)
            ));
        }
        let bounded_load = match params.get("bounded_load") {
            None => None,
            Some(_) => {
                let factor: f64 = params.parse_or("bounded_load", 1.0)?;
                if !(factor.is_finite() && factor >= 1.0) {
                    return Err(
                        "strategy_config.bounded_load: must be a factor of at least 1, e.g. 1.25"
                            .into(),
                    );
                }
                Some(factor)
            }
        };
        Ok(Maglev {
            key,
            table_size,
            bounded_load,
            table: MaglevTable::default(),
        })
    }

    fn needs(&self) -> Needs {
        Needs {
            in_flight: self.bounded_load.is_some(),
            ..Needs::default()
        }
    }

    fn backends_changed(&mut self, backends: &BackendSet) {
        self.table = MaglevTable::new(backends, self.table_size);
    }

    fn select(&mut self, backends: &Backends<'_>, request: &Request<'_>) -> Option<usize> {
        let hash = self
            .key
            .hash(request)
            .unwrap_or_else(|| request.client_ip_hash());
        match self.bounded_load {
            None => self.table.lookup(hash, backends),
            Some(factor) => self.table.lookup_bounded(hash, backends, factor),
        }
    }
}

lbhost_sdk::export_strategy!(Maglev);

#[cfg(test)]
mod tests;
