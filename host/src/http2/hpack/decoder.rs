//! The HPACK decoder (RFC 7541 §3, §6): header block → fields.

use super::huffman;
use super::table::{DynamicTable, STATIC};
use super::DecodeError;

/// Largest integer accepted in a representation (indexes, lengths, table
/// sizes). Anything legitimate is far below; the bound keeps arithmetic in
/// range on every platform.
const MAX_INTEGER: u64 = 1 << 28;

/// Scratch capacity kept between blocks; a larger buffer (grown by one huge
/// Huffman string) is released after the block so an idle connection does not
/// hold it.
const SCRATCH_KEEP: usize = 64 * 1024;

/// HPACK decoder for one connection direction (RFC 7541).
#[derive(Debug)]
pub(crate) struct Decoder {
    /// The dynamic table the peer's encoder drives.
    table: DynamicTable,
    /// SETTINGS_HEADER_TABLE_SIZE lbhost advertised: ceiling for size updates.
    max_table_size: usize,
    /// Huffman-decoded strings of the current field, reused across fields.
    scratch: Vec<u8>,
}

/// Where a decoded string lives: a range of the block, or of the scratch
/// buffer (Huffman output). Ranges, not slices, so the scratch buffer may
/// grow between decoding the name and the value.
#[derive(Clone, Copy)]
enum Str {
    Block(usize, usize),
    Scratch(usize, usize),
}

impl Str {
    /// The bytes, given the block and the scratch buffer.
    fn get<'a>(self, block: &'a [u8], scratch: &'a [u8]) -> &'a [u8] {
        let (src, start, end) = match self {
            Str::Block(s, e) => (block, s, e),
            Str::Scratch(s, e) => (scratch, s, e),
        };
        // The ranges were checked when built; empty is a harmless fallback.
        src.get(start..end).unwrap_or_default()
    }
}

/// The name of a literal representation, before its value is read.
enum Name {
    /// A static table name.
    Static(&'static [u8]),
    /// Dynamic table entry (0-based, newest first); only for literals that
    /// are not indexed, see `Decoder::literal`.
    Dynamic(usize),
    /// A string literal.
    Literal(Str),
}

impl Decoder {
    /// `max_table_size`: the SETTINGS_HEADER_TABLE_SIZE lbhost advertised; the peer's dynamic-table size updates may not exceed it.
    pub(crate) fn new(max_table_size: usize) -> Self {
        Decoder {
            table: DynamicTable::new(max_table_size),
            max_table_size,
            scratch: Vec::new(),
        }
    }

    /// Decodes one whole header block (HEADERS + CONTINUATION fragments already joined), calling `field(name, value)` for each field in order (pseudo-fields such as `:status` included, names as sent). The slices borrow the block, the decoder's dynamic table or a scratch buffer the decoder reuses across calls (no allocation per field in the steady state). On error the connection is dead (COMPRESSION_ERROR): no need to keep state consistent after an error.
    pub(crate) fn decode(
        &mut self,
        block: &[u8],
        field: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<(), DecodeError> {
        let result = self.decode_inner(block, field);
        if self.scratch.capacity() > SCRATCH_KEEP {
            self.scratch = Vec::new();
        }
        result
    }

    fn decode_inner(
        &mut self,
        block: &[u8],
        field: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<(), DecodeError> {
        let mut pos = 0;
        // Size updates are only allowed before the first field (RFC 7541 §4.2).
        let mut at_start = true;
        while let Some(&first) = block.get(pos) {
            if first & 0x80 != 0 {
                // Indexed header field (§6.1).
                let index = read_int(block, &mut pos, 7)?;
                at_start = false;
                let (name, value) = self.lookup(index)?;
                field(name, value);
            } else if first & 0xc0 == 0x40 {
                // Literal with incremental indexing (§6.2.1).
                at_start = false;
                self.literal(block, &mut pos, 6, true, field)?;
            } else if first & 0xe0 == 0x20 {
                // Dynamic table size update (§6.3).
                if !at_start {
                    return Err(DecodeError::SizeUpdateNotAtStart);
                }
                let size = read_int(block, &mut pos, 5)?;
                if size > self.max_table_size {
                    return Err(DecodeError::SizeUpdateTooLarge {
                        size,
                        max: self.max_table_size,
                    });
                }
                self.table.set_max_size(size);
            } else {
                // Literal without indexing (0000) or never indexed (0001)
                // (§6.2.2, §6.2.3): the same to a decoder that forwards
                // nothing itself.
                at_start = false;
                self.literal(block, &mut pos, 4, false, field)?;
            }
        }
        Ok(())
    }

    /// The field at HPACK index `index` (static, then dynamic).
    fn lookup(&self, index: usize) -> Result<(&[u8], &[u8]), DecodeError> {
        if index == 0 {
            return Err(DecodeError::BadIndex(index));
        }
        if let Some(&(n, v)) = STATIC.get(index - 1) {
            return Ok((n, v));
        }
        self.table
            .get(index - 1 - STATIC.len())
            .ok_or(DecodeError::BadIndex(index))
    }

    /// Decodes one literal representation whose name index has a
    /// `prefix`-bit prefix, adding it to the table if `index`.
    fn literal(
        &mut self,
        block: &[u8],
        pos: &mut usize,
        prefix: u8,
        index: bool,
        field: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<(), DecodeError> {
        self.scratch.clear();
        let name_index = read_int(block, pos, prefix)?;
        let name = if name_index == 0 {
            Name::Literal(read_string(block, pos, &mut self.scratch)?)
        } else if let Some(&(n, _)) = STATIC.get(name_index - 1) {
            Name::Static(n)
        } else {
            let i = name_index - 1 - STATIC.len();
            if i >= self.table.len() {
                return Err(DecodeError::BadIndex(name_index));
            }
            if index {
                // The insertion below may evict the very entry the name
                // comes from (RFC 7541 §4.4): copy it out first.
                let start = self.scratch.len();
                let (n, _) = self.table.get(i).ok_or(DecodeError::BadIndex(name_index))?;
                self.scratch.extend_from_slice(n);
                Name::Literal(Str::Scratch(start, self.scratch.len()))
            } else {
                Name::Dynamic(i)
            }
        };
        let value = read_string(block, pos, &mut self.scratch)?;

        let scratch = self.scratch.as_slice();
        let value = value.get(block, scratch);
        let name = match name {
            Name::Static(n) => n,
            Name::Literal(s) => s.get(block, scratch),
            Name::Dynamic(i) => {
                // Only built without indexing, so no insertion here.
                let n = self.table.get(i).map(|(n, _)| n).unwrap_or_default();
                field(n, value);
                return Ok(());
            }
        };
        if index {
            self.table.insert(name, value);
        }
        field(name, value);
        Ok(())
    }

    /// Current dynamic table size by the RFC's accounting (tests).
    #[cfg(test)]
    pub(super) fn table_size(&self) -> usize {
        self.table.size()
    }

    /// Dynamic table entries, newest first (tests).
    #[cfg(test)]
    pub(super) fn table_entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        (0..self.table.len())
            .filter_map(|i| self.table.get(i))
            .map(|(n, v)| (n.to_vec(), v.to_vec()))
            .collect()
    }

    /// Current dynamic table maximum size (tests).
    #[cfg(test)]
    pub(super) fn table_max_size(&self) -> usize {
        self.table.max_size()
    }
}

/// Reads an integer with an `n`-bit prefix (RFC 7541 §5.1) at `*pos`; the
/// bits above the prefix in the first byte are the representation's type.
fn read_int(block: &[u8], pos: &mut usize, n: u8) -> Result<usize, DecodeError> {
    let mask = (1u8 << n) - 1;
    let first = block.get(*pos).ok_or(DecodeError::Truncated)? & mask;
    *pos += 1;
    if first < mask {
        return Ok(usize::from(first));
    }
    let mut value = u64::from(mask);
    let mut shift = 0u32;
    loop {
        let b = *block.get(*pos).ok_or(DecodeError::Truncated)?;
        *pos += 1;
        value += u64::from(b & 0x7f) << shift;
        if value > MAX_INTEGER {
            return Err(DecodeError::IntegerOverflow);
        }
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        // Five continuation bytes carry 35 bits, more than MAX_INTEGER needs;
        // a sixth could only be zero padding, refused to bound the work.
        if shift >= 35 {
            return Err(DecodeError::IntegerOverflow);
        }
    }
    // MAX_INTEGER fits in u32, so in usize on every supported target.
    usize::try_from(value).map_err(|_| DecodeError::IntegerOverflow)
}

/// Reads a string literal (RFC 7541 §5.2) at `*pos`; Huffman-coded strings
/// are decoded onto the end of `scratch`.
fn read_string(block: &[u8], pos: &mut usize, scratch: &mut Vec<u8>) -> Result<Str, DecodeError> {
    let huffman = block.get(*pos).ok_or(DecodeError::Truncated)? & 0x80 != 0;
    let len = read_int(block, pos, 7)?;
    let start = *pos;
    let end = start
        .checked_add(len)
        .filter(|&end| end <= block.len())
        .ok_or(DecodeError::StringPastBlock)?;
    *pos = end;
    if !huffman {
        return Ok(Str::Block(start, end));
    }
    let src = block.get(start..end).ok_or(DecodeError::StringPastBlock)?;
    let out = scratch.len();
    huffman::decode(src, scratch)?;
    Ok(Str::Scratch(out, scratch.len()))
}
