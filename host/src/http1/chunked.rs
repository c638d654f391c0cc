//! Chunked transfer coding (RFC 9112 §7.1): a body decoded piece by piece as it arrives, a
//! client's request body or a backend's response body.
//!
//! Chunk lines are read to the grammar: the size through `httparse::parse_chunk_size`, the
//! extensions after it as RFC 9112 §7.1.1 spells them (`;name[=token|quoted-string]`, with
//! optional blanks around `;` and `=`), then CRLF. A control character in a line, a CR that
//! does not end it, a line without a size: errors on both sides, since another parser could
//! frame the body differently. Anything else off the grammar (blanks after the size, an empty
//! extension, a trailer section with bare LF line ends) is refused in a request; in a response
//! it is read, since its framing is still clear, and noted ([`Chunked::is_lenient`]) so the
//! connection carries no other response.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::{CodecError, MAX_HEAD, MAX_HEADERS};

/// A chunk-size line (with its extensions) longer than this is refused.
const MAX_CHUNK_LINE: usize = 4096;

/// One step of decoding a chunked body.
#[derive(Debug, PartialEq)]
pub(crate) enum Decoded {
    Data(Bytes),
    Trailers(HeaderMap),
    /// The buffer holds no complete next piece: read more.
    NeedMore,
    /// The last chunk (and its trailers, if any) was read.
    End,
}

/// A chunked body's decoder: where it is, and how strictly it reads (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Chunked {
    state: State,
    /// A request's body: anything off the grammar is an error.
    strict: bool,
    /// A line off the grammar was read (never set when `strict`).
    lenient: bool,
}

/// Where a chunked body's decoder is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk's data, with this much of it left.
    Data(u64),
    /// After a chunk's data, before its CRLF.
    DataEnd,
    /// After the last chunk: trailer fields, then an empty line.
    Trailers,
    Done,
}

impl Chunked {
    /// The decoder of a client's request body: anything off the grammar is an error.
    pub(crate) fn request() -> Self {
        Chunked {
            state: State::Size,
            strict: true,
            lenient: false,
        }
    }

    /// The decoder of a backend's response body: lines off the grammar whose framing is still
    /// clear are read, and noted.
    pub(crate) fn response() -> Self {
        Chunked {
            strict: false,
            ..Chunked::request()
        }
    }

    /// Whether the last chunk and its trailers were read.
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// How much of the current chunk's data is still to come (0 outside data).
    pub(crate) fn left(&self) -> u64 {
        match self.state {
            State::Data(left) => left,
            _ => 0,
        }
    }

    /// Whether a line off the grammar was read (a response's body only): its connection must
    /// carry no other message.
    pub(crate) fn is_lenient(&self) -> bool {
        self.lenient
    }

    /// Takes note of a line off the grammar: an error in a request.
    fn off_grammar(&mut self) -> Result<(), CodecError> {
        if self.strict {
            return Err(CodecError::Chunked);
        }
        self.lenient = true;
        Ok(())
    }

    /// Decodes the next piece from `buf`, consuming what it used.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, CodecError> {
        loop {
            match self.state {
                State::Size => {
                    let Some((length, size, on_grammar)) = chunk_line(buf)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    if !on_grammar {
                        self.off_grammar()?;
                    }
                    buf.advance(length);
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let data = buf.split_to(take).freeze();
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                    return Ok(Decoded::Data(data));
                }
                State::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(CodecError::Chunked);
                    }
                    buf.advance(2);
                    self.state = State::Size;
                }
                State::Trailers => {
                    if buf.starts_with(b"\r\n") {
                        buf.advance(2);
                        self.state = State::Done;
                        return Ok(Decoded::End);
                    }
                    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    let (length, fields) = match httparse::parse_headers(buf, &mut slots) {
                        Ok(httparse::Status::Complete(done)) if done.0 <= MAX_HEAD => done,
                        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => {
                            return Ok(Decoded::NeedMore)
                        }
                        _ => return Err(CodecError::Chunked),
                    };
                    if !crlf_only(&buf[..length]) {
                        self.off_grammar()?;
                    }
                    let mut trailers = HeaderMap::with_capacity(fields.len());
                    for field in fields.iter() {
                        let name = HeaderName::from_bytes(field.name.as_bytes())
                            .map_err(|_| CodecError::Chunked)?;
                        let value = HeaderValue::from_bytes(field.value)
                            .map_err(|_| CodecError::Chunked)?;
                        trailers.append(name, value);
                    }
                    buf.advance(length);
                    self.state = State::Done;
                    return Ok(Decoded::Trailers(trailers));
                }
                State::Done => return Ok(Decoded::End),
            }
        }
    }
}

/// The chunk-size line at the start of `buf`, once it is all there: its length (CRLF
/// included), the size, and whether it keeps to the grammar (see the module docs).
fn chunk_line(buf: &[u8]) -> Result<Option<(usize, u64, bool)>, CodecError> {
    let (length, size) = match httparse::parse_chunk_size(buf) {
        Ok(httparse::Status::Complete(line)) if line.0 <= MAX_CHUNK_LINE => line,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_CHUNK_LINE => return Ok(None),
        _ => return Err(CodecError::Chunked),
    };
    let line = &buf[..length - 2];
    // httparse reads a line without digits as size 0.
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(CodecError::Chunked);
    }
    let on_grammar = digits == line.len() || extensions(&line[digits..])?;
    Ok(Some((length, size, on_grammar)))
}

/// Whether `ext` (a chunk line after its size, without its CRLF) is a list of chunk
/// extensions (RFC 9112 §7.1.1). A control character other than HTAB is an error: httparse
/// lets a bare LF through there, which another parser would take for the line's end.
fn extensions(ext: &[u8]) -> Result<bool, CodecError> {
    if ext.iter().any(|&b| (b < b' ' && b != b'\t') || b == 0x7f) {
        return Err(CodecError::Chunked);
    }
    Ok(extension_list(ext).is_some())
}

/// `*( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )`, all of `ext` (`None` if
/// not), its bytes known to be free of control characters.
fn extension_list(mut ext: &[u8]) -> Option<()> {
    while !ext.is_empty() {
        ext = blanks(ext).strip_prefix(b";")?;
        ext = token(blanks(ext))?;
        if let Some(value) = blanks(ext).strip_prefix(b"=") {
            let value = blanks(value);
            ext = match value.strip_prefix(b"\"") {
                Some(quoted) => quoted_string_rest(quoted)?,
                None => token(value)?,
            };
        }
    }
    Some(())
}

/// What follows the blanks (SP, HTAB) at the start of `s`.
fn blanks(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    &s[n..]
}

/// What follows the token at the start of `s`; `None` if there is none (RFC 9110 §5.6.2).
fn token(s: &[u8]) -> Option<&[u8]> {
    let n = s.iter().take_while(|&&b| is_tchar(b)).count();
    (n > 0).then(|| &s[n..])
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// What follows the rest of a quoted string whose opening quote is already read (RFC 9110
/// §5.6.4); `None` if it does not end. Control characters are already ruled out.
fn quoted_string_rest(s: &[u8]) -> Option<&[u8]> {
    let mut bytes = s.iter().enumerate();
    while let Some((i, &b)) = bytes.next() {
        match b {
            b'"' => return Some(&s[i + 1..]),
            b'\\' => {
                bytes.next()?;
            }
            _ => {}
        }
    }
    None
}

/// Whether every line of `block` ends in CRLF (httparse also ends one at a bare LF).
fn crlf_only(block: &[u8]) -> bool {
    block.first() != Some(&b'\n') && block.windows(2).all(|w| w[1] != b'\n' || w[0] == b'\r')
}

#[cfg(test)]
mod tests;
