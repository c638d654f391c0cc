//! Connection errors: each ends its connection with the GOAWAY code RFC 9113 gives, then the
//! socket closes; a new connection is served. A client that never sends its SETTINGS is
//! disconnected.

use std::time::Duration;

use super::*;
use lbhost_e2e::h2raw::PREFACE;

/// How long lbhost may take to close a connection it sent GOAWAY on.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);

/// One way to break HTTP/2's rules on a connection, and the code it earns.
struct Breach {
    what: &'static str,
    frames: Vec<Vec<u8>>,
    code: u32,
}

fn breaches() -> Vec<Breach> {
    let get = |stream| {
        frame(
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            stream,
            &request_block("GET", "/", AUTHORITY, &[]),
        )
    };
    let big = "x".repeat(16 * 1024);
    let oversized = request_block("GET", "/", AUTHORITY, &[("x-big", &big)]);
    assert!(oversized.len() > 16_384);
    vec![
        Breach {
            what: "DATA on stream 0",
            frames: vec![frame(kind::DATA, 0, 0, b"stray")],
            code: code::PROTOCOL_ERROR,
        },
        Breach {
            what: "HEADERS on an even stream",
            frames: vec![get(2)],
            code: code::PROTOCOL_ERROR,
        },
        Breach {
            what: "a stream id lower than a previous one",
            frames: vec![get(5), get(3)],
            code: code::PROTOCOL_ERROR,
        },
        Breach {
            what: "RST_STREAM on an idle stream",
            frames: vec![frame(kind::RST_STREAM, 0, 7, &code::CANCEL.to_be_bytes())],
            code: code::PROTOCOL_ERROR,
        },
        Breach {
            what: "a frame larger than 16,384 bytes",
            frames: vec![frame(kind::HEADERS, flag::END_HEADERS, 1, &oversized)],
            code: code::FRAME_SIZE_ERROR,
        },
        Breach {
            what: "an HPACK index into an empty dynamic table",
            frames: vec![frame(
                kind::HEADERS,
                flag::END_HEADERS | flag::END_STREAM,
                1,
                &[0x80 | 70],
            )],
            code: code::COMPRESSION_ERROR,
        },
        Breach {
            what: "a WINDOW_UPDATE overflowing the connection window",
            frames: vec![frame(
                kind::WINDOW_UPDATE,
                0,
                0,
                &0x7fff_ffffu32.to_be_bytes(),
            )],
            code: code::FLOW_CONTROL_ERROR,
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_errors_end_only_that_connection_with_the_rfcs_goaway_code() {
    bounded(async {
        let backends = start_backends(&["a"]).await;
        let lb = lb_with(&backends, json!({})).await;
        let mut wrong = Vec::new();
        for breach in breaches() {
            let mut h2 = H2::handshake(lb.listen(), &[]).await;
            for bytes in &breach.frames {
                h2.send(bytes).await;
            }
            let closed = tokio::time::timeout(CLOSE_WITHIN, async {
                loop {
                    if h2.next_frame(CLOSE_WITHIN).await.is_none() {
                        return;
                    }
                }
            })
            .await
            .is_ok();
            let goaway = h2.reader.goaway;
            eprintln!("{}: GOAWAY {goaway:?}, closed: {closed}", breach.what);
            if goaway.map(|(_, code)| code) != Some(breach.code) || !closed {
                wrong.push(format!(
                    "{}: GOAWAY {:?} (expected code {:#x}), closed within {CLOSE_WITHIN:?}: {closed}",
                    breach.what,
                    goaway.map(|(last, code)| format!("last stream {last}, code {code:#x}")),
                    breach.code
                ));
            }
            served_on_a_new_connection(&lb).await;
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    })
    .await;
}

/// A client that sends the preface and then nothing is disconnected within
/// `timeouts.header_read`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sending_the_preface_and_no_settings_is_disconnected_within_header_read() {
    bounded(async {
        let backends = start_backends(&["a"]).await;
        let lb = lb_with(&backends, json!({"timeouts": {"header_read": "1s"}})).await;
        let mut h2 = H2::connect_bare(lb.listen()).await;
        h2.send(PREFACE).await;
        // Read only: answering lbhost's SETTINGS would be a frame from the client.
        let frames = h2
            .reader
            .closed_within(Duration::from_secs(4))
            .await
            .unwrap_or_else(|frames| {
                panic!("still open 4 s after the preface (header_read 1 s); frames: {frames:?}")
            });
        eprintln!("closed after the preface alone; frames: {frames:?}");
        served_on_a_new_connection(&lb).await;
    })
    .await;
}

/// A preface followed by anything but SETTINGS is refused: GOAWAY PROTOCOL_ERROR, or a close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preface_followed_by_another_frame_than_settings_is_refused() {
    bounded(async {
        let backends = start_backends(&["a"]).await;
        let lb = lb_with(&backends, json!({})).await;
        let mut h2 = H2::connect_bare(lb.listen()).await;
        let mut opening = PREFACE.to_vec();
        opening.extend(frame(kind::PING, 0, 0, &[0; 8]));
        h2.send(&opening).await;
        let frames = h2
            .reader
            .closed_within(Duration::from_secs(4))
            .await
            .unwrap_or_else(|frames| {
                panic!("still open 4 s after a PING in place of SETTINGS; frames: {frames:?}")
            });
        if let Some((_, code)) = h2.reader.goaway {
            assert_eq!(code, code::PROTOCOL_ERROR, "frames: {frames:?}");
        }
        served_on_a_new_connection(&lb).await;
    })
    .await;
}
