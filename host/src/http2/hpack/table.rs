//! The HPACK static table (RFC 7541 Appendix A) and the decoder's dynamic
//! table (RFC 7541 §2.3.2, §4).

use std::collections::VecDeque;

/// The static table; HPACK index `i` (1-based) is `STATIC[i - 1]`.
pub(super) const STATIC: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// Per-entry overhead in the RFC's size accounting (RFC 7541 §4.1).
pub(super) const ENTRY_OVERHEAD: usize = 32;

/// Where one dynamic entry's bytes are in [`DynamicTable::buf`]: the name at
/// `pos`, the value right after it.
#[derive(Clone, Copy, Debug)]
struct Entry {
    pos: usize,
    name_len: usize,
    value_len: usize,
}

impl Entry {
    /// End of the entry's bytes in the buffer.
    fn end(&self) -> usize {
        self.pos + self.name_len + self.value_len
    }

    /// Size by the RFC's accounting.
    fn size(&self) -> usize {
        self.name_len + self.value_len + ENTRY_OVERHEAD
    }
}

/// The dynamic table. All entries' bytes live in one buffer, appended in
/// insertion order; eviction only moves `head` forward, and the dead prefix
/// is dropped by one `copy_within` once it outweighs the live bytes, so each
/// byte is moved O(1) times amortized and there is no allocation per entry.
/// The buffer stays below about twice the table's maximum size.
#[derive(Debug)]
pub(super) struct DynamicTable {
    /// Entry bytes; `buf[..head]` is dead (evicted).
    buf: Vec<u8>,
    /// Start of the oldest live entry in `buf`.
    head: usize,
    /// Live entries, newest first: HPACK index 62 is `entries[0]`.
    entries: VecDeque<Entry>,
    /// Current size by the RFC's accounting.
    size: usize,
    /// Current maximum size (the last size update, or the initial one).
    max_size: usize,
}

impl DynamicTable {
    /// An empty table whose maximum size is `max_size`.
    pub(super) fn new(max_size: usize) -> Self {
        DynamicTable {
            buf: Vec::new(),
            head: 0,
            entries: VecDeque::new(),
            size: 0,
            max_size,
        }
    }

    /// Number of entries.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Current size by the RFC's accounting (tests).
    #[cfg(test)]
    pub(super) fn size(&self) -> usize {
        self.size
    }

    /// Current maximum size (tests).
    #[cfg(test)]
    pub(super) fn max_size(&self) -> usize {
        self.max_size
    }

    /// The entry at 0-based position `i`, newest first.
    pub(super) fn get(&self, i: usize) -> Option<(&[u8], &[u8])> {
        let e = self.entries.get(i)?;
        let name_end = e.pos + e.name_len;
        Some((
            self.buf.get(e.pos..name_end)?,
            self.buf.get(name_end..e.end())?,
        ))
    }

    /// Applies a dynamic table size update (RFC 7541 §4.3); the caller has
    /// checked it against the advertised limit.
    pub(super) fn set_max_size(&mut self, max_size: usize) {
        self.max_size = max_size;
        self.evict_to(max_size);
    }

    /// Adds an entry, evicting old ones as needed (RFC 7541 §4.4). An entry
    /// larger than the maximum size empties the table and is not added.
    pub(super) fn insert(&mut self, name: &[u8], value: &[u8]) {
        // Saturating: a size that cannot be represented is simply too large.
        let size = name
            .len()
            .saturating_add(value.len())
            .saturating_add(ENTRY_OVERHEAD);
        if size > self.max_size {
            self.evict_to(0);
            return;
        }
        self.evict_to(self.max_size - size);
        self.compact();
        let pos = self.buf.len();
        self.buf.extend_from_slice(name);
        self.buf.extend_from_slice(value);
        self.entries.push_front(Entry {
            pos,
            name_len: name.len(),
            value_len: value.len(),
        });
        self.size += size;
    }

    /// Evicts oldest entries until the size is at most `limit`.
    fn evict_to(&mut self, limit: usize) {
        while self.size > limit {
            let Some(e) = self.entries.pop_back() else {
                break;
            };
            self.size -= e.size();
            self.head = e.end();
        }
        if self.entries.is_empty() {
            // Nothing live: reset the buffer for free.
            self.buf.clear();
            self.head = 0;
            self.size = 0;
        }
    }

    /// Drops the dead prefix once it is at least as large as the live part.
    fn compact(&mut self) {
        let live = self.buf.len() - self.head;
        if self.head == 0 || self.head < live {
            return;
        }
        self.buf.copy_within(self.head.., 0);
        self.buf.truncate(live);
        for e in self.entries.iter_mut() {
            e.pos -= self.head;
        }
        self.head = 0;
    }

    /// Bytes held by the buffer (tests check it stays bounded).
    #[cfg(test)]
    pub(super) fn buffer_len(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_by_rfc_size() {
        let mut t = DynamicTable::new(100);
        t.insert(b"aaaa", b"bbbb"); // 40
        t.insert(b"cccc", b"dddd"); // 40
        assert_eq!((t.len(), t.size()), (2, 80));
        t.insert(b"e", b"f"); // 34: evicts the oldest
        assert_eq!((t.len(), t.size()), (2, 74));
        assert_eq!(t.get(0), Some((&b"e"[..], &b"f"[..])));
        assert_eq!(t.get(1), Some((&b"cccc"[..], &b"dddd"[..])));
        assert_eq!(t.get(2), None);
        // Exactly the maximum size fits, alone.
        t.insert(&[b'x'; 60], &[b'y'; 8]);
        assert_eq!((t.len(), t.size()), (1, 100));
        // Larger than the maximum: empties the table.
        t.insert(&[b'x'; 61], &[b'y'; 8]);
        assert_eq!((t.len(), t.size()), (0, 0));
        t.set_max_size(0);
        t.insert(b"", b"");
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn buffer_stays_bounded_and_entries_intact() {
        let mut t = DynamicTable::new(4096);
        for i in 0..100_000usize {
            let name = format!("name-{}", i % 97);
            let value = "v".repeat(i % 300);
            t.insert(name.as_bytes(), value.as_bytes());
            assert!(t.size() <= 4096);
            assert!(t.buffer_len() <= 2 * 4096 + 400, "{}", t.buffer_len());
            let (n, v) = t.get(0).unwrap();
            assert_eq!((n, v), (name.as_bytes(), value.as_bytes()));
            if i % 1000 == 0 {
                let mut total = 0;
                for j in 0..t.len() {
                    let (n, v) = t.get(j).unwrap();
                    total += n.len() + v.len() + ENTRY_OVERHEAD;
                    let k = i - j;
                    assert_eq!(n, format!("name-{}", k % 97).as_bytes());
                    assert_eq!(v.len(), k % 300);
                }
                assert_eq!(total, t.size());
            }
        }
    }
}
