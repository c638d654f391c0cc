//! How many upstream connections were opened, and how many responses reused one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Upstream connections per backend address: how many were opened, and how many responses came
/// over a connection that had already carried one.
#[derive(Debug, Default)]
pub(crate) struct ConnectionCounts {
    /// One entry per address ever connected to; bounded by the configured backends.
    by_backend: Mutex<HashMap<String, Arc<BackendCounts>>>,
}

/// One row of [`ConnectionCounts::snapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ConnectionCount {
    /// `host:port`.
    pub backend: String,
    /// Connections established.
    pub opened: u64,
    /// Responses received on a connection that had answered before.
    pub reused: u64,
}

#[derive(Debug, Default)]
pub(super) struct BackendCounts {
    opened: AtomicU64,
    reused: AtomicU64,
}

impl ConnectionCounts {
    /// The counts now, sorted by backend.
    pub(crate) fn snapshot(&self) -> Vec<ConnectionCount> {
        let mut rows: Vec<_> = self
            .lock()
            .iter()
            .map(|(backend, c)| ConnectionCount {
                backend: backend.clone(),
                opened: c.opened.load(Ordering::Relaxed),
                reused: c.reused.load(Ordering::Relaxed),
            })
            .collect();
        rows.sort_by(|a, b| a.backend.cmp(&b.backend));
        rows
    }

    /// Records a new connection to `backend` and returns its mark (once per connection, not per
    /// request).
    pub(super) fn opened(&self, backend: &str) -> ConnectionMark {
        let counts = {
            let mut map = self.lock();
            match map.get(backend) {
                Some(counts) => Arc::clone(counts),
                None => {
                    let counts = Arc::new(BackendCounts::default());
                    map.insert(backend.to_string(), Arc::clone(&counts));
                    counts
                }
            }
        };
        counts.opened.fetch_add(1, Ordering::Relaxed);
        ConnectionMark {
            answered: false,
            counts,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<BackendCounts>>> {
        // Counters stay consistent even if a holder panicked: nothing is half-written.
        self.by_backend
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Travels with one connection: tells its first response from later ones.
#[derive(Debug)]
pub(super) struct ConnectionMark {
    /// Whether a response already came over this connection.
    answered: bool,
    counts: Arc<BackendCounts>,
}

impl ConnectionMark {
    /// Records one response: the first on a connection is its opening use, later ones reuse.
    pub(super) fn answered(&mut self) {
        if self.answered {
            self.counts.reused.fetch_add(1, Ordering::Relaxed);
        }
        self.answered = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_answer_opens_later_answers_reuse() {
        let counts = ConnectionCounts::default();
        let mut first = counts.opened("127.0.0.1:1");
        first.answered();
        first.answered();
        first.answered();
        let mut second = counts.opened("127.0.0.1:1");
        second.answered();
        assert_eq!(
            counts.snapshot(),
            vec![ConnectionCount {
                backend: "127.0.0.1:1".into(),
                opened: 2,
                reused: 2,
            }]
        );
    }
}
