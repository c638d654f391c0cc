//! The running DNS entries: one refresh task each, their last good answers, their errors, and
//! the signal that an answer changed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

use super::dns::{DnsDiscovery, DnsResolver};
use super::entry::{EntryState, Schedule};
use super::{Discover, DiscoveryError};
use crate::config::{BackendConfig, Config, DnsBackend, DnsConfig};
use crate::metrics::Metrics;

/// The DNS entries of the running config and their refresh tasks.
#[derive(Debug)]
pub(crate) struct Discovery {
    metrics: Arc<Metrics>,
    /// Signalled (one stored permit) whenever an entry's answer changes.
    changed: Arc<Notify>,
    /// One [`Discovery::sync`] at a time.
    syncing: tokio::sync::Mutex<()>,
    running: Mutex<Running>,
}

#[derive(Debug, Default)]
struct Running {
    /// The settings the tasks run with.
    settings: Option<DnsConfig>,
    /// The resolver built from them, shared by every entry.
    resolver: Option<Arc<DnsResolver>>,
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    spec: DnsBackend,
    state: Arc<Mutex<EntryState>>,
    task: JoinHandle<()>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One entry in `/status`.
#[derive(Debug, Serialize)]
pub(crate) struct EntryStatus {
    /// `dns` (A/AAAA) or `srv`.
    pub(crate) kind: &'static str,
    pub(crate) name: String,
    /// The configured port (`dns` entries).
    pub(crate) port: Option<u16>,
    /// The last good answer: the backends this entry adds.
    pub(crate) answer: Vec<AnswerStatus>,
    /// Milliseconds since a lookup last confirmed the answer (`null`: never).
    pub(crate) answer_age_ms: Option<u64>,
    /// Milliseconds since the answer last changed.
    pub(crate) changed_age_ms: Option<u64>,
    /// TTL of the last good answer, in seconds.
    pub(crate) ttl_s: Option<u64>,
    /// The last failed lookup's reason (kept after later successes; see `failures_in_a_row`).
    pub(crate) last_error: Option<String>,
    /// Milliseconds since that failure.
    pub(crate) last_error_age_ms: Option<u64>,
    /// Lookups failed since the last success (0: the answer is current).
    pub(crate) failures_in_a_row: u32,
}

/// One address of an answer.
#[derive(Debug, Serialize)]
pub(crate) struct AnswerStatus {
    pub(crate) address: String,
    pub(crate) weight: u32,
}

impl Discovery {
    /// No entries yet; [`Discovery::sync`] starts them.
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Discovery {
            metrics,
            changed: Arc::new(Notify::new()),
            syncing: tokio::sync::Mutex::new(()),
            running: Mutex::new(Running::default()),
        }
    }

    /// Resolves once an answer changed since the last call (changes in between are folded into
    /// one).
    pub(crate) async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Brings the entries in line with `config`: entries it no longer has stop; new ones start;
    /// when the `dns` settings changed, every entry starts over with a new resolver but keeps its
    /// last answer until a lookup replaces it. Waits (up to about two lookup timeouts) for the
    /// first lookup of each started entry, so a reload or a start applies their answers at once.
    pub(crate) async fn sync(&self, config: &Config) -> Result<(), DiscoveryError> {
        let _one_at_a_time = self.syncing.lock().await;
        let settings = &config.dns;
        let (restart_all, current) = {
            let running = self.lock();
            (
                running.settings.as_ref() != Some(settings),
                running.resolver.clone(),
            )
        };
        let resolver = match current {
            _ if config.dns_backends.is_empty() => None,
            Some(resolver) if !restart_all => Some(resolver),
            _ => Some(Arc::new(DnsResolver::new(settings)?)),
        };
        let mut firsts = Vec::new();
        {
            let mut running = self.lock();
            running.resolver.clone_from(&resolver);
            let mut old = std::mem::take(&mut running.entries);
            for spec in &config.dns_backends {
                let kept = old
                    .iter()
                    .position(|e| &e.spec == spec)
                    .map(|i| old.remove(i));
                let entry = match kept {
                    Some(entry) if !restart_all => entry,
                    kept => {
                        let state = kept.map_or_else(Arc::default, |e| Arc::clone(&e.state));
                        let Some(resolver) = resolver.as_ref().map(Arc::clone) else {
                            // Not reached: there is a resolver whenever there are entries.
                            continue;
                        };
                        let (first, first_done) = oneshot::channel();
                        firsts.push(first_done);
                        let task = tokio::spawn(refresh(
                            DnsDiscovery::new(resolver, spec.clone()),
                            spec.lookup.name().to_string(),
                            Arc::clone(&state),
                            settings.clone(),
                            Arc::clone(&self.metrics),
                            Arc::clone(&self.changed),
                            first,
                        ));
                        Entry {
                            spec: spec.clone(),
                            state,
                            task,
                        }
                    }
                };
                running.entries.push(entry);
            }
            // `old` holds the entries the config dropped: their tasks stop as they drop, and
            // their gauge goes unless an entry of the same name stays.
            for gone in old {
                let name = gone.spec.lookup.name();
                if !running.entries.iter().any(|e| e.spec.lookup.name() == name) {
                    let _ = self.metrics.dns_addresses.remove_label_values(&[name]);
                }
            }
            running.settings = Some(settings.clone());
        }
        let wait = settings.timeout * 2 + Duration::from_millis(500);
        let _ = tokio::time::timeout(wait, async {
            for first in firsts {
                let _ = first.await;
            }
        })
        .await;
        Ok(())
    }

    /// Each entry's last good answer, in config order.
    pub(crate) fn answers(&self) -> Vec<Vec<BackendConfig>> {
        self.lock()
            .entries
            .iter()
            .map(|e| lock_state(&e.state).answer.clone())
            .collect()
    }

    /// Every entry's state, for `/status`.
    pub(crate) fn status(&self) -> Vec<EntryStatus> {
        let now = Instant::now();
        let age = |at: Option<Instant>| at.map(|at| millis(now.saturating_duration_since(at)));
        self.lock()
            .entries
            .iter()
            .map(|e| {
                let state = lock_state(&e.state);
                EntryStatus {
                    kind: e.spec.lookup.kind(),
                    name: e.spec.lookup.name().to_string(),
                    port: match e.spec.lookup {
                        crate::config::DnsLookup::Address { port, .. } => Some(port),
                        crate::config::DnsLookup::Srv { .. } => None,
                    },
                    answer: state
                        .answer
                        .iter()
                        .map(|b| AnswerStatus {
                            address: b.address.clone(),
                            weight: b.weight,
                        })
                        .collect(),
                    answer_age_ms: age(state.answered_at),
                    changed_age_ms: age(state.changed_at),
                    ttl_s: state.ttl.map(|t| t.as_secs()),
                    last_error: state.last_error.as_ref().map(|(e, _)| e.clone()),
                    last_error_age_ms: age(state.last_error.as_ref().map(|(_, at)| *at)),
                    failures_in_a_row: state.failures_in_a_row,
                }
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Running> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Looks `discover` up now, then again after the answer's TTL within the refresh bounds (after a
/// failure: `min_refresh`, doubling up to `max_refresh`), forever. `first` is told when the
/// first lookup ended.
async fn refresh(
    discover: impl Discover,
    name: String,
    state: Arc<Mutex<EntryState>>,
    settings: DnsConfig,
    metrics: Arc<Metrics>,
    changed: Arc<Notify>,
    first: oneshot::Sender<()>,
) {
    let mut first = Some(first);
    let mut schedule = Schedule::new(&settings);
    loop {
        let result = discover.discover().await;
        metrics
            .dns_lookups
            .with_label_values(&[
                name.as_str(),
                result.as_ref().map_or_else(|e| e.result(), |_| "ok"),
            ])
            .inc();
        let now = Instant::now();
        let wait = match result {
            Ok(found) => {
                let ttl = found.ttl;
                let mut s = lock_state(&state);
                if s.failures_in_a_row > 0 {
                    tracing::info!(%name, failures = s.failures_in_a_row, "DNS lookup answers again");
                }
                if let Some(change) = s.answered(found, now) {
                    tracing::info!(%name, added = change.added, removed = change.removed, addresses = s.answer.len(), "DNS answer changed");
                    metrics
                        .dns_addresses
                        .with_label_values(&[name.as_str()])
                        .set(i64::try_from(s.answer.len()).unwrap_or(i64::MAX));
                    changed.notify_one();
                }
                schedule.after_success(ttl)
            }
            Err(e) => {
                let reason = e.to_string();
                let mut s = lock_state(&state);
                if s.failed(reason.clone(), now) {
                    tracing::warn!(%name, cause = %reason, kept = s.answer.len(), "DNS lookup failed; keeping the last answer");
                } else {
                    tracing::debug!(%name, cause = %reason, failures = s.failures_in_a_row, "DNS lookup failed again");
                }
                schedule.after_failure()
            }
        };
        if let Some(first) = first.take() {
            let _ = first.send(());
        }
        tokio::time::sleep(wait).await;
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn lock_state(state: &Mutex<EntryState>) -> std::sync::MutexGuard<'_, EntryState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}
