//! Body types shared by the layers: the error type of every body, and the client's request
//! body as it goes to backends, with whether a failed attempt can be sent again.
//!
//! Bodies stream: nothing is buffered. A request with no body can be sent any number of times;
//! a streamed body can go to a second backend only if the first attempt never started reading
//! it (e.g. the connection was refused). Each attempt gets an [`UpstreamBody`] that claims the
//! client's body on its first poll; a stale attempt can never take it from a newer one.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt as _;

/// The error type of every body lbhost reads or writes.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A client's request body, whichever protocol it came in (boxed only when there is one).
type BoxedClientBody = UnsyncBoxBody<Bytes, BoxError>;

/// The client's request body, as the proxy holds it across attempts.
#[derive(Debug)]
pub(crate) enum HeldBody {
    /// No body (or one known to be empty): every attempt can send it.
    Empty,
    /// A body that streams from the client, sendable once.
    Streamed {
        slot: Arc<BodySlot>,
        /// The client body's size hint, for the upstream framing before it is claimed.
        hint: SizeHint,
    },
}

/// The client's body until an attempt claims it, and which attempt may.
#[derive(Debug)]
pub(crate) struct BodySlot(Mutex<SlotState>);

#[derive(Debug)]
struct SlotState {
    /// The attempt allowed to claim the body.
    attempt: u32,
    body: Option<BoxedClientBody>,
}

impl BodySlot {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn claim(&self, attempt: u32) -> Option<BoxedClientBody> {
        let mut state = self.lock();
        if state.attempt == attempt {
            state.body.take()
        } else {
            None
        }
    }
}

impl HeldBody {
    /// Wraps the client's body.
    pub(crate) fn new<B>(body: B) -> Self
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        if body.is_end_stream() {
            return HeldBody::Empty;
        }
        let hint = body.size_hint();
        HeldBody::Streamed {
            slot: Arc::new(BodySlot(Mutex::new(SlotState {
                attempt: 0,
                body: Some(body.map_err(Into::into).boxed_unsync()),
            }))),
            hint,
        }
    }

    /// Whether an attempt can still send the whole body (none of it was read yet).
    pub(crate) fn is_replayable(&self) -> bool {
        match self {
            HeldBody::Empty => true,
            HeldBody::Streamed { slot, .. } => slot.lock().body.is_some(),
        }
    }

    /// Gives the client's body back after an attempt that read part of it but kept what it read
    /// (`body` gives all of it from the start), so that another attempt can send it: an HTTP/2
    /// stream the backend refused unprocessed.
    pub(crate) fn put_back<B>(&self, body: B)
    where
        B: Body<Data = Bytes, Error = BoxError> + Send + 'static,
    {
        if let HeldBody::Streamed { slot, .. } = self {
            let mut state = slot.lock();
            if state.body.is_none() {
                state.body = Some(body.boxed_unsync());
            }
        }
    }

    /// The body for a new attempt, which makes every earlier attempt's body unusable; `None` if
    /// part of it was already read.
    pub(crate) fn next_attempt(&self) -> Option<UpstreamBody> {
        match self {
            HeldBody::Empty => Some(UpstreamBody(State::Empty)),
            HeldBody::Streamed { slot, hint } => {
                let mut state = slot.lock();
                state.body.as_ref()?;
                state.attempt += 1;
                Some(UpstreamBody(State::Unclaimed {
                    slot: Arc::clone(slot),
                    attempt: state.attempt,
                    hint: *hint,
                }))
            }
        }
    }
}

/// The body of one upstream attempt.
#[derive(Debug)]
pub(crate) struct UpstreamBody(State);

impl UpstreamBody {
    /// No body.
    pub(crate) fn empty() -> Self {
        UpstreamBody(State::Empty)
    }
}

#[derive(Debug)]
enum State {
    Empty,
    /// Not polled yet: the client's body is still in the slot.
    Unclaimed {
        slot: Arc<BodySlot>,
        attempt: u32,
        hint: SizeHint,
    },
    Streaming(BoxedClientBody),
    Done,
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let State::Unclaimed { slot, attempt, .. } = &this.0 {
            match slot.claim(*attempt) {
                Some(body) => this.0 = State::Streaming(body),
                None => {
                    this.0 = State::Done;
                    return Poll::Ready(Some(Err(
                        "the request body went to another attempt".into()
                    )));
                }
            }
        }
        match &mut this.0 {
            State::Streaming(body) => Pin::new(body).poll_frame(cx),
            _ => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            State::Empty | State::Done => true,
            State::Unclaimed { hint, .. } => hint.exact() == Some(0),
            State::Streaming(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            State::Empty | State::Done => SizeHint::with_exact(0),
            State::Unclaimed { hint, .. } => *hint,
            State::Streaming(body) => body.size_hint(),
        }
    }
}
