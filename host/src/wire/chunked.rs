//! Chunked transfer coding (RFC 9112 §7.1): a response body decoded piece by piece as it
//! arrives.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::{WireError, MAX_HEAD, MAX_HEADERS};

/// A chunk-size line (with its extensions) longer than this is refused.
const MAX_CHUNK_LINE: usize = 4096;

/// One step of decoding a chunked body.
#[derive(Debug, PartialEq)]
pub enum Decoded {
    Data(Bytes),
    Trailers(HeaderMap),
    /// The buffer holds no complete next piece: read more.
    NeedMore,
    /// The last chunk (and its trailers, if any) was read.
    End,
}

/// Where a chunked body's decoder is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Chunked {
    /// Before a chunk-size line.
    #[default]
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
    /// How much of the current chunk's data is still to come (0 outside data).
    pub fn left(&self) -> u64 {
        match self {
            Chunked::Data(left) => *left,
            _ => 0,
        }
    }

    /// Decodes the next piece from `buf`, consuming what it used.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, WireError> {
        loop {
            match *self {
                Chunked::Size => {
                    let Some(end) = buf.iter().position(|&b| b == b'\n') else {
                        return if buf.len() > MAX_CHUNK_LINE {
                            Err(WireError::Chunked)
                        } else {
                            Ok(Decoded::NeedMore)
                        };
                    };
                    let size = chunk_size(&buf[..end])?;
                    buf.advance(end + 1);
                    *self = if size == 0 {
                        Chunked::Trailers
                    } else {
                        Chunked::Data(size)
                    };
                }
                Chunked::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let data = buf.split_to(take).freeze();
                    let left = left - take as u64;
                    *self = if left == 0 {
                        Chunked::DataEnd
                    } else {
                        Chunked::Data(left)
                    };
                    return Ok(Decoded::Data(data));
                }
                Chunked::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(WireError::Chunked);
                    }
                    buf.advance(2);
                    *self = Chunked::Size;
                }
                Chunked::Trailers => {
                    if buf.starts_with(b"\r\n") {
                        buf.advance(2);
                        *self = Chunked::Done;
                        return Ok(Decoded::End);
                    }
                    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    let (length, fields) = match httparse::parse_headers(buf, &mut slots) {
                        Ok(httparse::Status::Complete(done)) => done,
                        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => {
                            return Ok(Decoded::NeedMore)
                        }
                        _ => return Err(WireError::Chunked),
                    };
                    let mut trailers = HeaderMap::with_capacity(fields.len());
                    for field in fields.iter() {
                        let name = HeaderName::from_bytes(field.name.as_bytes())
                            .map_err(|_| WireError::Chunked)?;
                        let value =
                            HeaderValue::from_bytes(field.value).map_err(|_| WireError::Chunked)?;
                        trailers.append(name, value);
                    }
                    buf.advance(length);
                    *self = Chunked::Done;
                    return Ok(Decoded::Trailers(trailers));
                }
                Chunked::Done => return Ok(Decoded::End),
            }
        }
    }
}

/// The size on a chunk-size line (hex, then optional `;extensions`, then CR).
fn chunk_size(line: &[u8]) -> Result<u64, WireError> {
    let line = line.strip_suffix(b"\r").ok_or(WireError::Chunked)?;
    let digits = line
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return Err(WireError::Chunked);
    }
    digits.iter().try_fold(0u64, |n, &d| {
        let digit = (d as char).to_digit(16).ok_or(WireError::Chunked)?;
        Ok(n * 16 + u64::from(digit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_decode_across_any_split() {
        let wire = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-sum: 9\r\n\r\n";
        for split in 0..wire.len() {
            let mut decoder = Chunked::default();
            let mut buf = BytesMut::from(&wire[..split]);
            let mut data = Vec::new();
            let mut trailers = None;
            let mut fed = false;
            loop {
                match decoder.decode(&mut buf).unwrap() {
                    Decoded::Data(d) => data.extend_from_slice(&d),
                    Decoded::Trailers(t) => trailers = Some(t),
                    Decoded::NeedMore => {
                        assert!(!fed, "split at {split}: stuck");
                        buf.extend_from_slice(&wire[split..]);
                        fed = true;
                    }
                    Decoded::End => break,
                }
            }
            assert_eq!(data, b"hello world", "split at {split}");
            assert_eq!(trailers.unwrap()["x-sum"], "9", "split at {split}");
        }
    }

    #[test]
    fn malformed_chunks_are_refused() {
        for wire in [
            &b"zz\r\n"[..],
            b"5\r\nhelloXX",
            b"5\n",
            b"1234567890abcdef0\r\n",
        ] {
            let mut decoder = Chunked::default();
            let mut buf = BytesMut::from(wire);
            let result = loop {
                match decoder.decode(&mut buf) {
                    Ok(Decoded::Data(_)) => continue,
                    other => break other,
                }
            };
            assert!(result.is_err(), "{:?}", String::from_utf8_lossy(wire));
        }
    }
}
