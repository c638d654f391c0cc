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

mod rollback;
mod route;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use prometheus::IntCounter;
use serde::Serialize;

use super::loader::Loaded;
use super::quarantine::FaultStatus;
use super::window::{Figures, Window};
use super::RequestData;
use crate::config::{CanaryKey, CanaryPlan, CanaryShare, RollbackConfig};

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

#[cfg(test)]
mod tests {
    use super::*;

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
