//! The training load's HTTP/2 client: cleartext with prior knowledge (h2c, as lbhost serves
//! it), a batch of GETs in flight per round on one connection. Just enough of HTTP/2 for that:
//! requests are encoded with HPACK literals (no table, no Huffman), and of a response only the
//! first field is read, which a server encodes as an indexed `:status`.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// Frame types and flags (RFC 9113, section 6).
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// How the streams of a round ended.
#[derive(Debug, Default)]
pub struct Round {
    /// Responses with a 2xx status.
    pub ok: u64,
    /// Responses with another status, and streams the server reset.
    pub failed: u64,
}

/// One HTTP/2 connection to lbhost.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    next_stream: u32,
    /// DATA bytes received since the connection's window was last opened again.
    unacknowledged: u32,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_nodelay(true)?;
        let mut conn = Conn {
            stream,
            buf: Vec::with_capacity(16 * 1024),
            next_stream: 1,
            unacknowledged: 0,
        };
        let mut hello = PREFACE.to_vec();
        frame(&mut hello, SETTINGS, 0, 0, &[]);
        conn.stream.write_all(&hello)?;
        Ok(conn)
    }

    /// Sends `streams` GETs (every fourth with a browser's fields) and reads until each ended.
    pub fn round(&mut self, streams: usize, n: u64) -> io::Result<Round> {
        let mut out = Vec::new();
        for i in 0..streams as u64 {
            let id = self.next_stream;
            self.next_stream += 2;
            frame(
                &mut out,
                HEADERS,
                END_STREAM | END_HEADERS,
                id,
                &request_fields(n + i),
            );
        }
        self.stream.write_all(&out)?;
        let mut round = Round::default();
        let mut open = streams;
        while open > 0 {
            let (kind, flags, payload) = self.next_frame()?;
            match kind {
                HEADERS => {
                    // The response's head; a body follows unless the stream ends here.
                    if ok_status(flags, &payload) {
                        round.ok += 1;
                    } else {
                        round.failed += 1;
                    }
                    if flags & END_STREAM != 0 {
                        open -= 1;
                    }
                }
                DATA => {
                    self.consumed(payload.len())?;
                    if flags & END_STREAM != 0 {
                        open -= 1;
                    }
                }
                RST_STREAM => {
                    round.failed += 1;
                    open -= 1;
                }
                SETTINGS if flags & ACK == 0 => self.send(SETTINGS, ACK, 0, &[])?,
                PING if flags & ACK == 0 => self.send(PING, ACK, 0, &payload)?,
                GOAWAY => return Err(io::ErrorKind::ConnectionAborted.into()),
                _ => {}
            }
        }
        Ok(round)
    }

    /// Opens the connection's receive window again after `len` bytes of DATA (each stream's
    /// own window is never used up: the responses are small).
    fn consumed(&mut self, len: usize) -> io::Result<()> {
        self.unacknowledged += u32::try_from(len).unwrap_or(u32::MAX);
        if self.unacknowledged >= 32 * 1024 {
            let increment = std::mem::take(&mut self.unacknowledged);
            self.send(WINDOW_UPDATE, 0, 0, &increment.to_be_bytes())?;
        }
        Ok(())
    }

    fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) -> io::Result<()> {
        let mut out = Vec::with_capacity(9 + payload.len());
        frame(&mut out, kind, flags, stream, payload);
        self.stream.write_all(&out)
    }

    /// The next frame: its type, flags and payload.
    fn next_frame(&mut self) -> io::Result<(u8, u8, Vec<u8>)> {
        while self.buf.len() < 9 {
            self.fill()?;
        }
        let len = usize::from(self.buf[0]) << 16
            | usize::from(self.buf[1]) << 8
            | usize::from(self.buf[2]);
        while self.buf.len() < 9 + len {
            self.fill()?;
        }
        let (kind, flags) = (self.buf[3], self.buf[4]);
        let payload = self.buf[9..9 + len].to_vec();
        self.buf.drain(..9 + len);
        Ok((kind, flags, payload))
    }

    fn fill(&mut self) -> io::Result<()> {
        super::read_more(&mut self.stream, &mut self.buf)
    }
}

/// Appends a frame.
fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len();
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
}

/// The HPACK block of the `n`th GET.
fn request_fields(n: u64) -> Vec<u8> {
    // :method GET, :scheme http (static table entries 2 and 6).
    let mut block = vec![0x82, 0x86];
    let browser = n.is_multiple_of(4);
    let path = if browser {
        format!("/app/items?page={}", n % 50)
    } else {
        "/".to_string()
    };
    // :path and :authority: literals without indexing, names from the static table (4, 1).
    literal(&mut block, 0x04, None, &path);
    // Every other request goes to the pool of h2c backends (see the training's config).
    let authority = if n.is_multiple_of(2) {
        "train-h2c"
    } else {
        "train"
    };
    literal(&mut block, 0x01, None, authority);
    if browser {
        for (name, value) in [
            (
                "user-agent",
                "Mozilla/5.0 (X11; Linux x86_64) lbhost-training",
            ),
            ("accept", "text/html,application/xhtml+xml,*/*;q=0.8"),
            ("accept-language", "en-US,en;q=0.5"),
            ("cookie", "session=5f2b9c0e7a; theme=dark"),
        ] {
            literal(&mut block, 0x00, Some(name), value);
        }
    }
    block
}

/// A literal field without indexing: `first` is 0x00 with a new `name`, or a static-table
/// index below 15 for the name. Strings are raw (no Huffman) and shorter than 127 bytes.
fn literal(block: &mut Vec<u8>, first: u8, name: Option<&str>, value: &str) {
    block.push(first);
    for text in name.into_iter().chain([value]) {
        block.push(text.len().min(126) as u8);
        block.extend_from_slice(&text.as_bytes()[..text.len().min(126)]);
    }
}

/// Whether a response's HEADERS payload starts with an indexed `:status` of 200, 204 or 206
/// (static table entries 8 to 10), past any padding length and priority fields.
fn ok_status(flags: u8, payload: &[u8]) -> bool {
    let mut at = 0;
    if flags & PADDED != 0 {
        at += 1;
    }
    if flags & PRIORITY != 0 {
        at += 5;
    }
    payload.get(at).is_some_and(|b| (0x88..=0x8a).contains(b))
}
