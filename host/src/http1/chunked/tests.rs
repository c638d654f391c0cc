use super::*;

/// Everything `decoder` makes of `wire` fed in two pieces split at `split`: the data, the
/// trailers, and the decoder at the end; or the first error.
fn decode_split(
    mut decoder: Chunked,
    wire: &[u8],
    split: usize,
) -> Result<(Vec<u8>, Option<HeaderMap>, Chunked), CodecError> {
    let mut buf = BytesMut::from(&wire[..split]);
    let mut data = Vec::new();
    let mut trailers = None;
    let mut fed = false;
    loop {
        match decoder.decode(&mut buf)? {
            Decoded::Data(d) => data.extend_from_slice(&d),
            Decoded::Trailers(t) => trailers = Some(t),
            Decoded::NeedMore if fed => return Err(CodecError::Chunked),
            Decoded::NeedMore => {
                buf.extend_from_slice(&wire[split..]);
                fed = true;
            }
            Decoded::End => return Ok((data, trailers, decoder)),
        }
    }
}

fn decode(
    decoder: Chunked,
    wire: &[u8],
) -> Result<(Vec<u8>, Option<HeaderMap>, Chunked), CodecError> {
    decode_split(decoder, wire, wire.len())
}

#[test]
fn chunked_bodies_decode_across_any_split() {
    let wire = b"5;ext=1\r\nhello\r\n6 ; a = \"q;\\\"r\" ;b\r\n world\r\n0\r\nx-sum: 9\r\n\r\n";
    for decoder in [Chunked::request(), Chunked::response()] {
        for split in 0..wire.len() {
            let (data, trailers, decoder) = decode_split(decoder, wire, split).unwrap();
            assert_eq!(data, b"hello world", "split at {split}");
            assert_eq!(trailers.unwrap()["x-sum"], "9", "split at {split}");
            assert!(!decoder.is_lenient());
        }
    }
}

#[test]
fn malformed_chunks_are_refused_in_requests_and_responses() {
    for wire in [
        &b"zz\r\n"[..],
        b"5\r\nhelloXX",
        b"5\n",
        b"5\r",
        b"1234567890abcdef0\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b"-5\r\nhello\r\n0\r\n\r\n",
        b"\r\n",
        b";a=b\r\n",
        b" 5\r\nhello\r\n0\r\n\r\n",
        // A bare CR inside the extension (HTTP Garden's "transducer bug 3"), and a bare LF.
        b"41;a=b\r\rXXXX",
        b"5;a\nb\r\nhello\r\n0\r\n\r\n",
        b"5;a=\"\x01\"\r\nhello\r\n0\r\n\r\n",
    ] {
        for decoder in [Chunked::request(), Chunked::response()] {
            for split in 0..=wire.len() {
                assert!(
                    decode_split(decoder, wire, split).is_err(),
                    "{:?} split at {split}",
                    String::from_utf8_lossy(wire)
                );
            }
        }
    }
}

#[test]
fn lines_off_the_grammar_fail_a_request_and_mark_a_response() {
    for wire in [
        &b"2 \r\nhi\r\n0\r\n\r\n"[..],
        b"2\t\r\nhi\r\n0\r\n\r\n",
        b"2;\r\nhi\r\n0\r\n\r\n",
        b"2;a=\r\nhi\r\n0\r\n\r\n",
        b"2;a b\r\nhi\r\n0\r\n\r\n",
        b"2;a=\"b\r\nhi\r\n0\r\n\r\n",
        b"2;a=b c\r\nhi\r\n0\r\n\r\n",
        b"2;a@b\r\nhi\r\n0\r\n\r\n",
        b"2;a \r\nhi\r\n0\r\n\r\n",
        b"2\r\nhi\r\n0\r\nx: 1\n\n",
        b"2\r\nhi\r\n0\r\n\n",
    ] {
        let text = String::from_utf8_lossy(wire);
        for split in 0..=wire.len() {
            assert!(
                decode_split(Chunked::request(), wire, split).is_err(),
                "{text:?} split at {split}"
            );
            let (data, _, decoder) = decode_split(Chunked::response(), wire, split)
                .unwrap_or_else(|e| panic!("{text:?} split at {split}: {e}"));
            assert_eq!(data, b"hi", "{text:?}");
            assert!(decoder.is_lenient(), "{text:?}");
        }
    }
}

#[test]
fn sizes_up_to_sixteen_hex_digits_are_read() {
    let mut buf = BytesMut::from(&b"00000000000000FF\r\n"[..]);
    let mut decoder = Chunked::request();
    assert_eq!(decoder.decode(&mut buf).unwrap(), Decoded::NeedMore);
    assert_eq!(decoder.left(), 255);
    let mut buf = BytesMut::from(&b"ffffffffffffffff\r\n"[..]);
    let mut decoder = Chunked::request();
    assert_eq!(decoder.decode(&mut buf).unwrap(), Decoded::NeedMore);
    assert_eq!(decoder.left(), u64::MAX);
}

#[test]
fn long_chunk_lines_are_refused_whole_or_in_pieces() {
    let mut wire = b"1;a=".to_vec();
    wire.resize(MAX_CHUNK_LINE + 10, b'b');
    wire.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
    for split in [0, 100, MAX_CHUNK_LINE, wire.len()] {
        assert!(decode_split(Chunked::response(), &wire, split).is_err());
    }
    assert!(decode(Chunked::request(), b"1;a=b\r\nx\r\n0\r\n\r\n").is_ok());
}
