//! One body decoder for both directions: a client's request body and a backend's response body
//! are read the same way, `Content-Length` bytes, chunked (trailers included) or, for a
//! response, until the peer closes; never a byte past their end.

use std::io;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::io::AsyncRead;

use super::{Chunked, CodecError, Decoded, Io};

/// Where a body being read stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyDecoder {
    /// No body, or all of it was read: the next bytes start a new message.
    Done,
    /// `Content-Length`, this much left (never 0: then it is `Done`).
    Length(u64),
    /// Chunked coding; done once its last chunk and trailers were read.
    Chunked(Chunked),
    /// Until the peer closes the stream (a response without a length).
    UntilClose,
    /// Malformed, or the stream ended or failed before the body did: the stream carries
    /// nothing more.
    Failed,
}

/// Why a body could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("{0}")]
    Malformed(CodecError),
    #[error("the peer closed the connection before the end of the body")]
    CutShort,
    #[error("{0}")]
    Io(io::Error),
    /// Polled again after one of the above.
    #[error("the connection failed")]
    Failed,
}

impl BodyDecoder {
    /// A body of `length` bytes.
    pub(crate) fn length(length: u64) -> Self {
        match length {
            0 => BodyDecoder::Done,
            n => BodyDecoder::Length(n),
        }
    }

    /// Whether the body was read to its end (or there is none).
    pub(crate) fn is_done(&self) -> bool {
        match self {
            BodyDecoder::Done => true,
            BodyDecoder::Chunked(chunked) => chunked.is_done(),
            _ => false,
        }
    }

    /// Whether a chunked body was read with lines off the grammar (see [`Chunked::is_lenient`]).
    pub(crate) fn is_lenient(&self) -> bool {
        matches!(self, BodyDecoder::Chunked(chunked) if chunked.is_lenient())
    }

    pub(crate) fn size_hint(&self) -> SizeHint {
        match self {
            BodyDecoder::Done => SizeHint::with_exact(0),
            BodyDecoder::Length(left) => SizeHint::with_exact(*left),
            BodyDecoder::Chunked(chunked) if chunked.is_done() => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }

    /// The next frame of the body, from what `io` holds or, when that is not enough, reads from
    /// its stream; `None` at the body's end. After an error the decoder is [`BodyDecoder::Failed`].
    pub(crate) fn poll_frame<S: AsyncRead + Unpin>(
        &mut self,
        io: &mut Io<S>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        loop {
            let wanted = match self {
                BodyDecoder::Done => return Poll::Ready(None),
                BodyDecoder::Failed => return Poll::Ready(Some(Err(BodyError::Failed))),
                BodyDecoder::Length(left) => {
                    let left = *left;
                    if !io.buf.is_empty() {
                        let take = io
                            .buf
                            .len()
                            .min(usize::try_from(left).unwrap_or(usize::MAX));
                        let data = io.buf.split_to(take).freeze();
                        *self = BodyDecoder::length(left - take as u64);
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    left
                }
                BodyDecoder::Chunked(chunked) => match chunked.decode(&mut io.buf) {
                    Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Decoded::Trailers(trailers)) => {
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers))))
                    }
                    Ok(Decoded::End) => return Poll::Ready(None),
                    Ok(Decoded::NeedMore) => chunked.left(),
                    Err(e) => return self.fail(BodyError::Malformed(e)),
                },
                BodyDecoder::UntilClose => {
                    if !io.buf.is_empty() {
                        let data = io.buf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    0
                }
            };
            match ready!(io.poll_fill(cx, wanted)) {
                Ok(0) if *self == BodyDecoder::UntilClose => {
                    *self = BodyDecoder::Done;
                    return Poll::Ready(None);
                }
                Ok(0) => return self.fail(BodyError::CutShort),
                Ok(_) => {}
                Err(e) => return self.fail(BodyError::Io(e)),
            }
        }
    }

    fn fail(&mut self, error: BodyError) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        *self = BodyDecoder::Failed;
        Poll::Ready(Some(Err(error)))
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;

    /// Decodes all of `wire` with `decoder`: the data, the trailers' count and how it ended.
    async fn decode(mut decoder: BodyDecoder, wire: &[u8]) -> (Vec<u8>, usize, Result<(), String>) {
        let mut io = Io::new(wire, BytesMut::new());
        let (mut data, mut trailers) = (Vec::new(), 0);
        loop {
            match std::future::poll_fn(|cx| decoder.poll_frame(&mut io, cx)).await {
                None => return (data, trailers, Ok(())),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(bytes) => data.extend_from_slice(&bytes),
                    Err(_) => trailers += 1,
                },
                Some(Err(e)) => return (data, trailers, Err(e.to_string())),
            }
        }
    }

    #[tokio::test]
    async fn every_framing_reads_to_its_end_and_no_further() {
        let (data, _, end) = decode(BodyDecoder::length(5), b"hello, next").await;
        assert_eq!((&data[..], end), (&b"hello"[..], Ok(())));
        let chunked = b"5\r\nhello\r\n0\r\nx-sum: 1\r\n\r\nGET";
        let (data, trailers, end) = decode(BodyDecoder::Chunked(Chunked::request()), chunked).await;
        assert_eq!((&data[..], trailers, end), (&b"hello"[..], 1, Ok(())));
        let (data, _, end) = decode(BodyDecoder::UntilClose, b"all of it").await;
        assert_eq!((&data[..], end), (&b"all of it"[..], Ok(())));
    }

    #[tokio::test]
    async fn a_body_cut_short_or_malformed_fails_and_stays_failed() {
        let (_, _, end) = decode(BodyDecoder::length(10), b"short").await;
        assert!(end.unwrap_err().contains("before the end"));
        let (_, _, end) = decode(BodyDecoder::Chunked(Chunked::request()), b"zz\r\n").await;
        assert!(end.is_err());
        let mut decoder = BodyDecoder::length(10);
        let mut io = Io::new(&b""[..], BytesMut::new());
        let first = std::future::poll_fn(|cx| decoder.poll_frame(&mut io, cx)).await;
        assert!(matches!(first, Some(Err(BodyError::CutShort))));
        assert_eq!(decoder, BodyDecoder::Failed);
    }
}
