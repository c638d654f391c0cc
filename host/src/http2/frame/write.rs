//! Writing frames: each function appends one frame (HEADERS with its CONTINUATIONs) to a
//! buffer.

use bytes::BytesMut;

use super::*;

/// Appends a 9-byte frame header; the reserved bit is cleared.
fn write_head(dst: &mut BytesMut, len: usize, kind: u8, flags: u8, stream: u32) {
    debug_assert!(
        len <= MAX_MAX_FRAME_SIZE as usize,
        "frame payload too long: {len}"
    );
    // Truncation is the documented caller contract (len fits 24 bits), checked in debug builds.
    let [_, l0, l1, l2] = (len as u32).to_be_bytes();
    let [s0, s1, s2, s3] = (stream & U31_MASK).to_be_bytes();
    dst.extend_from_slice(&[l0, l1, l2, kind, flags, s0, s1, s2, s3]);
}

/// Appends a HEADERS frame and as many CONTINUATIONs as needed to carry `block`
/// in frames of at most `max_frame_size` (the peer's SETTINGS_MAX_FRAME_SIZE) bytes each.
pub(crate) fn write_headers(
    dst: &mut BytesMut,
    stream: u32,
    block: &[u8],
    end_stream: bool,
    max_frame_size: u32,
) {
    debug_assert!(stream != 0);
    // Clamped so a bogus 0 cannot loop forever and the length always fits 24 bits.
    let max = max_frame_size.clamp(1, MAX_MAX_FRAME_SIZE) as usize;
    let frames = block.len().div_ceil(max).max(1);
    dst.reserve(block.len() + frames * HEADER_LEN);

    let mut chunks = block.chunks(max);
    let first = chunks.next().unwrap_or_default();
    let mut rest = chunks.peekable();
    let mut flags = if end_stream { END_STREAM } else { 0 };
    if rest.peek().is_none() {
        flags |= END_HEADERS;
    }
    write_head(dst, first.len(), HEADERS, flags, stream);
    dst.extend_from_slice(first);
    while let Some(chunk) = rest.next() {
        let flags = if rest.peek().is_none() {
            END_HEADERS
        } else {
            0
        };
        write_head(dst, chunk.len(), CONTINUATION, flags, stream);
        dst.extend_from_slice(chunk);
    }
}

/// Appends a DATA frame; the caller keeps `data.len()` within the peer's max frame size.
pub(crate) fn write_data(dst: &mut BytesMut, stream: u32, data: &[u8], end_stream: bool) {
    dst.reserve(HEADER_LEN + data.len());
    write_data_head(dst, stream, data.len() as u32, end_stream);
    dst.extend_from_slice(data);
}

/// Appends only the 9-byte header of a DATA frame of `len` bytes, for writing
/// the payload from a separate buffer (vectored write).
pub(crate) fn write_data_head(dst: &mut BytesMut, stream: u32, len: u32, end_stream: bool) {
    debug_assert!(stream != 0);
    let flags = if end_stream { END_STREAM } else { 0 };
    write_head(dst, len as usize, DATA, flags, stream);
}

/// Appends a SETTINGS frame carrying `params` in order.
pub(crate) fn write_settings(dst: &mut BytesMut, params: &[(u16, u32)]) {
    let len = params.len() * 6;
    dst.reserve(HEADER_LEN + len);
    write_head(dst, len, SETTINGS, 0, 0);
    for &(id, value) in params {
        dst.extend_from_slice(&id.to_be_bytes());
        dst.extend_from_slice(&value.to_be_bytes());
    }
}

/// Appends an empty SETTINGS frame with ACK set.
pub(crate) fn write_settings_ack(dst: &mut BytesMut) {
    write_head(dst, 0, SETTINGS, ACK, 0);
}

/// Appends a PING frame (with ACK set when answering a peer's PING).
pub(crate) fn write_ping(dst: &mut BytesMut, ack: bool, payload: [u8; 8]) {
    dst.reserve(HEADER_LEN + 8);
    write_head(dst, 8, PING, if ack { ACK } else { 0 }, 0);
    dst.extend_from_slice(&payload);
}

/// Appends a GOAWAY frame; `debug` is opaque diagnostic data.
pub(crate) fn write_goaway(dst: &mut BytesMut, last_stream: u32, reason: Reason, debug: &[u8]) {
    dst.reserve(HEADER_LEN + 8 + debug.len());
    write_head(dst, 8 + debug.len(), GOAWAY, 0, 0);
    dst.extend_from_slice(&(last_stream & U31_MASK).to_be_bytes());
    dst.extend_from_slice(&reason.0.to_be_bytes());
    dst.extend_from_slice(debug);
}

/// Appends an RST_STREAM frame.
pub(crate) fn write_rst_stream(dst: &mut BytesMut, stream: u32, reason: Reason) {
    debug_assert!(stream != 0);
    dst.reserve(HEADER_LEN + 4);
    write_head(dst, 4, RST_STREAM, 0, stream);
    dst.extend_from_slice(&reason.0.to_be_bytes());
}

/// Appends a WINDOW_UPDATE frame (`stream` 0 for the connection window);
/// `increment` must be 1..=2^31-1.
pub(crate) fn write_window_update(dst: &mut BytesMut, stream: u32, increment: u32) {
    debug_assert!((1..=MAX_WINDOW_SIZE).contains(&increment));
    dst.reserve(HEADER_LEN + 4);
    write_head(dst, 4, WINDOW_UPDATE, 0, stream);
    dst.extend_from_slice(&(increment & U31_MASK).to_be_bytes());
}
