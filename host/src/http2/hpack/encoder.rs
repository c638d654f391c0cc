//! The HPACK encoder (RFC 7541 §6): fields → header block, stateless.

/// HPACK encoder that never adds to the dynamic table (as HAProxy's): the peer's table stays empty, so no table state and no size updates are needed. Values go out as raw (non-Huffman) literals.
///
/// Blocks are put together in a `Vec<u8>`: a byte pushed onto it is a store, where `BytesMut`'s
/// `put_u8` is a `memcpy` call (an h2c request's two heads: ~3,500 → ~2,300 instructions).
pub(crate) struct Encoder;

impl Encoder {
    /// Appends `name: value`: an indexed field when the static table has the pair, a literal with an indexed name when it has the name, else a literal with a literal name; for `authorization`, `proxy-authorization` and `cookie`, and whenever `sensitive` is true, the never-indexed literal form (RFC 7541 §6.2.3), as intermediaries must keep it.
    ///
    /// `:method`, `:scheme`, `:path`, `:authority`, `:status` go through here
    /// too; their common values are single-byte indexed fields.
    pub(crate) fn field(dst: &mut Vec<u8>, name: &[u8], value: &[u8], sensitive: bool) {
        let never = sensitive || is_sensitive_name(name);
        if !never {
            if let Some(index) = static_pair(name, value) {
                dst.push(0x80 | index);
                return;
            }
        }
        // Worst case: 1 + 5 bytes per integer (lengths are far below 2^35).
        dst.reserve(name.len().saturating_add(value.len()).saturating_add(16));
        // 0001xxxx never indexed, 0000xxxx without indexing (§6.2.2, §6.2.3).
        let kind = if never { 0x10 } else { 0x00 };
        match static_name(name) {
            Some(index) => put_int(dst, kind, 4, usize::from(index)),
            None => {
                dst.push(kind);
                put_str(dst, name);
            }
        }
        put_str(dst, value);
    }
}

impl Encoder {
    /// Appends every field of `headers` (names in lower case, as a header map holds them),
    /// those marked sensitive never-indexed.
    pub(crate) fn fields(dst: &mut Vec<u8>, headers: &http::HeaderMap) {
        for (name, value) in headers {
            Encoder::field(
                dst,
                name.as_str().as_bytes(),
                value.as_bytes(),
                value.is_sensitive(),
            );
        }
    }
}

/// Names whose fields are always sent never-indexed: credentials and cookies
/// (RFC 7541 §7.1.3), so no intermediary downstream may index them.
fn is_sensitive_name(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"authorization")
        || name.eq_ignore_ascii_case(b"cookie")
        || name.eq_ignore_ascii_case(b"proxy-authorization")
}

/// Static index of the exact pair `name: value`, if any. Pseudo-fields come
/// first: they are in every request.
fn static_pair(name: &[u8], value: &[u8]) -> Option<u8> {
    let index = match (name, value) {
        (b":method", b"GET") => 2,
        (b":method", b"POST") => 3,
        (b":path", b"/") => 4,
        (b":path", b"/index.html") => 5,
        (b":scheme", b"http") => 6,
        (b":scheme", b"https") => 7,
        (b":status", b"200") => 8,
        (b":status", b"204") => 9,
        (b":status", b"206") => 10,
        (b":status", b"304") => 11,
        (b":status", b"400") => 12,
        (b":status", b"404") => 13,
        (b":status", b"500") => 14,
        (b"accept-encoding", b"gzip, deflate") => 16,
        // Every other static entry has an empty value.
        (_, b"") => match static_name(name)? {
            // These names' first entries carry values; an empty value is not
            // them (and `:authority` is the only one with an empty value).
            2..=14 | 16 => return None,
            i => i,
        },
        _ => return None,
    };
    Some(index)
}

/// Static index of the first entry named `name`, if any.
fn static_name(name: &[u8]) -> Option<u8> {
    let index = match name {
        b":authority" => 1,
        b":method" => 2,
        b":path" => 4,
        b":scheme" => 6,
        b":status" => 8,
        b"accept-charset" => 15,
        b"accept-encoding" => 16,
        b"accept-language" => 17,
        b"accept-ranges" => 18,
        b"accept" => 19,
        b"access-control-allow-origin" => 20,
        b"age" => 21,
        b"allow" => 22,
        b"authorization" => 23,
        b"cache-control" => 24,
        b"content-disposition" => 25,
        b"content-encoding" => 26,
        b"content-language" => 27,
        b"content-length" => 28,
        b"content-location" => 29,
        b"content-range" => 30,
        b"content-type" => 31,
        b"cookie" => 32,
        b"date" => 33,
        b"etag" => 34,
        b"expect" => 35,
        b"expires" => 36,
        b"from" => 37,
        b"host" => 38,
        b"if-match" => 39,
        b"if-modified-since" => 40,
        b"if-none-match" => 41,
        b"if-range" => 42,
        b"if-unmodified-since" => 43,
        b"last-modified" => 44,
        b"link" => 45,
        b"location" => 46,
        b"max-forwards" => 47,
        b"proxy-authenticate" => 48,
        b"proxy-authorization" => 49,
        b"range" => 50,
        b"referer" => 51,
        b"refresh" => 52,
        b"retry-after" => 53,
        b"server" => 54,
        b"set-cookie" => 55,
        b"strict-transport-security" => 56,
        b"transfer-encoding" => 57,
        b"user-agent" => 58,
        b"vary" => 59,
        b"via" => 60,
        b"www-authenticate" => 61,
        _ => return None,
    };
    Some(index)
}

/// Appends `value` as an integer with an `n`-bit prefix (RFC 7541 §5.1), the
/// prefix byte's high bits being `high`.
fn put_int(dst: &mut Vec<u8>, high: u8, n: u8, value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        // value < 2^n <= 128: fits in the prefix.
        dst.push(high | value as u8);
        return;
    }
    dst.push(high | max as u8);
    let mut rest = value - max;
    while rest >= 0x80 {
        dst.push((rest & 0x7f) as u8 | 0x80);
        rest >>= 7;
    }
    dst.push(rest as u8);
}

/// Appends a raw (H = 0) string literal (RFC 7541 §5.2).
fn put_str(dst: &mut Vec<u8>, s: &[u8]) {
    put_int(dst, 0x00, 7, s.len());
    dst.extend_from_slice(s);
}

#[cfg(test)]
pub(super) fn put_int_for_tests(dst: &mut Vec<u8>, high: u8, n: u8, value: usize) {
    put_int(dst, high, n, value);
}
