//! Tests for the frame codec: round trips, HEADERS splitting, every error, partial input, fuzzing.

use super::*;

/// Builds a frame by hand, independently of the writers.
fn raw(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut v = len.to_be_bytes()[1..].to_vec();
    v.push(kind);
    v.push(flags);
    v.extend_from_slice(&stream.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// Reads one frame from `bytes` with the default max frame size, requiring it to use all the bytes.
fn read_one(bytes: &[u8]) -> Result<Frame, FrameError> {
    let mut buf = BytesMut::from(bytes);
    let frame = read(&mut buf, DEFAULT_MAX_FRAME_SIZE)?.expect("a whole frame");
    assert!(buf.is_empty(), "frame not fully consumed");
    Ok(frame)
}

/// Reads every frame in `buf`, asserting nothing is left over.
fn read_all(mut buf: BytesMut, max: u32) -> Vec<Frame> {
    let mut out = Vec::new();
    while let Some(f) = read(&mut buf, max).unwrap() {
        out.push(f);
    }
    assert!(buf.is_empty());
    out
}

/// One frame of every type, written by the writers, with what `read` should return.
fn all_types() -> (BytesMut, Vec<Frame>) {
    let mut b = BytesMut::new();
    let mut want = Vec::new();

    write_data(&mut b, 1, b"hello", false);
    want.push(Frame::Data {
        stream: 1,
        data: Bytes::from_static(b"hello"),
        flow_len: 5,
        end_stream: false,
    });
    write_data(&mut b, 3, b"", true);
    want.push(Frame::Data {
        stream: 3,
        data: Bytes::new(),
        flow_len: 0,
        end_stream: true,
    });
    write_data_head(&mut b, 5, 3, true);
    b.extend_from_slice(b"abc");
    want.push(Frame::Data {
        stream: 5,
        data: Bytes::from_static(b"abc"),
        flow_len: 3,
        end_stream: true,
    });
    write_headers(&mut b, 7, b"\x82\x86", true, DEFAULT_MAX_FRAME_SIZE);
    want.push(Frame::Headers {
        stream: 7,
        fragment: Bytes::from_static(b"\x82\x86"),
        end_stream: true,
        end_headers: true,
    });
    b.extend_from_slice(&raw(PRIORITY, 0, 9, &[0, 0, 0, 1, 16]));
    want.push(Frame::Priority { stream: 9 });
    write_rst_stream(&mut b, 11, Reason::CANCEL);
    want.push(Frame::RstStream {
        stream: 11,
        reason: Reason::CANCEL,
    });
    let params = vec![
        (setting::ENABLE_PUSH, 0),
        (setting::INITIAL_WINDOW_SIZE, MAX_WINDOW_SIZE),
        (setting::MAX_FRAME_SIZE, MAX_MAX_FRAME_SIZE),
        (0x99, 7),
    ];
    write_settings(&mut b, &params);
    want.push(Frame::Settings { ack: false, params });
    write_settings(&mut b, &[]);
    want.push(Frame::Settings {
        ack: false,
        params: vec![],
    });
    write_settings_ack(&mut b);
    want.push(Frame::Settings {
        ack: true,
        params: vec![],
    });
    b.extend_from_slice(&raw(PUSH_PROMISE, END_HEADERS, 1, &[0, 0, 0, 2, 0x82]));
    want.push(Frame::PushPromise {
        stream: 1,
        promised: 2,
        fragment: Bytes::from_static(b"\x82"),
        end_headers: true,
    });
    write_ping(&mut b, false, *b"12345678");
    want.push(Frame::Ping {
        ack: false,
        payload: *b"12345678",
    });
    write_ping(&mut b, true, *b"abcdefgh");
    want.push(Frame::Ping {
        ack: true,
        payload: *b"abcdefgh",
    });
    write_goaway(&mut b, 13, Reason::ENHANCE_YOUR_CALM, b"slow down");
    want.push(Frame::GoAway {
        last_stream: 13,
        reason: Reason::ENHANCE_YOUR_CALM,
        debug: Bytes::from_static(b"slow down"),
    });
    write_goaway(&mut b, 0, Reason::NO_ERROR, b"");
    want.push(Frame::GoAway {
        last_stream: 0,
        reason: Reason::NO_ERROR,
        debug: Bytes::new(),
    });
    write_window_update(&mut b, 0, MAX_WINDOW_SIZE);
    want.push(Frame::WindowUpdate {
        stream: 0,
        increment: MAX_WINDOW_SIZE,
    });
    write_window_update(&mut b, 15, 1);
    want.push(Frame::WindowUpdate {
        stream: 15,
        increment: 1,
    });
    b.extend_from_slice(&raw(CONTINUATION, END_HEADERS, 7, b"\x84"));
    want.push(Frame::Continuation {
        stream: 7,
        fragment: Bytes::from_static(b"\x84"),
        end_headers: true,
    });
    b.extend_from_slice(&raw(0xfa, 0xff, 17, b"whatever"));
    want.push(Frame::Unknown {
        kind: 0xfa,
        stream: 17,
    });
    (b, want)
}

#[test]
fn every_frame_type_round_trips() {
    let (buf, want) = all_types();
    assert_eq!(read_all(buf, DEFAULT_MAX_FRAME_SIZE), want);
}

#[test]
fn writers_produce_exact_bytes() {
    let mut b = BytesMut::new();
    write_rst_stream(&mut b, 0x8000_0001, Reason::REFUSED_STREAM);
    assert_eq!(
        &b[..],
        &[0, 0, 4, 3, 0, 0, 0, 0, 1, 0, 0, 0, 7],
        "reserved bit cleared"
    );
    b.clear();
    write_window_update(&mut b, 3, 0x0102_0304);
    assert_eq!(&b[..], &[0, 0, 4, 8, 0, 0, 0, 0, 3, 1, 2, 3, 4]);
    b.clear();
    write_settings(&mut b, &[(setting::MAX_CONCURRENT_STREAMS, 100)]);
    assert_eq!(&b[..], &[0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100]);
    b.clear();
    write_settings_ack(&mut b);
    assert_eq!(&b[..], &[0, 0, 0, 4, 1, 0, 0, 0, 0]);
    b.clear();
    write_data_head(&mut b, 1, 0x01_0203, true);
    assert_eq!(&b[..], &[1, 2, 3, 0, 1, 0, 0, 0, 1]);
    b.clear();
    write_goaway(&mut b, 0x8000_0005, Reason(0xdead), b"x");
    assert_eq!(
        &b[..],
        &[0, 0, 9, 7, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0xde, 0xad, b'x']
    );
    assert!(PREFACE.len() == 24 && PREFACE.starts_with(b"PRI"));
}

#[test]
fn reserved_bits_ignored_on_read() {
    let f = read_one(&raw(DATA, 0, 0x8000_0003, b"x")).unwrap();
    assert!(matches!(f, Frame::Data { stream: 3, .. }));
    let f = read_one(&raw(WINDOW_UPDATE, 0, 0x8000_0000, &[0x80, 0, 0, 9])).unwrap();
    assert_eq!(
        f,
        Frame::WindowUpdate {
            stream: 0,
            increment: 9
        }
    );
    let f = read_one(&raw(GOAWAY, 0, 0, &[0x80, 0, 0, 1, 0, 0, 0, 0])).unwrap();
    assert!(matches!(f, Frame::GoAway { last_stream: 1, .. }));
    let f = read_one(&raw(PUSH_PROMISE, 0, 1, &[0x80, 0, 0, 4])).unwrap();
    assert!(matches!(
        f,
        Frame::PushPromise {
            promised: 4,
            end_headers: false,
            ..
        }
    ));
}

#[test]
fn unknown_flags_and_types_are_ignored() {
    let f = read_one(&raw(DATA, !PADDED, 1, b"ab")).unwrap();
    assert_eq!(
        f,
        Frame::Data {
            stream: 1,
            data: Bytes::from_static(b"ab"),
            flow_len: 2,
            end_stream: true
        }
    );
    let mut buf = BytesMut::from(&raw(0x0b, 0, 0, &[0; 100])[..]);
    write_ping(&mut buf, false, [1; 8]);
    let frames = read_all(buf, DEFAULT_MAX_FRAME_SIZE);
    assert_eq!(
        frames,
        vec![
            Frame::Unknown {
                kind: 0x0b,
                stream: 0
            },
            Frame::Ping {
                ack: false,
                payload: [1; 8]
            }
        ]
    );
}

/// Reads HEADERS + CONTINUATIONs and returns the rejoined block, checking the flags.
fn rejoin(buf: BytesMut, max: u32, stream: u32, end_stream: bool) -> (Vec<u8>, usize) {
    let frames = read_all(buf, max);
    let n = frames.len();
    let mut block = Vec::new();
    for (i, f) in frames.into_iter().enumerate() {
        let last = i + 1 == n;
        let (fragment, eh) = match f {
            Frame::Headers {
                stream: s,
                fragment,
                end_stream: es,
                end_headers,
            } if i == 0 => {
                assert_eq!((s, es), (stream, end_stream));
                (fragment, end_headers)
            }
            Frame::Continuation {
                stream: s,
                fragment,
                end_headers,
            } if i > 0 => {
                assert_eq!(s, stream);
                (fragment, end_headers)
            }
            other => panic!("unexpected frame {other:?} at {i}"),
        };
        assert!(fragment.len() <= max as usize);
        assert!(!fragment.is_empty() || n == 1, "no empty CONTINUATION");
        assert_eq!(eh, last, "END_HEADERS only on the last frame");
        block.extend_from_slice(&fragment);
    }
    (block, n)
}

#[test]
fn headers_split_into_continuations() {
    let block: Vec<u8> = (0..40_000u32).map(|i| (i * 7 % 251) as u8).collect();
    for (len, max, frames) in [
        (40_000, 16_384, 3),
        (32_768, 16_384, 2),
        (16_384, 16_384, 1),
        (16_385, 16_384, 2),
        (0, 16_384, 1),
        (10, 3, 4),
        (10, 1, 10),
        (5, 0, 5),
    ] {
        let mut buf = BytesMut::new();
        write_headers(&mut buf, 5, &block[..len], len % 2 == 0, max);
        let read_max = max.max(1);
        let (joined, n) = rejoin(buf, read_max, 5, len % 2 == 0);
        assert_eq!(joined, &block[..len], "len {len} max {max}");
        assert_eq!(n, frames, "len {len} max {max}");
    }
}

#[test]
fn padding_is_removed_and_counted_for_flow_control() {
    // DATA: pad length 3, "hi", 3 zero bytes.
    let f = read_one(&raw(
        DATA,
        PADDED | END_STREAM,
        1,
        &[3, b'h', b'i', 0, 0, 0],
    ))
    .unwrap();
    assert_eq!(
        f,
        Frame::Data {
            stream: 1,
            data: Bytes::from_static(b"hi"),
            flow_len: 6,
            end_stream: true
        }
    );
    // DATA: all padding, and the smallest padded frame.
    let f = read_one(&raw(DATA, PADDED, 1, &[4, 0, 0, 0, 0])).unwrap();
    assert_eq!(
        f,
        Frame::Data {
            stream: 1,
            data: Bytes::new(),
            flow_len: 5,
            end_stream: false
        }
    );
    let f = read_one(&raw(DATA, PADDED, 1, &[0])).unwrap();
    assert_eq!(
        f,
        Frame::Data {
            stream: 1,
            data: Bytes::new(),
            flow_len: 1,
            end_stream: false
        }
    );
    // HEADERS: padded.
    let f = read_one(&raw(HEADERS, PADDED | END_HEADERS, 3, &[2, 0x82, 0, 0])).unwrap();
    assert_eq!(
        f,
        Frame::Headers {
            stream: 3,
            fragment: Bytes::from_static(b"\x82"),
            end_stream: false,
            end_headers: true
        }
    );
    // HEADERS: priority only.
    let f = read_one(&raw(
        HEADERS,
        PRIORITY_FLAG,
        3,
        &[0, 0, 0, 1, 255, 0x82, 0x86],
    ))
    .unwrap();
    assert_eq!(
        f,
        Frame::Headers {
            stream: 3,
            fragment: Bytes::from_static(b"\x82\x86"),
            end_stream: false,
            end_headers: false
        }
    );
    // HEADERS: padded + priority, and padding filling all the room.
    let f = read_one(&raw(
        HEADERS,
        PADDED | PRIORITY_FLAG,
        3,
        &[1, 0x80, 0, 0, 1, 9, 0x82, 0],
    ))
    .unwrap();
    assert!(matches!(f, Frame::Headers { ref fragment, .. } if &fragment[..] == b"\x82"));
    let f = read_one(&raw(
        HEADERS,
        PADDED | PRIORITY_FLAG,
        3,
        &[2, 0, 0, 0, 1, 9, 0, 0],
    ))
    .unwrap();
    assert!(matches!(f, Frame::Headers { ref fragment, .. } if fragment.is_empty()));
    // PUSH_PROMISE: padded.
    let f = read_one(&raw(
        PUSH_PROMISE,
        PADDED | END_HEADERS,
        1,
        &[1, 0, 0, 0, 2, 0x82, 0],
    ))
    .unwrap();
    assert_eq!(
        f,
        Frame::PushPromise {
            stream: 1,
            promised: 2,
            fragment: Bytes::from_static(b"\x82"),
            end_headers: true
        }
    );
}

#[test]
fn data_payload_is_not_copied() {
    let mut buf = BytesMut::new();
    write_data(&mut buf, 1, &[7; 1000], false);
    let start = buf.as_ptr() as usize;
    let range = start..start + buf.len();
    match read(&mut buf, DEFAULT_MAX_FRAME_SIZE).unwrap() {
        Some(Frame::Data { data, .. }) => {
            assert_eq!(data.len(), 1000);
            assert!(
                range.contains(&(data.as_ptr() as usize)),
                "DATA payload points into the read buffer"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn oversized_frame_refused_from_header_alone() {
    for max in [DEFAULT_MAX_FRAME_SIZE, 100, 0] {
        let mut buf = BytesMut::from(&raw(DATA, 0, 1, &[])[..]);
        buf[..3].copy_from_slice(&(max + 1).to_be_bytes()[1..]);
        let err = read(&mut buf, max).unwrap_err();
        assert_eq!(err, FrameError::TooLarge { len: max + 1, max });
        assert_eq!(
            (err.reason(), err.stream()),
            (Reason::FRAME_SIZE_ERROR, None)
        );
        assert_eq!(buf.len(), HEADER_LEN, "nothing consumed");
    }
    // Exactly the limit is fine; the largest possible length needs the largest limit.
    let frame = raw(DATA, 0, 1, &vec![0; DEFAULT_MAX_FRAME_SIZE as usize]);
    assert!(read_one(&frame).is_ok());
    let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 1][..]);
    assert_eq!(read(&mut buf, MAX_MAX_FRAME_SIZE), Ok(None));
    assert!(read(&mut buf, MAX_MAX_FRAME_SIZE - 1).is_err());
}

#[test]
fn every_error_is_reachable_with_the_right_reason_and_scope() {
    use FrameError as E;
    const P: Reason = Reason::PROTOCOL_ERROR;
    const S: Reason = Reason::FRAME_SIZE_ERROR;
    const F: Reason = Reason::FLOW_CONTROL_ERROR;
    let cases: Vec<(Vec<u8>, FrameError, Reason, Option<u32>)> = vec![
        // Stream-bound frames on stream 0.
        (raw(DATA, 0, 0, b"x"), E::StreamZero { kind: DATA }, P, None),
        (
            raw(HEADERS, 0, 0, b"x"),
            E::StreamZero { kind: HEADERS },
            P,
            None,
        ),
        (
            raw(PRIORITY, 0, 0, &[0; 5]),
            E::StreamZero { kind: PRIORITY },
            P,
            None,
        ),
        (
            raw(PRIORITY, 0, 0, &[0; 4]),
            E::StreamZero { kind: PRIORITY },
            P,
            None,
        ),
        (
            raw(RST_STREAM, 0, 0, &[0; 4]),
            E::StreamZero { kind: RST_STREAM },
            P,
            None,
        ),
        (
            raw(PUSH_PROMISE, 0, 0, &[0, 0, 0, 2]),
            E::StreamZero { kind: PUSH_PROMISE },
            P,
            None,
        ),
        (
            raw(CONTINUATION, 0, 0, b""),
            E::StreamZero { kind: CONTINUATION },
            P,
            None,
        ),
        // Connection frames on a stream.
        (
            raw(SETTINGS, 0, 1, &[]),
            E::NonZeroStream {
                kind: SETTINGS,
                stream: 1,
            },
            P,
            None,
        ),
        (
            raw(PING, 0, 3, &[0; 8]),
            E::NonZeroStream {
                kind: PING,
                stream: 3,
            },
            P,
            None,
        ),
        (
            raw(GOAWAY, 0, 5, &[0; 8]),
            E::NonZeroStream {
                kind: GOAWAY,
                stream: 5,
            },
            P,
            None,
        ),
        // Padding too long.
        (
            raw(DATA, PADDED, 1, &[1]),
            E::Padding {
                kind: DATA,
                len: 1,
                pad: 1,
            },
            P,
            None,
        ),
        (
            raw(DATA, PADDED, 1, &[5, 0, 0, 0, 0]),
            E::Padding {
                kind: DATA,
                len: 5,
                pad: 5,
            },
            P,
            None,
        ),
        (
            raw(DATA, PADDED, 1, &[255, 0]),
            E::Padding {
                kind: DATA,
                len: 2,
                pad: 255,
            },
            P,
            None,
        ),
        (
            raw(HEADERS, PADDED, 1, &[2, 0]),
            E::Padding {
                kind: HEADERS,
                len: 2,
                pad: 2,
            },
            P,
            None,
        ),
        (
            raw(HEADERS, PADDED | PRIORITY_FLAG, 1, &[1, 0, 0, 0, 0, 0]),
            E::Padding {
                kind: HEADERS,
                len: 6,
                pad: 1,
            },
            P,
            None,
        ),
        (
            raw(PUSH_PROMISE, PADDED, 1, &[1, 0, 0, 0, 2]),
            E::Padding {
                kind: PUSH_PROMISE,
                len: 5,
                pad: 1,
            },
            P,
            None,
        ),
        // Too short for mandatory fields, or wrong fixed length.
        (
            raw(DATA, PADDED, 1, &[]),
            E::Length { kind: DATA, len: 0 },
            S,
            None,
        ),
        (
            raw(HEADERS, PADDED, 1, &[]),
            E::Length {
                kind: HEADERS,
                len: 0,
            },
            S,
            None,
        ),
        (
            raw(HEADERS, PRIORITY_FLAG, 1, &[0; 4]),
            E::Length {
                kind: HEADERS,
                len: 4,
            },
            S,
            None,
        ),
        (
            raw(HEADERS, PADDED | PRIORITY_FLAG, 1, &[0; 5]),
            E::Length {
                kind: HEADERS,
                len: 5,
            },
            S,
            None,
        ),
        (
            raw(PUSH_PROMISE, 0, 1, &[0; 3]),
            E::Length {
                kind: PUSH_PROMISE,
                len: 3,
            },
            S,
            None,
        ),
        (
            raw(PUSH_PROMISE, PADDED, 1, &[0; 4]),
            E::Length {
                kind: PUSH_PROMISE,
                len: 4,
            },
            S,
            None,
        ),
        (
            raw(RST_STREAM, 0, 1, &[0; 3]),
            E::Length {
                kind: RST_STREAM,
                len: 3,
            },
            S,
            None,
        ),
        (
            raw(RST_STREAM, 0, 1, &[0; 5]),
            E::Length {
                kind: RST_STREAM,
                len: 5,
            },
            S,
            None,
        ),
        (
            raw(PING, 0, 0, &[0; 7]),
            E::Length { kind: PING, len: 7 },
            S,
            None,
        ),
        (
            raw(PING, ACK, 0, &[0; 9]),
            E::Length { kind: PING, len: 9 },
            S,
            None,
        ),
        (
            raw(WINDOW_UPDATE, 0, 0, &[0, 0, 1]),
            E::Length {
                kind: WINDOW_UPDATE,
                len: 3,
            },
            S,
            None,
        ),
        (
            raw(WINDOW_UPDATE, 0, 1, &[0, 0, 0, 0, 1]),
            E::Length {
                kind: WINDOW_UPDATE,
                len: 5,
            },
            S,
            None,
        ),
        (
            raw(SETTINGS, 0, 0, &[0; 5]),
            E::Length {
                kind: SETTINGS,
                len: 5,
            },
            S,
            None,
        ),
        (
            raw(SETTINGS, 0, 0, &[0; 13]),
            E::Length {
                kind: SETTINGS,
                len: 13,
            },
            S,
            None,
        ),
        (
            raw(SETTINGS, ACK, 0, &[0; 6]),
            E::Length {
                kind: SETTINGS,
                len: 6,
            },
            S,
            None,
        ),
        (
            raw(GOAWAY, 0, 0, &[0; 7]),
            E::Length {
                kind: GOAWAY,
                len: 7,
            },
            S,
            None,
        ),
        // Stream errors.
        (
            raw(PRIORITY, 0, 3, &[0; 4]),
            E::PriorityLength { stream: 3, len: 4 },
            S,
            Some(3),
        ),
        (
            raw(PRIORITY, 0, 3, &[0; 6]),
            E::PriorityLength { stream: 3, len: 6 },
            S,
            Some(3),
        ),
        (
            raw(WINDOW_UPDATE, 0, 7, &[0x80, 0, 0, 0]),
            E::ZeroIncrement { stream: 7 },
            P,
            Some(7),
        ),
        (
            raw(WINDOW_UPDATE, 0, 0, &[0, 0, 0, 0]),
            E::ZeroIncrement { stream: 0 },
            P,
            None,
        ),
        // Settings values.
        (
            raw(SETTINGS, 0, 0, &[0, 2, 0, 0, 0, 2]),
            E::InvalidSetting {
                id: setting::ENABLE_PUSH,
                value: 2,
            },
            P,
            None,
        ),
        (
            raw(SETTINGS, 0, 0, &[0, 4, 0x80, 0, 0, 0]),
            E::InvalidSetting {
                id: setting::INITIAL_WINDOW_SIZE,
                value: 1 << 31,
            },
            F,
            None,
        ),
        (
            raw(SETTINGS, 0, 0, &[0, 5, 0, 0, 0x3f, 0xff]),
            E::InvalidSetting {
                id: setting::MAX_FRAME_SIZE,
                value: 16_383,
            },
            P,
            None,
        ),
        (
            raw(SETTINGS, 0, 0, &[0, 5, 1, 0, 0, 0]),
            E::InvalidSetting {
                id: setting::MAX_FRAME_SIZE,
                value: 1 << 24,
            },
            P,
            None,
        ),
        (
            raw(
                SETTINGS,
                0,
                0,
                &[0, 3, 0, 0, 0, 1, 0, 2, 0xff, 0xff, 0xff, 0xff],
            ),
            E::InvalidSetting {
                id: setting::ENABLE_PUSH,
                value: u32::MAX,
            },
            P,
            None,
        ),
        // Push promise of stream 0.
        (
            raw(PUSH_PROMISE, 0, 1, &[0x80, 0, 0, 0]),
            E::PromisedStreamZero { stream: 1 },
            P,
            None,
        ),
    ];
    for (bytes, want, reason, scope) in cases {
        let mut buf = BytesMut::from(&bytes[..]);
        // A following frame stays in the buffer: errors consume exactly the bad frame.
        buf.extend_from_slice(&raw(PING, 0, 0, &[0; 8]));
        let err = read(&mut buf, DEFAULT_MAX_FRAME_SIZE).unwrap_err();
        assert_eq!(err, want, "{bytes:02x?}");
        assert_eq!(err.reason(), reason, "{err}");
        assert_eq!(err.stream(), scope, "{err}");
        assert!(!err.to_string().is_empty());
        assert_eq!(buf.len(), HEADER_LEN + 8, "{err}: frame consumed");
        if scope.is_some() {
            assert!(matches!(
                read(&mut buf, DEFAULT_MAX_FRAME_SIZE),
                Ok(Some(Frame::Ping { .. }))
            ));
        }
    }
}

#[test]
fn settings_boundary_values_accepted() {
    let ok = [
        (setting::ENABLE_PUSH, 0),
        (setting::ENABLE_PUSH, 1),
        (setting::INITIAL_WINDOW_SIZE, 0),
        (setting::INITIAL_WINDOW_SIZE, MAX_WINDOW_SIZE),
        (setting::MAX_FRAME_SIZE, DEFAULT_MAX_FRAME_SIZE),
        (setting::MAX_FRAME_SIZE, MAX_MAX_FRAME_SIZE),
        (setting::HEADER_TABLE_SIZE, u32::MAX),
        (setting::MAX_HEADER_LIST_SIZE, u32::MAX),
        (0, u32::MAX),
        (0xffff, 5),
    ];
    let mut buf = BytesMut::new();
    write_settings(&mut buf, &ok);
    assert_eq!(
        read_one(&buf).unwrap(),
        Frame::Settings {
            ack: false,
            params: ok.to_vec()
        }
    );
}

#[test]
fn reason_display() {
    assert_eq!(Reason::NO_ERROR.to_string(), "NO_ERROR");
    assert_eq!(Reason::FRAME_SIZE_ERROR.to_string(), "FRAME_SIZE_ERROR");
    assert_eq!(Reason::HTTP_1_1_REQUIRED.to_string(), "HTTP_1_1_REQUIRED");
    assert_eq!(Reason(0xe).to_string(), "unknown error code 0xe");
    assert_eq!(
        Reason(0xdead_beef).to_string(),
        "unknown error code 0xdeadbeef"
    );
    for code in 0..=0xd {
        assert!(!Reason(code).to_string().starts_with("unknown"));
    }
}

#[test]
fn every_prefix_is_incomplete_until_the_frame_is_whole() {
    let (seq, want) = all_types();
    // Frame end offsets, from the length fields.
    let mut ends = Vec::new();
    let mut at = 0;
    while at < seq.len() {
        let len = u32::from_be_bytes([0, seq[at], seq[at + 1], seq[at + 2]]) as usize;
        at += HEADER_LEN + len;
        ends.push(at);
    }
    assert_eq!(at, seq.len());
    for n in 0..=seq.len() {
        let mut buf = BytesMut::from(&seq[..n]);
        let mut got = Vec::new();
        loop {
            let before = buf.len();
            match read(&mut buf, DEFAULT_MAX_FRAME_SIZE).unwrap() {
                Some(f) => got.push(f),
                None => {
                    assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                    break;
                }
            }
        }
        let complete = ends.iter().filter(|&&e| e <= n).count();
        assert_eq!(got, want[..complete], "prefix {n}");
        let consumed = if complete == 0 { 0 } else { ends[complete - 1] };
        assert_eq!(
            &buf[..],
            &seq[consumed..n],
            "prefix {n}: leftover untouched"
        );
    }
}

/// Reads `buf` until it needs more bytes or errors, checking the invariants of `read`.
fn drain(buf: &mut BytesMut, max: u32) -> usize {
    let mut frames = 0;
    loop {
        let before = buf.len();
        let declared = buf
            .first_chunk::<3>()
            .map(|l| u32::from_be_bytes([0, l[0], l[1], l[2]]) as usize);
        match read(buf, max) {
            Ok(None) => {
                assert_eq!(buf.len(), before);
                return frames;
            }
            Ok(Some(f)) => {
                frames += 1;
                let consumed = before - buf.len();
                assert_eq!(Some(consumed - HEADER_LEN), declared);
                assert!(consumed - HEADER_LEN <= max as usize);
                match f {
                    Frame::Data {
                        data,
                        flow_len,
                        stream,
                        ..
                    } => {
                        assert_eq!(flow_len as usize, consumed - HEADER_LEN);
                        assert!(data.len() <= flow_len as usize && stream != 0);
                    }
                    Frame::Headers {
                        fragment, stream, ..
                    }
                    | Frame::Continuation {
                        fragment, stream, ..
                    } => {
                        assert!(fragment.len() <= consumed - HEADER_LEN && stream != 0);
                    }
                    Frame::PushPromise {
                        fragment, promised, ..
                    } => {
                        assert!(fragment.len() + 4 <= consumed - HEADER_LEN && promised != 0);
                    }
                    Frame::Settings { params, ack } => assert!(
                        params.len() * 6 == consumed - HEADER_LEN && (!ack || params.is_empty())
                    ),
                    Frame::WindowUpdate { increment, .. } => {
                        assert!((1..=MAX_WINDOW_SIZE).contains(&increment))
                    }
                    _ => {}
                }
            }
            Err(e) => {
                let _ = (e.reason(), e.stream(), e.to_string());
                if matches!(e, FrameError::TooLarge { .. }) {
                    assert_eq!(buf.len(), before);
                    return frames;
                }
                assert_eq!(Some(before - buf.len() - HEADER_LEN), declared);
                if e.stream().is_none() {
                    return frames;
                }
            }
        }
    }
}

#[test]
fn fuzz_never_panics() {
    let mut rng = fastrand::Rng::with_seed(0x9e37_79b9_7f4a_7c15);
    let (seed, _) = all_types();
    let maxes = [DEFAULT_MAX_FRAME_SIZE, 0, 8, 40, MAX_MAX_FRAME_SIZE];
    let mut frames = 0;
    for _ in 0..300_000 {
        let mut buf = BytesMut::new();
        match rng.usize(0..3) {
            // Plausible frames: consistent length, random type/flags/stream/payload.
            0 => {
                for _ in 0..1 + rng.usize(0..4) {
                    let len = rng.usize(0..24);
                    let kind = rng.usize(0..12) as u8;
                    let flags = rng.u8(..);
                    let stream = [0, 1, rng.u64(..) as u32][rng.usize(0..3)];
                    let payload: Vec<u8> = (0..len)
                        .map(|_| if rng.usize(0..2) == 0 { 0 } else { rng.u8(..) })
                        .collect();
                    buf.extend_from_slice(&raw(kind, flags, stream, &payload));
                }
                if rng.usize(0..4) == 0 {
                    let cut = rng.usize(0..buf.len() + 1);
                    buf.truncate(cut);
                }
            }
            // Mutations of a valid sequence.
            1 => {
                buf.extend_from_slice(&seed);
                for _ in 0..1 + rng.usize(0..8) {
                    let at = rng.usize(0..buf.len());
                    match rng.usize(0..4) {
                        0 => buf[at] ^= 1 << rng.usize(0..8),
                        1 => buf[at] = rng.u8(..),
                        2 => buf.truncate(at),
                        _ => {
                            let tail = buf.split_off(at);
                            buf.extend_from_slice(&[rng.u8(..)]);
                            buf.extend_from_slice(&tail);
                        }
                    }
                    if buf.is_empty() {
                        break;
                    }
                }
            }
            // Pure noise.
            _ => {
                for _ in 0..rng.usize(0..64) {
                    buf.extend_from_slice(&[rng.u8(..)]);
                }
            }
        }
        frames += drain(&mut buf, maxes[rng.usize(0..maxes.len())]);
    }
    assert!(
        frames > 100_000,
        "fuzz reached the frame parsers only {frames} times"
    );
}

#[test]
fn error_messages_name_the_frame() {
    let e = read_one(&raw(PING, 0, 3, &[0; 8])).unwrap_err();
    assert_eq!(e.to_string(), "PING frame on stream 3, expected stream 0");
    let e = read_one(&raw(DATA, 0, 0, &[])).unwrap_err();
    assert_eq!(e.to_string(), "DATA frame on stream 0");
}
