//! HTTP/1.1 on the wire (RFC 9112), shared by both sides: towards backends the request head
//! lbhost writes ([`request`]) and the response head it reads ([`response`]); in both directions
//! chunked bodies ([`chunked`]) and the length and header limits. The client side's own head
//! parsing and response writing live in `server::h1`.

mod chunked;
mod request;
mod response;
mod spans;

pub use chunked::{Chunked, Decoded};
pub use request::{Outgoing, RequestFraming, RequestHead, Value};
pub use response::{parse_head, Framing, Head as ResponseHead};
pub use spans::{FieldSpans, Span};

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
    #[error("101 Switching Protocols to a request that asked for no upgrade")]
    UnaskedUpgrade,
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
