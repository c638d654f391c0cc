//! The request head a client sends (RFC 9112 §2–3, §6): parsed, checked, and turned into the
//! [`ClientHead`] the proxy works with (its fields left where they were parsed).
//!
//! Refused with 400: a line that ends in a bare LF, a request target that is neither
//! origin-form, absolute-form (`http` or `https`) nor `*` for OPTIONS, an HTTP/1.1 request
//! without `Host` or with more than one, and any framing a proxy could be smuggled through.
//! CONNECT is refused with 405: lbhost is no forward proxy.

use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::{Method, StatusCode, Uri, Version};

use super::{tokens, BodyDecoder, Chunked, FieldSpans, FramingFields, Span, MAX_HEADERS};
use crate::request::{ClientHead, RequestFields};

/// A parsed request head.
#[derive(Debug)]
pub(crate) struct ParsedRequest {
    pub head: ClientHead,
    /// How its body is delimited.
    pub body: BodyDecoder,
    /// What its response depends on.
    pub exchange: Exchange,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
}

/// What a response must respect of its request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Exchange {
    pub version: Version,
    /// The client lets the connection carry another request after this one.
    pub keep_alive: bool,
    /// `HEAD`: the response has no body whatever its headers say.
    pub head: bool,
    /// `TE: trailers`: the client takes trailer fields after a chunked body.
    pub trailers: bool,
}

impl Exchange {
    /// For an answer to a head that was refused: HTTP/1.1, then close.
    pub(crate) fn refusal() -> Self {
        Exchange {
            version: Version::HTTP_11,
            keep_alive: false,
            head: false,
            trailers: false,
        }
    }
}

/// Why a head was refused; the client gets the status, then the connection closes.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestHeadError {
    #[error("malformed request head: {0}")]
    Parse(httparse::Error),
    #[error("malformed request head: {0}")]
    Malformed(&'static str),
    #[error("request head larger than the limit")]
    TooLarge,
    #[error("CONNECT is not supported")]
    Connect,
}

impl RequestHeadError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            RequestHeadError::Parse(_) | RequestHeadError::Malformed(_) => StatusCode::BAD_REQUEST,
            RequestHeadError::TooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            RequestHeadError::Connect => StatusCode::METHOD_NOT_ALLOWED,
        }
    }
}

/// The request head at the start of `buf`, consumed from it, once it is all there (`Ok(None)`
/// until then). Heads longer than `max` bytes are refused.
pub(crate) fn parse_request(
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<ParsedRequest>, RequestHeadError> {
    let config = httparse::ParserConfig::default();
    let (length, method, target, version, fields) = {
        let mut slots = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut []);
        let length = match config.parse_request_with_uninit_headers(&mut parsed, buf, &mut slots) {
            Ok(httparse::Status::Complete(length)) if length > max => {
                return Err(RequestHeadError::TooLarge)
            }
            Ok(httparse::Status::Complete(length)) => length,
            Ok(httparse::Status::Partial) if buf.len() >= max => {
                return Err(RequestHeadError::TooLarge)
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(RequestHeadError::TooLarge),
            Err(e) => return Err(RequestHeadError::Parse(e)),
        };
        let method = Method::from_bytes(parsed.method.unwrap_or_default().as_bytes())
            .map_err(|_| RequestHeadError::Malformed("method"))?;
        if method == Method::CONNECT {
            return Err(RequestHeadError::Connect);
        }
        let target = Span::of(buf, parsed.path.unwrap_or_default().as_bytes());
        let version = match parsed.version {
            Some(0) => Version::HTTP_10,
            _ => Version::HTTP_11,
        };
        let fields = FieldSpans::record(buf, parsed.headers);
        if !fields.crlf_lines(&buf[..length]) {
            return Err(RequestHeadError::Malformed("a line ends in a bare LF"));
        }
        (length, method, target, version, fields)
    };
    // The target and the header values share the frozen head's buffer instead of each being
    // copied.
    let bytes = buf.split_to(length).freeze();
    let uri = Uri::from_maybe_shared(target.shared(&bytes))
        .ok()
        .filter(|uri| target_form(target.bytes(&bytes), uri, &method))
        .ok_or(RequestHeadError::Malformed("request target"))?;
    // The fields that decide framing and persistence are picked out in one pass, by name.
    let (body, exchange, expect_continue) = {
        let mut seen = Seen::default();
        for (name, value) in fields.fields(&bytes) {
            seen.note(name, value);
        }
        // RFC 9112 §3.2: exactly one in HTTP/1.1, at most one in HTTP/1.0.
        if seen.hosts > 1 || (seen.hosts == 0 && version == Version::HTTP_11) {
            return Err(RequestHeadError::Malformed("host"));
        }
        let exchange = Exchange {
            version,
            keep_alive: seen.fields.persistent(version),
            head: method == Method::HEAD,
            trailers: seen.trailers,
        };
        let expect_continue = version == Version::HTTP_11 && seen.expect_continue;
        (seen.framing(version)?, exchange, expect_continue)
    };
    // httparse has checked the names and values as the `http` types would (tokens; no control
    // characters but tab): the fields stay in the head, with no map built.
    let fields = RequestFields::Head {
        head: bytes,
        spans: fields,
    };
    Ok(Some(ParsedRequest {
        head: ClientHead {
            method,
            uri,
            version,
            fields,
        },
        body,
        exchange,
        expect_continue,
    }))
}

/// Whether `uri`, parsed from `target`, is a request target lbhost serves (RFC 9112 §3.2):
/// origin-form as it came (the `http` types drop a `#fragment`), absolute-form with an `http`
/// or `https` scheme and a host without user information, or `*` for OPTIONS. Authority-form
/// is CONNECT's, which is refused before.
fn target_form(target: &[u8], uri: &Uri, method: &Method) -> bool {
    match target.first() {
        Some(b'/') => uri
            .path_and_query()
            .is_some_and(|p| p.as_str().len() == target.len()),
        Some(b'*') => target.len() == 1 && *method == Method::OPTIONS,
        _ => {
            matches!(uri.scheme_str(), Some("http" | "https"))
                && uri
                    .authority()
                    .is_some_and(|a| !a.host().is_empty() && !a.as_str().contains('@'))
                && !target.contains(&b'#')
        }
    }
}

/// What the head says about framing and persistence.
#[derive(Debug, Default)]
struct Seen<'a> {
    fields: FramingFields<'a>,
    trailers: bool,
    expect_continue: bool,
    /// How many `Host` fields.
    hosts: u32,
}

impl<'a> Seen<'a> {
    fn note(&mut self, name: &[u8], value: &'a [u8]) {
        if self.fields.note(name, value) {
            return;
        }
        let is = |wanted: &[u8]| name.eq_ignore_ascii_case(wanted);
        match name.len() {
            4 if is(b"host") => self.hosts += 1,
            2 if is(b"te") => {
                self.trailers |= tokens(value).any(|t| t.eq_ignore_ascii_case(b"trailers"));
            }
            6 if is(b"expect") => {
                self.expect_continue = value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
            }
            _ => {}
        }
    }

    /// How the request body is delimited (RFC 9112 §6.3). Anything a proxy could be smuggled
    /// through is refused: lengths that disagree, chunked not last or twice, chunked in
    /// HTTP/1.0, chunked with a length.
    fn framing(&self, version: Version) -> Result<BodyDecoder, RequestHeadError> {
        let f = &self.fields;
        let length = f
            .length
            .map_err(|_| RequestHeadError::Malformed("content-length"))?;
        if f.transfer_encoding {
            if !f.chunked_last || f.bad_codings || version == Version::HTTP_10 {
                return Err(RequestHeadError::Malformed("transfer-encoding"));
            }
            if f.content_length {
                return Err(RequestHeadError::Malformed(
                    "both transfer-encoding and content-length",
                ));
            }
            return Ok(BodyDecoder::Chunked(Chunked::request()));
        }
        Ok(match length {
            None => BodyDecoder::Done,
            Some(n) => BodyDecoder::length(n),
        })
    }
}

#[cfg(test)]
mod tests;
