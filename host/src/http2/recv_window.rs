//! The receiving side of one flow-control window (RFC 9113 §6.9), a stream's or a connection's:
//! what the peer may still send, and the credit read since the last WINDOW_UPDATE, given back
//! half a window at a time.

/// What the peer may still send on a stream or connection, and the credit not yet given back.
#[derive(Debug)]
pub(crate) struct RecvWindow {
    /// Bytes the peer may still send (below 0: it sent past the window).
    left: i64,
    /// Bytes read (or let go of) since the last WINDOW_UPDATE.
    unacked: u32,
    /// The window's size, as lbhost announced it.
    size: u32,
}

impl RecvWindow {
    pub(crate) fn new(size: u32) -> Self {
        RecvWindow {
            left: i64::from(size),
            unacked: 0,
            size,
        }
    }

    /// Counts `n` bytes the peer sent (padding included); false when they overran the window.
    pub(crate) fn receive(&mut self, n: u32) -> bool {
        self.left -= i64::from(n);
        self.left >= 0
    }

    /// Notes `n` bytes read (or let go of) without giving them back yet.
    pub(crate) fn note(&mut self, n: u32) {
        self.unacked = self.unacked.saturating_add(n);
    }

    /// Gives `n` bytes back: the increment of the WINDOW_UPDATE to send, once half the window
    /// is due.
    pub(crate) fn release(&mut self, n: u32) -> Option<u32> {
        self.note(n);
        if self.unacked < self.size / 2 {
            return None;
        }
        let credit = std::mem::take(&mut self.unacked);
        self.left += i64::from(credit);
        Some(credit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_goes_back_half_a_window_at_a_time_and_overruns_are_seen() {
        let mut w = RecvWindow::new(100);
        assert!(w.receive(60));
        assert_eq!(w.release(30), None);
        w.note(10);
        assert_eq!(w.release(10), Some(50));
        assert!(w.receive(90));
        assert!(!w.receive(1));
    }
}
