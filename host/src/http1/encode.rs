//! Chunked coding on the way out (RFC 9112 §7.1): the size line before each chunk's data and
//! the bytes around it, written without an allocation.

/// After a chunk's data.
pub(crate) const CHUNK_END: &[u8] = b"\r\n";
/// The last chunk with no trailer fields.
pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// The end of a body's final chunk and the last chunk, in one piece (one write less).
pub(crate) const FINAL_CHUNK_END: &[u8] = b"\r\n0\r\n\r\n";

/// A chunk-size line (`<hex size>\r\n`), on the stack.
#[derive(Debug)]
pub(crate) struct ChunkLine {
    bytes: [u8; 20],
    length: usize,
}

impl ChunkLine {
    /// The size line of a chunk of `size` bytes.
    pub(crate) fn new(size: usize) -> Self {
        // By hand: `write!(…, "{size:x}")` cost ~590 instructions a line, this ~40.
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut bytes = [0u8; 20];
        let digits = (usize::BITS - size.leading_zeros()).div_ceil(4).max(1) as usize;
        for (i, byte) in bytes[..digits].iter_mut().enumerate() {
            let shift = 4 * (digits - 1 - i);
            *byte = DIGITS[(size >> shift) & 0xf];
        }
        bytes[digits] = b'\r';
        bytes[digits + 1] = b'\n';
        ChunkLine {
            bytes,
            length: digits + 2,
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.length]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_lines_are_hex_sizes_with_crlf() {
        assert_eq!(ChunkLine::new(0).as_bytes(), b"0\r\n");
        assert_eq!(ChunkLine::new(255).as_bytes(), b"ff\r\n");
        assert_eq!(ChunkLine::new(256).as_bytes(), b"100\r\n");
        assert_eq!(ChunkLine::new(0x1f).as_bytes(), b"1f\r\n");
        assert_eq!(
            ChunkLine::new(usize::MAX).as_bytes(),
            b"ffffffffffffffff\r\n"
        );
    }
}
