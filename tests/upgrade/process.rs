//! An lbhost that upgrades itself: the first process is the test's child; the processes it
//! starts on SIGUSR2 are not, and are found by the pid in their `lbhost ready` line and killed
//! when the test ends. All of them log to one file.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use lbhost_e2e::{free_addr, lbhost_bin, Scratch};
use serde_json::Value;
use tokio::process::{Child, Command};

pub struct Upgradable {
    pub listen: SocketAddr,
    old: Child,
    program: PathBuf,
    config: PathBuf,
    log: PathBuf,
    scratch: Scratch,
}

impl Upgradable {
    /// Starts lbhost on `config` (free loopback ports for `listen` and `admin`), from a copy of
    /// the binary in a scratch directory if `copy`, and waits for its `lbhost ready`.
    pub async fn start(mut config: Value, copy: bool) -> Upgradable {
        let scratch = Scratch::new();
        let listen = free_addr();
        config["listen"] = Value::String(listen.to_string());
        config["admin"] = Value::String(free_addr().to_string());
        let config_path = scratch.write(
            "config.json",
            serde_json::to_vec_pretty(&config).expect("JSON"),
        );
        let program = if copy {
            let program = scratch.path().join("lbhost");
            std::fs::copy(lbhost_bin(), &program).expect("copying the lbhost binary");
            program
        } else {
            lbhost_bin()
        };
        let log = scratch.path().join("lbhost.log");
        let log_file = File::create(&log).expect("creating the log");
        let mut command = Command::new(&program);
        command
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("a file handle"))
            .stderr(log_file)
            .kill_on_drop(true);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("LBHOST_") {
                command.env_remove(name);
            }
        }
        command.env("RUST_LOG", "info");
        let old = command.spawn().expect("starting lbhost");
        let lb = Upgradable {
            listen,
            old,
            program,
            config: config_path,
            log,
            scratch,
        };
        lb.wait_ready(1, Duration::from_secs(20)).await;
        lb
    }

    pub fn old_pid(&self) -> u32 {
        self.old.id().expect("the first process runs")
    }

    pub fn program(&self) -> &Path {
        &self.program
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Replaces the program file by a new one renamed over it, as `install` does.
    pub fn replace_program(&self) {
        let next = self.scratch.path().join("lbhost.next");
        std::fs::copy(lbhost_bin(), &next).expect("copying the lbhost binary");
        std::fs::rename(&next, &self.program).expect("renaming over the program");
    }

    pub fn signal(&self, pid: u32, name: &str) {
        let status = std::process::Command::new("kill")
            .args([format!("-{name}"), pid.to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{name} {pid} failed");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The pids of the `lbhost ready` lines so far.
    pub fn ready_pids(&self) -> Vec<u32> {
        self.log()
            .lines()
            .filter(|line| line.contains("lbhost ready"))
            .filter_map(|line| {
                let at = line.find(" pid=")? + 5;
                let digits: String = line[at..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                digits.parse().ok()
            })
            .collect()
    }

    /// Waits until `count` processes said `lbhost ready`; their pids.
    pub async fn wait_ready(&self, count: usize, within: Duration) -> Vec<u32> {
        self.wait_log("lbhost ready", count, within).await;
        let pids = self.ready_pids();
        assert_eq!(
            pids.len(),
            count,
            "a ready line without a pid:\n{}",
            self.log()
        );
        pids
    }

    /// Waits until `what` appears `count` times in the log.
    pub async fn wait_log(&self, what: &str, count: usize, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.log().matches(what).count() < count {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what:?} not logged {count} times within {within:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn old_running(&mut self) -> bool {
        matches!(self.old.try_wait(), Ok(None))
    }

    pub async fn wait_old_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(within, self.old.wait())
            .await
            .ok()
            .map(|status| status.expect("waiting for lbhost"))
    }
}

impl Drop for Upgradable {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- lbhost log ----\n{}---- end of lbhost log ----",
                self.log()
            );
        }
        for pid in self.ready_pids() {
            if Some(pid) != self.old.id() && alive(pid) {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
        let _ = self.old.start_kill();
    }
}

/// Whether process `pid` runs (and is no zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            let state = stat
                .rsplit(") ")
                .next()
                .and_then(|rest| rest.chars().next());
            !matches!(state, Some('Z') | Some('X'))
        })
        .unwrap_or(false)
}
