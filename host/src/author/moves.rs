//! Which client keys moved to another backend when the backend set changed: for each change,
//! each client's last backend in the stretch before it against its first one after it.

use crate::pool::Pool;

use super::simulate::UNSERVED;

/// How the set changed at one point and how many client keys moved because of it.
#[derive(Debug, Clone)]
pub struct Change {
    /// Request number.
    pub at: u64,
    /// What happened, e.g. `kill 1`.
    pub event: String,
    /// Clients seen both between the previous change (or the start) and this one, and after it.
    pub compared: u64,
    /// Of those, the ones whose backend changed.
    pub moved: u64,
    /// Of those, the ones whose old backend was still there and whose new one was there before
    /// the change: moves a consistent hash never makes.
    pub moved_needlessly: u64,
}

/// Which backend each client key had before and after each change of the set.
#[derive(Debug)]
pub struct KeyTracker {
    /// Each client's backend on its latest request since the last change ([`UNSERVED`]: none).
    last: Vec<u32>,
    /// The open change: when, what, each client's backend before it, and its first after it.
    open: Option<Open>,
    changes: Vec<Change>,
    /// Which backends were eligible after the last change (or at the start).
    eligible: Vec<bool>,
}

impl KeyTracker {
    /// A tracker of `clients` client keys over `pool`.
    pub fn new(clients: u32, pool: &Pool) -> Self {
        KeyTracker {
            last: vec![UNSERVED; clients as usize],
            open: None,
            changes: Vec::new(),
            eligible: eligible(pool),
        }
    }

    pub fn record(&mut self, client: u32, backend: u32) {
        let c = client as usize;
        if let Some(open) = &mut self.open {
            if open.after[c] == UNSERVED {
                open.after[c] = backend;
            }
        }
        self.last[c] = backend;
    }

    /// The set changed at request `at`: closes the open change, opens another.
    pub fn change(&mut self, at: u64, event: String, pool: &Pool) {
        self.close();
        let eligible_before = std::mem::replace(&mut self.eligible, eligible(pool));
        let n = self.last.len();
        // A stretch starts: a client's backend before an older change says nothing of this one.
        let before = std::mem::replace(&mut self.last, vec![UNSERVED; n]);
        self.open = Some(Open {
            at,
            event,
            before,
            after: vec![UNSERVED; n],
            eligible_before,
            eligible_after: self.eligible.clone(),
        });
    }

    fn close(&mut self) {
        let Some(Open {
            at,
            event,
            before,
            after,
            eligible_before,
            eligible_after,
        }) = self.open.take()
        else {
            return;
        };
        let mut change = Change {
            at,
            event,
            compared: 0,
            moved: 0,
            moved_needlessly: 0,
        };
        for (&b, &a) in before.iter().zip(&after) {
            if b == UNSERVED || a == UNSERVED {
                continue;
            }
            change.compared += 1;
            if a != b {
                change.moved += 1;
                // Needless: the old backend is still there and the new one was there already
                // (a move to a backend that just joined is what consistent hashing does).
                let still = |set: &[bool], i: u32| set.get(i as usize).copied().unwrap_or(false);
                if still(&eligible_after, b) && still(&eligible_before, a) {
                    change.moved_needlessly += 1;
                }
            }
        }
        self.changes.push(change);
    }

    pub fn finish(mut self) -> Vec<Change> {
        self.close();
        self.changes
    }
}

/// Which backends of the pool are eligible now.
fn eligible(pool: &Pool) -> Vec<bool> {
    pool.load()
        .backends
        .iter()
        .map(|b| b.is_eligible() && b.weight > 0)
        .collect()
}

/// A change whose "after" stretch is still being recorded.
#[derive(Debug)]
struct Open {
    at: u64,
    event: String,
    /// Each client's backend in the stretch before the change.
    before: Vec<u32>,
    /// Each client's first backend after it.
    after: Vec<u32>,
    /// Which backends were eligible just before it, and just after.
    eligible_before: Vec<bool>,
    eligible_after: Vec<bool>,
}
