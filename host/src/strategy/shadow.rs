//! A strategy in shadow: asked on a sampled share of first attempts, after the active strategy
//! decided, with the same request and backend set; its answer is recorded and never used.
//!
//! What it records: how often it agreed with the active strategy, where it would have sent the
//! requests (and where the active one did send them), how often it answered none, its faults.
//! Its faults never reach a request: it runs under its own deadline (fuel) and memory cap, a
//! trap only rebuilds its instance, and one that keeps faulting is quarantined (not asked) like
//! an active one.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;

use super::loader::Loaded;
use super::quarantine::FaultStatus;
use super::{Choice, Fault};
use crate::pool::BackendSet;

/// A loaded strategy in shadow and what it has answered.
#[derive(Debug)]
pub struct Shadow {
    pub(super) loaded: std::sync::Arc<Loaded>,
    /// Share of first attempts it is asked about, above 0 and at most 1.
    sample: f64,
    /// A request is sampled when its random draw is below this.
    threshold: u64,
    stats: Stats,
}

/// Counters, updated only on sampled requests.
#[derive(Debug, Default)]
struct Stats {
    requests: AtomicU64,
    agreed: AtomicU64,
    disagreed: AtomicU64,
    none: AtomicU64,
    /// Would-be requests per backend address.
    shares: Mutex<BTreeMap<String, u64>>,
    /// Where the active strategy (or its fallback) sent the same requests.
    active_shares: Mutex<BTreeMap<String, u64>>,
    faults: Mutex<BTreeMap<&'static str, u64>>,
}

/// What `/status` shows of the shadow.
#[derive(Clone, Debug, Serialize)]
pub struct ShadowStatus {
    pub name: String,
    pub sha256: String,
    pub sample: f64,
    /// Sampled requests it was asked about (or would have been, while quarantined).
    pub requests: u64,
    /// Share of its answers (faults left out) equal to the active strategy's choice: the same
    /// backend, or both none. `None` before any answer.
    pub agreement: Option<f64>,
    /// Its would-be requests per backend.
    pub shares: BTreeMap<String, u64>,
    /// The active strategy's choices for the same requests.
    pub active_shares: BTreeMap<String, u64>,
    /// Times it answered none (the client would have had a 503).
    pub none: u64,
    /// Its faults by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// Its fault window and quarantine.
    pub fault_status: FaultStatus,
}

/// Why a shadow could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("sample must be above 0 and at most 1 (got {0})")]
pub struct BadSample(pub f64);

impl Shadow {
    /// `loaded` in shadow, asked on `sample` (above 0, at most 1) of first attempts.
    pub fn new(loaded: Loaded, sample: f64) -> Result<Self, BadSample> {
        if !(sample > 0.0 && sample <= 1.0) {
            return Err(BadSample(sample));
        }
        let threshold = if sample >= 1.0 {
            u64::MAX
        } else {
            (sample * u64::MAX as f64) as u64
        };
        Ok(Shadow {
            loaded: std::sync::Arc::new(loaded),
            sample,
            threshold,
            stats: Stats::default(),
        })
    }

    /// The shadow's name (its file name without `.wasm`).
    pub fn name(&self) -> &str {
        &self.loaded.name
    }

    /// Whether a request with random draw `random` is sampled.
    pub(super) fn sampled(&self, random: u64) -> bool {
        self.threshold == u64::MAX || random < self.threshold
    }

    /// Records one sampled request: the active `choice` and the shadow's `answer` (an index of
    /// `set`, none, or a fault). Returns the outcome label for metrics.
    pub(super) fn record(
        &self,
        set: &BackendSet,
        choice: &Choice,
        answer: &Result<Option<usize>, Fault>,
    ) -> &'static str {
        let s = &self.stats;
        s.requests.fetch_add(1, Ordering::Relaxed);
        let active = match choice {
            Choice::Strategy(i) | Choice::Fallback(i, _) => Some(*i),
            Choice::Unavailable => None,
        };
        if let Some(i) = active {
            count(&s.active_shares, set, i);
        }
        match answer {
            Err(fault) => {
                *lock(&s.faults).entry(fault.kind()).or_insert(0) += 1;
                "fault"
            }
            Ok(mine) => {
                match mine {
                    Some(j) => count(&s.shares, set, *j),
                    None => {
                        s.none.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if *mine == active {
                    s.agreed.fetch_add(1, Ordering::Relaxed);
                    "agree"
                } else {
                    s.disagreed.fetch_add(1, Ordering::Relaxed);
                    "disagree"
                }
            }
        }
    }

    /// Its figures so far.
    pub fn status(&self) -> ShadowStatus {
        let s = &self.stats;
        let agreed = s.agreed.load(Ordering::Relaxed);
        let answered = agreed + s.disagreed.load(Ordering::Relaxed);
        ShadowStatus {
            name: self.loaded.name.clone(),
            sha256: self.loaded.sha256.clone(),
            sample: self.sample,
            requests: s.requests.load(Ordering::Relaxed),
            agreement: (answered > 0).then(|| agreed as f64 / answered as f64),
            shares: lock(&s.shares).clone(),
            active_shares: lock(&s.active_shares).clone(),
            none: s.none.load(Ordering::Relaxed),
            faults: lock(&s.faults).clone(),
            fault_status: self.loaded.faults.status(),
        }
    }
}

fn count(map: &Mutex<BTreeMap<String, u64>>, set: &BackendSet, index: usize) {
    if let Some(b) = set.backends.get(index) {
        let mut map = lock(map);
        match map.get_mut(&b.address) {
            Some(n) => *n += 1,
            None => {
                map.insert(b.address.clone(), 1);
            }
        }
    }
}

/// Counters stay usable after a panic elsewhere: a poisoned lock is taken as is.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

thread_local! {
    /// This worker thread's instance of the shadow strategy, built on first use.
    static WARM: std::cell::RefCell<super::slots::Warms> =
        std::cell::RefCell::new(super::slots::Warms::default());
}

impl super::Strategies {
    /// Puts `shadow` in shadow (replacing any), or ends the shadow with `None`. Returns the name
    /// of the one it replaced.
    pub fn set_shadow(&self, shadow: Option<Shadow>) -> Option<String> {
        self.shadow_on.store(shadow.is_some(), Ordering::Relaxed);
        self.shadow
            .swap(shadow.map(std::sync::Arc::new))
            .map(|old| old.name().to_string())
    }

    /// Ends the shadow and hands its strategy over (to be made active).
    pub fn take_shadow(&self) -> Option<std::sync::Arc<Loaded>> {
        self.shadow_on.store(false, Ordering::Relaxed);
        self.shadow
            .swap(None)
            .map(|old| std::sync::Arc::clone(&old.loaded))
    }

    /// The shadow's figures, if a strategy is in shadow.
    pub fn shadow_status(&self) -> Option<ShadowStatus> {
        self.shadow.load().as_ref().map(|s| s.status())
    }

    /// After the active decision `choice` for a first attempt: asks the shadow, if one is set
    /// and this request is sampled, and records its answer. The request is handed back.
    pub(super) fn after_select(
        &self,
        pool: &crate::pool::Pool,
        set: &BackendSet,
        request: Box<super::RequestData>,
        choice: &Choice,
    ) -> Box<super::RequestData> {
        let guard = self.shadow.load();
        let Some(shadow) = guard.as_ref() else {
            return request;
        };
        if !shadow.sampled(fastrand::u64(..)) {
            return request;
        }
        // The fields the active strategy put on the response stay; the shadow's never reach it.
        let mut request = request;
        let kept = std::mem::take(&mut request.response_fields);
        let (mut request, answer) = if shadow.loaded.faults.is_quarantined() {
            (request, Err(Fault::Quarantined))
        } else {
            self.ask(shadow, pool, set, request)
        };
        request.response_fields = kept;
        if let Err(fault) = &answer {
            if !matches!(fault, Fault::Quarantined) {
                let calls = shadow.loaded.sequence.load(Ordering::Relaxed);
                shadow
                    .loaded
                    .faults
                    .record(&format!("{} (shadow)", shadow.name()), calls, fault);
            }
        }
        let outcome = shadow.record(set, choice, &answer);
        if let Some(metrics) = &self.metrics {
            metrics.shadow_selects.with_label_values(&[outcome]).inc();
        }
        request
    }

    /// One `select` of the shadow on this thread's instance of it.
    fn ask(
        &self,
        shadow: &Shadow,
        pool: &crate::pool::Pool,
        set: &BackendSet,
        request: Box<super::RequestData>,
    ) -> (Box<super::RequestData>, Result<Option<usize>, Fault>) {
        let loaded = &shadow.loaded;
        let sequence = loaded.sequence.fetch_add(1, Ordering::Relaxed);
        super::slots::with(&WARM, self.slot, |warm| {
            let instance = match self.ready(warm, loaded, set, pool.generation()) {
                Ok(instance) => instance,
                Err(fault) => return (request, Err(fault)),
            };
            let (request, answer) = instance.select(
                &self.runtime,
                set,
                sequence,
                fastrand::u64(..),
                &[],
                request,
            );
            let answer = match answer {
                Ok(Some(i)) if super::is_usable(set, &[], i) => Ok(Some(i as usize)),
                Ok(Some(i)) => Err(Fault::BadAnswer(i)),
                Ok(None) => Ok(None),
                Err(fault) => Err(fault),
            };
            if answer.is_err() {
                // A trapped instance cannot be entered again: rebuild on next use.
                *warm = None;
            }
            (request, answer)
        })
    }

    /// Feedback for the shadow, on the same sampled share of responses as its selects, if it
    /// asked for feedback, with the response's `report-header` field if it named one.
    pub(super) fn shadow_feedback<'r>(
        &self,
        backend: u32,
        status: u16,
        latency: std::time::Duration,
        field: impl Fn(&http::HeaderName) -> Option<&'r [u8]>,
    ) {
        let wanted = super::slots::with(&WARM, self.slot, |warm| {
            warm.as_ref()
                .is_some_and(|w| w.needs.contains(super::bindings::Needs::FEEDBACK))
        });
        if !wanted {
            return;
        }
        let guard = self.shadow.load();
        let Some(shadow) = guard.as_ref() else {
            return;
        };
        if !shadow.sampled(fastrand::u64(..)) {
            return;
        }
        super::slots::with(&WARM, self.slot, |warm| {
            let Some(instance) = warm.as_mut().filter(|w| w.strategy_id == shadow.loaded.id) else {
                return;
            };
            let report = instance
                .report_header
                .as_ref()
                .and_then(field)
                .filter(|value| value.len() <= super::MAX_REPORT_BYTES)
                .and_then(crate::request::visible_ascii);
            if instance
                .on_response(&self.runtime, backend, status, latency, report)
                .is_err()
            {
                *warm = None;
            }
        });
    }
}
