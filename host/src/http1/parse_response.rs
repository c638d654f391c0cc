//! The response head a backend sends, and how the body after it is delimited (RFC 9112 §6).

use std::mem::MaybeUninit;

use bytes::{Buf, BytesMut};
use http::{Method, Response, StatusCode, Version};

use super::spans::FieldSpans;
use super::{codings_before_chunked, CodecError, FramingFields, RawFields, MAX_HEAD, MAX_HEADERS};

/// How the response body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body (HEAD, 204, 304).
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the backend closes the connection.
    UntilClose,
    /// `101 Switching Protocols`: the connection now carries another protocol.
    Upgrade,
}

/// A parsed response head.
#[derive(Debug)]
pub(crate) struct ParsedResponse {
    /// Status and version; its header map is empty: the fields are in `fields`.
    pub response: Response<()>,
    /// The fields to forward, as they came.
    pub fields: RawFields,
    pub framing: Framing,
    /// Whether the connection can carry another request after this response: the backend
    /// allows it, the body is delimited, and every line of the head ends in CRLF (a backend
    /// that frames its messages leniently may frame the next one in a way lbhost reads
    /// differently).
    pub keep_alive: bool,
}

/// The response head at the start of `buf`, consumed from it, once it is all there
/// (`Ok(None)` until then). Interim 1xx answers other than 101 are skipped; they stay in `buf`
/// until the final head is all there too, so that they count towards its size limit, and a
/// bare LF in them, as in the final head, keeps the connection from being reused.
///
/// Its fields are the end-to-end ones only, ready to forward: the hop-by-hop ones and those
/// `Connection` names are read for the framing and the connection's persistence and left out
/// (except on a 101, whose fields go to the client with the switch). The transfer codings of
/// the body other than a final `chunked` go with them ([`RawFields::transfer_codings`]).
pub(crate) fn parse_response(
    buf: &mut BytesMut,
    method: &Method,
    asked_upgrade: bool,
) -> Result<Option<ParsedResponse>, CodecError> {
    let config = httparse::ParserConfig::default();
    // The interim answers at the start of `buf`: their length, and whether all their lines end
    // in CRLF.
    let mut skipped = 0;
    let mut interim_crlf = true;
    loop {
        let (length, code, version, spans, crlf) = {
            let rest = &buf[skipped..];
            let mut slots = [const { MaybeUninit::uninit() }; MAX_HEADERS];
            let mut parsed = httparse::Response::new(&mut []);
            let length =
                match config.parse_response_with_uninit_headers(&mut parsed, rest, &mut slots) {
                    Ok(httparse::Status::Complete(length)) if length > MAX_HEAD => {
                        return Err(CodecError::HeadTooLarge)
                    }
                    Ok(httparse::Status::Complete(length)) => length,
                    Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
                        return Err(CodecError::HeadTooLarge)
                    }
                    Ok(httparse::Status::Partial) => return Ok(None),
                    Err(httparse::Error::TooManyHeaders) => return Err(CodecError::HeadTooLarge),
                    Err(e) => return Err(CodecError::Head(e)),
                };
            let spans = FieldSpans::record(rest, parsed.headers);
            let crlf = spans.crlf_lines(&rest[..length]);
            (
                length,
                parsed.code.unwrap_or(0),
                parsed.version,
                spans,
                crlf,
            )
        };
        if (100..200).contains(&code) && code != 101 {
            skipped += length;
            interim_crlf &= crlf;
            continue;
        }
        buf.advance(skipped);
        let crlf = crlf && interim_crlf;
        let status =
            StatusCode::from_u16(code).map_err(|_| CodecError::Head(httparse::Error::Status))?;
        let version = match version {
            Some(0) => Version::HTTP_10,
            _ => Version::HTTP_11,
        };
        // The header values share the frozen head's buffer.
        let bytes = buf.split_to(length).freeze();
        let mut seen = FramingFields::default();
        for (name, value) in spans.fields(&bytes) {
            seen.note(name, value);
        }
        let (framing, delimited_keep_alive) = framing(&seen, method, status, asked_upgrade)?;
        let keep_alive = delimited_keep_alive && seen.persistent(version) && crlf;
        if !crlf {
            tracing::debug!("response head with bare LF line ends: its connection will close");
        }
        // A 101 keeps them all: they describe the protocol the connection switches to, and go
        // to the client with it.
        let end_to_end_only = status != StatusCode::SWITCHING_PROTOCOLS;
        let mut fields = RawFields::collect(bytes.clone(), &spans, |name| {
            end_to_end_only && seen.connection_specific(name)
        });
        if seen.other_codings && matches!(framing, Framing::Chunked | Framing::UntilClose) {
            let values = spans
                .fields(&bytes)
                .filter(|(name, _)| name.eq_ignore_ascii_case(b"transfer-encoding"))
                .map(|(_, value)| value);
            fields
                .set_transfer_codings(&codings_before_chunked(values))
                .map_err(|_| CodecError::TransferEncoding)?;
        }
        let mut response = Response::new(());
        *response.status_mut() = status;
        // The backend's HTTP version only decides whether its connection stays open; the
        // client is answered in its own protocol (hyper would answer HTTP/1.0 and close).
        *response.version_mut() = Version::HTTP_11;
        return Ok(Some(ParsedResponse {
            response,
            fields,
            framing,
            keep_alive,
        }));
    }
}

/// How the body of a response to `method` with `status` and the framing fields `seen` is
/// delimited, and whether that framing leaves the connection usable afterwards.
fn framing(
    seen: &FramingFields<'_>,
    method: &Method,
    status: StatusCode,
    asked_upgrade: bool,
) -> Result<(Framing, bool), CodecError> {
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return if asked_upgrade {
            Ok((Framing::Upgrade, false))
        } else {
            Err(CodecError::UnaskedUpgrade)
        };
    }
    if *method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok((Framing::Empty, true));
    }
    if seen.transfer_encoding {
        if seen.bad_codings {
            return Err(CodecError::TransferEncoding);
        }
        // Both framings at once is a smuggling vector: use chunked, then close (RFC 9112 §6.3).
        return Ok(if seen.chunked_last {
            (Framing::Chunked, !seen.content_length)
        } else {
            (Framing::UntilClose, false)
        });
    }
    Ok(match seen.length.map_err(|_| CodecError::ContentLength)? {
        Some(n) => (Framing::Length(n), true),
        None => (Framing::UntilClose, false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &[u8], method: &Method) -> Result<Option<ParsedResponse>, CodecError> {
        parse_response(&mut BytesMut::from(raw), method, false)
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        let h = head(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            &Method::GET,
        )
        .unwrap()
        .unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Length(5), true));
        assert_eq!(h.fields.header_map().unwrap()["content-length"], "5");

        let h = head(
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
            &Method::HEAD,
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.framing, Framing::Empty);

        let h = head(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            &Method::GET,
        )
        .unwrap()
        .unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Chunked, true));

        let h = head(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            &Method::GET,
        )
        .unwrap()
        .unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Chunked, false));

        let h = head(
            b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
            &Method::GET,
        )
        .unwrap()
        .unwrap();
        assert!(!h.keep_alive, "HTTP/1.0 without keep-alive closes");

        let h = head(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
            &Method::GET,
        )
        .unwrap()
        .unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::UntilClose, false));

        let h = head(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\n",
            &Method::GET,
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.framing, Framing::Length(2));
    }

    #[test]
    fn hop_by_hop_fields_and_those_connection_names_are_left_out() {
        let h = head(
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: timeout=5\r\n\
              X-Secret: 1\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: x\r\n\
              Upgrade: h2c\r\nContent-Type: text/plain\r\ncontent-length: 2\r\n\r\nok",
            &Method::GET,
        )
        .unwrap()
        .unwrap();
        let map = h.fields.header_map().unwrap();
        let left: Vec<&str> = map.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["content-type", "content-length"]);
        assert_eq!((h.framing, h.keep_alive), (Framing::Length(2), true));

        // Still read for the framing and the connection before they are left out.
        let h = head(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            &Method::GET,
        )
        .unwrap()
        .unwrap();
        assert!(h.fields.is_empty());
        assert_eq!((h.framing, h.keep_alive), (Framing::Chunked, false));

        // A 101 keeps its fields: they go to the client with the switch.
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"[..],
        );
        let h = parse_response(&mut buf, &Method::GET, true)
            .unwrap()
            .unwrap();
        let map = h.fields.header_map().unwrap();
        assert_eq!(map["upgrade"], "websocket");
        assert_eq!(map["connection"], "upgrade");
    }

    #[test]
    fn bad_response_heads_are_refused() {
        for raw in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n",
            b"NOT HTTP\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        ] {
            assert!(
                head(raw, &Method::GET).is_err(),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        let mut huge = b"HTTP/1.1 200 OK\r\nx: ".to_vec();
        huge.resize(MAX_HEAD + 1, b'a');
        assert!(matches!(
            head(&huge, &Method::GET),
            Err(CodecError::HeadTooLarge)
        ));
    }

    #[test]
    fn a_head_with_bare_lf_line_ends_is_read_but_closes_its_connection() {
        for raw in [
            &b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\n\r\nok",
            b"HTTP/1.1 200 OK\r\nServer: x\nContent-Length: 2\r\n\r\nok",
            b"\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        ] {
            let h = head(raw, &Method::GET).unwrap().unwrap();
            let text = String::from_utf8_lossy(raw);
            assert_eq!(h.framing, Framing::Length(2), "{text:?}");
            assert!(!h.keep_alive, "{text:?}");
        }
        let h = head(
            b"\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            &Method::GET,
        )
        .unwrap()
        .unwrap();
        assert!(h.keep_alive);
    }

    #[test]
    fn transfer_codings_other_than_chunked_go_with_the_fields() {
        let h = head(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: deflate\r\nTransfer-Encoding: chunked\r\n\r\n",
            &Method::GET,
        )
        .unwrap()
        .unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Chunked, true));
        assert_eq!(h.fields.transfer_codings(), Some(&b"deflate"[..]));
        assert!(h.fields.header_map().unwrap().is_empty());

        let h = head(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            &Method::GET,
        )
        .unwrap()
        .unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::UntilClose, false));
        assert_eq!(h.fields.transfer_codings(), Some(&b"gzip"[..]));

        for plain in [&Method::GET, &Method::HEAD] {
            let h = head(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                plain,
            )
            .unwrap()
            .unwrap();
            assert_eq!(h.fields.transfer_codings(), None);
        }
        for bad in [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        ] {
            assert!(matches!(
                head(bad, &Method::GET),
                Err(CodecError::TransferEncoding)
            ));
        }
    }

    #[test]
    fn interim_answers_are_skipped_and_partial_heads_wait() {
        let mut buf = BytesMut::from(&b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No"[..]);
        assert!(parse_response(&mut buf, &Method::GET, false)
            .unwrap()
            .is_none());
        buf.extend_from_slice(b" Content\r\n\r\nrest");
        let h = parse_response(&mut buf, &Method::GET, false)
            .unwrap()
            .unwrap();
        assert_eq!(h.response.status(), 204);
        assert!(h.keep_alive);
        assert_eq!(&buf[..], b"rest");

        // A bare LF in an interim answer read in an earlier call still counts.
        let mut buf = BytesMut::from(&b"HTTP/1.1 100 Continue\n\nHTTP/1.1 204 No"[..]);
        assert!(parse_response(&mut buf, &Method::GET, false)
            .unwrap()
            .is_none());
        buf.extend_from_slice(b" Content\r\n\r\n");
        let h = parse_response(&mut buf, &Method::GET, false)
            .unwrap()
            .unwrap();
        assert_eq!(h.response.status(), 204);
        assert!(!h.keep_alive);
        assert!(buf.is_empty());
    }
}
