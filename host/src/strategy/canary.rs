//! A strategy in canary: it routes the requests of a share of the clients, chosen by a stable
//! hash of a client key (so a client stays on one side), the share stepped by hand or on a
//! schedule. Both sides' requests are counted over a sliding window ([`super::window`]); the
//! canary is rolled back by itself when its faults, errors or p99 latency are worse than the
//! active strategy's by the configured margins ([`RollbackConfig`]). Promotion (in
//! [`crate::reload`]) makes it the active strategy.
//!
//! The request path pays one relaxed load while no canary runs. With one: a hash of the key per
//! request, a short lock of its side's figures when it is answered, and every
//! [`CHECK_EVERY_MS`] one check of the schedule and of the rollback rule.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use prometheus::IntCounter;
use serde::Serialize;

use super::loader::Loaded;
use super::quarantine::FaultStatus;
use super::window::{Figures, Window};
use super::{Choice, Fault, RequestData, Strategies};
use crate::config::{CanaryKey, CanaryPlan, CanaryShare, RollbackConfig};
use crate::pool::{BackendSet, Pool};

/// How often, at most, the schedule and the rollback rule are checked: a check sums the
/// window's slots (a few microseconds), so at most 100 a second.
const CHECK_EVERY_MS: u64 = 10;

/// The side of a canary a request is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Active,
    Canary,
}

impl Side {
    fn index(self) -> usize {
        self as usize
    }

    /// The `side` label of `lbhost_canary_requests_total`.
    pub fn label(self) -> &'static str {
        match self {
            Side::Active => "active",
            Side::Canary => "canary",
        }
    }
}

/// Which canary, and which side of it, routes a request: set on its first selection, kept for
/// its retries (a client's request stays on one side).
#[derive(Clone, Copy, Debug)]
pub struct Tag {
    canary: u64,
    side: Side,
}

impl Tag {
    /// The side the request is on.
    pub fn side(&self) -> Side {
        self.side
    }
}

/// Where a canary is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CanaryState {
    Running,
    RolledBack,
    Promoted,
    Aborted,
}

/// Why a canary could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum CanaryError {
    #[error("no canary is running")]
    None,
    #[error("the canary {name} is {state:?} already, not running")]
    Ended { name: String, state: CanaryState },
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A loaded strategy in canary, its plan and both sides' figures.
pub struct Canary {
    pub(super) loaded: Arc<Loaded>,
    /// Unique per canary: tells a request's [`Tag`] from a later canary's.
    id: u64,
    key: CanaryKey,
    /// A client whose key hashes below this is on the canary side (`u64::MAX`: every client).
    threshold: AtomicU64,
    /// Cleared when it ends: no new request goes to it.
    routing: AtomicBool,
    started: Instant,
    started_unix: u64,
    control: Mutex<Control>,
    sides: [Mutex<SideStats>; 2],
    /// When (ms since `started`) the next check is due.
    next_check_ms: AtomicU64,
    /// `lbhost_canary_requests_total{side, result}`: active ok, active error, canary ok, canary
    /// error.
    counters: OnceLock<[IntCounter; 4]>,
}

impl std::fmt::Debug for Canary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Canary")
            .field("name", &self.loaded.name)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// What changes by hand or on the schedule.
#[derive(Debug)]
struct Control {
    share: CanaryShare,
    /// When the share (or schedule) was set, ms since the canary started.
    share_set_ms: u64,
    share_now: f64,
    step: usize,
    rollback: RollbackConfig,
    state: CanaryState,
    reason: Option<String>,
    ended_unix: Option<u64>,
    /// The active side's last window with at least `min_requests`: what the canary is compared
    /// with while the active side has fewer (a large share).
    baseline: Option<Figures>,
}

#[derive(Debug)]
struct SideStats {
    window: Window,
    /// Requests answered per backend address.
    shares: BTreeMap<String, u64>,
}

/// What `/status` shows of the canary.
#[derive(Clone, Debug, Serialize)]
pub struct CanaryStatus {
    pub name: String,
    pub sha256: String,
    /// `running`, `rolled_back`, `promoted` or `aborted`.
    pub state: CanaryState,
    /// Why it ended (a rollback's figures, or who ended it).
    pub reason: Option<String>,
    /// The share of clients it routes now (0 once ended).
    pub share: f64,
    /// The schedule: its steps, the step now, and seconds to the next one.
    pub schedule: Option<serde_json::Value>,
    /// The client key hashed (`client_ip`, `header:NAME`, `cookie:NAME`).
    pub key: String,
    pub started_at_unix: u64,
    pub ended_at_unix: Option<u64>,
    /// The canary side's requests, errors and faults since it started.
    pub requests: u64,
    pub errors: u64,
    pub faults: u64,
    /// Each side's figures, since the start (`total`) and over the rollback window (`window`),
    /// and its requests per backend (`shares`).
    pub sides: BTreeMap<&'static str, SideStatus>,
    /// The rollback rule.
    pub rollback: serde_json::Value,
    /// The canary module's fault window and quarantine.
    pub fault_status: FaultStatus,
}

/// One side's figures.
#[derive(Clone, Debug, Serialize)]
pub struct SideStatus {
    pub total: Figures,
    pub window: Figures,
    pub shares: BTreeMap<String, u64>,
}

/// The hash threshold of `share`.
fn threshold(share: f64) -> u64 {
    if share >= 1.0 {
        u64::MAX
    } else if share <= 0.0 {
        0
    } else {
        (share * u64::MAX as f64) as u64
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Canary {
    /// `loaded` in canary with `plan`, starting now.
    pub fn new(loaded: Arc<Loaded>, plan: CanaryPlan) -> Self {
        let (share, step) = plan.share.at(Duration::ZERO);
        let side = || {
            Mutex::new(SideStats {
                window: Window::new(plan.rollback.window),
                shares: BTreeMap::new(),
            })
        };
        Canary {
            loaded,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            key: plan.key,
            threshold: AtomicU64::new(threshold(share)),
            routing: AtomicBool::new(true),
            started: Instant::now(),
            started_unix: unix_now(),
            sides: [side(), side()],
            control: Mutex::new(Control {
                share: plan.share,
                share_set_ms: 0,
                share_now: share,
                step,
                rollback: plan.rollback,
                state: CanaryState::Running,
                reason: None,
                ended_unix: None,
                baseline: None,
            }),
            next_check_ms: AtomicU64::new(CHECK_EVERY_MS),
            counters: OnceLock::new(),
        }
    }

    /// The canary's name (its file name without `.wasm`).
    pub fn name(&self) -> &str {
        &self.loaded.name
    }

    /// Its strategy.
    pub fn loaded(&self) -> &Arc<Loaded> {
        &self.loaded
    }

    /// Whether it still routes its share.
    pub fn is_running(&self) -> bool {
        self.routing.load(Ordering::Relaxed)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn control(&self) -> std::sync::MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn side(&self, side: Side) -> std::sync::MutexGuard<'_, SideStats> {
        self.sides[side.index()]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The side of the client that sent `request`.
    fn side_of(&self, request: &RequestData) -> Side {
        let threshold = self.threshold.load(Ordering::Relaxed);
        if threshold == u64::MAX || client_hash(&self.key, request) < threshold {
            Side::Canary
        } else {
            Side::Active
        }
    }

    /// Ends it as `state` for `reason` if it runs; whether it did.
    fn end(&self, state: CanaryState, reason: String) -> bool {
        let mut control = self.control();
        if control.state != CanaryState::Running {
            return false;
        }
        self.routing.store(false, Ordering::Relaxed);
        control.state = state;
        control.reason = Some(reason);
        control.ended_unix = Some(unix_now());
        control.share_now = 0.0;
        true
    }

    /// Sets a new share or schedule, from now; refused once it has ended.
    pub fn step(&self, share: CanaryShare) -> Result<f64, CanaryError> {
        let now = self.now_ms();
        let mut control = self.control();
        if control.state != CanaryState::Running {
            return Err(CanaryError::Ended {
                name: self.name().to_string(),
                state: control.state,
            });
        }
        let (now_share, step) = share.at(Duration::ZERO);
        control.share = share;
        control.share_set_ms = now;
        control.share_now = now_share;
        control.step = step;
        self.threshold
            .store(threshold(now_share), Ordering::Relaxed);
        Ok(now_share)
    }

    /// Its figures so far.
    pub fn status(&self) -> CanaryStatus {
        let now = self.now_ms();
        let control = self.control();
        let side_status = |side: Side| {
            let stats = self.side(side);
            SideStatus {
                total: stats.window.total(),
                window: stats.window.recent(now),
                shares: stats.shares.clone(),
            }
        };
        let (active, canary) = (side_status(Side::Active), side_status(Side::Canary));
        let schedule = match &control.share {
            CanaryShare::Fixed(_) => None,
            CanaryShare::Steps { steps, every } => {
                let elapsed = Duration::from_millis(now.saturating_sub(control.share_set_ms));
                let (_, step) = control.share.at(elapsed);
                let next = (step + 1 < steps.len()).then(|| {
                    (every.as_secs_f64() * (step + 1) as f64 - elapsed.as_secs_f64()).max(0.0)
                });
                Some(serde_json::json!({
                    "steps": steps, "step_every_s": every.as_secs_f64(),
                    "step": step, "next_step_in_s": next,
                }))
            }
        };
        let r = &control.rollback;
        CanaryStatus {
            name: self.loaded.name.clone(),
            sha256: self.loaded.sha256.clone(),
            state: control.state,
            reason: control.reason.clone(),
            share: control.share_now,
            schedule,
            key: self.key.describe(),
            started_at_unix: self.started_unix,
            ended_at_unix: control.ended_unix,
            requests: canary.total.requests,
            errors: canary.total.errors,
            faults: canary.total.faults,
            sides: BTreeMap::from([("active", active), ("canary", canary)]),
            rollback: serde_json::json!({
                "window_s": r.window.as_secs_f64(),
                "min_requests": r.min_requests,
                "max_error_increase": r.max_error_increase,
                "max_fault_increase": r.max_fault_increase,
                "max_p99_increase": r.max_p99_increase,
                "p99_slack_ms": r.p99_slack.as_secs_f64() * 1000.0,
            }),
            fault_status: self.loaded.faults.status(),
        }
    }
}

/// The 64-bit hash of a request's client key: the header's or cookie's value when the key
/// names one and the request has it, its client IP otherwise. FNV-1a then a finalizer: the same
/// on every node, well spread even for neighbouring addresses.
fn client_hash(key: &CanaryKey, request: &RequestData) -> u64 {
    let fields = &request.head.fields;
    let value = match key {
        CanaryKey::ClientIp => None,
        CanaryKey::Header(name) => fields.get(name),
        CanaryKey::Cookie(name) => fields
            .get_all("cookie")
            .filter_map(crate::request::visible_ascii)
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_bytes()),
    };
    let hash = match (value, request.client_ip) {
        (Some(value), _) => fnv1a(value),
        (None, std::net::IpAddr::V4(ip)) => fnv1a(&ip.octets()),
        (None, std::net::IpAddr::V6(ip)) => fnv1a(&ip.octets()),
    };
    mix(hash)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// SplitMix64's finalizer.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Whether `canary`'s window figures are worse than `active`'s (or, with no active figures,
/// than none at all) by more than `rule` allows: the reason's label and its words.
pub(super) fn judge(
    canary: &Figures,
    active: Option<&Figures>,
    rule: &RollbackConfig,
) -> Option<(&'static str, String)> {
    let none = Figures::default();
    let base = active.unwrap_or(&none);
    let window = humantime::format_duration(rule.window);
    let compare = |what: &str, c: f64, a: f64, margin: f64| {
        format!(
            "{what}: {:.1} % of {} canary requests in the last {window} against {:.1} % of {} \
             active ones (margin {:.1} points)",
            c * 100.0,
            canary.requests,
            a * 100.0,
            base.requests,
            margin * 100.0
        )
    };
    let (c, a) = (canary.fault_rate(), base.fault_rate());
    if c - a > rule.max_fault_increase {
        return Some(("faults", compare("faults", c, a, rule.max_fault_increase)));
    }
    let (c, a) = (canary.error_rate(), base.error_rate());
    if c - a > rule.max_error_increase {
        return Some(("errors", compare("errors", c, a, rule.max_error_increase)));
    }
    let (Some(c99), Some(a99)) = (canary.p99_ms, active.and_then(|a| a.p99_ms)) else {
        return None;
    };
    let limit = a99 * (1.0 + rule.max_p99_increase) + rule.p99_slack.as_secs_f64() * 1000.0;
    (c99 > limit).then(|| {
        let reason = format!(
            "latency: p99 {c99:.1} ms over {} canary requests in the last {window} against \
             {a99:.1} ms over {} active ones (limit {limit:.1} ms)",
            canary.requests, base.requests
        );
        ("latency", reason)
    })
}

thread_local! {
    /// This worker thread's instance of the canary strategy, built on first use.
    static WARM: std::cell::RefCell<Option<super::instance::Warm>> =
        const { std::cell::RefCell::new(None) };
}

impl Strategies {
    /// Puts `canary` in canary (replacing any, which ends as aborted), or removes it with
    /// `None`. Returns the name of the one it replaced.
    pub fn set_canary(&self, canary: Option<Canary>) -> Option<String> {
        let running = canary.is_some();
        let old = self.canary.swap(canary.map(Arc::new));
        self.canary_on.store(running, Ordering::Relaxed);
        let old = old?;
        old.end(CanaryState::Aborted, "replaced".into());
        Some(old.name().to_string())
    }

    /// The canary, running or ended, if one was set.
    pub fn canary(&self) -> Option<Arc<Canary>> {
        self.canary.load_full()
    }

    /// The canary's figures, if one was set (it stays, ended, until replaced or removed).
    pub fn canary_status(&self) -> Option<CanaryStatus> {
        self.canary.load().as_ref().map(|c| c.status())
    }

    /// Ends the running canary as `state` for `reason` (no request goes to it from now on);
    /// returns it. Counts an abort as a rollback by hand (`reason="abort"`).
    pub fn end_canary(&self, state: CanaryState, reason: &str) -> Result<Arc<Canary>, CanaryError> {
        let canary = self.canary.load_full().ok_or(CanaryError::None)?;
        if !canary.end(state, reason.to_string()) {
            let state = canary.control().state;
            return Err(CanaryError::Ended {
                name: canary.name().to_string(),
                state,
            });
        }
        self.canary_on.store(false, Ordering::Relaxed);
        if state == CanaryState::Aborted {
            if let Some(metrics) = &self.metrics {
                metrics.canary_rollbacks.with_label_values(&["abort"]).inc();
            }
        }
        Ok(canary)
    }

    /// For a first selection while a canary runs: puts the request on its client's side (kept
    /// for its retries) and, on the canary side, chooses with the canary (a fault is served by
    /// the fallback and counted on that side). `None`: the active strategy chooses.
    pub(super) fn route_canary(
        &self,
        pool: &Pool,
        set: &BackendSet,
        exclude: &[u32],
        mut request: Box<RequestData>,
    ) -> (Box<RequestData>, Option<Choice>) {
        let guard = self.canary.load();
        let Some(canary) = guard.as_ref() else {
            return (request, None);
        };
        let side = match request.canary {
            None => {
                let side = canary.side_of(&request);
                request.canary = Some(Tag {
                    canary: canary.id,
                    side,
                });
                side
            }
            Some(tag) if tag.canary == canary.id => tag.side,
            Some(_) => Side::Active,
        };
        if side == Side::Active || !canary.routing.load(Ordering::Relaxed) {
            return (request, None);
        }
        let (request, choice) = self.select_canary(canary, pool, set, exclude, request);
        if matches!(choice, Choice::Fallback(..)) {
            let now = canary.now_ms();
            canary.side(Side::Canary).window.fault(now);
        }
        (request, Some(choice))
    }

    /// After the active strategy chose for a request on the active side of a canary: a fault
    /// is counted on that side, so that both sides are judged alike.
    pub(super) fn after_active(&self, request: &RequestData, choice: &Choice) {
        let (Some(tag), Choice::Fallback(..)) = (request.canary, choice) else {
            return;
        };
        if let Some(canary) = self.canary.load().as_ref().filter(|c| c.id == tag.canary) {
            let now = canary.now_ms();
            canary.side(Side::Active).window.fault(now);
        }
    }

    /// One `select` of the canary on this thread's instance of it, under the same rules as the
    /// active strategy's.
    fn select_canary(
        &self,
        canary: &Canary,
        pool: &Pool,
        set: &BackendSet,
        exclude: &[u32],
        request: Box<RequestData>,
    ) -> (Box<RequestData>, Choice) {
        let loaded = &*canary.loaded;
        if loaded.faults.is_quarantined() {
            return (request, self.fall_back(set, exclude, Fault::Quarantined));
        }
        let sequence = super::next_sequence(loaded);
        let (request, answer) = WARM.with(|cell| {
            let mut warm = cell.borrow_mut();
            let instance = match self.ready(&mut warm, loaded, set, pool.generation()) {
                Ok(instance) => instance,
                Err(fault) => return (request, Err(fault)),
            };
            let (request, answer) = instance.select(
                &self.runtime,
                set,
                sequence,
                fastrand::u64(..),
                exclude,
                request,
            );
            if answer.is_err() {
                // A trapped instance cannot be entered again: rebuild on next use.
                *warm = None;
            }
            (request, answer)
        });
        let choice = match answer {
            Ok(Some(i)) if super::is_usable(set, exclude, i) => Choice::Strategy(i as usize),
            Ok(Some(i)) => {
                WARM.with(|cell| *cell.borrow_mut() = None);
                self.fault(loaded, set, exclude, Fault::BadAnswer(i))
            }
            Ok(None) => Choice::Unavailable,
            Err(fault) => self.fault(loaded, set, exclude, fault),
        };
        (request, choice)
    }

    /// Feedback for the canary's instance on this thread, for a request it routed.
    pub(super) fn canary_feedback<'r>(
        &self,
        backend: u32,
        status: u16,
        latency: Duration,
        field: impl Fn(&http::HeaderName) -> Option<&'r [u8]>,
    ) {
        let wanted = WARM.with_borrow(|warm| {
            warm.as_ref()
                .is_some_and(|w| w.needs.contains(super::bindings::Needs::FEEDBACK))
        });
        if !wanted {
            return;
        }
        let guard = self.canary.load();
        let Some(canary) = guard.as_ref() else {
            return;
        };
        WARM.with(|cell| {
            let mut warm = cell.borrow_mut();
            let Some(instance) = warm.as_mut().filter(|w| w.strategy_id == canary.loaded.id) else {
                return;
            };
            let report = instance
                .report_header
                .as_ref()
                .and_then(field)
                .filter(|value| value.len() <= super::MAX_REPORT_BYTES)
                .and_then(crate::request::visible_ascii);
            if let Err(fault) =
                instance.on_response(&self.runtime, backend, status, latency, report)
            {
                *warm = None;
                self.record_fault(&canary.loaded, &fault);
            }
        });
    }

    /// How a request routed while a canary ran was answered: `status` (lbhost's own, for a
    /// request no backend answered), whether an attempt failed on the way (`retried`), the time
    /// to the response head and the backend that answered. Counted on the request's side; then,
    /// at most every [`CHECK_EVERY_MS`], the schedule and the rollback rule are checked.
    pub fn canary_outcome(
        &self,
        tag: Option<Tag>,
        status: u16,
        retried: bool,
        took: Duration,
        backend: Option<&str>,
    ) {
        let Some(tag) = tag else {
            return;
        };
        let guard = self.canary.load();
        let Some(canary) = guard.as_ref().filter(|c| c.id == tag.canary) else {
            return;
        };
        let error = status >= 500 || retried;
        let now = canary.now_ms();
        {
            let mut stats = canary.side(tag.side);
            stats.window.request(now, error, took);
            if let Some(address) = backend {
                match stats.shares.get_mut(address) {
                    Some(n) => *n += 1,
                    None => {
                        stats.shares.insert(address.to_string(), 1);
                    }
                }
            }
        }
        if let Some(metrics) = &self.metrics {
            let counters = canary.counters.get_or_init(|| {
                let c = |side: Side, result| {
                    metrics
                        .canary_requests
                        .with_label_values(&[side.label(), result])
                };
                [
                    c(Side::Active, "ok"),
                    c(Side::Active, "error"),
                    c(Side::Canary, "ok"),
                    c(Side::Canary, "error"),
                ]
            });
            counters[tag.side.index() * 2 + usize::from(error)].inc();
        }
        let due = canary.next_check_ms.load(Ordering::Relaxed);
        if now >= due
            && canary
                .next_check_ms
                .compare_exchange(
                    due,
                    now + CHECK_EVERY_MS,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            self.check_canary(canary, now);
        }
    }

    /// Applies the schedule's step for `now`, then rolls the canary back if the rule says so.
    fn check_canary(&self, canary: &Canary, now: u64) {
        let mut control = canary.control();
        if control.state != CanaryState::Running {
            return;
        }
        let elapsed = Duration::from_millis(now.saturating_sub(control.share_set_ms));
        let (share, step) = control.share.at(elapsed);
        if step != control.step {
            control.step = step;
            control.share_now = share;
            canary.threshold.store(threshold(share), Ordering::Relaxed);
            tracing::info!(strategy = %canary.name(), share, step, "canary stepped on its schedule");
        }
        let rule = control.rollback.clone();
        let mine = canary.side(Side::Canary).window.recent(now);
        let theirs = canary.side(Side::Active).window.recent(now);
        if theirs.requests >= rule.min_requests {
            control.baseline = Some(theirs);
        }
        if mine.requests < rule.min_requests {
            return;
        }
        let Some((label, reason)) = judge(&mine, control.baseline.as_ref(), &rule) else {
            return;
        };
        drop(control);
        if !canary.end(CanaryState::RolledBack, reason.clone()) {
            return;
        }
        self.canary_on.store(false, Ordering::Relaxed);
        if let Some(metrics) = &self.metrics {
            metrics.canary_rollbacks.with_label_values(&[label]).inc();
        }
        tracing::error!(
            strategy = %canary.name(),
            reason = %reason,
            "canary rolled back: every request is on the active strategy again"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(requests: u64, errors: u64, faults: u64, p99_ms: f64) -> Figures {
        Figures {
            requests,
            errors,
            faults,
            p50_ms: Some(p99_ms / 2.0),
            p90_ms: Some(p99_ms),
            p99_ms: Some(p99_ms),
        }
    }

    #[test]
    fn the_canary_is_judged_against_the_active_side_by_the_margins() {
        let rule = RollbackConfig::default();
        let active = figures(100, 1, 0, 20.0);
        assert_eq!(judge(&figures(50, 3, 0, 25.0), Some(&active), &rule), None);
        let (label, reason) = judge(&figures(50, 4, 0, 25.0), Some(&active), &rule).unwrap();
        assert_eq!(label, "errors");
        assert!(
            reason.starts_with("errors: 8.0 % of 50 canary requests"),
            "{reason}"
        );
        assert_eq!(
            judge(&figures(50, 0, 1, 25.0), Some(&active), &rule).map(|r| r.0),
            Some("faults")
        );
        // 20 ms × 1.5 + 10 ms = 40 ms.
        assert_eq!(judge(&figures(50, 0, 0, 40.0), Some(&active), &rule), None);
        assert_eq!(
            judge(&figures(50, 0, 0, 41.0), Some(&active), &rule).map(|r| r.0),
            Some("latency")
        );
        // Without active figures: errors and faults against none, latency not judged.
        assert_eq!(judge(&figures(50, 0, 0, 900.0), None, &rule), None);
        assert_eq!(
            judge(&figures(50, 3, 0, 1.0), None, &rule).map(|r| r.0),
            Some("errors")
        );
    }

    #[test]
    fn shares_split_clients_by_their_hash_and_grow_without_moving_canary_clients_back() {
        let request = |i: u32| {
            RequestData::new(
                crate::request::ClientHead::empty(),
                std::net::IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i)),
            )
        };
        let key = CanaryKey::ClientIp;
        let hashes: Vec<u64> = (0..10_000)
            .map(|i| client_hash(&key, &request(i)))
            .collect();
        for share in [0.05, 0.3, 0.5] {
            let t = threshold(share);
            let on = hashes.iter().filter(|&&h| h < t).count() as f64 / 10_000.0;
            assert!((on - share).abs() < 0.015, "{share}: {on}");
        }
        // A client on the canary side at 5 % is on it at 30 % too: the same hash, a higher bar.
        assert!(threshold(0.05) < threshold(0.3));
        assert_eq!(client_hash(&key, &request(7)), hashes[7]);
    }
}
