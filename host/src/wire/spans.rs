//! Where the parts of a parsed head sit in its bytes, so that a head is parsed once and its
//! target and header values then share the frozen buffer instead of being copied or parsed again.

use std::ops::Range;

use bytes::Bytes;
use smallvec::SmallVec;

/// Heads with more fields than this spill their table to the heap (real heads have ~5–20).
const INLINE_FIELDS: usize = 24;

/// A byte range inside a head, as offsets from its first byte.
#[derive(Clone, Copy, Debug, Default)]
pub struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// Where `part` sits in `head`; `part` must be a slice of `head` (as everything httparse
    /// returns from parsing `head` is).
    pub fn of(head: &[u8], part: &[u8]) -> Span {
        let start = (part.as_ptr() as usize).saturating_sub(head.as_ptr() as usize);
        // Heads are capped far below 4 GiB, so the offsets fit; clamped all the same, so a
        // wrong input gives a wrong (empty) span, never a panic.
        let start = start.min(head.len());
        let end = (start + part.len()).min(head.len());
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }

    /// The bytes at this span of `head`.
    pub fn bytes(self, head: &[u8]) -> &[u8] {
        head.get(self.range()).unwrap_or_default()
    }

    /// The same bytes of `head`, sharing its buffer.
    pub fn shared(self, head: &Bytes) -> Bytes {
        if self.end as usize > head.len() || self.start > self.end {
            return Bytes::new();
        }
        head.slice(self.range())
    }
}

/// Name and value of each header field of a head, in order.
#[derive(Debug, Default)]
pub struct FieldSpans(SmallVec<[(Span, Span); INLINE_FIELDS]>);

impl FieldSpans {
    /// Records where each of `fields` (parsed from `head`) sits.
    pub fn record(head: &[u8], fields: &[httparse::Header<'_>]) -> Self {
        FieldSpans(
            fields
                .iter()
                .map(|f| (Span::of(head, f.name.as_bytes()), Span::of(head, f.value)))
                .collect(),
        )
    }

    /// How many fields the head has.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The head has no fields.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Where each field's name and value sit.
    pub fn iter(&self) -> impl Iterator<Item = (Span, Span)> + '_ {
        self.0.iter().copied()
    }

    /// Each field of `head` (the bytes recorded from) as its name and its value, the value
    /// sharing `head`'s buffer.
    pub fn fields<'a>(&'a self, head: &'a Bytes) -> impl Iterator<Item = (&'a [u8], Bytes)> + 'a {
        self.0
            .iter()
            .map(move |&(name, value)| (name.bytes(head), value.shared(head)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_recorded_while_parsing_find_the_same_bytes_in_the_frozen_head() {
        let wire = &b"HTTP/1.1 200 OK\r\nServer: x\r\nX-Long: a b c\r\n\r\nbody"[..];
        let mut slots = [httparse::EMPTY_HEADER; 4];
        let mut parsed = httparse::Response::new(&mut slots);
        let httparse::Status::Complete(length) = parsed.parse(wire).unwrap() else {
            panic!("partial");
        };
        let spans = FieldSpans::record(wire, parsed.headers);
        let head = Bytes::copy_from_slice(&wire[..length]);
        let fields: Vec<_> = spans.fields(&head).collect();
        assert_eq!(spans.len(), 2);
        assert_eq!(fields[0], (&b"Server"[..], Bytes::from_static(b"x")));
        assert_eq!(fields[1], (&b"X-Long"[..], Bytes::from_static(b"a b c")));
    }
}
