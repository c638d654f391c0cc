//! The two halves of a connection's socket: frames read with a deadline (and header blocks
//! decoded with one HPACK decoder per connection), bytes written with one.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::Instant;

use super::{Frame, WAIT};

/// A read's deadline passed before a frame came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut;

/// How a flood's writes ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    Done,
    /// The socket took nothing for the wait given: the peer stopped reading.
    Blocked,
    /// The peer closed the connection (or reset it).
    Failed,
}

/// The reading side: frames out of the socket, decoded header blocks.
pub struct FrameReader {
    read: OwnedReadHalf,
    buf: Vec<u8>,
    /// The socket reached its end (or failed): nothing more comes.
    closed: bool,
    /// The first GOAWAY lbhost sent.
    pub goaway: Option<(u32, u32)>,
    hpack: loona_hpack::Decoder<'static>,
}

impl std::fmt::Debug for FrameReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameReader")
            .field("closed", &self.closed)
            .field("goaway", &self.goaway)
            .finish_non_exhaustive()
    }
}

impl FrameReader {
    pub(super) fn new(read: OwnedReadHalf) -> FrameReader {
        FrameReader {
            read,
            buf: Vec::new(),
            closed: false,
            goaway: None,
            hpack: loona_hpack::Decoder::new(),
        }
    }

    /// Whether the connection ended and every frame it brought was read.
    pub fn drained(&self) -> bool {
        self.closed && self.buf.is_empty()
    }

    /// The next frame, or `None` when the connection closed; panics after `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<Frame> {
        match self.next_until(Instant::now() + wait).await {
            Ok(frame) => frame,
            Err(TimedOut) => panic!("no frame from lbhost within {wait:?}"),
        }
    }

    /// The next frame, `Ok(None)` when the connection closed, [`TimedOut`] at `deadline`.
    pub async fn next_until(&mut self, deadline: Instant) -> Result<Option<Frame>, TimedOut> {
        loop {
            if self.buf.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
                if self.buf.len() >= 9 + len {
                    let head: Vec<u8> = self.buf.drain(..9).collect();
                    let payload = self.buf.drain(..len).collect();
                    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]);
                    let frame = Frame {
                        kind: head[3],
                        flags: head[4],
                        stream: stream & 0x7fff_ffff,
                        payload,
                    };
                    if self.goaway.is_none() {
                        self.goaway = frame.goaway();
                    }
                    return Ok(Some(frame));
                }
            }
            if self.closed {
                return Ok(None);
            }
            let mut chunk = [0u8; 64 * 1024];
            match tokio::time::timeout_at(deadline, self.read.read(&mut chunk)).await {
                Err(_) => return Err(TimedOut),
                Ok(Ok(0) | Err(_)) => self.closed = true,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads until lbhost closes the connection, for at most `within`; returns its GOAWAY (if
    /// any) and the frames before the close, or `Err` with the frames seen when it stays open.
    pub async fn closed_within(&mut self, within: Duration) -> Result<Vec<Frame>, Vec<Frame>> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            match self.next_until(deadline).await {
                Ok(Some(frame)) => seen.push(frame),
                Ok(None) => return Ok(seen),
                Err(TimedOut) => return Err(seen),
            }
        }
    }

    /// Decodes a header block into (name, value) pairs; a block lbhost got wrong fails the test.
    pub fn decode(&mut self, block: &[u8]) -> Vec<(String, String)> {
        let fields = self
            .hpack
            .decode(block)
            .unwrap_or_else(|e| panic!("lbhost sent a header block that does not decode: {e:?}"));
        fields
            .into_iter()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(&n).into_owned(),
                    String::from_utf8_lossy(&v).into_owned(),
                )
            })
            .collect()
    }
}

/// The writing side.
pub struct FrameWriter {
    write: OwnedWriteHalf,
}

impl std::fmt::Debug for FrameWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameWriter").finish_non_exhaustive()
    }
}

impl FrameWriter {
    pub(super) fn new(write: OwnedWriteHalf) -> FrameWriter {
        FrameWriter { write }
    }

    /// Writes `bytes` whole; panics when the socket fails or blocks for [`WAIT`].
    pub async fn send(&mut self, bytes: &[u8]) {
        match self.try_send(bytes, WAIT).await {
            Write::Done => {}
            other => panic!("writing {} bytes to lbhost: {other:?}", bytes.len()),
        }
    }

    /// Writes `bytes` whole, or says why not within `wait`.
    pub async fn try_send(&mut self, bytes: &[u8], wait: Duration) -> Write {
        match tokio::time::timeout(wait, self.write.write_all(bytes)).await {
            Ok(Ok(())) => Write::Done,
            Ok(Err(_)) => Write::Failed,
            Err(_) => Write::Blocked,
        }
    }
}
