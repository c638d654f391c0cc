//! A canary on the request path: each request put on its client's side, the canary's
//! selections and feedback, each answer counted on its side, and the checks of the schedule and
//! of the rollback rule.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::rollback::judge;
use super::{threshold, Canary, CanaryError, CanaryState, CanaryStatus, Side, Tag, CHECK_EVERY_MS};
use crate::pool::{BackendSet, Pool};
use crate::strategy::{Choice, RequestData, Strategies};

thread_local! {
    /// This worker thread's instance of each slot's canary strategy, built on first use.
    static WARM: std::cell::RefCell<crate::strategy::slots::Warms> =
        std::cell::RefCell::new(crate::strategy::slots::Warms::default());
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
    pub(in crate::strategy) fn route_canary(
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
    pub(in crate::strategy) fn after_active(&self, request: &RequestData, choice: &Choice) {
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
        self.select_on(&WARM, &canary.loaded, pool, set, exclude, request)
    }

    /// Feedback for the canary's instance on this thread, for a request it routed.
    pub(in crate::strategy) fn canary_feedback<'r>(
        &self,
        backend: u32,
        status: u16,
        latency: Duration,
        field: impl Fn(&http::HeaderName) -> Option<&'r [u8]>,
    ) {
        let wanted = crate::strategy::slots::with(&WARM, self.slot, |warm| {
            warm.as_ref()
                .is_some_and(|w| w.needs.contains(crate::strategy::bindings::Needs::FEEDBACK))
        });
        if !wanted {
            return;
        }
        let guard = self.canary.load();
        let Some(canary) = guard.as_ref() else {
            return;
        };
        crate::strategy::slots::with(&WARM, self.slot, |warm| {
            let Some(instance) = warm.as_mut().filter(|w| w.strategy_id == canary.loaded.id) else {
                return;
            };
            let report = instance
                .report_header
                .as_ref()
                .and_then(field)
                .filter(|value| value.len() <= crate::strategy::MAX_REPORT_BYTES)
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
