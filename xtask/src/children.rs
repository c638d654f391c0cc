//! Child processes that stop with xtask: on its exit, on SIGTERM or SIGINT, and on its death.
//!
//! Each child asks the kernel for SIGTERM when xtask dies (`PR_SET_PDEATHSIG`), so even
//! `kill -KILL` leaves nothing running. SIGTERM or SIGINT to xtask sets a flag that
//! [`Children::wait_for`] sees; dropping [`Children`] then sends each child SIGTERM and waits for
//! it, so lbhost drains and the ports are free when xtask returns. A second signal stops xtask at
//! once (and its children with it, by the parent-death signal).

use std::io;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};

/// Set by the signal handler.
static STOPPED: AtomicBool = AtomicBool::new(false);

/// Running children, stopped (SIGTERM, then waited for) when this is dropped.
pub struct Children {
    running: Vec<(String, Child)>,
}

impl Children {
    /// From now on, SIGTERM and SIGINT make [`Children::wait_for`] return instead of killing xtask.
    pub fn new() -> Self {
        on_stop_signals();
        Self {
            running: Vec::new(),
        }
    }

    /// Starts `cmd` as a child named `name` that gets SIGTERM when xtask dies.
    pub fn spawn(&mut self, name: &str, cmd: &mut Command) -> Result<()> {
        terminate_with_parent(cmd);
        let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        self.running.push((name.to_string(), child));
        Ok(())
    }

    /// Waits until the child named `name` exits (its status) or xtask gets SIGTERM or SIGINT
    /// (`None`).
    pub fn wait_for(&mut self, name: &str) -> Result<Option<ExitStatus>> {
        let index = self
            .running
            .iter()
            .position(|(n, _)| n == name)
            .with_context(|| format!("no child named {name}"))?;
        loop {
            if STOPPED.load(Ordering::SeqCst) {
                return Ok(None);
            }
            let (_, child) = &mut self.running[index];
            if let Some(status) = child
                .try_wait()
                .with_context(|| format!("waiting for {name}"))?
            {
                self.running.remove(index);
                return Ok(Some(status));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        // Not yet waited for, so each pid is still this child's (at worst a zombie).
        for (_, child) in &self.running {
            terminate(child);
        }
        for (name, child) in &mut self.running {
            if let Err(e) = child.wait() {
                eprintln!("xtask: waiting for {name}: {e}");
            }
        }
    }
}

/// Makes SIGTERM and SIGINT set [`STOPPED`] (once: the handler restores the default action).
#[allow(unsafe_code)]
fn on_stop_signals() {
    extern "C" fn handler(signal: libc::c_int) {
        STOPPED.store(true, Ordering::SeqCst);
        // SAFETY: signal(2) is async-signal-safe; SIG_DFL is a valid disposition.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
    }
    let handler: extern "C" fn(libc::c_int) = handler;
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic and calls signal(2), both
        // async-signal-safe.
        unsafe { libc::signal(signal, handler as libc::sighandler_t) };
    }
}

/// Has the kernel send the child SIGTERM when xtask (the thread that spawns it: the main one)
/// dies.
#[allow(unsafe_code)]
fn terminate_with_parent(cmd: &mut Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the child between fork and exec; it only makes the
    // async-signal-safe calls prctl(2) and getppid(2) and allocates nothing.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(io::Error::last_os_error());
            }
            // xtask died before prctl: no signal will come, so do not start.
            if libc::getppid() as u32 != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        })
    };
}

/// Sends SIGTERM to `child`, which has not been waited for.
#[allow(unsafe_code)]
fn terminate(child: &Child) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is a child not yet reaped.
    unsafe { libc::kill(pid, libc::SIGTERM) };
}
