//! What a head's framing and connection fields say (RFC 9112 §6, §9.3; RFC 9110 §7.6.1), read
//! one field at a time while the head is parsed, so nothing is looked up in a header map after.
//! Shared by the request heads clients send and the response heads backends send.

use http::Version;
use smallvec::SmallVec;

use super::{is_hop_by_hop, parse_length};

/// The `Transfer-Encoding`, `Content-Length` and `Connection` fields of one head.
#[derive(Debug)]
pub(crate) struct FramingFields<'a> {
    /// `Transfer-Encoding` is present.
    pub transfer_encoding: bool,
    /// `chunked` is the last coding of the last `Transfer-Encoding` field.
    pub chunked_last: bool,
    /// A `Transfer-Encoding` field names no coding, or `chunked` is followed by another coding
    /// (applied twice, or not last: RFC 9112 §6.1).
    pub bad_codings: bool,
    /// A coding other than `chunked` is named.
    pub other_codings: bool,
    /// `Content-Length` is present.
    pub content_length: bool,
    /// Its value once all its fields agree (a list of equal values is one value, RFC 9110
    /// §8.6); `Err` when they differ or one is not a number.
    pub length: Result<Option<u64>, BadLength>,
    /// `Connection: close`.
    pub close: bool,
    /// `Connection: keep-alive`.
    pub keep_alive: bool,
    /// The other fields `Connection` names.
    named: SmallVec<[&'a [u8]; 4]>,
}

/// `Content-Length` fields that differ, or one that is not a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BadLength;

impl Default for FramingFields<'_> {
    fn default() -> Self {
        FramingFields {
            transfer_encoding: false,
            chunked_last: false,
            bad_codings: false,
            other_codings: false,
            content_length: false,
            length: Ok(None),
            close: false,
            keep_alive: false,
            named: SmallVec::new(),
        }
    }
}

impl<'a> FramingFields<'a> {
    /// Reads `name: value` if it is one of these fields; `false` if it is not.
    pub(crate) fn note(&mut self, name: &[u8], value: &'a [u8]) -> bool {
        let is = |wanted: &[u8]| name.eq_ignore_ascii_case(wanted);
        match name.len() {
            10 if is(b"connection") => {
                for token in tokens(value) {
                    if token.eq_ignore_ascii_case(b"close") {
                        self.close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        self.keep_alive = true;
                    } else {
                        self.named.push(token);
                    }
                }
            }
            17 if is(b"transfer-encoding") => {
                self.transfer_encoding = true;
                let mut named = false;
                for token in tokens(value) {
                    named = true;
                    // A coding after `chunked`, in this field or in a later one.
                    self.bad_codings |= self.chunked_last;
                    self.chunked_last = token.eq_ignore_ascii_case(b"chunked");
                    self.other_codings |= !self.chunked_last;
                }
                if !named {
                    self.bad_codings = true;
                    self.chunked_last = false;
                }
            }
            14 if is(b"content-length") => {
                self.content_length = true;
                for part in value.split(|&b| b == b',') {
                    self.length = match (self.length, parse_length(part.trim_ascii())) {
                        (Ok(None), Some(n)) => Ok(Some(n)),
                        (Ok(Some(l)), Some(n)) if l == n => Ok(Some(n)),
                        _ => Err(BadLength),
                    };
                }
            }
            _ => return false,
        }
        true
    }

    /// Whether a field named `name` describes this connection only: hop-by-hop, or named by
    /// `Connection`.
    pub(crate) fn connection_specific(&self, name: &[u8]) -> bool {
        is_hop_by_hop(name) || self.named.iter().any(|n| n.eq_ignore_ascii_case(name))
    }

    /// Whether the connection stays open after this message (HTTP/1.1 unless `close`; HTTP/1.0
    /// only with `keep-alive`).
    pub(crate) fn persistent(&self, version: Version) -> bool {
        if version == Version::HTTP_10 {
            self.keep_alive
        } else {
            !self.close
        }
    }
}

/// The transfer codings that `values` (the `Transfer-Encoding` field values of a message, in
/// order) name before a final `chunked`, as one list: what a hop that frames the body again
/// passes on with its own `chunked` (RFC 9112 §6.1). Empty when there are none.
pub(crate) fn codings_before_chunked<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut codings: SmallVec<[&[u8]; 4]> = values.into_iter().flat_map(tokens).collect();
    if codings
        .last()
        .is_some_and(|last| last.eq_ignore_ascii_case(b"chunked"))
    {
        codings.pop();
    }
    let mut list = Vec::new();
    for (i, coding) in codings.iter().enumerate() {
        if i > 0 {
            list.extend_from_slice(b", ");
        }
        list.extend_from_slice(coding);
    }
    list
}

/// The items of a comma-separated field value, trimmed, empty ones left out.
pub(crate) fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_and_connection_fields_are_read_and_others_left() {
        let mut f = FramingFields::default();
        assert!(f.note(b"Connection", b"Keep-Alive, X-Secret"));
        assert!(f.note(b"transfer-encoding", b"gzip, chunked"));
        assert!(f.note(b"Content-Length", b"5, 5"));
        assert!(!f.note(b"content-type", b"text/plain"));
        assert!(f.keep_alive && !f.close && f.transfer_encoding && f.chunked_last);
        assert!(f.other_codings && !f.bad_codings);
        assert_eq!(f.length, Ok(Some(5)));
        assert!(f.connection_specific(b"x-secret") && f.connection_specific(b"TE"));
        assert!(!f.connection_specific(b"content-type"));
        assert!(f.persistent(Version::HTTP_10) && f.persistent(Version::HTTP_11));

        let mut f = FramingFields::default();
        f.note(b"content-length", b"5");
        f.note(b"content-length", b"6");
        assert_eq!(f.length, Err(BadLength));
        let mut f = FramingFields::default();
        f.note(b"content-length", b"-1");
        assert_eq!(f.length, Err(BadLength));
        f.note(b"connection", b"close");
        assert!(!f.persistent(Version::HTTP_11) && !f.persistent(Version::HTTP_10));
    }

    #[test]
    fn transfer_codings_are_read_across_fields() {
        let read = |values: &[&str]| {
            let mut f = FramingFields::default();
            for value in values {
                f.note(b"Transfer-Encoding", value.as_bytes());
            }
            (f.chunked_last, f.bad_codings, f.other_codings)
        };
        assert_eq!(read(&["chunked"]), (true, false, false));
        assert_eq!(read(&["gzip", "chunked"]), (true, false, true));
        assert_eq!(read(&["gzip"]), (false, false, true));
        assert_eq!(read(&["chunked, gzip"]), (false, true, true));
        assert_eq!(read(&["chunked", "gzip"]), (false, true, true));
        assert_eq!(read(&["chunked", "chunked"]), (true, true, false));
        assert_eq!(read(&["chunked", ""]), (false, true, false));
        assert_eq!(read(&[" , "]), (false, true, false));

        let list = |values: &[&str]| {
            let list = codings_before_chunked(values.iter().map(|v| v.as_bytes()));
            String::from_utf8(list).unwrap()
        };
        assert_eq!(list(&["chunked"]), "");
        assert_eq!(list(&["gzip,chunked"]), "gzip");
        assert_eq!(list(&["gzip ,  deflate", "Chunked"]), "gzip, deflate");
        assert_eq!(list(&["deflate"]), "deflate");
    }
}
