//! Spare buffers, per worker thread, for HTTP/1.1 reads (client and backend connections alike),
//! heads (of responses to clients and of requests to backends) and the tables of where a
//! parsed head's fields sit.
//!
//! A connection holds a read buffer only while bytes wait in it, and a head buffer only while it
//! writes one; between uses the buffer goes back here. A worker busy with hundreds of
//! connections then cycles through warm buffers instead of touching one of each connection's
//! own per request: at 256 client connections, a read buffer per connection cost 13 % more CPU
//! per request (BENCHMARKS.md).
//!
//! Each kind keeps as many spares as requests were in flight at once, up to [`SPARES`] and
//! [`SPARE_BYTES`] per worker: with only 16 kept, three requests in four at 256 connections
//! found no spare and went through malloc's slow path for a read buffer, a head buffer and a
//! field table (3 % more CPU per request).

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::pin;
use std::task::{Context, Poll};
use std::thread::LocalKey;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::http1::Span;

/// Reads take at least this much buffer (hyper starts at 8 KiB too).
pub(crate) const READ_MIN: usize = 8 * 1024;
/// And at most this much, for long bodies.
pub(crate) const READ_MAX: usize = 64 * 1024;

/// Spares kept per kind and worker, at most; more are freed.
const SPARES: usize = 512;
/// And at most this much memory per kind and worker (512 read buffers of 8 KiB).
const SPARE_BYTES: usize = 4 << 20;
/// Head buffers larger than this are not kept.
const HEAD_MAX: usize = 64 * 1024;

/// Nor field tables with room for more than this (a head has at most 100 fields).
const TABLE_MAX: usize = 128;

thread_local! {
    static READS: RefCell<Spares<BytesMut>> = const { RefCell::new(Spares::new()) };
    static HEADS: RefCell<Spares<Vec<u8>>> = const { RefCell::new(Spares::new()) };
    static TABLES: RefCell<Spares<Vec<(Span, Span)>>> = const { RefCell::new(Spares::new()) };
}

/// Something kept as a spare, and the memory it holds.
trait Spare {
    fn bytes(&self) -> usize;
}

impl Spare for BytesMut {
    fn bytes(&self) -> usize {
        self.capacity()
    }
}

impl Spare for Vec<u8> {
    fn bytes(&self) -> usize {
        self.capacity()
    }
}

impl Spare for Vec<(Span, Span)> {
    fn bytes(&self) -> usize {
        self.capacity() * std::mem::size_of::<(Span, Span)>()
    }
}

/// One kind's spares, and the memory they hold (invariant: the sum of their [`Spare::bytes`]).
struct Spares<T> {
    items: Vec<T>,
    bytes: usize,
}

impl<T: Spare> Spares<T> {
    const fn new() -> Self {
        Spares {
            items: Vec::new(),
            bytes: 0,
        }
    }

    /// The spare kept last (the warmest), if any.
    fn take(&mut self) -> Option<T> {
        let item = self.items.pop()?;
        self.bytes -= item.bytes();
        Some(item)
    }

    /// Keeps `item` unless [`SPARES`] or [`SPARE_BYTES`] would be passed (then it is freed).
    fn keep(&mut self, item: T) {
        let bytes = item.bytes();
        if self.items.len() < SPARES && self.bytes + bytes <= SPARE_BYTES {
            self.bytes += bytes;
            self.items.push(item);
        }
    }
}

/// Reads what `stream` has into `buf`; `Ok(0)` at end of stream. A `buf` short of room gets
/// some: a spare if it is empty, then `wanted` (what the reader knows is still to come, 0 if
/// nothing) sizes it between 8 and 64 KiB.
pub(crate) fn poll_read<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
    wanted: u64,
) -> Poll<io::Result<usize>> {
    if buf.capacity() - buf.len() < READ_MIN / 4 {
        if buf.is_empty() {
            if let Some(spare) = READS.with_borrow_mut(Spares::take) {
                *buf = spare;
            }
        }
        let size = usize::try_from(wanted).map_or(READ_MAX, |w| w.clamp(READ_MIN, READ_MAX));
        let room = buf.capacity() - buf.len();
        // A spare with room enough is read into as it is: it may still share its memory with a
        // piece split off it and in use (the request whose answer this read brings), and asking
        // it for more would then allocate a new buffer every time. Otherwise `reserve` reuses the
        // whole capacity, without an allocation, once nothing else shares it.
        if room < READ_MIN / 4 || (room as u64) < wanted.min(size as u64) {
            buf.reserve(size);
        }
    }
    pin!(stream.read_buf(buf)).poll(cx)
}

/// An empty `buf` goes back to the spares (and `buf` holds nothing afterwards).
pub(crate) fn release_read(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > 0 {
        keep(&READS, std::mem::take(buf));
    }
}

/// A buffer for a head, a spare if there is one.
pub(crate) fn head_buffer() -> Vec<u8> {
    HEADS.with_borrow_mut(Spares::take).unwrap_or_default()
}

/// A head buffer goes back to the spares.
pub(crate) fn release_head(mut buf: Vec<u8>) {
    if buf.capacity() == 0 || buf.capacity() > HEAD_MAX {
        return;
    }
    buf.clear();
    keep(&HEADS, buf);
}

/// An empty table for where a head's fields sit, a spare if there is one.
pub(crate) fn span_table() -> Vec<(Span, Span)> {
    TABLES.with_borrow_mut(Spares::take).unwrap_or_default()
}

/// A field table goes back to the spares.
pub(crate) fn release_span_table(mut table: Vec<(Span, Span)>) {
    if table.capacity() == 0 || table.capacity() > TABLE_MAX {
        return;
    }
    table.clear();
    keep(&TABLES, table);
}

/// `item` joins `spares`, unless they are full (then it is freed).
fn keep<T: Spare>(spares: &'static LocalKey<RefCell<Spares<T>>>, item: T) {
    spares.with_borrow_mut(|spares| spares.keep(item));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spares_stop_at_their_count_and_their_bytes_and_account_for_what_leaves() {
        let mut spares = Spares::<Vec<u8>>::new();
        for _ in 0..SPARES + 10 {
            spares.keep(Vec::with_capacity(16));
        }
        assert_eq!(spares.items.len(), SPARES);
        assert_eq!(spares.bytes, SPARES * 16);
        while spares.take().is_some() {}
        assert_eq!(spares.bytes, 0);

        let big = SPARE_BYTES / 3;
        for _ in 0..4 {
            spares.keep(Vec::with_capacity(big));
        }
        assert_eq!(spares.items.len(), 3, "the fourth passes the byte budget");
        assert!(spares.bytes <= SPARE_BYTES);
        let taken = spares.take().map(|v| v.capacity());
        assert_eq!(spares.bytes, 2 * taken.unwrap_or(0));
    }
}
