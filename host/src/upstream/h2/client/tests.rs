//! The client against the h2 crate's server over an in-memory pipe (another implementation's
//! view of the protocol), and against hand-written frames for what no well-behaved server does.

use std::future::poll_fn;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;

const INTERVAL: Duration = Duration::from_secs(30);

/// A client connection over a pipe whose other end is returned, its driver running.
fn client() -> (Connection, DuplexStream) {
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    let (connection, driver) = handshake(ours, INTERVAL, INTERVAL);
    tokio::spawn(driver);
    (connection, theirs)
}

fn get(path: &str) -> RequestHead {
    let (mut parts, ()) = Request::get(format!("http://backend.test{path}"))
        .body(())
        .unwrap()
        .into_parts();
    parts
        .headers
        .insert("x-test", HeaderValue::from_static("yes"));
    RequestHead::from_parts(&parts)
}

async fn response(stream: &mut Stream) -> Result<http::response::Parts, StreamError> {
    poll_fn(|cx| stream.poll_response(cx)).await
}

/// Serves `io` with h2's server, answering every request with `answer`.
fn serve(
    io: DuplexStream,
    answer: impl Fn(Request<h2::RecvStream>, h2::server::SendResponse<Bytes>) + Send + 'static,
) {
    tokio::spawn(async move {
        let mut conn = h2::server::handshake(io).await.unwrap();
        while let Some(Ok((request, respond))) = conn.accept().await {
            answer(request, respond);
        }
    });
}

#[tokio::test]
async fn a_request_gets_its_head_body_and_trailers() {
    let (connection, io) = client();
    serve(io, |request, mut respond| {
        assert_eq!(request.uri().path(), "/x");
        assert_eq!(request.headers()["x-test"], "yes");
        tokio::spawn(async move {
            let response = Response::builder().header("server", "h2").body(()).unwrap();
            let mut send = respond.send_response(response, false).unwrap();
            send.send_data(Bytes::from_static(b"hello "), false)
                .unwrap();
            send.send_data(Bytes::from_static(b"world"), false).unwrap();
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            send.send_trailers(trailers).unwrap();
        });
    });
    let mut stream = connection.send_request(&get("/x"), true).unwrap();
    let head = response(&mut stream).await.unwrap();
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.headers["server"], "h2");
    let body = ResponseBody::new(stream).collect().await.unwrap();
    assert_eq!(body.trailers().unwrap()["grpc-status"], "0");
    assert_eq!(body.to_bytes(), "hello world");
}

#[tokio::test]
async fn bodies_larger_than_every_window_go_both_ways() {
    const SIZE: usize = 20 * 1024 * 1024;
    let (connection, io) = client();
    serve(io, |request, mut respond| {
        tokio::spawn(async move {
            // Echoes the request body back, as it comes.
            let mut recv = request.into_body();
            let mut send = respond.send_response(Response::new(()), false).unwrap();
            while let Some(data) = recv.data().await {
                let data = data.unwrap();
                recv.flow_control().release_capacity(data.len()).unwrap();
                send.reserve_capacity(data.len());
                let mut left = data;
                while !left.is_empty() {
                    let room = poll_fn(|cx| send.poll_capacity(cx)).await.unwrap().unwrap();
                    send.send_data(left.split_to(room.min(left.len())), false)
                        .unwrap();
                }
            }
            send.send_data(Bytes::new(), true).unwrap();
        });
    });
    let head = RequestHead {
        method: http::Method::POST,
        uri: http::Uri::from_static("http://backend.test/echo"),
        fields: Vec::new(),
    };
    let mut stream = connection.send_request(&head, false).unwrap();
    let payload: Bytes = (0..SIZE).map(|i| (i % 251) as u8).collect();
    let sending = tokio::spawn(RequestBody::new(
        Full::new(payload.clone()),
        stream.another(),
    ));
    let head = response(&mut stream).await.unwrap();
    assert_eq!(head.status, StatusCode::OK);
    let body = tokio::time::timeout(Duration::from_secs(30), ResponseBody::new(stream).collect())
        .await
        .expect("no window stalls")
        .unwrap()
        .to_bytes();
    sending.await.unwrap().unwrap();
    assert_eq!(body.len(), SIZE);
    assert!(body == payload, "the echo differs");
}

#[tokio::test]
async fn many_streams_share_one_connection() {
    let (connection, io) = client();
    serve(io, |request, mut respond| {
        let path = request.uri().path().to_owned();
        let mut send = respond.send_response(Response::new(()), false).unwrap();
        send.send_data(Bytes::from(path), true).unwrap();
    });
    let mut calls = Vec::new();
    for i in 0..200 {
        let connection = connection.clone();
        calls.push(tokio::spawn(async move {
            let mut stream = connection
                .send_request(&get(&format!("/{i}")), true)
                .unwrap();
            response(&mut stream).await.unwrap();
            ResponseBody::new(stream)
                .collect()
                .await
                .unwrap()
                .to_bytes()
        }));
    }
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap(), format!("/{i}").as_bytes());
    }
}

#[tokio::test]
async fn a_refused_stream_and_a_goaway_below_it_are_unprocessed() {
    let (connection, io) = client();
    serve(io, |request, mut respond| {
        if request.uri().path() == "/refuse" {
            respond.send_reset(h2::Reason::REFUSED_STREAM);
        } else {
            respond.send_reset(h2::Reason::INTERNAL_ERROR);
        }
    });
    let mut refused = connection.send_request(&get("/refuse"), true).unwrap();
    assert!(matches!(
        response(&mut refused).await,
        Err(StreamError::Refused(_))
    ));
    let mut reset = connection.send_request(&get("/fail"), true).unwrap();
    assert!(matches!(
        response(&mut reset).await,
        Err(StreamError::Reset(r)) if r == Reason::INTERNAL_ERROR
    ));
    assert!(connection.is_open());

    // A GOAWAY whose last stream is below a request's: that one was not processed, and no
    // new stream starts.
    let (connection, mut io) = client();
    let mut stream = connection.send_request(&get("/late"), true).unwrap();
    let mut frames = BytesMut::new();
    frame::write_settings(&mut frames, &[]);
    frame::write_goaway(&mut frames, 0, Reason::NO_ERROR, b"");
    io.write_all(&frames).await.unwrap();
    assert!(matches!(
        response(&mut stream).await,
        Err(StreamError::Refused(_))
    ));
    assert!(!connection.is_open());
    assert!(matches!(
        connection.send_request(&get("/"), true),
        Err(SendError::Closed(_))
    ));
}

/// A server's SETTINGS, then `frames` as a response on stream 1.
async fn answer_raw(
    frames: impl FnOnce(&mut BytesMut),
) -> Result<http::response::Parts, StreamError> {
    let (connection, mut io) = client();
    let mut stream = connection.send_request(&get("/"), true).unwrap();
    let mut out = BytesMut::new();
    frame::write_settings(&mut out, &[]);
    frames(&mut out);
    io.write_all(&out).await.unwrap();
    let head = response(&mut stream).await;
    // The pipe stays open until the answer is read.
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_millis(10), io.read(&mut sink)).await;
    head
}

fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (n, v) in fields {
        crate::http2::hpack::Encoder::field(&mut block, n.as_bytes(), v.as_bytes(), false);
    }
    block
}

#[tokio::test]
async fn malformed_heads_fail_their_stream_only() {
    for fields in [
        &[("server", "x")][..],
        &[(":status", "200"), ("Server", "x")],
        &[(":status", "200"), ("connection", "close")],
        &[(":status", "2000")],
        &[(":status", "101")],
    ] {
        let head = answer_raw(|out| {
            frame::write_headers(out, 1, &block(fields), true, 16_384);
        })
        .await;
        assert!(
            matches!(head, Err(StreamError::Malformed(_))),
            "{fields:?}: {head:?}"
        );
    }
    // A 103 then the real head.
    let head = answer_raw(|out| {
        frame::write_headers(out, 1, &block(&[(":status", "103")]), false, 16_384);
        frame::write_headers(out, 1, &block(&[(":status", "204")]), true, 16_384);
    })
    .await
    .unwrap();
    assert_eq!(head.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_body_that_disagrees_with_its_content_length_fails() {
    let (connection, mut io) = client();
    let mut stream = connection.send_request(&get("/"), true).unwrap();
    let mut out = BytesMut::new();
    frame::write_settings(&mut out, &[]);
    let head = block(&[(":status", "200"), ("content-length", "10")]);
    frame::write_headers(&mut out, 1, &head, false, 16_384);
    frame::write_data(&mut out, 1, b"short", true);
    io.write_all(&out).await.unwrap();
    response(&mut stream).await.unwrap();
    let body = ResponseBody::new(stream).collect().await;
    assert!(body.is_err(), "a short body passed as whole");
}

#[tokio::test]
async fn a_protocol_error_fails_the_connection_with_a_goaway() {
    let (connection, mut io) = client();
    let mut stream = connection.send_request(&get("/"), true).unwrap();
    let mut out = BytesMut::new();
    frame::write_settings(&mut out, &[]);
    // PUSH_PROMISE although lbhost disabled push.
    out.extend_from_slice(&[0, 0, 4, 5, 4, 0, 0, 0, 1, 0, 0, 0, 2]);
    io.write_all(&out).await.unwrap();
    assert!(matches!(
        response(&mut stream).await,
        Err(StreamError::Lost(_))
    ));
    assert!(!connection.is_open());
    // What lbhost wrote ends with a GOAWAY saying PROTOCOL_ERROR.
    let mut written = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(1), io.read_to_end(&mut written)).await;
    let mut buf = BytesMut::from(&written[frame::PREFACE.len()..]);
    let mut goaway = None;
    while let Ok(Some(frame)) = frame::read(&mut buf, 1 << 20) {
        if let frame::Frame::GoAway { reason, .. } = frame {
            goaway = Some(reason);
        }
    }
    assert_eq!(goaway, Some(Reason::PROTOCOL_ERROR));
}

#[tokio::test]
async fn a_dropped_response_resets_its_stream_and_frees_the_window() {
    let (connection, io) = client();
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    serve(io, move |_request, mut respond| {
        let seen_tx = seen_tx.clone();
        tokio::spawn(async move {
            let mut send = respond.send_response(Response::new(()), false).unwrap();
            // More than the connection's window, unread by the client but for its first frame.
            send.reserve_capacity(1 << 20);
            let _ = send.send_data(Bytes::from(vec![7u8; 1 << 20]), false);
            let reset = poll_fn(|cx| send.poll_reset(cx)).await;
            let _ = seen_tx.send(reset.map_err(|e| e.to_string()));
        });
    });
    let mut stream = connection.send_request(&get("/"), true).unwrap();
    response(&mut stream).await.unwrap();
    let mut body = ResponseBody::new(stream);
    body.frame().await.unwrap().unwrap();
    drop(body);
    let reset = tokio::time::timeout(Duration::from_secs(5), seen.recv())
        .await
        .expect("the server saw the reset")
        .unwrap();
    assert_eq!(reset, Ok(h2::Reason::CANCEL));
    // The connection still serves.
    let mut again = connection.send_request(&get("/"), true).unwrap();
    response(&mut again).await.unwrap();
}
