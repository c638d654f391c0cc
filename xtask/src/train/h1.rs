//! The training load's HTTP/1.1 client: blocking, keep-alive, whole responses.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A blocking HTTP/1.1 client connection that reads whole responses (length, chunked, or to
/// the end of the connection).
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The last response ended the connection.
    pub closed: bool,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> io::Result<Conn> {
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
    pub fn exchange(&mut self, request: &[u8]) -> io::Result<u16> {
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

    fn fill(&mut self) -> io::Result<()> {
        super::read_more(&mut self.stream, &mut self.buf)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}
