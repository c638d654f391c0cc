//! Keep-alive PINGs on an HTTP/2 connection: one every `interval`, and the connection is given
//! up when its PONG has not come within `timeout` (a peer gone without a FIN, a path that
//! drops packets).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// The PING schedule of one connection; polled by the connection's task.
#[derive(Debug)]
pub(crate) struct KeepAlive {
    /// `None` once h2 no longer lets lbhost ping (the connection is closing).
    pings: Option<h2::PingPong>,
    /// The next PING, or the end of the wait for its PONG.
    timer: Pin<Box<Sleep>>,
    awaiting_pong: bool,
    interval: Duration,
    timeout: Duration,
}

impl KeepAlive {
    /// PINGs through `pings` (from the connection's `ping_pong`) every `interval`.
    pub(crate) fn new(pings: Option<h2::PingPong>, interval: Duration, timeout: Duration) -> Self {
        KeepAlive {
            pings,
            timer: Box::pin(tokio::time::sleep(interval)),
            awaiting_pong: false,
            interval,
            timeout,
        }
    }

    /// Sends the PINGs when due and reads their PONGs; ready when a PONG is overdue (the
    /// connection should close).
    pub(crate) fn poll_overdue(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(pings) = &mut self.pings else {
            return Poll::Pending;
        };
        if self.awaiting_pong {
            match pings.poll_pong(cx) {
                Poll::Ready(Ok(_)) => self.answered(),
                Poll::Ready(Err(_)) => {
                    self.pings = None;
                    return Poll::Pending;
                }
                Poll::Pending => {}
            }
        }
        while self.timer.as_mut().poll(cx).is_ready() {
            let Some(pings) = &mut self.pings else {
                return Poll::Pending;
            };
            if self.awaiting_pong {
                return Poll::Ready(());
            }
            if pings.send_ping(h2::Ping::opaque()).is_err() {
                self.pings = None;
                return Poll::Pending;
            }
            self.awaiting_pong = true;
            let overdue = Instant::now() + self.timeout;
            self.timer.as_mut().reset(overdue);
            // Registers for the PONG.
            if let Poll::Ready(Ok(_)) = pings.poll_pong(cx) {
                self.answered();
            }
        }
        Poll::Pending
    }

    fn answered(&mut self) {
        self.awaiting_pong = false;
        let next = Instant::now() + self.interval;
        self.timer.as_mut().reset(next);
    }
}
