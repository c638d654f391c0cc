//! HTTP/2 on the wire: frame types, flags, codes and settings, frames as bytes, and request
//! header blocks as HPACK plain literals (no table, no Huffman: no encoder needed).

use std::time::Duration;

/// What every HTTP/2 connection starts with (RFC 9113, 3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How long one read or one write may wait unless a test says otherwise.
pub const WAIT: Duration = Duration::from_secs(10);

/// Frame types (RFC 9113, 6).
pub mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

/// Frame flags.
pub mod flag {
    /// On SETTINGS and PING.
    pub const ACK: u8 = 0x1;
    pub const END_STREAM: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
}

/// Error codes (RFC 9113, 7).
pub mod code {
    pub const NO_ERROR: u32 = 0x0;
    pub const PROTOCOL_ERROR: u32 = 0x1;
    pub const FLOW_CONTROL_ERROR: u32 = 0x3;
    pub const FRAME_SIZE_ERROR: u32 = 0x6;
    pub const REFUSED_STREAM: u32 = 0x7;
    pub const CANCEL: u32 = 0x8;
    pub const COMPRESSION_ERROR: u32 = 0x9;
    pub const ENHANCE_YOUR_CALM: u32 = 0xb;
}

/// SETTINGS parameters.
pub mod setting {
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    pub const ENABLE_PUSH: u16 = 0x2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
}

/// One frame as read: its type, flags, stream and payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// The error code of a RST_STREAM or GOAWAY.
    pub fn error_code(&self) -> Option<u32> {
        let at = match self.kind {
            kind::RST_STREAM => 0,
            kind::GOAWAY => 4,
            _ => return None,
        };
        Some(u32::from_be_bytes(
            self.payload.get(at..at + 4)?.try_into().ok()?,
        ))
    }

    /// A GOAWAY's last stream id and error code.
    pub fn goaway(&self) -> Option<(u32, u32)> {
        if self.kind != kind::GOAWAY {
            return None;
        }
        let last = u32::from_be_bytes(self.payload.get(..4)?.try_into().ok()?) & 0x7fff_ffff;
        Some((last, self.error_code()?))
    }
}

/// The bytes of one frame.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|len| *len < 1 << 24)
        .expect("a frame payload under 16 MiB")
        .to_be_bytes();
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&[len[1], len[2], len[3], kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A SETTINGS frame with `params` (no ACK).
pub fn settings_frame(params: &[(u16, u32)]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(params.len() * 6);
    for (id, value) in params {
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(&value.to_be_bytes());
    }
    frame(kind::SETTINGS, 0, 0, &payload)
}

/// Appends the HPACK integer `value` with a `prefix`-bit prefix whose other bits are `first`.
fn hpack_int(block: &mut Vec<u8>, first: u8, prefix: u32, value: usize) {
    let max = (1usize << prefix) - 1;
    if value < max {
        block.push(first | value as u8);
        return;
    }
    block.push(first | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        block.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    block.push(rest as u8);
}

/// Appends `name: value` as a literal field without indexing, new name, no Huffman.
pub fn literal(block: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    block.push(0x00);
    hpack_int(block, 0, 7, name.len());
    block.extend_from_slice(name);
    hpack_int(block, 0, 7, value.len());
    block.extend_from_slice(value);
}

/// A header block of `fields`, in order, as they are (nothing checked or lower-cased).
pub fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        literal(&mut out, name.as_bytes(), value.as_bytes());
    }
    out
}

/// A request's header block: `:method`, `:scheme http`, `:path`, `:authority`, then `extra`.
pub fn request_block(method: &str, path: &str, authority: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut fields = vec![
        (":method", method),
        (":scheme", "http"),
        (":path", path),
        (":authority", authority),
    ];
    fields.extend_from_slice(extra);
    block(&fields)
}

/// A HEADERS frame's header block fragment: without padding and priority fields.
pub(super) fn headers_fragment(f: &Frame) -> &[u8] {
    let mut payload = &f.payload[..];
    let mut pad = 0;
    if f.has(0x8) {
        pad = usize::from(payload.first().copied().unwrap_or(0));
        payload = payload.get(1..).unwrap_or_default();
    }
    if f.has(0x20) {
        payload = payload.get(5..).unwrap_or_default();
    }
    payload
        .get(..payload.len().saturating_sub(pad))
        .unwrap_or_default()
}

/// A DATA frame's data, without padding.
pub(super) fn data_of(f: &Frame) -> &[u8] {
    if !f.has(0x8) {
        return &f.payload;
    }
    let pad = usize::from(f.payload.first().copied().unwrap_or(0));
    let data = f.payload.get(1..).unwrap_or_default();
    data.get(..data.len().saturating_sub(pad))
        .unwrap_or_default()
}
