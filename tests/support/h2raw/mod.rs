//! A hand-written HTTP/2 client (h2c with prior knowledge), frame by frame, for what a real
//! client would not do on purpose: streams past the limit, resets, floods, malformed heads,
//! frames breaking the protocol. Requests are HPACK plain literals (no table, no Huffman);
//! answers are decoded with a real HPACK decoder, one per connection. Every read and write has a
//! deadline: a test using it cannot hang.

mod socket;
mod wire;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

pub use socket::{FrameReader, FrameWriter, TimedOut, Write};
pub use wire::{
    block, code, flag, frame, kind, literal, request_block, setting, settings_frame, Frame,
    PREFACE, WAIT,
};
use wire::{data_of, headers_fragment};

/// A response as the client saw it.
#[derive(Clone, Debug, Default)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(String, String)>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// How a stream ended, as the client saw it.
#[derive(Clone, Debug)]
pub enum Answer {
    Response(Response),
    /// RST_STREAM with this code (after a response head, if one came).
    Reset(u32),
    /// The connection ended first: its GOAWAY (last stream, code), if one came.
    Closed(Option<(u32, u32)>),
}

/// One HTTP/2 connection to lbhost, spoken frame by frame. Reading answers lbhost's SETTINGS
/// and PINGs and, unless [`H2::manual_credit`] is set, gives back the flow-control credit of
/// every DATA frame at once.
#[derive(Debug)]
pub struct H2 {
    pub reader: FrameReader,
    pub writer: FrameWriter,
    /// lbhost's SETTINGS so far.
    pub peer_settings: HashMap<u16, u32>,
    /// When set, DATA frames are not credited back: the test sends its WINDOW_UPDATEs.
    pub manual_credit: bool,
    /// What lbhost lets this client send: on the connection, and on each stream as credit
    /// beyond lbhost's SETTINGS_INITIAL_WINDOW_SIZE (WINDOW_UPDATEs less DATA sent).
    send_window: i64,
    stream_credit: HashMap<u32, i64>,
    /// Streams in progress and streams that ended, for [`H2::answer`].
    partial: HashMap<u32, Partial>,
    ended: HashMap<u32, Answer>,
    /// Every stream lbhost ended (END_STREAM or RST_STREAM): nothing but a late reset or
    /// window update may follow on it.
    finished: std::collections::HashSet<u32>,
}

#[derive(Default)]
struct Partial {
    response: Option<Response>,
    /// A header block in CONTINUATION frames still to come, and whether END_STREAM was set.
    block: Option<(Vec<u8>, bool)>,
}

impl std::fmt::Debug for Partial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partial")
            .field("response", &self.response)
            .finish_non_exhaustive()
    }
}

impl H2 {
    /// Connects and sends the preface, then SETTINGS with `params`.
    pub async fn connect(addr: SocketAddr, params: &[(u16, u32)]) -> H2 {
        let mut h2 = H2::connect_bare(addr).await;
        let mut opening = PREFACE.to_vec();
        opening.extend(settings_frame(params));
        h2.writer.send(&opening).await;
        h2
    }

    /// Connects and sends nothing.
    pub async fn connect_bare(addr: SocketAddr) -> H2 {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| panic!("connecting to {addr}: timed out"))
            .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        H2 {
            reader: FrameReader::new(read),
            writer: FrameWriter::new(write),
            peer_settings: HashMap::new(),
            manual_credit: false,
            send_window: 65_535,
            stream_credit: HashMap::new(),
            partial: HashMap::new(),
            ended: HashMap::new(),
            finished: std::collections::HashSet::new(),
        }
    }

    /// [`H2::connect`], then reads until lbhost's SETTINGS came (and were acknowledged).
    pub async fn handshake(addr: SocketAddr, params: &[(u16, u32)]) -> H2 {
        let mut h2 = H2::connect(addr, params).await;
        let deadline = Instant::now() + WAIT;
        loop {
            match h2.frame_until(deadline).await {
                Ok(Some(f)) if f.kind == kind::SETTINGS && !f.has(flag::ACK) => return h2,
                Ok(Some(_)) => {}
                Ok(None) => panic!("lbhost closed the connection before its SETTINGS"),
                Err(TimedOut) => panic!("no SETTINGS from lbhost within {WAIT:?}"),
            }
        }
    }

    /// Writes raw bytes (panics when lbhost does not take them).
    pub async fn send(&mut self, bytes: &[u8]) {
        self.writer.send(bytes).await;
    }

    /// Writes one frame.
    pub async fn frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        self.send(&frame(kind, flags, stream, payload)).await;
    }

    /// HEADERS with END_HEADERS, and END_STREAM when `end_stream`.
    pub async fn headers(&mut self, stream: u32, block: &[u8], end_stream: bool) {
        let flags = flag::END_HEADERS | if end_stream { flag::END_STREAM } else { 0 };
        self.frame(kind::HEADERS, flags, stream, block).await;
    }

    /// `GET path` on `stream`, whole (HEADERS with END_STREAM).
    pub async fn get(&mut self, stream: u32, path: &str) {
        let block = request_block("GET", path, "lbhost.test", &[]);
        self.headers(stream, &block, true).await;
    }

    /// DATA, with END_STREAM when `end_stream`. Counts against the send windows.
    pub async fn data(&mut self, stream: u32, data: &[u8], end_stream: bool) {
        let flags = if end_stream { flag::END_STREAM } else { 0 };
        self.frame(kind::DATA, flags, stream, data).await;
        let len = data.len() as i64;
        self.send_window -= len;
        *self.stream_credit.entry(stream).or_default() -= len;
    }

    pub async fn rst(&mut self, stream: u32, code: u32) {
        self.frame(kind::RST_STREAM, 0, stream, &code.to_be_bytes())
            .await;
    }

    pub async fn window_update(&mut self, stream: u32, increment: u32) {
        self.frame(kind::WINDOW_UPDATE, 0, stream, &increment.to_be_bytes())
            .await;
    }

    pub async fn ping(&mut self, data: [u8; 8]) {
        self.frame(kind::PING, 0, 0, &data).await;
    }

    pub async fn settings(&mut self, params: &[(u16, u32)]) {
        self.send(&settings_frame(params)).await;
    }

    /// PRIORITY: `stream` depends on `depends_on` with `weight`.
    pub async fn priority(&mut self, stream: u32, depends_on: u32, weight: u8) {
        let mut payload = depends_on.to_be_bytes().to_vec();
        payload.push(weight);
        self.frame(kind::PRIORITY, 0, stream, &payload).await;
    }

    /// How many bytes of DATA lbhost lets this client send on `stream` now.
    pub fn send_room(&self, stream: u32) -> i64 {
        let initial = i64::from(
            *self
                .peer_settings
                .get(&setting::INITIAL_WINDOW_SIZE)
                .unwrap_or(&65_535),
        );
        let stream_room = initial + self.stream_credit.get(&stream).copied().unwrap_or(0);
        stream_room.min(self.send_window)
    }

    /// The next frame (after answering it if lbhost asked for an answer), `None` when the
    /// connection closed; panics after `wait`.
    pub async fn next_frame(&mut self, wait: Duration) -> Option<Frame> {
        match self.frame_until(Instant::now() + wait).await {
            Ok(frame) => frame,
            Err(TimedOut) => panic!("no frame from lbhost within {wait:?}"),
        }
    }

    /// One frame, read and answered, and recorded towards [`H2::answer`].
    pub async fn frame_until(&mut self, deadline: Instant) -> Result<Option<Frame>, TimedOut> {
        let Some(frame) = self.reader.next_until(deadline).await? else {
            // Streams still open end with the connection.
            let goaway = self.reader.goaway;
            for (id, _) in self.partial.drain() {
                self.ended.entry(id).or_insert(Answer::Closed(goaway));
            }
            return Ok(None);
        };
        self.react(&frame).await;
        Ok(Some(frame))
    }

    async fn react(&mut self, f: &Frame) {
        if matches!(f.kind, kind::HEADERS | kind::CONTINUATION | kind::DATA) {
            assert!(
                !self.finished.contains(&f.stream),
                "lbhost sent a frame of type {} on stream {} after ending it",
                f.kind,
                f.stream
            );
        }
        match f.kind {
            kind::SETTINGS if !f.has(flag::ACK) => {
                for param in f.payload.as_chunks::<6>().0 {
                    let id = u16::from_be_bytes([param[0], param[1]]);
                    let value = u32::from_be_bytes([param[2], param[3], param[4], param[5]]);
                    self.peer_settings.insert(id, value);
                }
                self.try_frame(kind::SETTINGS, flag::ACK, 0, &[]).await;
            }
            kind::PING if !f.has(flag::ACK) => {
                let payload = f.payload.clone();
                self.try_frame(kind::PING, flag::ACK, 0, &payload).await;
            }
            kind::WINDOW_UPDATE => {
                let increment = u32::from_be_bytes(
                    f.payload
                        .get(..4)
                        .and_then(|b| b.try_into().ok())
                        .unwrap_or([0; 4]),
                ) & 0x7fff_ffff;
                if f.stream == 0 {
                    self.send_window += i64::from(increment);
                } else {
                    *self.stream_credit.entry(f.stream).or_default() += i64::from(increment);
                }
            }
            kind::HEADERS | kind::CONTINUATION => self.header_fragment(f),
            kind::DATA => {
                let partial = self.partial.entry(f.stream).or_default();
                if let Some(response) = partial.response.as_mut() {
                    response.body.extend_from_slice(data_of(f));
                }
                if f.has(flag::END_STREAM) {
                    self.end(f.stream);
                }
                let len = u32::try_from(f.payload.len()).expect("a frame is under 16 MiB");
                if !self.manual_credit && len > 0 {
                    let mut credit = frame(kind::WINDOW_UPDATE, 0, 0, &len.to_be_bytes());
                    if !f.has(flag::END_STREAM) {
                        credit.extend(frame(kind::WINDOW_UPDATE, 0, f.stream, &len.to_be_bytes()));
                    }
                    let _ = self.writer.try_send(&credit, WAIT).await;
                }
            }
            kind::RST_STREAM => {
                let code = f.error_code().unwrap_or(u32::MAX);
                self.partial.remove(&f.stream);
                self.ended.entry(f.stream).or_insert(Answer::Reset(code));
            }
            _ => {}
        }
    }

    /// A frame of an answer, written if the socket takes it (lbhost may have closed it).
    async fn try_frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let _ = self
            .writer
            .try_send(&frame(kind, flags, stream, payload), WAIT)
            .await;
    }

    /// A HEADERS or CONTINUATION frame of a response: the head, then trailers.
    fn header_fragment(&mut self, f: &Frame) {
        let partial = self.partial.entry(f.stream).or_default();
        let fragment = if f.kind == kind::HEADERS {
            headers_fragment(f)
        } else {
            &f.payload[..]
        };
        let (mut block, end_stream) = partial.block.take().unwrap_or_default();
        block.extend_from_slice(fragment);
        let end_stream = end_stream || (f.kind == kind::HEADERS && f.has(flag::END_STREAM));
        if !f.has(flag::END_HEADERS) {
            partial.block = Some((block, end_stream));
            return;
        }
        let fields = self.reader.decode(&block);
        let partial = self.partial.entry(f.stream).or_default();
        match partial.response.as_mut() {
            None => {
                let status = fields
                    .iter()
                    .find(|(n, _)| n == ":status")
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or_else(|| panic!("a response head without :status: {fields:?}"));
                // A 1xx head is informational: the real one comes next.
                if (100..200).contains(&status) {
                    return;
                }
                let headers = fields.into_iter().filter(|(n, _)| n != ":status").collect();
                partial.response = Some(Response {
                    status,
                    headers,
                    ..Response::default()
                });
            }
            Some(response) => response.trailers = fields,
        }
        if end_stream {
            self.end(f.stream);
        }
    }

    fn end(&mut self, stream: u32) {
        self.finished.insert(stream);
        let answer = match self.partial.remove(&stream).and_then(|p| p.response) {
            Some(response) => Answer::Response(response),
            None => Answer::Closed(self.reader.goaway),
        };
        self.ended.insert(stream, answer);
    }

    /// Reads until `stream` ends (a response, a reset, or the connection's end), for at most
    /// `wait`; panics after it.
    pub async fn answer_within(&mut self, stream: u32, wait: Duration) -> Answer {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(answer) = self.ended.remove(&stream) {
                return answer;
            }
            if self.reader.drained() {
                return Answer::Closed(self.reader.goaway);
            }
            if self.frame_until(deadline).await.is_err() {
                panic!("stream {stream}: no end within {wait:?}");
            }
        }
    }

    /// [`H2::answer_within`] [`WAIT`].
    pub async fn answer(&mut self, stream: u32) -> Answer {
        self.answer_within(stream, WAIT).await
    }

    /// The response on `stream`, read to its end; panics on a reset or a close.
    pub async fn read_until_response(&mut self, stream: u32) -> Response {
        match self.answer(stream).await {
            Answer::Response(response) => response,
            other => panic!("stream {stream}: {other:?} instead of a response"),
        }
    }

    /// Reads until a GOAWAY, and returns its last stream id and code; panics when the
    /// connection closes without one or nothing comes within [`WAIT`].
    pub async fn expect_goaway(&mut self) -> (u32, u32) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(goaway) = self.reader.goaway {
                return goaway;
            }
            match self.frame_until(deadline).await {
                Ok(Some(_)) => {}
                Ok(None) => panic!("lbhost closed the connection without a GOAWAY"),
                Err(TimedOut) => panic!("no GOAWAY from lbhost within {WAIT:?}"),
            }
        }
    }

    /// The RST_STREAM code lbhost ends `stream` with; panics on anything else.
    pub async fn expect_rst(&mut self, stream: u32) -> u32 {
        match self.answer(stream).await {
            Answer::Reset(code) => code,
            other => panic!("stream {stream}: {other:?} instead of a RST_STREAM"),
        }
    }

    /// Reads (and answers) until lbhost closes the connection; panics when it is still open
    /// after `within`. Returns its GOAWAY, if one came.
    pub async fn expect_closed_within(&mut self, within: Duration) -> Option<(u32, u32)> {
        let deadline = Instant::now() + within;
        loop {
            match self.frame_until(deadline).await {
                Ok(Some(_)) => {}
                Ok(None) => return self.reader.goaway,
                Err(TimedOut) => panic!(
                    "lbhost kept the connection open for {within:?} (GOAWAY: {:?})",
                    self.reader.goaway
                ),
            }
        }
    }
}
