//! HTTP/1.1 on the wire (RFC 9112), both roles, one codec: request heads read from clients
//! (`parse_request.rs`) and written to backends (`write_request.rs`), response heads read from
//! backends (`parse_response.rs`) and written to clients (`write_response.rs`), one body decoder
//! for both directions ([`decoder`], chunked coding in [`chunked`]) and one chunk encoder
//! ([`encode`]), the socket with its read buffer ([`io`]) and the per-worker spare buffers
//! ([`buffers`]). Nothing here knows about backends, strategies or the proxy: `server` and
//! `upstream` drive it.

pub(crate) mod buffers;
mod chunked;
mod decoder;
mod encode;
mod framing_fields;
mod io;
mod parse_request;
mod parse_response;
mod raw_fields;
mod spans;
mod write_request;
mod write_response;

pub(crate) use chunked::{Chunked, Decoded};
pub(crate) use decoder::BodyDecoder;
pub(crate) use encode::{ChunkLine, CHUNK_END, FINAL_CHUNK_END, LAST_CHUNK};
pub(crate) use framing_fields::{codings_before_chunked, tokens, FramingFields};
pub(crate) use io::Io;
pub(crate) use parse_request::{parse_request, Exchange, ParsedRequest};
pub(crate) use parse_response::{parse_response, Framing, ParsedResponse};
pub(crate) use raw_fields::RawFields;
pub(crate) use spans::{BadField, FieldSpans, Span};
pub(crate) use write_request::{Outgoing, RequestFraming, RequestHeadBuilder, Value};
pub(crate) use write_response::{date_value, encode_fields, encode_response_head, ResponseFraming};

/// A response head longer than this is refused (hyper's client allows ~400 KiB; real backends
/// send a few hundred bytes).
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// Headers per response head or trailer block (hyper's default).
pub(crate) const MAX_HEADERS: usize = 100;

/// What is wrong with what a peer sent: a backend's response head, or a chunked body from
/// either side.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CodecError {
    #[error("malformed response head: {0}")]
    Head(httparse::Error),
    #[error("response head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("invalid Content-Length in response")]
    ContentLength,
    #[error("malformed chunked body")]
    Chunked,
    #[error("invalid Transfer-Encoding in response")]
    TransferEncoding,
    #[error("101 Switching Protocols to a request that asked for no upgrade")]
    UnaskedUpgrade,
}

/// Fields that describe one connection, not the message (RFC 9110 §7.6.1, with the older ones of
/// RFC 2616 §13.5.1 and `Proxy-Connection`): a proxy never forwards them, in either direction,
/// nor the fields a `Connection` header names.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-connection",
];

/// Whether a field named `name` (any case) is hop-by-hop ([`HOP_BY_HOP`]).
pub(crate) fn is_hop_by_hop(name: &[u8]) -> bool {
    // Most names have a length none of the nine has: decided without comparing bytes.
    matches!(name.len(), 2 | 7 | 10 | 16 | 17 | 18 | 19)
        && HOP_BY_HOP
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h.as_bytes()))
}

/// Decimal digits only, no sign, no overflow.
pub(crate) fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
    })
}
