//! Binary upgrade on SIGUSR2, as nginx does it: the running lbhost starts the program at its own
//! path with its own arguments, handing it the listening sockets (client, TLS and admin) by
//! inheritance (see [`inherit`]); once the new process says it accepts, the old one stops
//! accepting and drains (`super::Stop::Handover`), then exits. Both processes accept from the
//! same sockets, one queue each, so the port never lacks an acceptor and no queued connection
//! is lost. A new process that fails to start, exits, or is not ready within [`READY_TIMEOUT`]
//! leaves the old one serving, with the reason in the log.
//!
//! The path is the one lbhost was started as (`argv[0]`, made absolute at start, or found on
//! `PATH`), not `/proc/self/exe`: after a binary is replaced by a rename (`install`, `mv`), that
//! names the old, deleted file, while the path names the new one.

mod inherit;

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd as _, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncReadExt as _;
use tokio::signal::unix::{signal, Signal, SignalKind};

pub(crate) use inherit::Inherited;
pub(crate) use inherit::Role;

/// How long a new process may take to be ready (load its config and strategies, resolve its
/// DNS entries, start its workers) before it is killed and the upgrade given up.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How to start this program again: the path it was started as, and its arguments.
#[derive(Clone, Debug)]
pub(crate) struct Relaunch {
    program: PathBuf,
    args: Vec<OsString>,
}

impl Relaunch {
    /// This process's program and arguments, as they are now (call it at start: the working
    /// directory and `PATH` a relative `argv[0]` is resolved with are the starting ones).
    pub(crate) fn from_process() -> Relaunch {
        let mut args = std::env::args_os();
        let program = args
            .next()
            .and_then(|argv0| program_path(Path::new(&argv0)))
            .or_else(|| std::env::current_exe().ok())
            .unwrap_or_else(|| PathBuf::from("/proc/self/exe"));
        Relaunch {
            program,
            args: args.collect(),
        }
    }
}

/// `argv0` as an absolute path: relative to the working directory if it has a `/`, else the
/// first executable file of that name on `PATH` (as the shell found it).
fn program_path(argv0: &Path) -> Option<PathBuf> {
    if argv0.as_os_str().is_empty() {
        return None;
    }
    if argv0.components().count() > 1 || argv0.is_absolute() {
        return std::path::absolute(argv0).ok();
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(argv0))
        .find(|candidate| candidate.is_file())
        .and_then(|found| std::path::absolute(found).ok())
}

/// Why an upgrade did not happen.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpgradeError {
    #[error("cannot make the readiness pipe: {0}")]
    Pipe(io::Error),
    #[error("cannot start {program}: {cause}")]
    Start { program: String, cause: io::Error },
    #[error("the new process (pid {pid}) exited before it was ready ({status}); its own log lines say why")]
    Exited { pid: u32, status: String },
    #[error("the new process (pid {pid}) was not ready within {READY_TIMEOUT:?}: killed it")]
    Timeout { pid: u32 },
    #[error("reading the new process's readiness: {0}")]
    Read(io::Error),
}

/// This process's side of upgrades: copies of its listening sockets to hand on, and SIGUSR2.
#[derive(Debug)]
pub(crate) struct Upgrade {
    relaunch: Relaunch,
    sockets: Vec<(Role, OwnedFd)>,
    /// `None` if SIGUSR2 could not be listened for (logged; no upgrades then).
    usr2: Option<Signal>,
}

impl Upgrade {
    /// Listens for SIGUSR2 from now on (until then, the signal's default action ends the
    /// process: do this before lbhost answers anything).
    pub(crate) fn new(relaunch: Relaunch) -> Upgrade {
        let usr2 = match signal(SignalKind::user_defined2()) {
            Ok(usr2) => Some(usr2),
            Err(e) => {
                tracing::error!(cause = %e, "cannot listen for SIGUSR2: no binary upgrades");
                None
            }
        };
        Upgrade {
            relaunch,
            sockets: Vec::new(),
            usr2,
        }
    }

    /// Keeps a copy of listener `role`'s socket, to hand on.
    pub(crate) fn keep(&mut self, role: Role, socket: &impl AsFd) -> io::Result<()> {
        let copy = socket.as_fd().try_clone_to_owned()?;
        self.sockets.push((role, copy));
        Ok(())
    }

    /// Resolves once a new process has taken over the sockets and accepts.
    /// Each SIGUSR2 starts an attempt; one that fails is logged and this process serves on. A
    /// SIGUSR2 while an attempt runs is refused (logged).
    pub(crate) async fn handed_over(&mut self) {
        let Some(usr2) = self.usr2.as_mut() else {
            return std::future::pending().await;
        };
        loop {
            if usr2.recv().await.is_none() {
                return std::future::pending().await;
            }
            tracing::info!(program = %self.relaunch.program.display(), "SIGUSR2: upgrading");
            let result = {
                let attempt = start(&self.relaunch, &self.sockets);
                tokio::pin!(attempt);
                loop {
                    tokio::select! {
                        result = &mut attempt => break result,
                        _ = usr2.recv() => {
                            tracing::warn!("SIGUSR2 refused: an upgrade is already in progress");
                        }
                    }
                }
            };
            match result {
                Ok(()) => return,
                Err(e) => tracing::error!(cause = %e, "upgrade failed: this process serves on"),
            }
        }
    }

    /// Gives up upgrades (after a handover, or to shut down): closes this process's copies of
    /// the listening sockets (so they close once the workers stop), and refuses each further
    /// SIGUSR2 with a log line saying `why`.
    pub(crate) fn close(mut self, why: &'static str) {
        self.sockets.clear();
        let Some(mut usr2) = self.usr2.take() else {
            return;
        };
        tokio::spawn(async move {
            while usr2.recv().await.is_some() {
                tracing::warn!("SIGUSR2 refused: {why}");
            }
        });
    }
}

/// Starts the new process with the sockets and a readiness pipe, and waits until it is ready.
async fn start(relaunch: &Relaunch, sockets: &[(Role, OwnedFd)]) -> Result<(), UpgradeError> {
    let (reader, writer) = io::pipe().map_err(UpgradeError::Pipe)?;
    let mut value = String::new();
    let mut keep: Vec<RawFd> = Vec::with_capacity(sockets.len() + 1);
    for (role, fd) in sockets {
        value.push_str(&format!("{}={},", role.name(), fd.as_raw_fd()));
        keep.push(fd.as_raw_fd());
    }
    value.push_str(&format!(
        "ready={},from={}",
        writer.as_raw_fd(),
        std::process::id()
    ));
    keep.push(writer.as_raw_fd());
    let mut command = tokio::process::Command::new(&relaunch.program);
    command.args(&relaunch.args).env(inherit::ENV, value);
    inherit_fds(&mut command, keep);
    let spawned = command.spawn();
    // The new process has its own copy; with this one closed, its exit closes the pipe.
    drop(writer);
    let mut child = spawned.map_err(|cause| UpgradeError::Start {
        program: relaunch.program.display().to_string(),
        cause,
    })?;
    let pid = child.id().unwrap_or_default();
    tracing::info!(
        pid,
        "upgrade: the new process started; waiting until it accepts"
    );
    let ready = async {
        let mut pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(reader))?;
        let mut said = Vec::new();
        while !said.ends_with(b"ready\n") && said.len() < 64 {
            if pipe.read_buf(&mut said).await? == 0 {
                return Ok(false);
            }
        }
        Ok::<_, io::Error>(said.ends_with(b"ready\n"))
    };
    match tokio::time::timeout(READY_TIMEOUT, ready).await {
        Ok(Ok(true)) => {
            tracing::info!(
                new_pid = pid,
                "upgrade: the new process accepts; this one stops accepting and drains"
            );
            Ok(())
        }
        Ok(Ok(false)) => {
            let status = match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
                Ok(Ok(status)) => status.to_string(),
                _ => "still running, without the readiness pipe".to_string(),
            };
            if child.id().is_some() {
                let _ = child.start_kill();
            }
            Err(UpgradeError::Exited { pid, status })
        }
        Ok(Err(e)) => {
            let _ = child.start_kill();
            Err(UpgradeError::Read(e))
        }
        Err(_) => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            Err(UpgradeError::Timeout { pid })
        }
    }
}

/// Makes `command`'s process inherit descriptors `fds` (they are close-on-exec here).
#[allow(unsafe_code)]
fn inherit_fds(command: &mut tokio::process::Command, fds: Vec<RawFd>) {
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // calls are allowed: it calls fcntl alone, and allocates nothing (`fds` was built before).
    unsafe {
        command.pre_exec(move || {
            for &fd in &fds {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_is_the_path_started_as() {
        let cwd = std::env::current_dir().expect("a working directory");
        assert_eq!(
            program_path(Path::new("bin/lbhost")),
            Some(cwd.join("bin/lbhost"))
        );
        assert_eq!(
            program_path(Path::new("/opt/lbhost/lbhost")),
            Some(PathBuf::from("/opt/lbhost/lbhost"))
        );
        assert_eq!(program_path(Path::new("")), None);
        // Found on PATH, as the shell found it (`sh` is on every PATH a test runs with).
        let sh = program_path(Path::new("sh")).expect("sh on PATH");
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{}", sh.display());
    }
}
