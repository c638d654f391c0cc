//! HPACK (RFC 7541) for lbhost's HTTP/2 client towards backends.
//!
//! - [`Decoder`]: decodes the backend's header blocks (responses), with the
//!   static and dynamic tables and Huffman decoding; bounded on hostile input
//!   (integers capped, strings bounded by the block, table bounded by the
//!   advertised SETTINGS_HEADER_TABLE_SIZE) and panic-free.
//! - [`Encoder`]: encodes request fields without ever adding to the peer's
//!   dynamic table, so it holds no state.
//!
//! Files: `decoder.rs`, `encoder.rs`, `huffman.rs` (Appendix B code and a
//! table-driven decoder), `table.rs` (static and dynamic tables).

mod decoder;
mod encoder;
mod huffman;
mod table;
#[cfg(test)]
mod tests;

pub(crate) use decoder::Decoder;
pub(crate) use encoder::Encoder;

/// Why a header block could not be decoded; any of them is a connection
/// error of type COMPRESSION_ERROR (RFC 9113 §4.3).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// Index 0, or past the end of the static and dynamic tables.
    #[error("header field index {0} is not in the static or dynamic table")]
    BadIndex(usize),
    /// An integer above the decoder's bound (2^28), or padded with too many
    /// continuation bytes.
    #[error("integer is larger than the decoder accepts")]
    IntegerOverflow,
    /// A string literal's length goes past the end of the block.
    #[error("string literal runs past the end of the header block")]
    StringPastBlock,
    /// Huffman padding of 8 bits or more.
    #[error("huffman padding is longer than 7 bits")]
    HuffmanPaddingTooLong,
    /// Huffman padding that is not the most significant bits of EOS.
    #[error("huffman padding is not all ones")]
    HuffmanPaddingNotOnes,
    /// The EOS symbol inside a Huffman string.
    #[error("huffman string contains the eos symbol")]
    HuffmanEos,
    /// A dynamic table size update above the advertised maximum.
    #[error("dynamic table size update to {size} exceeds the advertised maximum {max}")]
    SizeUpdateTooLarge { size: usize, max: usize },
    /// A dynamic table size update after a field representation.
    #[error("dynamic table size update after the start of the header block")]
    SizeUpdateNotAtStart,
    /// The block ends inside a representation.
    #[error("header block ends inside a field representation")]
    Truncated,
}
