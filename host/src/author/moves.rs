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
    /// Of those, the ones whose old backend could still have taken them.
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
}

impl KeyTracker {
    pub fn new(clients: u32) -> Self {
        KeyTracker {
            last: vec![UNSERVED; clients as usize],
            open: None,
            changes: Vec::new(),
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
        let eligible_now = eligible(pool);
        let n = self.last.len();
        // A stretch starts: a client's backend before an older change says nothing of this one.
        let before = std::mem::replace(&mut self.last, vec![UNSERVED; n]);
        self.open = Some(Open {
            at,
            event,
            before,
            after: vec![UNSERVED; n],
            eligible: eligible_now,
        });
    }

    fn close(&mut self) {
        let Some(Open {
            at,
            event,
            before,
            after,
            eligible,
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
                if eligible.get(b as usize).copied().unwrap_or(false) {
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
    /// Which backends were eligible just after it.
    eligible: Vec<bool>,
}
