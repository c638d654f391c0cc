//! The HPACK Huffman code (RFC 7541 §5.2, Appendix B): decoding only, since
//! lbhost's encoder sends raw literals.
//!
//! The Appendix B code is canonical, so it is fully determined by the 257 code
//! lengths below; the codes themselves are derived at compile time, and from
//! them a 4-bits-at-a-time decoding automaton. Everything is `const`, so a
//! mistake in the construction is a compile error, never a runtime panic.

use super::DecodeError;

/// Code length in bits of each symbol, 0..=255 then EOS (256), as listed in
/// RFC 7541 Appendix B.
#[rustfmt::skip]
const CODE_LENGTHS: [u8; 257] = [
    // 0..=31: control characters
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
    // 32..=63: ' ' ! " # $ % & ' ( ) * + , - . / 0-9 : ; < = > ?
     6, 10, 10, 12, 13,  6,  8, 11, 10, 10,  8, 11,  8,  6,  6,  6,
     5,  5,  5,  6,  6,  6,  6,  6,  6,  6,  7,  8, 15,  6, 12, 10,
    // 64..=95: @ A-Z [ \ ] ^ _
    13,  6,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,
     7,  7,  7,  7,  7,  7,  7,  7,  8,  7,  8, 13, 19, 13, 14,  6,
    // 96..=127: ` a-z { | } ~ DEL
    15,  5,  6,  5,  6,  5,  6,  6,  6,  5,  7,  7,  6,  6,  6,  5,
     6,  7,  6,  5,  5,  6,  7,  7,  7,  7,  7, 15, 11, 14, 13, 28,
    // 128..=255
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
    // EOS
    30,
];

/// The end-of-string symbol; decoding it is an error (RFC 7541 §5.2).
const EOS: u16 = 256;

/// Longest code length in the table.
const MAX_LEN: usize = 30;

/// Canonical codes derived from `CODE_LENGTHS` (right-aligned in the `u32`):
/// codes of one length are consecutive in symbol order, and each length's
/// first code follows the previous length's last code, shifted left.
const CODES: [u32; 257] = canonical_codes();

const fn canonical_codes() -> [u32; 257] {
    let mut count = [0u32; MAX_LEN + 1];
    let mut s = 0;
    while s < 257 {
        count[CODE_LENGTHS[s] as usize] += 1;
        s += 1;
    }
    let mut next = [0u32; MAX_LEN + 1];
    let mut code = 0u32;
    let mut len = 1;
    while len <= MAX_LEN {
        code = (code + count[len - 1]) << 1;
        next[len] = code;
        len += 1;
    }
    let mut codes = [0u32; 257];
    s = 0;
    while s < 257 {
        let l = CODE_LENGTHS[s] as usize;
        codes[s] = next[l];
        next[l] += 1;
        s += 1;
    }
    codes
}

/// Marks a child slot in [`Tree`] that holds a symbol (leaf), not a node.
const LEAF: u16 = 0x8000;

/// Number of internal nodes of a full binary tree with 257 leaves.
const NODES: usize = 256;

/// The code tree: `children[node][bit]` is another internal node's index or
/// `LEAF | symbol`. Node 0 is the root; 0 in a child slot means "not yet set"
/// during construction (the root is nobody's child).
const fn build_tree() -> [[u16; 2]; NODES] {
    let mut children = [[0u16; 2]; NODES];
    let mut used = 1;
    let mut s = 0;
    while s < 257 {
        let len = CODE_LENGTHS[s] as usize;
        let code = CODES[s];
        let mut node = 0;
        let mut i = 0;
        while i < len {
            let bit = ((code >> (len - 1 - i)) & 1) as usize;
            if i == len - 1 {
                // A prefix-free code never lands on an occupied slot.
                assert!(children[node][bit] == 0);
                children[node][bit] = LEAF | s as u16;
            } else {
                if children[node][bit] == 0 {
                    children[node][bit] = used as u16;
                    used += 1;
                }
                let next = children[node][bit];
                assert!(next & LEAF == 0);
                node = next as usize;
            }
            i += 1;
        }
        s += 1;
    }
    // A complete code (Kraft sum 1) has exactly leaves - 1 internal nodes.
    assert!(used == NODES);
    children
}

/// After this nibble a symbol was completed; `sym` holds it.
const EMIT: u8 = 1;
/// This nibble completed EOS: the string is invalid.
const FAIL: u8 = 2;

/// One transition of the decoding automaton.
#[derive(Clone, Copy)]
struct Step {
    /// State (internal tree node) after the nibble.
    next: u8,
    /// Symbol completed in this nibble, valid with `EMIT`.
    sym: u8,
    /// `EMIT` / `FAIL` bits.
    flags: u8,
}

/// What ending the input in a given state means (RFC 7541 §5.2 padding rules).
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    /// At a symbol boundary, or inside at most 7 one-bits: valid padding.
    Ok,
    /// Inside 8 or more one-bits: padding longer than 7 bits.
    TooLong,
    /// Inside a code whose bits so far include a zero: not EOS's prefix.
    NotOnes,
}

/// The automaton: for each state (internal node) and each 4-bit input, the
/// transition, plus how ending in each state is judged. The shortest code is
/// 5 bits, so a nibble completes at most one symbol.
struct Automaton {
    steps: [[Step; 16]; NODES],
    ends: [End; NODES],
}

const fn build_automaton() -> Automaton {
    let tree = build_tree();
    let mut steps = [[Step {
        next: 0,
        sym: 0,
        flags: 0,
    }; 16]; NODES];
    let mut state = 0;
    while state < NODES {
        let mut nibble = 0;
        while nibble < 16 {
            let mut node = state;
            let mut sym = 0u8;
            let mut flags = 0u8;
            let mut i = 0;
            while i < 4 {
                let bit = (nibble >> (3 - i)) & 1;
                let child = tree[node][bit];
                if child & LEAF != 0 {
                    let s = child & !LEAF;
                    if s == EOS {
                        flags |= FAIL;
                    } else {
                        // Codes are at least 5 bits: at most one symbol here.
                        assert!(flags & EMIT == 0);
                        flags |= EMIT;
                        sym = s as u8;
                    }
                    node = 0;
                } else {
                    node = child as usize;
                }
                i += 1;
            }
            steps[state][nibble] = Step {
                next: node as u8,
                sym,
                flags,
            };
            nibble += 1;
        }
        state += 1;
    }

    // Every state that is not on the all-ones path from the root has seen a
    // zero bit since the last symbol. On that path (EOS's prefix), depth
    // decides: up to 7 bits is legal padding.
    let mut ends = [End::NotOnes; NODES];
    ends[0] = End::Ok;
    let mut node = 0;
    let mut depth = 1;
    while depth < MAX_LEN {
        let child = tree[node][1];
        assert!(child & LEAF == 0);
        node = child as usize;
        ends[node] = if depth <= 7 { End::Ok } else { End::TooLong };
        depth += 1;
    }
    Automaton { steps, ends }
}

/// Built at compile time (about 17 KiB of read-only data).
static AUTOMATON: Automaton = build_automaton();

/// Decodes the Huffman-coded `src`, appending the octets to `dst`.
pub(super) fn decode(src: &[u8], dst: &mut Vec<u8>) -> Result<(), DecodeError> {
    // Each symbol takes at least 5 bits: this bounds the output.
    dst.reserve(src.len() / 5 * 8 + 8);
    let steps = &AUTOMATON.steps;
    let mut state = 0u8;
    for &byte in src {
        for nibble in [byte >> 4, byte & 0x0f] {
            // `state` is a u8 and `steps` has 256 rows, `nibble` < 16 and
            // rows have 16 entries: neither index can be out of bounds.
            let step = steps[usize::from(state)][usize::from(nibble)];
            if step.flags != 0 {
                if step.flags & FAIL != 0 {
                    return Err(DecodeError::HuffmanEos);
                }
                dst.push(step.sym);
            }
            state = step.next;
        }
    }
    match AUTOMATON.ends[usize::from(state)] {
        End::Ok => Ok(()),
        End::TooLong => Err(DecodeError::HuffmanPaddingTooLong),
        End::NotOnes => Err(DecodeError::HuffmanPaddingNotOnes),
    }
}

/// Huffman-encodes `src` onto `dst` (tests only: lbhost sends raw literals).
#[cfg(test)]
pub(super) fn encode(src: &[u8], dst: &mut Vec<u8>) {
    let mut acc: u64 = 0;
    let mut bits = 0u32;
    for &b in src {
        let len = u32::from(CODE_LENGTHS[usize::from(b)]);
        acc = (acc << len) | u64::from(CODES[usize::from(b)]);
        bits += len;
        while bits >= 8 {
            bits -= 8;
            dst.push((acc >> bits) as u8);
        }
    }
    if bits > 0 {
        // Pad with the most significant bits of EOS (ones).
        let pad = 8 - bits;
        dst.push(((acc << pad) | ((1u64 << pad) - 1)) as u8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The codes as printed (hex, right-aligned) in RFC 7541 Appendix B,
    /// transcribed separately from the lengths to cross-check both.
    #[rustfmt::skip]
    const RFC_CODES: [u32; 257] = [
        0x1ff8, 0x7fffd8, 0xfffffe2, 0xfffffe3, 0xfffffe4, 0xfffffe5, 0xfffffe6, 0xfffffe7,
        0xfffffe8, 0xffffea, 0x3ffffffc, 0xfffffe9, 0xfffffea, 0x3ffffffd, 0xfffffeb, 0xfffffec,
        0xfffffed, 0xfffffee, 0xfffffef, 0xffffff0, 0xffffff1, 0xffffff2, 0x3ffffffe, 0xffffff3,
        0xffffff4, 0xffffff5, 0xffffff6, 0xffffff7, 0xffffff8, 0xffffff9, 0xffffffa, 0xffffffb,
        0x14, 0x3f8, 0x3f9, 0xffa, 0x1ff9, 0x15, 0xf8, 0x7fa, 0x3fa, 0x3fb, 0xf9, 0x7fb, 0xfa, 0x16, 0x17, 0x18,
        0x0, 0x1, 0x2, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x5c, 0xfb, 0x7ffc, 0x20, 0xffb, 0x3fc,
        0x1ffa, 0x21, 0x5d, 0x5e, 0x5f, 0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a,
        0x6b, 0x6c, 0x6d, 0x6e, 0x6f, 0x70, 0x71, 0x72, 0xfc, 0x73, 0xfd, 0x1ffb, 0x7fff0, 0x1ffc, 0x3ffc, 0x22,
        0x7ffd, 0x3, 0x23, 0x4, 0x24, 0x5, 0x25, 0x26, 0x27, 0x6, 0x74, 0x75, 0x28, 0x29, 0x2a, 0x7,
        0x2b, 0x76, 0x2c, 0x8, 0x9, 0x2d, 0x77, 0x78, 0x79, 0x7a, 0x7b, 0x7ffe, 0x7fc, 0x3ffd, 0x1ffd, 0xffffffc,
        0xfffe6, 0x3fffd2, 0xfffe7, 0xfffe8, 0x3fffd3, 0x3fffd4, 0x3fffd5, 0x7fffd9,
        0x3fffd6, 0x7fffda, 0x7fffdb, 0x7fffdc, 0x7fffdd, 0x7fffde, 0xffffeb, 0x7fffdf,
        0xffffec, 0xffffed, 0x3fffd7, 0x7fffe0, 0xffffee, 0x7fffe1, 0x7fffe2, 0x7fffe3,
        0x7fffe4, 0x1fffdc, 0x3fffd8, 0x7fffe5, 0x3fffd9, 0x7fffe6, 0x7fffe7, 0xffffef,
        0x3fffda, 0x1fffdd, 0xfffe9, 0x3fffdb, 0x3fffdc, 0x7fffe8, 0x7fffe9, 0x1fffde,
        0x7fffea, 0x3fffdd, 0x3fffde, 0xfffff0, 0x1fffdf, 0x3fffdf, 0x7fffeb, 0x7fffec,
        0x1fffe0, 0x1fffe1, 0x3fffe0, 0x1fffe2, 0x7fffed, 0x3fffe1, 0x7fffee, 0x7fffef,
        0xfffea, 0x3fffe2, 0x3fffe3, 0x3fffe4, 0x7ffff0, 0x3fffe5, 0x3fffe6, 0x7ffff1,
        0x3ffffe0, 0x3ffffe1, 0xfffeb, 0x7fff1, 0x3fffe7, 0x7ffff2, 0x3fffe8, 0x1ffffec,
        0x3ffffe2, 0x3ffffe3, 0x3ffffe4, 0x7ffffde, 0x7ffffdf, 0x3ffffe5, 0xfffff1, 0x1ffffed,
        0x7fff2, 0x1fffe3, 0x3ffffe6, 0x7ffffe0, 0x7ffffe1, 0x3ffffe7, 0x7ffffe2, 0xfffff2,
        0x1fffe4, 0x1fffe5, 0x3ffffe8, 0x3ffffe9, 0xffffffd, 0x7ffffe3, 0x7ffffe4, 0x7ffffe5,
        0xfffec, 0xfffff3, 0xfffed, 0x1fffe6, 0x3fffe9, 0x1fffe7, 0x1fffe8, 0x7ffff3,
        0x3fffea, 0x3fffeb, 0x1ffffee, 0x1ffffef, 0xfffff4, 0xfffff5, 0x3ffffea, 0x7ffff4,
        0x3ffffeb, 0x7ffffe6, 0x3ffffec, 0x3ffffed, 0x7ffffe7, 0x7ffffe8, 0x7ffffe9, 0x7ffffea,
        0x7ffffeb, 0xffffffe, 0x7ffffec, 0x7ffffed, 0x7ffffee, 0x7ffffef, 0x7fffff0, 0x3ffffee,
        0x3fffffff,
    ];

    #[test]
    fn kraft_sum_is_one() {
        // Sum of 2^(30 - len) must be exactly 2^30 for a complete code.
        let sum: u64 = CODE_LENGTHS
            .iter()
            .map(|&l| 1u64 << (MAX_LEN as u32 - u32::from(l)))
            .sum();
        assert_eq!(sum, 1u64 << MAX_LEN);
    }

    #[test]
    fn known_codes_match_the_rfc() {
        let check = |sym: usize, code: u32, len: u8| {
            assert_eq!((CODES[sym], CODE_LENGTHS[sym]), (code, len), "symbol {sym}");
        };
        check(usize::from(b'0'), 0x0, 5);
        check(usize::from(b'a'), 0x3, 5);
        check(usize::from(b' '), 0x14, 6);
        check(256, 0x3fff_ffff, 30);
        check(0, 0x1ff8, 13);
        check(255, 0x3ff_ffee, 26);
    }

    #[test]
    fn all_codes_match_the_rfc() {
        for (sym, (&derived, &printed)) in CODES.iter().zip(RFC_CODES.iter()).enumerate() {
            assert_eq!(derived, printed, "symbol {sym}");
            assert!(
                u64::from(printed) < 1u64 << CODE_LENGTHS[sym],
                "symbol {sym}"
            );
        }
    }

    #[test]
    fn every_octet_round_trips() {
        let all: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        for end in 0..all.len() {
            let mut enc = Vec::new();
            encode(&all[..end], &mut enc);
            let mut dec = Vec::new();
            decode(&enc, &mut dec).unwrap();
            assert_eq!(dec, &all[..end]);
        }
    }

    #[test]
    fn rfc_strings_decode() {
        let mut out = Vec::new();
        decode(
            &[
                0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff,
            ],
            &mut out,
        )
        .unwrap();
        assert_eq!(out, b"www.example.com");
        out.clear();
        decode(&[0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf], &mut out).unwrap();
        assert_eq!(out, b"no-cache");
    }

    #[test]
    fn padding_and_eos_rules() {
        let mut out = Vec::new();
        // Empty input is the empty string.
        assert_eq!(decode(&[], &mut out), Ok(()));
        // '0' = 00000 then 111 padding: fine.
        assert_eq!(decode(&[0b0000_0111], &mut out), Ok(()));
        assert_eq!(out, b"0");
        // '0' then padding 110: not all ones.
        assert_eq!(
            decode(&[0b0000_0110], &mut out),
            Err(DecodeError::HuffmanPaddingNotOnes)
        );
        // A whole byte of ones after a symbol boundary: 8 bits of padding.
        assert_eq!(
            decode(&[0b0000_0111, 0xff], &mut out),
            Err(DecodeError::HuffmanPaddingTooLong)
        );
        assert_eq!(
            decode(&[0xff], &mut out),
            Err(DecodeError::HuffmanPaddingTooLong)
        );
        // EOS (30 ones) padded with two ones: EOS decoded.
        assert_eq!(
            decode(&[0xff, 0xff, 0xff, 0xff], &mut out),
            Err(DecodeError::HuffmanEos)
        );
        // EOS after a symbol.
        assert_eq!(
            decode(&[0b0000_0111, 0xff, 0xff, 0xff, 0xf0], &mut out),
            Err(DecodeError::HuffmanEos)
        );
    }
}
