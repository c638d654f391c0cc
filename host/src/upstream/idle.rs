//! Idle keep-alive connections, kept per worker thread: a checkout or a return takes no lock
//! and no cross-thread hop.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use super::conn::BackendConn;

/// How long an idle connection is kept for reuse (backends usually close theirs after 5–75 s;
/// a connection the backend closed is noticed and skipped at once).
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections kept per backend on one thread; more are closed on return.
const MAX_IDLE_PER_BACKEND: usize = 1024;
/// How often a thread's pool drops its expired and closed connections (checked on return).
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Puts `conn` in this thread's idle pool.
pub(super) fn put(conn: Box<BackendConn>) {
    IDLE.with_borrow_mut(|idle| idle.put(conn, Instant::now()));
}

/// The most recently returned live connection under pool key `backend` on this thread, if any.
pub(super) fn checkout(backend: u64) -> Option<Box<BackendConn>> {
    IDLE.with_borrow_mut(|idle| {
        let list = idle.by_backend.get_mut(&backend)?;
        while let Some(mut entry) = list.pop() {
            if entry.conn.is_alive() {
                return Some(entry.conn);
            }
        }
        None
    })
}

thread_local! {
    static IDLE: RefCell<IdlePool> = RefCell::new(IdlePool {
        by_backend: FxHashMap::default(),
        last_sweep: Instant::now(),
    });
}

struct IdlePool {
    /// Idle connections per backend key, oldest first. The keys are hashes of the configured
    /// addresses already (nothing a client chooses), so a multiply mixes them enough: SipHash
    /// cost ~100 instructions per checkout and per return.
    by_backend: FxHashMap<u64, Vec<Idle>>,
    last_sweep: Instant,
}

struct Idle {
    conn: Box<BackendConn>,
    since: Instant,
}

impl IdlePool {
    fn put(&mut self, conn: Box<BackendConn>, now: Instant) {
        if now.duration_since(self.last_sweep) >= SWEEP_INTERVAL {
            self.sweep(now);
        }
        let list = self.by_backend.entry(conn.backend).or_default();
        if list.len() < MAX_IDLE_PER_BACKEND {
            list.push(Idle { conn, since: now });
        }
    }

    /// Drops connections idle longer than [`IDLE_TIMEOUT`] or closed by their backend (a thread
    /// that gets no traffic keeps its idle connections until the backends close them). Idle
    /// connections hold no read buffer: theirs went to the worker's spares when released.
    fn sweep(&mut self, now: Instant) {
        self.last_sweep = now;
        for list in self.by_backend.values_mut() {
            list.retain_mut(|e| now.duration_since(e.since) < IDLE_TIMEOUT && e.conn.is_alive());
        }
        self.by_backend.retain(|_, list| !list.is_empty());
    }
}
