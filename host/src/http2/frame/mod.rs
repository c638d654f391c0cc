//! HTTP/2 frame codec (RFC 9113 §4 and §6) for lbhost's HTTP/2 client.
//!
//! `read` takes one whole frame off the front of a read buffer, checks the
//! per-frame rules of RFC 9113 §6 that need no connection state, and hands the
//! payloads back as [`Bytes`] split from that buffer, so DATA is never copied.
//! The `write_*` functions append frames to a write buffer.
//!
//! A payload `Bytes` shares the read buffer's allocation: holding one keeps
//! that allocation alive, so long-lived payloads should be copied or dropped.
//!
//! Not here, because they need connection or stream state: stream-state rules
//! (§5.1), the HEADERS/CONTINUATION sequence (§6.10), flow-control windows,
//! HPACK, and role rules such as "a client rejects SETTINGS_ENABLE_PUSH = 1"
//! or "a client that disabled push rejects PUSH_PROMISE".

use bytes::{Buf, Bytes, BytesMut};
use std::fmt;

#[cfg(test)]
mod tests;
mod write;

pub(crate) use write::*;

/// The client connection preface (RFC 9113 §3.4), sent before the first SETTINGS.
pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Length of the fixed frame header (RFC 9113 §4.1).
pub(crate) const HEADER_LEN: usize = 9;
/// Initial SETTINGS_MAX_FRAME_SIZE, and the smallest value a peer may set.
pub(crate) const DEFAULT_MAX_FRAME_SIZE: u32 = 16_384;
/// Largest SETTINGS_MAX_FRAME_SIZE a peer may set: the 24-bit length field's limit.
pub(crate) const MAX_MAX_FRAME_SIZE: u32 = (1 << 24) - 1;
/// Largest flow-control window, and largest SETTINGS_INITIAL_WINDOW_SIZE.
pub(crate) const MAX_WINDOW_SIZE: u32 = (1 << 31) - 1;

/// Clears the reserved high bit of a stream id or window increment.
const U31_MASK: u32 = (1 << 31) - 1;

// Frame types (RFC 9113 §6).
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PUSH_PROMISE: u8 = 0x5;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;

// Flags; the same bit means different things for different frame types.
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY_FLAG: u8 = 0x20;

/// Length of the stream dependency + weight carried by PRIORITY and by HEADERS with PRIORITY set.
const PRIORITY_LEN: usize = 5;

/// The RFC name of a frame type, for error messages.
fn kind_name(kind: u8) -> &'static str {
    match kind {
        DATA => "DATA",
        HEADERS => "HEADERS",
        PRIORITY => "PRIORITY",
        RST_STREAM => "RST_STREAM",
        SETTINGS => "SETTINGS",
        PUSH_PROMISE => "PUSH_PROMISE",
        PING => "PING",
        GOAWAY => "GOAWAY",
        WINDOW_UPDATE => "WINDOW_UPDATE",
        CONTINUATION => "CONTINUATION",
        _ => "unknown",
    }
}

/// An HTTP/2 error code (RFC 9113 §7), as carried by RST_STREAM and GOAWAY.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Reason(pub(crate) u32);

impl Reason {
    /// Graceful shutdown; not an error.
    pub(crate) const NO_ERROR: Reason = Reason(0x0);
    /// Unspecific protocol violation.
    pub(crate) const PROTOCOL_ERROR: Reason = Reason(0x1);
    /// Unexpected internal error.
    pub(crate) const INTERNAL_ERROR: Reason = Reason(0x2);
    /// Flow-control protocol violated.
    pub(crate) const FLOW_CONTROL_ERROR: Reason = Reason(0x3);
    /// SETTINGS not acknowledged in time.
    #[allow(dead_code)] // the RFC's whole table: a client never sends this one
    pub(crate) const SETTINGS_TIMEOUT: Reason = Reason(0x4);
    /// Frame received on a half-closed stream.
    #[allow(dead_code)] // the RFC's whole table: a client never sends this one
    pub(crate) const STREAM_CLOSED: Reason = Reason(0x5);
    /// Frame with an invalid size.
    pub(crate) const FRAME_SIZE_ERROR: Reason = Reason(0x6);
    /// Stream refused before any application processing.
    pub(crate) const REFUSED_STREAM: Reason = Reason(0x7);
    /// Stream no longer needed.
    pub(crate) const CANCEL: Reason = Reason(0x8);
    /// Field-block compression state could not be kept.
    pub(crate) const COMPRESSION_ERROR: Reason = Reason(0x9);
    /// CONNECT tunnel reset or abnormally closed.
    #[allow(dead_code)] // the RFC's whole table: a client never sends this one
    pub(crate) const CONNECT_ERROR: Reason = Reason(0xa);
    /// Peer is generating excessive load.
    pub(crate) const ENHANCE_YOUR_CALM: Reason = Reason(0xb);
    /// Transport security below the required minimum.
    #[allow(dead_code)] // the RFC's whole table: a client never sends this one
    pub(crate) const INADEQUATE_SECURITY: Reason = Reason(0xc);
    /// HTTP/1.1 must be used instead.
    #[allow(dead_code)] // the RFC's whole table: a client never sends this one
    pub(crate) const HTTP_1_1_REQUIRED: Reason = Reason(0xd);

    /// The RFC name of a known code.
    fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0x0 => "NO_ERROR",
            0x1 => "PROTOCOL_ERROR",
            0x2 => "INTERNAL_ERROR",
            0x3 => "FLOW_CONTROL_ERROR",
            0x4 => "SETTINGS_TIMEOUT",
            0x5 => "STREAM_CLOSED",
            0x6 => "FRAME_SIZE_ERROR",
            0x7 => "REFUSED_STREAM",
            0x8 => "CANCEL",
            0x9 => "COMPRESSION_ERROR",
            0xa => "CONNECT_ERROR",
            0xb => "ENHANCE_YOUR_CALM",
            0xc => "INADEQUATE_SECURITY",
            0xd => "HTTP_1_1_REQUIRED",
            _ => return None,
        })
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "unknown error code {:#x}", self.0),
        }
    }
}

/// SETTINGS parameter identifiers (RFC 9113 §6.5.2).
pub(crate) mod setting {
    /// Maximum HPACK dynamic table size the sender's decoder uses.
    pub(crate) const HEADER_TABLE_SIZE: u16 = 0x1;
    /// 0 or 1: whether server push is allowed.
    pub(crate) const ENABLE_PUSH: u16 = 0x2;
    /// Maximum number of concurrent streams the sender allows its peer to open.
    pub(crate) const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    /// Initial stream-level flow-control window, at most 2^31-1.
    pub(crate) const INITIAL_WINDOW_SIZE: u16 = 0x4;
    /// Largest frame payload the sender accepts, 16,384..=16,777,215.
    pub(crate) const MAX_FRAME_SIZE: u16 = 0x5;
    /// Advisory maximum size of an uncompressed field section.
    pub(crate) const MAX_HEADER_LIST_SIZE: u16 = 0x6;
}

/// A frame read off the wire; payloads are `Bytes` split from the read buffer (no copy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// DATA (§6.1).
    Data {
        /// Stream id, never 0.
        stream: u32,
        /// Payload with the padding removed.
        data: Bytes,
        /// The whole payload length including padding, which counts for flow control (§6.9.1).
        flow_len: u32,
        /// END_STREAM flag.
        end_stream: bool,
    },
    /// HEADERS (§6.2).
    Headers {
        /// Stream id, never 0.
        stream: u32,
        /// Field block fragment, padding and priority fields removed.
        fragment: Bytes,
        /// END_STREAM flag.
        end_stream: bool,
        /// END_HEADERS flag: no CONTINUATION follows.
        end_headers: bool,
    },
    /// PRIORITY (§6.3); deprecated, its content is dropped.
    Priority {
        /// Stream id, never 0.
        stream: u32,
    },
    /// RST_STREAM (§6.4).
    RstStream {
        /// Stream id, never 0.
        stream: u32,
        /// Why the stream was reset.
        reason: Reason,
    },
    /// SETTINGS (§6.5); known values have been range-checked.
    Settings {
        /// ACK flag; an ACK has no params.
        ack: bool,
        /// (identifier, value) in wire order, unknown identifiers included; later ones override earlier ones.
        params: Vec<(u16, u32)>,
    },
    /// PUSH_PROMISE (§6.6).
    PushPromise {
        /// Stream id the promise is associated with, never 0.
        stream: u32,
        /// Promised stream id, never 0.
        promised: u32,
        /// Field block fragment, padding removed.
        fragment: Bytes,
        /// END_HEADERS flag.
        end_headers: bool,
    },
    /// PING (§6.7).
    Ping {
        /// ACK flag.
        ack: bool,
        /// Opaque data to echo back.
        payload: [u8; 8],
    },
    /// GOAWAY (§6.8).
    GoAway {
        /// Highest stream id the sender may have processed.
        last_stream: u32,
        /// Why the connection is closing.
        reason: Reason,
        /// Opaque diagnostic data.
        debug: Bytes,
    },
    /// WINDOW_UPDATE (§6.9).
    WindowUpdate {
        /// Stream id, 0 for the connection window.
        stream: u32,
        /// Window increment, 1..=2^31-1.
        increment: u32,
    },
    /// CONTINUATION (§6.10).
    Continuation {
        /// Stream id, never 0.
        stream: u32,
        /// Field block fragment.
        fragment: Bytes,
        /// END_HEADERS flag.
        end_headers: bool,
    },
    /// A frame type this codec does not know: to be ignored (RFC 9113 §5.5).
    Unknown {
        /// Frame type octet.
        kind: u8,
        /// Stream id.
        stream: u32,
    },
}

/// Why a frame could not be read; see [`FrameError::reason`] and [`FrameError::stream`].
///
/// Except for `TooLarge`, the offending frame has been consumed from the buffer,
/// so after a stream error the caller can reset that stream and keep reading.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// Frame length above our SETTINGS_MAX_FRAME_SIZE (§4.2); nothing was consumed.
    #[error("frame of {len} bytes exceeds the maximum frame size {max}")]
    TooLarge {
        /// Length from the frame header.
        len: u32,
        /// The limit it broke.
        max: u32,
    },
    /// A frame type that needs a stream arrived on stream 0.
    #[error("{} frame on stream 0", kind_name(*.kind))]
    StreamZero {
        /// Frame type.
        kind: u8,
    },
    /// A connection-level frame type arrived on a stream.
    #[error("{} frame on stream {stream}, expected stream 0", kind_name(*.kind))]
    NonZeroStream {
        /// Frame type.
        kind: u8,
        /// The stream it named.
        stream: u32,
    },
    /// Padding at least as long as the room left for it (§6.1, §6.2, §6.6).
    #[error("{} frame of {len} bytes has {pad} bytes of padding", kind_name(*.kind))]
    Padding {
        /// Frame type.
        kind: u8,
        /// Payload length.
        len: u32,
        /// Pad Length field.
        pad: u8,
    },
    /// Payload length wrong for the frame type, or too short for its mandatory fields.
    #[error("{} frame has invalid length {len}", kind_name(*.kind))]
    Length {
        /// Frame type.
        kind: u8,
        /// Payload length.
        len: u32,
    },
    /// PRIORITY frame not 5 bytes long (§6.3): a stream error.
    #[error("PRIORITY frame on stream {stream} has length {len}, expected 5")]
    PriorityLength {
        /// Stream the frame was on.
        stream: u32,
        /// Payload length.
        len: u32,
    },
    /// WINDOW_UPDATE with a zero increment (§6.9): a stream error unless on stream 0.
    #[error("WINDOW_UPDATE with zero increment on stream {stream}")]
    ZeroIncrement {
        /// Stream the frame was on; 0 for the connection.
        stream: u32,
    },
    /// A known SETTINGS parameter with an out-of-range value (§6.5.2).
    #[error("invalid value {value} for SETTINGS parameter {id:#x}")]
    InvalidSetting {
        /// Parameter identifier.
        id: u16,
        /// The rejected value.
        value: u32,
    },
    /// PUSH_PROMISE promising stream 0, which can never be a valid new stream (§6.6).
    #[error("PUSH_PROMISE on stream {stream} promises stream 0")]
    PromisedStreamZero {
        /// Stream the frame was on.
        stream: u32,
    },
}

impl FrameError {
    /// The error code the RFC asks to send for this error.
    pub(crate) fn reason(&self) -> Reason {
        match self {
            FrameError::TooLarge { .. }
            | FrameError::Length { .. }
            | FrameError::PriorityLength { .. } => Reason::FRAME_SIZE_ERROR,
            FrameError::InvalidSetting {
                id: setting::INITIAL_WINDOW_SIZE,
                ..
            } => Reason::FLOW_CONTROL_ERROR,
            FrameError::StreamZero { .. }
            | FrameError::NonZeroStream { .. }
            | FrameError::Padding { .. }
            | FrameError::ZeroIncrement { .. }
            | FrameError::InvalidSetting { .. }
            | FrameError::PromisedStreamZero { .. } => Reason::PROTOCOL_ERROR,
        }
    }

    /// `Some(stream)` when the RFC makes this a stream error (RST_STREAM that stream),
    /// `None` for a connection error (GOAWAY and close).
    pub(crate) fn stream(&self) -> Option<u32> {
        match *self {
            FrameError::PriorityLength { stream, .. } => Some(stream),
            FrameError::ZeroIncrement { stream } if stream != 0 => Some(stream),
            _ => None,
        }
    }
}

/// Reads a big-endian u32 from the first 4 bytes of `b`, if it has them.
fn be_u32(b: &[u8]) -> Option<u32> {
    b.first_chunk::<4>().map(|a| u32::from_be_bytes(*a))
}

/// Takes one whole frame off the front of `buf` if it holds one (Ok(None): need more bytes; nothing consumed).
///
/// `max_frame_size` is lbhost's SETTINGS_MAX_FRAME_SIZE: a longer frame is a
/// FRAME_SIZE_ERROR, checked from the 9-byte header alone so a hostile peer
/// cannot make us buffer more than that. On any other error the frame has been
/// consumed.
pub(crate) fn read(buf: &mut BytesMut, max_frame_size: u32) -> Result<Option<Frame>, FrameError> {
    let Some(&[l0, l1, l2, kind, flags, s0, s1, s2, s3]) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([0, l0, l1, l2]);
    if len > max_frame_size {
        return Err(FrameError::TooLarge {
            len,
            max: max_frame_size,
        });
    }
    // Lossless: len < 2^24.
    let ulen = len as usize;
    if buf.len() - HEADER_LEN < ulen {
        return Ok(None);
    }
    let stream = u32::from_be_bytes([s0, s1, s2, s3]) & U31_MASK;
    buf.advance(HEADER_LEN);

    // Frames whose payload is handed out take it as `Bytes` (zero-copy); the
    // others are parsed in place and skipped, which costs no refcount traffic.
    match kind {
        DATA | HEADERS | PUSH_PROMISE | CONTINUATION | GOAWAY => {
            let payload = buf.split_to(ulen).freeze();
            read_with_payload(kind, flags, stream, payload)
        }
        _ => {
            let result = read_control(kind, flags, stream, buf.get(..ulen).unwrap_or_default());
            buf.advance(ulen);
            result
        }
    }
    .map(Some)
}

/// Parses the frame types that hand out (part of) their payload.
fn read_with_payload(
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Bytes,
) -> Result<Frame, FrameError> {
    // Lossless: the payload came from a 24-bit length.
    let len = payload.len() as u32;
    if kind == GOAWAY {
        if stream != 0 {
            return Err(FrameError::NonZeroStream { kind, stream });
        }
        let (Some(last_stream), Some(code)) = (be_u32(&payload), payload.get(4..).and_then(be_u32))
        else {
            return Err(FrameError::Length { kind, len });
        };
        return Ok(Frame::GoAway {
            last_stream: last_stream & U31_MASK,
            reason: Reason(code),
            debug: payload.slice(8..),
        });
    }
    if stream == 0 {
        return Err(FrameError::StreamZero { kind });
    }
    let end_stream = flags & END_STREAM != 0;
    let end_headers = flags & END_HEADERS != 0;
    Ok(match kind {
        DATA => Frame::Data {
            stream,
            data: unpad(kind, flags, payload, 0)?,
            flow_len: len,
            end_stream,
        },
        HEADERS => {
            let prio = if flags & PRIORITY_FLAG != 0 {
                PRIORITY_LEN
            } else {
                0
            };
            let mut fragment = unpad(kind, flags, payload, prio)?;
            // The priority fields are deprecated (§5.3.2) and dropped unread.
            // No self-dependency check: an error here would drop the fragment
            // and desynchronise HPACK, so it could only be a connection error.
            fragment.advance(prio);
            Frame::Headers {
                stream,
                fragment,
                end_stream,
                end_headers,
            }
        }
        PUSH_PROMISE => {
            let mut fragment = unpad(kind, flags, payload, 4)?;
            let promised = be_u32(&fragment).unwrap_or_default() & U31_MASK;
            if promised == 0 {
                return Err(FrameError::PromisedStreamZero { stream });
            }
            fragment.advance(4);
            Frame::PushPromise {
                stream,
                promised,
                fragment,
                end_headers,
            }
        }
        // CONTINUATION, the only other type routed here.
        _ => Frame::Continuation {
            stream,
            fragment: payload,
            end_headers,
        },
    })
}

/// Removes the Pad Length octet and padding if PADDED is set, checking that
/// `fixed` bytes of mandatory fields remain; returns the fields plus the content.
fn unpad(kind: u8, flags: u8, payload: Bytes, fixed: usize) -> Result<Bytes, FrameError> {
    // Lossless: the payload came from a 24-bit length.
    let len = payload.len() as u32;
    if flags & PADDED == 0 {
        return if payload.len() < fixed {
            Err(FrameError::Length { kind, len })
        } else {
            Ok(payload)
        };
    }
    let Some(&pad) = payload.first() else {
        return Err(FrameError::Length { kind, len });
    };
    let min = 1 + fixed;
    if payload.len() < min {
        return Err(FrameError::Length { kind, len });
    }
    // Padding may fill all the room after the fixed fields, never more; for
    // DATA (no fixed fields) that is §6.1's "pad length >= payload length".
    match payload.len().checked_sub(usize::from(pad)) {
        Some(end) if end >= min => Ok(payload.slice(1..end)),
        _ => Err(FrameError::Padding { kind, len, pad }),
    }
}

/// Parses the frame types whose payload is not handed out.
fn read_control(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Result<Frame, FrameError> {
    // Lossless: the payload came from a 24-bit length.
    let len = payload.len() as u32;
    let ack = flags & ACK != 0;
    match kind {
        PRIORITY => {
            if stream == 0 {
                return Err(FrameError::StreamZero { kind });
            }
            if payload.len() != PRIORITY_LEN {
                return Err(FrameError::PriorityLength { stream, len });
            }
            // The content is not read, so RFC 7540's self-dependency check is
            // skipped too: RFC 9113 deprecates the scheme and lbhost ignores it.
            Ok(Frame::Priority { stream })
        }
        RST_STREAM => {
            if stream == 0 {
                return Err(FrameError::StreamZero { kind });
            }
            match payload {
                &[a, b, c, d] => Ok(Frame::RstStream {
                    stream,
                    reason: Reason(u32::from_be_bytes([a, b, c, d])),
                }),
                _ => Err(FrameError::Length { kind, len }),
            }
        }
        SETTINGS => {
            if stream != 0 {
                return Err(FrameError::NonZeroStream { kind, stream });
            }
            if (ack && !payload.is_empty()) || !payload.len().is_multiple_of(6) {
                return Err(FrameError::Length { kind, len });
            }
            // Bounded by the frame: at most max_frame_size / 6 entries.
            let mut params = Vec::with_capacity(payload.len() / 6);
            for &[i0, i1, v0, v1, v2, v3] in payload.as_chunks::<6>().0 {
                let (id, value) = (
                    u16::from_be_bytes([i0, i1]),
                    u32::from_be_bytes([v0, v1, v2, v3]),
                );
                check_setting(id, value)?;
                params.push((id, value));
            }
            Ok(Frame::Settings { ack, params })
        }
        PING => {
            if stream != 0 {
                return Err(FrameError::NonZeroStream { kind, stream });
            }
            match payload.first_chunk::<8>() {
                Some(p) if payload.len() == 8 => Ok(Frame::Ping { ack, payload: *p }),
                _ => Err(FrameError::Length { kind, len }),
            }
        }
        WINDOW_UPDATE => {
            // The length check comes first: a bad length is always a
            // connection error, a zero increment maybe only a stream error.
            let increment = match payload {
                &[a, b, c, d] => u32::from_be_bytes([a, b, c, d]) & U31_MASK,
                _ => return Err(FrameError::Length { kind, len }),
            };
            if increment == 0 {
                return Err(FrameError::ZeroIncrement { stream });
            }
            Ok(Frame::WindowUpdate { stream, increment })
        }
        _ => Ok(Frame::Unknown { kind, stream }),
    }
}

/// Range-checks the value of a known SETTINGS parameter (§6.5.2).
fn check_setting(id: u16, value: u32) -> Result<(), FrameError> {
    let ok = match id {
        setting::ENABLE_PUSH => value <= 1,
        setting::INITIAL_WINDOW_SIZE => value <= MAX_WINDOW_SIZE,
        setting::MAX_FRAME_SIZE => (DEFAULT_MAX_FRAME_SIZE..=MAX_MAX_FRAME_SIZE).contains(&value),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(FrameError::InvalidSetting { id, value })
    }
}
