//! One `lbhost` process: its config in a scratch directory, its log in a file (shown when a
//! test fails), killed when dropped.

use std::ffi::OsStr;
use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::paths::lbhost_bin;

/// How long `lbhost` may take to answer `GET /healthz` after it starts.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a one-shot `lbhost` command (`check`, a bad flag) may run.
const RAW_TIMEOUT: Duration = Duration::from_secs(20);

/// A free `127.0.0.1` port, as an address. (Free when asked: another process could take it
/// before it is bound again, which loopback tests accept.) Never the same port twice in one test
/// process: the kernel may hand a just-released port out again at once, and a config whose
/// `listen` and `admin` came out equal is refused.
pub fn free_addr() -> SocketAddr {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("binding 127.0.0.1:0");
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&addr.port()) {
            given.push(addr.port());
            return addr;
        }
    }
}

/// A fresh directory under the system temp dir, removed on drop unless the test failed (then
/// it is kept, for a look at the config and log).
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch::new()
    }
}

impl Scratch {
    pub fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "lbhost-e2e-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        Scratch { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `contents` to `name` in this directory and returns its absolute path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path.join(name);
        std::fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// How a one-shot `lbhost` command ended.
#[derive(Debug)]
pub struct RawRun {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// A running `lbhost`. Dropping it kills the process; if the test is failing, its log is
/// printed first.
#[derive(Debug)]
pub struct Lb {
    child: Child,
    pid: u32,
    listen: SocketAddr,
    admin: SocketAddr,
    log: PathBuf,
    scratch: Scratch,
}

impl Lb {
    /// Starts `lbhost --config <file>` with `config` (a JSON object) and waits until its admin
    /// listener answers `GET /healthz` with 200 and its traffic listener accepts connections.
    /// `listen` and `admin` get free loopback ports unless the config sets them.
    pub async fn start(config: Value) -> Lb {
        Lb::start_with_args(config, &[]).await
    }

    /// [`Lb::start`] with extra command-line arguments after `--config <file>`.
    ///
    /// A port the harness picks is free when picked, and another test's listener can take it
    /// before lbhost binds it: lbhost then exits with "Address already in use", and it is started
    /// again on new ports (up to three times). Ports the config sets are never changed.
    pub async fn start_with_args(config: Value, args: &[&str]) -> Lb {
        const ATTEMPTS: u32 = 3;
        for attempt in 1.. {
            let (mut lb, picked) = Lb::spawn(config.clone(), args);
            match lb.wait_ready().await {
                Ready::Yes => return lb,
                Ready::PortTaken if picked && attempt < ATTEMPTS => {
                    eprintln!("lbhost lost a picked port to another listener; starting it again");
                }
                // `lb` is dropped while panicking, and prints its log.
                Ready::PortTaken => panic!("lbhost could not bind its listeners; its log is below"),
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// Starts `lbhost --config <config_path>` on a config file the test laid out itself (say,
    /// behind symlinks), whose `listen` and `admin` are the given addresses, and waits until it
    /// is ready.
    pub async fn start_from_file(config_path: &Path, listen: SocketAddr, admin: SocketAddr) -> Lb {
        let mut lb = Lb::spawn_at(Scratch::new(), config_path, listen, admin, &[]);
        match lb.wait_ready().await {
            Ready::Yes => lb,
            Ready::PortTaken => panic!("lbhost could not bind its listeners; its log is below"),
        }
    }

    /// Starts lbhost on `config`; also says whether the harness picked any of its ports.
    fn spawn(mut config: Value, args: &[&str]) -> (Lb, bool) {
        let scratch = Scratch::new();
        let fields = config
            .as_object_mut()
            .expect("an lbhost config is a JSON object");
        let (listen, picked_listen) = address(fields, "listen");
        let (admin, picked_admin) = address(fields, "admin");
        let config_text = serde_json::to_vec_pretty(&config).expect("JSON serializes");
        let config_path = scratch.write("config.json", config_text);
        let lb = Lb::spawn_at(scratch, &config_path, listen, admin, args);
        (lb, picked_listen || picked_admin)
    }

    /// Starts `lbhost --config <config_path> <args>`, logging into `scratch`.
    fn spawn_at(
        scratch: Scratch,
        config_path: &Path,
        listen: SocketAddr,
        admin: SocketAddr,
        args: &[&str],
    ) -> Lb {
        let log = scratch.path().join("lbhost.log");
        let log_file =
            File::create(&log).unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        let stdout = log_file.try_clone().expect("cloning a file handle");
        let mut command = Command::new(lbhost_bin());
        command
            .arg("--config")
            .arg(config_path)
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log_file)
            .kill_on_drop(true);
        clean_env(&mut command);
        command.env("RUST_LOG", "info");
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", lbhost_bin().display()));
        let pid = child.id().expect("a child that was just spawned has a pid");
        Lb {
            child,
            pid,
            listen,
            admin,
            log,
            scratch,
        }
    }

    /// Runs `lbhost <args>` to completion (at most 20 s), without any `LBHOST_*` or `RUST_LOG`
    /// from the environment, and returns its exit status and output.
    pub async fn spawn_raw<I, S>(args: I) -> RawRun
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new(lbhost_bin());
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        clean_env(&mut command);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", lbhost_bin().display()));
        let output = tokio::time::timeout(RAW_TIMEOUT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("lbhost did not exit within {RAW_TIMEOUT:?}"))
            .expect("waiting for lbhost");
        RawRun {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// The traffic listener.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// The admin listener.
    pub fn admin(&self) -> SocketAddr {
        self.admin
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `http://<listen><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.listen)
    }

    /// `http://<admin><path>`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// The scratch directory holding `config.json` and `lbhost.log`.
    pub fn dir(&self) -> &Path {
        self.scratch.path()
    }

    /// What lbhost has logged so far (stdout and stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -TERM {} failed", self.pid);
    }

    /// Waits up to `within` for the process to exit.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(within, self.child.wait())
            .await
            .ok()
            .map(|status| status.expect("waiting for lbhost"))
    }

    /// Resident memory of the process, in bytes (`VmRSS` in `/proc/<pid>/status`).
    pub fn rss_bytes(&self) -> u64 {
        rss_bytes(self.pid).unwrap_or_else(|| panic!("no VmRSS for lbhost (pid {})", self.pid))
    }

    /// Starts sampling the resident memory every 10 ms, until [`PeakRss::stop`].
    pub fn watch_rss(&self) -> PeakRss {
        let pid = self.pid;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let sampler = std::thread::spawn(move || {
            let mut peak = 0;
            while !stopped.load(Ordering::Relaxed) {
                peak = peak.max(rss_bytes(pid).unwrap_or(0));
                std::thread::sleep(Duration::from_millis(10));
            }
            peak
        });
        PeakRss { stop, sampler }
    }

    async fn wait_ready(&mut self) -> Ready {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                if self.log().contains("Address already in use") {
                    return Ready::PortTaken;
                }
                panic!("lbhost exited ({status}) before it was ready; its log is below");
            }
            if healthz_ok(self.admin).await && TcpStream::connect(self.listen).await.is_ok() {
                return Ready::Yes;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "lbhost did not answer GET http://{}/healthz with 200 within {READY_TIMEOUT:?}; \
                     its log is below",
                    self.admin
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// How a start ended.
enum Ready {
    Yes,
    /// A listener's port was taken (`Address already in use`).
    PortTaken,
}

impl Drop for Lb {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- lbhost log ({}) ----\n{}---- end of lbhost log ----",
                self.log.display(),
                self.log()
            );
        }
        let _ = self.child.start_kill();
    }
}

/// The highest resident memory of a process seen while it is watched (see [`Lb::watch_rss`]).
#[derive(Debug)]
pub struct PeakRss {
    stop: Arc<AtomicBool>,
    sampler: std::thread::JoinHandle<u64>,
}

impl PeakRss {
    /// Stops sampling and returns the peak, in bytes.
    pub fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.sampler.join().expect("the RSS sampler does not panic")
    }
}

/// `VmRSS` of process `pid` in bytes, if it is still running.
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kib * 1024)
}

/// Keeps the developer's `LBHOST_*` and `RUST_LOG` variables out of a test's lbhost.
fn clean_env(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name == "RUST_LOG" || name.to_string_lossy().starts_with("LBHOST_") {
            command.env_remove(name);
        }
    }
}

/// The address in `fields[name]`, or a free loopback one written there (then `true`).
fn address(fields: &mut Map<String, Value>, name: &str) -> (SocketAddr, bool) {
    match fields.get(name) {
        Some(Value::String(text)) => (
            text.parse()
                .unwrap_or_else(|e| panic!("config {name} {text:?} is not an address: {e}")),
            false,
        ),
        Some(other) => panic!("config {name} should be a string, not {other}"),
        None => {
            let addr = free_addr();
            fields.insert(name.to_string(), Value::String(addr.to_string()));
            (addr, true)
        }
    }
}

/// Whether `GET /healthz` on `admin` answers 200 within a second.
async fn healthz_ok(admin: SocketAddr) -> bool {
    let probe = async {
        let mut stream = TcpStream::connect(admin).await.ok()?;
        let request =
            format!("GET /healthz HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.ok()?;
        Some(head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200"))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), probe).await,
        Ok(Some(true))
    )
}
