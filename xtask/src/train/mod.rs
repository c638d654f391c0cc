//! The training run of `cargo xtask dist`: an instrumented lbhost in front of three demo
//! backends on loopback, under a few seconds of load shaped like production traffic (HTTP/1.1
//! keep-alive: mostly small GETs, some with a browser's fields, some uploads and downloads; and
//! HTTP/2 clients with many requests in flight), then stopped with SIGTERM so that it writes its
//! profile as it exits. Code the training does not run is laid out as cold, so each protocol
//! lbhost serves must be in it. The same run, shorter, checks the optimised binary before it
//! is shipped.

mod h1;
mod h2;

use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// HTTP/1.1 client connections of the load.
const H1_CONNECTIONS: usize = 48;
/// HTTP/2 client connections, and the requests each keeps in flight.
const H2_CONNECTIONS: usize = 4;
const H2_STREAMS: usize = 8;

/// What the training load got.
#[derive(Debug, Default)]
pub struct Totals {
    /// Responses read whole.
    pub requests: u64,
    /// Of those, over HTTP/2.
    pub h2_requests: u64,
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
    // The same backends spoken to in HTTP/2 too (the demo backend serves h2c), for the half of
    // the HTTP/2 clients' requests that name `train-h2c`: lbhost's HTTP/2 client is trained
    // as well as its server.
    let h2c_backends: Vec<String> = ports[..3]
        .iter()
        .map(|p| format!(r#"{{"url": "http://127.0.0.1:{p}", "protocol": "h2c"}}"#))
        .collect();
    let config = dir.join("train.json");
    std::fs::write(
        &config,
        format!(
            r#"{{
  "listen": "127.0.0.1:{listen}",
  "admin": "127.0.0.1:{admin}",
  "strategy": {strategy},
  "pools": {{
    "h1": {{"backends": [{backends}]}},
    "h2c": {{"backends": [{h2c_backends}]}}
  }},
  "routes": [{{"match": {{"host": "train-h2c"}}, "pool": "h2c"}}],
  "default_pool": "h1",
  "health_check": {{"type": "http", "path": "/health", "interval": "1s", "timeout": "1s"}},
  "workers": 1,
  "shutdown_timeout": "5s"
}}
"#,
            listen = ports[3],
            admin = ports[4],
            strategy = json_string(&root.join("strategies/round_robin.wasm").to_string_lossy()),
            backends = backends.join(", "),
            h2c_backends = h2c_backends.join(", "),
        ),
    )
    .with_context(|| format!("writing {}", config.display()))?;
    let lb = Command::new(lbhost)
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .spawn()
        .with_context(|| format!("starting {}", lbhost.display()))?;
    let lb_pid = lb.id();
    children.0.push(lb);

    let addr = SocketAddr::from(([127, 0, 0, 1], ports[3]));
    wait_until_serving(addr)?;
    let totals = load(addr, duration)?;
    // The admin side too, once: a Prometheus scrape.
    let mut admin = h1::Conn::open(SocketAddr::from(([127, 0, 0, 1], ports[4])))?;
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

/// `text` as a JSON string.
fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
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
        let answered = h1::Conn::open(addr)
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

/// What the load threads count, together.
#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    h2_requests: AtomicU64,
    failed: AtomicU64,
    broken: AtomicU64,
}

/// One client connection of the load, either protocol: each round sends and reads one or more
/// requests and says how many got a 2xx and how many did not.
trait Client: Sized {
    const HTTP2: bool;
    fn open(addr: SocketAddr) -> io::Result<Self>;
    fn round(&mut self, n: u64) -> io::Result<(u64, u64)>;
    /// The server ended the connection with the last response.
    fn closed(&self) -> bool;
}

impl Client for h1::Conn {
    const HTTP2: bool = false;

    fn open(addr: SocketAddr) -> io::Result<Self> {
        h1::Conn::open(addr)
    }

    fn round(&mut self, n: u64) -> io::Result<(u64, u64)> {
        let status = self.exchange(&request(n))?;
        Ok(if (200..300).contains(&status) {
            (1, 0)
        } else {
            (0, 1)
        })
    }

    fn closed(&self) -> bool {
        self.closed
    }
}

impl Client for h2::Conn {
    const HTTP2: bool = true;

    fn open(addr: SocketAddr) -> io::Result<Self> {
        h2::Conn::open(addr)
    }

    fn round(&mut self, n: u64) -> io::Result<(u64, u64)> {
        let round = h2::Conn::round(self, H2_STREAMS, n)?;
        Ok((round.ok, round.failed))
    }

    fn closed(&self) -> bool {
        false
    }
}

/// [`H1_CONNECTIONS`] and [`H2_CONNECTIONS`] client connections for `duration`, one thread
/// each.
fn load(addr: SocketAddr, duration: Duration) -> Result<Totals> {
    let counters = Arc::new(Counters::default());
    let deadline = Instant::now() + duration;
    let mut threads = Vec::new();
    for t in 0..H1_CONNECTIONS + H2_CONNECTIONS {
        let counters = Arc::clone(&counters);
        threads.push(std::thread::spawn(move || {
            if t < H1_CONNECTIONS {
                drive::<h1::Conn>(addr, deadline, t as u64, &counters);
            } else {
                drive::<h2::Conn>(addr, deadline, t as u64, &counters);
            }
        }));
    }
    for thread in threads {
        if thread.join().is_err() {
            bail!("a training load thread panicked");
        }
    }
    Ok(Totals {
        requests: counters.requests.load(Ordering::Relaxed),
        h2_requests: counters.h2_requests.load(Ordering::Relaxed),
        failed: counters.failed.load(Ordering::Relaxed),
        broken: counters.broken.load(Ordering::Relaxed),
    })
}

/// Runs rounds of `C` until `deadline`, reconnecting after a close or an error.
fn drive<C: Client>(addr: SocketAddr, deadline: Instant, seed: u64, counters: &Counters) {
    let mut conn: Option<C> = None;
    let mut n = seed;
    while Instant::now() < deadline {
        n += 1;
        let result = match conn.as_mut() {
            Some(c) => c.round(n),
            None => C::open(addr).and_then(|c| conn.insert(c).round(n)),
        };
        match result {
            Ok((ok, failed)) => {
                counters.requests.fetch_add(ok + failed, Ordering::Relaxed);
                if C::HTTP2 {
                    counters
                        .h2_requests
                        .fetch_add(ok + failed, Ordering::Relaxed);
                }
                counters.failed.fetch_add(failed, Ordering::Relaxed);
                if conn.as_ref().is_some_and(C::closed) {
                    conn = None;
                }
            }
            Err(_) => {
                counters.broken.fetch_add(1, Ordering::Relaxed);
                conn = None;
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Reads what `stream` has into `buf` (for both clients); an error at the end of the
/// connection.
fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    let mut chunk = [0u8; 16 * 1024];
    let n = stream.read(&mut chunk)?;
    if n == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::json_string;

    #[test]
    fn json_strings_escape_quotes_backslashes_and_control_characters() {
        assert_eq!(json_string("/a b/c.wasm"), r#""/a b/c.wasm""#);
        assert_eq!(json_string("a\"b\\c\n"), r#""a\"b\\c\u000a""#);
    }
}
