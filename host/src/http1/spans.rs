//! Where the parts of a parsed head sit in its bytes, so that a head is parsed once and its
//! target and header values then share the frozen buffer instead of being copied or parsed again.

use std::ops::Range;

use bytes::Bytes;

use crate::http1::buffers;

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

    /// A field's whole line, without its line end: from its name to the end of its value, or
    /// to the colon after the name when the value is empty.
    pub fn line(name: Span, value: Span) -> Span {
        let end = if value.start == value.end {
            name.end + 1
        } else {
            value.end
        };
        Span {
            start: name.start,
            end: end.max(name.start),
        }
    }

    /// From the start of this span to the end of `next`.
    pub fn through(self, next: Span) -> Span {
        Span {
            start: self.start,
            end: next.end.max(self.start),
        }
    }

    /// Whether `head` has `\r\n` right before this span.
    fn after_crlf(self, head: &[u8]) -> bool {
        let start = self.start as usize;
        start >= 2 && head.get(start - 2..start) == Some(&b"\r\n"[..])
    }

    /// Whether exactly `\r\n` of `head` lies between this span and `next`.
    pub fn followed_by_line(self, next: Span, head: &[u8]) -> bool {
        next.start as usize == self.end as usize + 2
            && head.get(self.end as usize..next.start as usize) == Some(&b"\r\n"[..])
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

/// Name and value of each header field of a head, in order. The table is a worker's spare
/// (it goes back when dropped): a request's travels with it, in a few bytes, to the strategy and
/// the backend's head.
#[derive(Debug, Default)]
pub struct FieldSpans {
    table: Vec<(Span, Span)>,
    /// Every field's line starts after a CRLF (httparse also ends a line at a bare LF).
    after_crlf: bool,
}

impl FieldSpans {
    /// Records where each of `fields` (parsed from `head`) sits.
    pub fn record(head: &[u8], fields: &[httparse::Header<'_>]) -> Self {
        let mut table = buffers::span_table();
        let mut after_crlf = true;
        table.extend(fields.iter().map(|f| {
            let name = Span::of(head, f.name.as_bytes());
            after_crlf &= name.after_crlf(head);
            (name, Span::of(head, f.value))
        }));
        FieldSpans { table, after_crlf }
    }

    /// Whether every line of `head`, the whole head these fields were recorded from, ends in
    /// CRLF, the empty lines httparse skips before the start line included: httparse also
    /// ends a line at a bare LF, which RFC 9112 §2.2 lets a recipient refuse.
    pub fn crlf_lines(&self, head: &[u8]) -> bool {
        // The start line's end is checked before the first field, or in the head's last four
        // bytes when it has none; each field's end before the next one, or there.
        let leading = head
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        self.after_crlf
            && head.ends_with(b"\r\n\r\n")
            && (leading == 0 || head[..leading].chunks(2).all(|pair| pair == b"\r\n"))
    }

    /// Where the name and the value of each field sit, in order.
    pub fn spans(&self) -> impl Iterator<Item = (Span, Span)> + '_ {
        self.table.iter().copied()
    }

    /// The same, as a slice.
    pub fn as_slice(&self) -> &[(Span, Span)] {
        &self.table
    }

    /// Each field of `head` (the bytes recorded from) as its name and its value.
    pub fn fields<'a>(&'a self, head: &'a [u8]) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        self.table
            .iter()
            .map(move |&(name, value)| (name.bytes(head), value.bytes(head)))
    }
}

impl Drop for FieldSpans {
    fn drop(&mut self) {
        buffers::release_span_table(std::mem::take(&mut self.table));
    }
}

/// A backend's field that cannot go into a header map: one the `http` types refuse, or a
/// transfer coding (HTTP/2 has none).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BadField {
    #[error("invalid header name")]
    Name,
    #[error("invalid header value")]
    Value,
    #[error("transfer coding other than chunked")]
    TransferCoding,
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
        assert_eq!(fields, [(&b"Server"[..], &b"x"[..]), (b"X-Long", b"a b c")]);
        assert!(spans.crlf_lines(&head));
    }

    #[test]
    fn a_bare_lf_anywhere_in_a_head_is_seen() {
        let spans = |wire: &[u8]| {
            let mut slots = [httparse::EMPTY_HEADER; 4];
            let mut parsed = httparse::Request::new(&mut slots);
            let httparse::Status::Complete(length) = parsed.parse(wire).unwrap() else {
                panic!("partial: {:?}", String::from_utf8_lossy(wire));
            };
            FieldSpans::record(wire, parsed.headers).crlf_lines(&wire[..length])
        };
        assert!(spans(b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n\r\n"));
        assert!(spans(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(spans(b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        for wire in [
            &b"GET / HTTP/1.1\nHost: a\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nUseless:\n\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n\n",
            b"GET / HTTP/1.0\n\r\n",
            b"GET / HTTP/1.0\r\n\n",
            b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert!(!spans(wire), "{:?}", String::from_utf8_lossy(wire));
        }
    }
}
