//! `cargo xtask demo --smoke`: the demo, checked from outside and stopped. It asks the proxy on
//! :8080 as a client would, until each of the three demo backends has answered, and fails if a
//! request is refused or answered with anything but 200.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The demo's proxy listener (examples/demo.json).
const PROXY: &str = "127.0.0.1:8080";
/// The backends' names, as they put them in `x-backend`.
const BACKENDS: [&str; 3] = ["alpha", "beta", "gamma"];
/// Requests sent once lbhost serves; round-robin reaches each backend within three.
const REQUESTS: usize = 30;

/// Waits (at most 60 s) until lbhost serves, then sends [`REQUESTS`] requests and checks that
/// every one got 200 and that all three backends answered.
pub fn check() -> Result<()> {
    let addr: SocketAddr = PROXY.parse().context("the demo's proxy address")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match get(addr) {
            Ok(_) => break,
            Err(e) if Instant::now() > deadline => {
                return Err(e.context(format!("lbhost did not serve on {PROXY} within 60 s")))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    let mut seen = BTreeSet::new();
    for n in 0..REQUESTS {
        let (status, backend) = get(addr).with_context(|| format!("request {n}"))?;
        if status != 200 {
            bail!("request {n} through the demo answered {status}");
        }
        seen.insert(backend);
    }
    let missing: Vec<_> = BACKENDS.iter().filter(|b| !seen.contains(**b)).collect();
    if !missing.is_empty() {
        bail!("{REQUESTS} requests through the demo never reached {missing:?} (saw {seen:?})");
    }
    eprintln!("xtask demo --smoke: {REQUESTS} requests answered 200 by {seen:?}");
    Ok(())
}

/// One `GET /` on a new connection: the status and the `x-backend` header.
fn get(addr: SocketAddr) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"GET / HTTP/1.1\r\nhost: demo\r\nconnection: close\r\n\r\n")?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let text = String::from_utf8_lossy(&answer);
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .context("no HTTP status line in the answer")?;
    let backend = lines
        .take_while(|line| !line.is_empty())
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("x-backend")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_default();
    Ok((status, backend))
}
