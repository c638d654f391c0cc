//! A backend's header fields kept as they came, so that an HTTP/1.1 client gets them copied
//! from the backend's head in a few runs of bytes, with no header map built and taken apart
//! again. A header map is built only where one is needed (HTTP/2 clients, a 101).

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use smallvec::SmallVec;

use super::spans::{BadField, FieldSpans, Span};

/// Runs kept inline: a head whose kept fields break into more runs than this spills to the heap
/// (a typical backend head is one to three runs).
const INLINE_RUNS: usize = 4;

/// Header fields to forward, as runs of whole `name: value` lines of the head they came in.
#[derive(Clone, Debug, Default)]
pub(crate) struct RawFields {
    /// The frozen head the runs point into.
    head: Bytes,
    /// Lines to forward, in order. Inside a run, lines are separated by exactly `\r\n`; a run
    /// ends at its last value (its `\r\n` is written after it).
    runs: SmallVec<[Span; INLINE_RUNS]>,
    /// The first `Content-Length` line: forwarded only when the writer keeps the backend's
    /// framing (responses without a body, where it tells the size a GET would have had). Others
    /// can only repeat it (a head whose lengths differ is refused).
    length: Option<Span>,
    /// Whether a `Date` field is among them.
    date: bool,
    /// How many bytes at the end of `head` are not the head's but the body's transfer codings
    /// (see [`RawFields::set_transfer_codings`]); 0 when there are none. Kept there rather than
    /// in a field of their own, so that every response body stays the size it was for the sake
    /// of a few.
    codings: u16,
}

impl RawFields {
    /// The fields of `head` (whose fields `spans` recorded) without those `skip` picks.
    pub(crate) fn collect(head: Bytes, spans: &FieldSpans, skip: impl Fn(&[u8]) -> bool) -> Self {
        let mut runs: SmallVec<[Span; INLINE_RUNS]> = SmallVec::new();
        let mut length = None;
        let mut date = false;
        for (name, value) in spans.spans() {
            let name_bytes = name.bytes(&head);
            if skip(name_bytes) {
                continue;
            }
            let line = Span::line(name, value);
            match name_bytes.len() {
                14 if name_bytes.eq_ignore_ascii_case(b"content-length") => {
                    length = length.or(Some(line));
                    continue;
                }
                4 if name_bytes.eq_ignore_ascii_case(b"date") => date = true,
                _ => {}
            }
            match runs.last_mut() {
                Some(last) if last.followed_by_line(line, &head) => *last = last.through(line),
                _ => runs.push(line),
            }
        }
        RawFields {
            head,
            runs,
            length,
            date,
            codings: 0,
        }
    }

    /// Sets the transfer codings the body was sent with, other than a final `chunked` (as
    /// [`super::codings_before_chunked`] lists them; `Transfer-Encoding` itself is hop-by-hop
    /// and never among the fields). They go after a copy of the head; a list of 64 KiB or more
    /// (longer than a head can be) is refused.
    pub(crate) fn set_transfer_codings(&mut self, codings: &[u8]) -> Result<(), BadField> {
        let length = u16::try_from(codings.len()).map_err(|_| BadField::TransferCoding)?;
        let mut head = Vec::with_capacity(self.head.len() + codings.len());
        head.extend_from_slice(&self.head);
        head.extend_from_slice(codings);
        self.head = Bytes::from(head);
        self.codings = length;
        Ok(())
    }

    /// The transfer codings the body still carries once its chunked framing is taken off
    /// (`gzip, deflate`), if any: a writer that frames the body again names them before its own
    /// `chunked`, and one that cannot (HTTP/1.0, HTTP/2) cannot relay the body.
    pub(crate) fn transfer_codings(&self) -> Option<&[u8]> {
        let start = self.head.len().checked_sub(usize::from(self.codings))?;
        (self.codings > 0).then(|| &self.head[start..])
    }

    /// Whether there are no fields.
    pub(crate) fn is_empty(&self) -> bool {
        self.runs.is_empty() && self.length.is_none()
    }

    /// Whether a `Date` field is among them.
    pub(crate) fn has_date(&self) -> bool {
        self.date
    }

    /// The value of the first field named `name` (any case), without surrounding whitespace.
    /// A linear scan of the head: for a field or two per response, not for many.
    pub(crate) fn get(&self, name: &str) -> Option<&[u8]> {
        self.runs.iter().find_map(|run| {
            run.bytes(&self.head)
                .split(|&b| b == b'\n')
                .find_map(|line| {
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    let colon = line.iter().position(|&b| b == b':')?;
                    line[..colon]
                        .eq_ignore_ascii_case(name.as_bytes())
                        .then(|| line[colon + 1..].trim_ascii())
                })
        })
    }

    /// Appends the fields as `name: value\r\n` lines; the `Content-Length` line only if
    /// `with_length`, last.
    pub(crate) fn write(&self, out: &mut Vec<u8>, with_length: bool) {
        let length = self.length.filter(|_| with_length);
        for run in self.runs.iter().chain(&length) {
            out.extend_from_slice(run.bytes(&self.head));
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The fields as a header map (its values share the head's buffer).
    pub(crate) fn header_map(&self) -> Result<HeaderMap, BadField> {
        // Sized up front: growing a header map rehashes what it holds.
        let lines: usize = self
            .runs
            .iter()
            .chain(&self.length)
            .map(|run| {
                1 + run
                    .bytes(&self.head)
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
            })
            .sum();
        // A head holds at most MAX_HEADERS fields; the cap also keeps with_capacity (which
        // panics above 32,768) safe whatever the bytes say.
        let mut headers = HeaderMap::with_capacity(lines.min(super::MAX_HEADERS));
        for run in self.runs.iter().chain(&self.length) {
            let run = run.shared(&self.head);
            for line in run.split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let colon = line.iter().position(|&b| b == b':').ok_or(BadField::Name)?;
                let name = HeaderName::from_bytes(&line[..colon]).map_err(|_| BadField::Name)?;
                let value = run.slice_ref(line[colon + 1..].trim_ascii());
                let value = HeaderValue::from_maybe_shared(value).map_err(|_| BadField::Value)?;
                headers.append(name, value);
            }
        }
        Ok(headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fields of the response head `wire`, without those `skip` picks.
    fn fields(wire: &[u8], skip: impl Fn(&[u8]) -> bool) -> RawFields {
        let mut slots = [httparse::EMPTY_HEADER; 16];
        let mut parsed = httparse::Response::new(&mut slots);
        let httparse::Status::Complete(length) = parsed.parse(wire).unwrap() else {
            panic!("partial");
        };
        let spans = FieldSpans::record(wire, parsed.headers);
        RawFields::collect(Bytes::copy_from_slice(&wire[..length]), &spans, skip)
    }

    fn written(fields: &RawFields, with_length: bool) -> String {
        let mut out = Vec::new();
        fields.write(&mut out, with_length);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn get_finds_the_first_value_of_a_name_in_any_case() {
        let f = fields(
            b"HTTP/1.1 200 OK\r\nServer: x\r\nX-Load:  0.5 \r\nx-load: 9\r\n\r\n",
            |_| false,
        );
        assert_eq!(f.get("x-load"), Some(&b"0.5"[..]));
        assert_eq!(f.get("SERVER"), Some(&b"x"[..]));
        assert_eq!(f.get("x-lo"), None);
    }

    #[test]
    fn kept_lines_go_out_as_they_came_in_order() {
        let f = fields(
            b"HTTP/1.1 200 OK\r\nServer: x\r\nConnection: close\r\nX-Multi: a\r\nX-Multi: b\r\n\
              Content-Length: 2\r\nSet-Cookie: s=1\r\n\r\nok",
            |name| name.eq_ignore_ascii_case(b"connection"),
        );
        assert_eq!(
            written(&f, false),
            "Server: x\r\nX-Multi: a\r\nX-Multi: b\r\nSet-Cookie: s=1\r\n"
        );
        assert_eq!(
            written(&f, true),
            "Server: x\r\nX-Multi: a\r\nX-Multi: b\r\nSet-Cookie: s=1\r\nContent-Length: 2\r\n"
        );
        assert!(!f.has_date());
        let map = f.header_map().unwrap();
        assert_eq!(map.len(), 5);
        let multi: Vec<_> = map.get_all("x-multi").iter().collect();
        assert_eq!(multi, ["a", "b"]);
        assert_eq!(map["content-length"], "2");
        assert!(!map.contains_key("connection"));
    }

    #[test]
    fn bare_line_feeds_and_trailing_blanks_are_not_forwarded() {
        // httparse takes bare LF line ends and blanks after a value; the client gets CRLF lines.
        let f = fields(
            b"HTTP/1.1 200 OK\nA: 1  \nB:2\nDate: Tue, 01 Dec 2026 10:00:00 GMT\n\n",
            |_| false,
        );
        assert_eq!(
            written(&f, false),
            "A: 1\r\nB:2\r\nDate: Tue, 01 Dec 2026 10:00:00 GMT\r\n"
        );
        assert!(f.has_date());
        let map = f.header_map().unwrap();
        assert_eq!(
            (&map["a"], &map["b"]),
            (&"1".parse().unwrap(), &"2".parse().unwrap())
        );
    }

    #[test]
    fn no_fields_write_nothing() {
        let f = fields(
            b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
            |_| true,
        );
        assert!(f.is_empty());
        assert_eq!(written(&f, true), "");
        assert!(f.header_map().unwrap().is_empty());
    }
}
