//! A real DNS server for tests: Debian's dnsmasq on a free loopback port, answering only for
//! `lbtest.internal` (NXDOMAIN for names it does not know there), from a hosts file the test
//! rewrites and arguments it restarts with (SRV records).

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::Scratch;

/// The zone dnsmasq answers for; names under it that it does not know get NXDOMAIN.
pub const ZONE: &str = "lbtest.internal";
/// TTL of every answer, in seconds.
pub const TTL_S: u64 = 1;
/// How long dnsmasq may take to answer its first query.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running dnsmasq; killed when dropped.
#[derive(Debug)]
pub struct Dnsmasq {
    child: Option<Child>,
    addr: SocketAddr,
    hosts: PathBuf,
    args: Vec<String>,
    scratch: Scratch,
}

impl Dnsmasq {
    /// Starts dnsmasq answering from `hosts` (lines of `IP name`), with `args` (e.g.
    /// `--srv-host=...`) added, and waits until it answers.
    pub async fn start(hosts: &str, args: &[String]) -> Dnsmasq {
        let scratch = Scratch::new();
        let hosts_path = scratch.write("hosts", hosts);
        let mut server = Dnsmasq {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            hosts: hosts_path,
            args: args.to_vec(),
            scratch,
        };
        // A free UDP port may still be taken over TCP (another test's listener): then dnsmasq
        // exits at once, and another port is tried.
        let mut failures = Vec::new();
        for _ in 0..5 {
            let port = UdpSocket::bind("127.0.0.1:0")
                .and_then(|s| s.local_addr())
                .expect("binding a UDP port")
                .port();
            server.addr = SocketAddr::from(([127, 0, 0, 1], port));
            match server.spawn().await {
                Ok(()) => return server,
                Err(e) => failures.push(e),
            }
        }
        panic!("dnsmasq did not start on 5 ports: {failures:?}");
    }

    /// Where it listens (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the hosts file and makes dnsmasq read it again (SIGHUP) if it runs; a stopped
    /// one reads it when it starts again.
    pub fn set_hosts(&self, hosts: &str) {
        std::fs::write(&self.hosts, hosts).expect("writing the hosts file");
        if self.child.is_some() {
            self.signal("HUP");
        }
    }

    /// Stops it: lookups get no answer until [`Dnsmasq::restart`].
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        }
    }

    /// Starts it again on the same port with `args` instead of the first ones.
    pub async fn restart(&mut self, args: &[String]) {
        self.stop().await;
        self.args = args.to_vec();
        if let Err(e) = self.spawn().await {
            panic!("{e}");
        }
    }

    /// Starts dnsmasq and waits until it answers; `Err` with its log if it exits first.
    async fn spawn(&mut self) -> Result<(), String> {
        let log = self.scratch.path().join("dnsmasq.log");
        let log_file = std::fs::File::create(&log).expect("creating the dnsmasq log");
        let mut command = Command::new(dnsmasq_bin());
        command
            .arg("--no-daemon")
            .arg("--conf-file=/dev/null")
            .arg(format!("--port={}", self.addr.port()))
            .arg("--listen-address=127.0.0.1")
            .arg("--bind-interfaces")
            .arg("--no-resolv")
            .arg("--no-hosts")
            .arg("--pid-file")
            .arg(format!("--local=/{ZONE}/"))
            .arg(format!("--local-ttl={TTL_S}"))
            .arg(format!("--addn-hosts={}", self.hosts.display()))
            .arg("--log-queries")
            .arg("--log-facility=-")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true);
        // As root, dnsmasq would switch to `nobody`, who may not read the scratch files.
        if is_root() {
            command.arg("--user=root");
        }
        let child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "starting {}: {e} (install it with `apt-get install -y dnsmasq`; \
                 `cargo xtask test` does)",
                dnsmasq_bin()
            )
        });
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        while !answers(self.addr) {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Err(format!(
                    "dnsmasq exited ({status}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ));
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "dnsmasq did not answer within {READY_TIMEOUT:?}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    fn signal(&self, name: &str) {
        let pid = self
            .child
            .as_ref()
            .and_then(Child::id)
            .expect("dnsmasq is running");
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid.to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{name} {pid} failed");
    }
}

/// `/usr/sbin/dnsmasq`, where Debian puts it (not on a non-root `PATH`).
fn dnsmasq_bin() -> &'static str {
    if std::path::Path::new("/usr/sbin/dnsmasq").exists() {
        "/usr/sbin/dnsmasq"
    } else {
        "dnsmasq"
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|uids| uids.split_whitespace().next() == Some("0"))
        })
        .unwrap_or(false)
}

/// Whether a DNS server on `addr` answers a query (any answer) within 200 ms.
fn answers(addr: SocketAddr) -> bool {
    let Ok(socket) = UdpSocket::bind("127.0.0.1:0") else {
        return false;
    };
    let _ = socket.set_read_timeout(Some(Duration::from_millis(200)));
    // ID 0x1234, recursion desired, one question: `ready.<ZONE>` A IN.
    let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in format!("ready.{ZONE}").split('.') {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    if socket.send_to(&query, addr).is_err() {
        return false;
    }
    let mut answer = [0u8; 512];
    matches!(socket.recv_from(&mut answer), Ok((n, _)) if n >= 12 && answer[..2] == [0x12, 0x34])
}
