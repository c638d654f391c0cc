//! The clients of the upgrade tests: paced keep-alive HTTP/1.1 clients on raw sockets (so a
//! reset or a cut answer is seen as such, never retried away by a client library), and
//! WebSockets that echo until their connection ends.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// The longest one exchange may take; slower counts as failed.
const EXCHANGE_LIMIT: Duration = Duration::from_secs(5);

/// What the paced clients saw.
#[derive(Debug, Default)]
pub struct Tally {
    pub ok: AtomicU64,
    /// Failed otherwise: refused, cut, another status, too slow.
    pub failed: AtomicU64,
    /// Failed with a connection reset.
    pub resets: AtomicU64,
    /// Answers that said `connection: close` (the client then opened a new connection).
    pub closes: AtomicU64,
    pub first_failures: Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, reset: bool, what: String) {
        let counter = if reset { &self.resets } else { &self.failed };
        counter.fetch_add(1, Ordering::Relaxed);
        let mut first = self
            .first_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if first.len() < 10 {
            first.push(what);
        }
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// `clients` keep-alive clients, each sending `GET /` to `addr` every `every` (bounded: a late
/// tick is skipped, never caught up), until stopped.
pub struct Paced {
    stop: Arc<AtomicBool>,
    pub tally: Arc<Tally>,
    clients: Vec<JoinHandle<()>>,
}

impl Paced {
    pub fn start(addr: SocketAddr, clients: usize, every: Duration) -> Paced {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Tally::default());
        let clients = (0..clients)
            .map(|_| {
                let (stop, tally) = (Arc::clone(&stop), Arc::clone(&tally));
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(every);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                    let mut conn: Option<BufReader<TcpStream>> = None;
                    while !stop.load(Ordering::Relaxed) {
                        tick.tick().await;
                        let result =
                            tokio::time::timeout(EXCHANGE_LIMIT, exchange(&mut conn, addr)).await;
                        match result {
                            Ok(Ok(close)) => {
                                tally.ok.fetch_add(1, Ordering::Relaxed);
                                if close {
                                    tally.closes.fetch_add(1, Ordering::Relaxed);
                                    conn = None;
                                }
                            }
                            Ok(Err(e)) => {
                                conn = None;
                                let reset = e.kind() == std::io::ErrorKind::ConnectionReset;
                                tally.fail(reset, e.to_string());
                            }
                            Err(_) => {
                                conn = None;
                                tally.fail(false, format!("no answer within {EXCHANGE_LIMIT:?}"));
                            }
                        }
                    }
                })
            })
            .collect();
        Paced {
            stop,
            tally,
            clients,
        }
    }

    /// Stops the clients; each finishes its exchange.
    pub async fn stop(self) -> Arc<Tally> {
        self.stop.store(true, Ordering::Relaxed);
        for client in self.clients {
            let _ = client.await;
        }
        self.tally
    }
}

/// One `GET /` on `conn` (a new connection if there is none); whether the answer said
/// `connection: close`.
async fn exchange(
    conn: &mut Option<BufReader<TcpStream>>,
    addr: SocketAddr,
) -> std::io::Result<bool> {
    let stream = match conn {
        Some(stream) => stream,
        None => {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            conn.insert(BufReader::new(stream))
        }
    };
    stream
        .get_mut()
        .write_all(b"GET / HTTP/1.1\r\nHost: lb\r\n\r\n")
        .await?;
    let mut line = String::new();
    let mut status = None;
    let mut length = None;
    let mut close = false;
    loop {
        line.clear();
        if stream.read_line(&mut line).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the connection closed before a whole response head",
            ));
        }
        let text = line.trim_end();
        if text.is_empty() {
            break;
        }
        if status.is_none() {
            status = text.split(' ').nth(1).map(str::to_string);
            continue;
        }
        let (name, value) = text.split_once(':').unwrap_or((text, ""));
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    let length = length.ok_or_else(|| std::io::Error::other("no content-length"))?;
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await?;
    match status.as_deref() {
        Some("200") => Ok(close),
        other => Err(std::io::Error::other(format!("status {other:?}"))),
    }
}

/// How a WebSocket went.
#[derive(Debug, Clone)]
pub struct WsRun {
    pub echoes: u64,
    /// When the last echo came back.
    pub last_echo: Option<Instant>,
    /// When and how it ended.
    pub ended: Option<(Instant, String)>,
}

/// A WebSocket through `addr` to the backend's `/ws`, sending a message every 100 ms and
/// waiting for its echo, until its connection ends.
pub struct Ws {
    pub run: Arc<Mutex<WsRun>>,
    task: JoinHandle<()>,
}

impl Ws {
    pub async fn open(addr: SocketAddr) -> Ws {
        let url = format!("ws://{addr}/ws");
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("a WebSocket through lbhost");
        let run = Arc::new(Mutex::new(WsRun {
            echoes: 0,
            last_echo: None,
            ended: None,
        }));
        let record = Arc::clone(&run);
        let task = tokio::spawn(async move {
            let mut n = 0u64;
            let why = loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                n += 1;
                let text = format!("message {n}");
                if let Err(e) = ws.send(Message::text(text.clone())).await {
                    break format!("send: {e}");
                }
                match tokio::time::timeout(Duration::from_secs(2), ws.next()).await {
                    Ok(Some(Ok(Message::Text(echo)))) if echo.as_str() == text => {
                        let mut run = record.lock().unwrap_or_else(|p| p.into_inner());
                        run.echoes += 1;
                        run.last_echo = Some(Instant::now());
                    }
                    Ok(other) => break format!("instead of the echo: {other:?}"),
                    Err(_) => break "no echo within 2 s".to_string(),
                }
            };
            record.lock().unwrap_or_else(|p| p.into_inner()).ended = Some((Instant::now(), why));
        });
        Ws { run, task }
    }

    /// What it saw, once it ended (or `within` passed).
    pub async fn finish(self, within: Duration) -> WsRun {
        let _ = tokio::time::timeout(within, self.task).await;
        self.run.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
