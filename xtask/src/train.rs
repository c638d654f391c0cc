//! The training run of `cargo xtask dist`: an instrumented lbhost in front of three demo
//! backends on loopback, under a few seconds of HTTP/1.1 keep-alive load shaped like production
//! traffic (mostly small GETs, some with a browser's fields, some uploads and downloads), then
//! stopped with SIGTERM so that it writes its profile as it exits. The same run, shorter, checks
//! the optimised binary before it is shipped.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Client connections of the load.
const CONNECTIONS: usize = 64;

/// What the training load got.
#[derive(Debug, Default)]
pub struct Totals {
    /// Responses read whole.
    pub requests: u64,
    /// Of those, answered with a status other than 2xx.
    pub failed: u64,
    /// Connections that broke (I/O errors, unparsable answers).
    pub broken: u64,
}

/// Runs `lbhost` in front of three `backend`s, loads it for `duration` and stops it with
/// SIGTERM; fails unless it served and exited cleanly. Its config goes to `dir`.
pub fn run(
    root: &Path,
    lbhost: &Path,
    backend: &Path,
    dir: &Path,
    duration: Duration,
) -> Result<Totals> {
    let ports = free_ports(5)?;
    let mut children = Children(Vec::new());
    for (i, port) in ports[..3].iter().enumerate() {
        children.0.push(
            Command::new(backend)
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .args(["--name", &format!("train-{i}")])
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("starting {}", backend.display()))?,
        );
    }
    let backends: Vec<String> = ports[..3]
        .iter()
        .map(|p| format!(r#"{{"url": "http://127.0.0.1:{p}"}}"#))
        .collect();
    let config = dir.join("train.json");
    std::fs::write(
        &config,
        format!(
            r#"{{
  "listen": "127.0.0.1:{listen}",
  "admin": "127.0.0.1:{admin}",
  "backends": [{backends}],
  "health_check": {{"type": "http", "path": "/health", "interval": "1s", "timeout": "1s"}},
  "workers": 1,
  "shutdown_timeout": "5s"
}}
"#,
            listen = ports[3],
            admin = ports[4],
            backends = backends.join(", "),
        ),
    )
    .with_context(|| format!("writing {}", config.display()))?;
    let lb = Command::new(lbhost)
        .arg("--config")
        .arg(&config)
        .arg("--strategy")
        .arg(root.join("strategies/round_robin.wasm"))
        .env("RUST_LOG", "warn")
        .spawn()
        .with_context(|| format!("starting {}", lbhost.display()))?;
    let lb_pid = lb.id();
    children.0.push(lb);

    let addr = SocketAddr::from(([127, 0, 0, 1], ports[3]));
    wait_until_serving(addr)?;
    let totals = load(addr, duration)?;
    // The admin side too, once: a Prometheus scrape.
    let mut admin = Conn::open(SocketAddr::from(([127, 0, 0, 1], ports[4])))?;
    admin.exchange(b"GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n")?;

    // SIGTERM: lbhost drains and exits, and the instrumented binary writes its profile.
    let status = Command::new("kill")
        .args(["-TERM", &lb_pid.to_string()])
        .status()
        .context("running kill")?;
    if !status.success() {
        bail!("kill -TERM {lb_pid} failed ({status})");
    }
    let lb = children.0.pop().context("lbhost was started")?;
    let exit = wait_for_exit(lb, Duration::from_secs(30))?;
    if !exit.success() {
        bail!("lbhost exited with {exit} after SIGTERM");
    }
    let allowed = totals.requests / 100;
    if totals.requests == 0 || totals.broken > allowed || totals.failed > allowed {
        bail!("lbhost did not serve the load well: {totals:?}");
    }
    Ok(totals)
}

/// Kills whatever it still holds when dropped (backends, or lbhost after an error).
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `n` distinct ports free on 127.0.0.1 right now.
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<io::Result<Vec<_>>>()
        .context("binding 127.0.0.1:0")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// Waits until lbhost answers 200 (its strategy compiles first: slower when instrumented).
fn wait_until_serving(addr: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let answered = Conn::open(addr)
            .and_then(|mut c| c.exchange(b"GET / HTTP/1.1\r\nHost: train\r\n\r\n"))
            .is_ok_and(|status| status == 200);
        if answered {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("lbhost did not answer on {addr} within 120 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn wait_for_exit(mut child: Child, limit: Duration) -> Result<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("lbhost did not exit within {limit:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// [`CONNECTIONS`] keep-alive connections for `duration`, one thread each.
fn load(addr: SocketAddr, duration: Duration) -> Result<Totals> {
    let requests = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let broken = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let threads: Vec<_> = (0..CONNECTIONS)
        .map(|t| {
            let (requests, failed, broken) = (
                Arc::clone(&requests),
                Arc::clone(&failed),
                Arc::clone(&broken),
            );
            std::thread::spawn(move || {
                let mut conn: Option<Conn> = None;
                let mut n = t as u64;
                while Instant::now() < deadline {
                    n += 1;
                    let request = request(n);
                    let result = match conn.as_mut() {
                        Some(c) => c.exchange(&request),
                        None => Conn::open(addr).and_then(|c| {
                            let c = conn.insert(c);
                            c.exchange(&request)
                        }),
                    };
                    match result {
                        Ok(status) => {
                            requests.fetch_add(1, Ordering::Relaxed);
                            if !(200..300).contains(&status) {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                            if conn.as_ref().is_some_and(|c| c.closed) {
                                conn = None;
                            }
                        }
                        Err(_) => {
                            broken.fetch_add(1, Ordering::Relaxed);
                            conn = None;
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        if thread.join().is_err() {
            bail!("a training load thread panicked");
        }
    }
    Ok(Totals {
        requests: requests.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        broken: broken.load(Ordering::Relaxed),
    })
}

/// The `n`th request of a connection: mostly small GETs (a quarter with a browser's fields),
/// one in 50 a 4 KiB upload, one in 50 a 64 KiB download.
fn request(n: u64) -> Vec<u8> {
    match n % 50 {
        0 => {
            let mut r = b"POST /upload HTTP/1.1\r\nHost: train\r\nContent-Type: application/octet-stream\r\nContent-Length: 4096\r\n\r\n".to_vec();
            r.resize(r.len() + 4096, b'x');
            r
        }
        1 => b"GET /download?bytes=65536 HTTP/1.1\r\nHost: train\r\n\r\n".to_vec(),
        k if k % 4 == 0 => format!(
            "GET /app/items?page={k} HTTP/1.1\r\nHost: shop.example\r\n\
             User-Agent: Mozilla/5.0 (X11; Linux x86_64) lbhost-training\r\n\
             Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
             Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n\
             Cookie: session=5f2b9c0e7a; theme=dark\r\nX-Request-Id: train-{n}\r\n\r\n"
        )
        .into_bytes(),
        _ => b"GET / HTTP/1.1\r\nHost: train\r\n\r\n".to_vec(),
    }
}

/// A blocking HTTP/1.1 client connection that reads whole responses (length, chunked, or to
/// the end of the connection).
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The last response ended the connection.
    closed: bool,
}

impl Conn {
    fn open(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(16 * 1024),
            closed: false,
        })
    }

    /// Sends `request` and reads the response whole; returns its status.
    fn exchange(&mut self, request: &[u8]) -> io::Result<u16> {
        self.stream.write_all(request)?;
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            self.fill()?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_ascii_lowercase();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("no status"))?;
        let field = |name: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':').map(str::trim))
        };
        self.closed = field("connection") == Some("close");
        self.buf.drain(..head_end);
        if field("transfer-encoding").is_some_and(|v| v.ends_with("chunked")) {
            self.read_chunked()?;
        } else if let Some(len) = field("content-length") {
            let len: usize = len.parse().map_err(|_| bad("bad content-length"))?;
            while self.buf.len() < len {
                self.fill()?;
            }
            self.buf.drain(..len);
        } else if !matches!(status, 204 | 304) {
            // Delimited by the end of the connection.
            while self.fill().is_ok() {}
            self.buf.clear();
            self.closed = true;
        }
        Ok(status)
    }

    fn read_chunked(&mut self) -> io::Result<()> {
        loop {
            let line_end = loop {
                if let Some(i) = find(&self.buf, b"\r\n") {
                    break i;
                }
                self.fill()?;
            };
            let size_text = String::from_utf8_lossy(&self.buf[..line_end]);
            let size_text = size_text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16).map_err(|_| bad("bad chunk size"))?;
            self.buf.drain(..line_end + 2);
            if size == 0 {
                // Trailer fields, if any, then the empty line.
                loop {
                    let end = loop {
                        if let Some(i) = find(&self.buf, b"\r\n") {
                            break i;
                        }
                        self.fill()?;
                    };
                    self.buf.drain(..end + 2);
                    if end == 0 {
                        return Ok(());
                    }
                }
            }
            while self.buf.len() < size + 2 {
                self.fill()?;
            }
            self.buf.drain(..size + 2);
        }
    }

    /// Reads more bytes into the buffer; an error at the end of the connection.
    fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}
