//! HTTP/1.1 on the wire (RFC 9112), shared by both sides: towards backends the request head
//! lbhost writes ([`request`]) and the response head it reads ([`response`]); in both directions
//! chunked bodies ([`chunked`]) and the length and header limits. The client side's own head
//! parsing and response writing live in `server::h1`.

mod chunked;
mod framing_fields;
mod raw_fields;
mod request;
mod response;
mod spans;

pub use chunked::{Chunked, Decoded};
pub use framing_fields::{codings_before_chunked, tokens, BadLength, FramingFields};
pub use raw_fields::RawFields;
pub use request::{Outgoing, RequestFraming, RequestHead, Value};
pub use response::{parse_head, Framing, Head as ResponseHead};
pub use spans::{BadField, FieldSpans, Span};

/// A response head longer than this is refused (hyper's client allows ~400 KiB; real backends
/// send a few hundred bytes).
pub const MAX_HEAD: usize = 64 * 1024;
/// Headers per response head or trailer block (hyper's default).
pub const MAX_HEADERS: usize = 100;

/// What is wrong with what a backend sent.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("malformed response head: {0}")]
    Head(httparse::Error),
    #[error("response head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("invalid header in response: {0}")]
    Header(String),
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
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    // Most names have a length none of the nine has: decided without comparing bytes.
    matches!(name.len(), 2 | 7 | 10 | 16 | 17 | 18 | 19)
        && HOP_BY_HOP
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h.as_bytes()))
}

/// Decimal digits only, no sign, no overflow.
pub fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
    })
}
