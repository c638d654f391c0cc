//! Floods: rapid reset, CONTINUATION frames, PINGs and SETTINGS from a client that does not
//! read, empty DATA frames. Each is ended or absorbed with bounded memory, and another client is
//! served throughout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::*;
use lbhost_e2e::h2raw::{literal, FrameReader, FrameWriter, Write};

/// How long a flooding client may write before it gives up.
const FLOOD_FOR: Duration = Duration::from_secs(5);
/// How long lbhost may take to close a flooding connection once it has read enough.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);
/// How much lbhost's resident memory may grow during a flood.
const RSS_GROWTH: u64 = 64 * 1024 * 1024;

/// Writes `batches` in order, pausing `pace` between them, until lbhost's close is `seen`, a
/// write fails or blocks, or [`FLOOD_FOR`] passes. Returns how many batches went out whole, and
/// how the writing ended.
async fn flood(
    writer: &mut FrameWriter,
    batches: impl Iterator<Item = Vec<u8>>,
    pace: Duration,
    seen: &AtomicBool,
) -> (usize, Write) {
    let deadline = tokio::time::Instant::now() + FLOOD_FOR;
    let mut sent = 0;
    for batch in batches {
        if seen.load(Ordering::Relaxed) {
            return (sent, Write::Failed);
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return (sent, Write::Blocked);
        }
        match writer
            .try_send(&batch, left.min(Duration::from_secs(2)))
            .await
        {
            Write::Done => sent += 1,
            other => return (sent, other),
        }
        if !pace.is_zero() {
            tokio::time::sleep(pace).await;
        }
    }
    (sent, Write::Done)
}

/// Reads (without answering) until lbhost closes the connection or `within` passes, then says
/// so in `seen`. Returns whether it closed, and the frames read.
async fn watch_close(
    reader: &mut FrameReader,
    within: Duration,
    seen: &AtomicBool,
) -> (bool, Vec<Frame>) {
    let outcome = reader.closed_within(within).await;
    seen.store(true, Ordering::Relaxed);
    match outcome {
        Ok(frames) => (true, frames),
        Err(frames) => (false, frames),
    }
}

/// CVE-2023-44487: HEADERS then RST_STREAM(CANCEL) for stream after stream ends the connection
/// with ENHANCE_YOUR_CALM long before 2,000 streams, few requests reach the backend, and another
/// HTTP/2 client is served during and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_ends_the_connection_with_enhance_your_calm_and_others_are_served() {
    bounded(async {
        let backends = start_backends(&["a"]).await;
        let lb = lb_with(&backends, json!({})).await;
        let bystander = Bystander::start(&lb);
        let mut h2 = H2::handshake(lb.listen(), &[]).await;
        let get = request_block("GET", "/", AUTHORITY, &[]);
        // 200 writes of 10 streams each, every stream opened and at once cancelled.
        let batches = (0..200u32).map(|batch| {
            let mut bytes = Vec::new();
            for i in 0..10 {
                let id = 1 + 2 * (batch * 10 + i);
                bytes.extend(frame(
                    kind::HEADERS,
                    flag::END_HEADERS | flag::END_STREAM,
                    id,
                    &get,
                ));
                bytes.extend(frame(kind::RST_STREAM, 0, id, &code::CANCEL.to_be_bytes()));
            }
            bytes
        });
        let seen = AtomicBool::new(false);
        let ((batches_sent, _), (closed, frames)) = tokio::join!(
            flood(&mut h2.writer, batches, Duration::ZERO, &seen),
            watch_close(&mut h2.reader, FLOOD_FOR + CLOSE_WITHIN, &seen),
        );
        let goaway = h2.reader.goaway;
        let during = bystander.stop().await;
        // Every answer the other client got was a hit too.
        let hits = backends[0].hits() - during as u64;
        eprintln!(
            "rapid reset: {} streams written, GOAWAY {goaway:?}, closed {closed}, backend hits \
             {hits}, {} frames from lbhost",
            batches_sent * 10,
            frames.len()
        );
        let (last, code) = goaway.unwrap_or_else(|| {
            panic!(
                "no GOAWAY (closed: {closed}, {} frames: {:?})",
                frames.len(),
                frames.last()
            )
        });
        assert_eq!(code, code::ENHANCE_YOUR_CALM, "the GOAWAY's code");
        assert!(closed, "the connection stayed open after its GOAWAY");
        assert!(
            last < 1_200,
            "lbhost took streams up to {last} (the 600th is 1,199)"
        );
        assert!(hits < 600, "the backend got {hits} of the reset requests");
        assert!(during > 0, "the other client was answered during the flood");
        let reply = Http::h2c().get(&lb.url("/")).await;
        assert_eq!(reply.status, 200, "after the flood: {}", reply.text());
    })
    .await;
}

/// A head continued in endless CONTINUATION frames: `fragment` makes the `n`th one's payload.
async fn continuation_flood(fragment: impl Fn(usize) -> Vec<u8>) {
    const MAX_FRAMES: usize = 1_000;
    const MAX_BYTES: usize = 1024 * 1024;
    let backends = start_backends(&["a"]).await;
    let lb = lb_with(&backends, json!({})).await;
    let bystander = Bystander::start(&lb);
    let mut h2 = H2::handshake(lb.listen(), &[]).await;
    let head = request_block("GET", "/", AUTHORITY, &[]);
    h2.frame(kind::HEADERS, flag::END_STREAM, 1, &head).await;
    // 16 frames a write, a pause between writes: lbhost reads as fast as they come.
    let mut bytes_total = 0;
    let mut frames = (0..MAX_FRAMES).map(|n| frame(kind::CONTINUATION, 0, 1, &fragment(n)));
    let mut batches = Vec::new();
    loop {
        let batch: Vec<u8> = frames.by_ref().take(16).flatten().collect();
        if batch.is_empty() || bytes_total + batch.len() > MAX_BYTES {
            break;
        }
        bytes_total += batch.len();
        batches.push(batch);
    }
    let seen = AtomicBool::new(false);
    let ((sent, ended), (closed, read)) = tokio::join!(
        flood(
            &mut h2.writer,
            batches.into_iter(),
            Duration::from_millis(5),
            &seen
        ),
        watch_close(&mut h2.reader, FLOOD_FOR + CLOSE_WITHIN, &seen),
    );
    let goaway = h2.reader.goaway;
    eprintln!(
        "CONTINUATION flood: {} frames written ({ended:?}), GOAWAY {goaway:?}, closed {closed}",
        sent * 16
    );
    assert!(
        closed,
        "the connection is open after {} CONTINUATION frames (GOAWAY {goaway:?}, frames {read:?})",
        sent * 16
    );
    assert!(
        ended != Write::Done,
        "lbhost took all {MAX_FRAMES} frames or {MAX_BYTES} bytes before closing (GOAWAY {goaway:?})"
    );
    let during = bystander.stop().await;
    assert!(during > 0, "the other client was answered during the flood");
    served_on_a_new_connection(&lb).await;
    assert_eq!(
        backends[0].hits(),
        during as u64 + 1,
        "the flooded head reached the backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuation_flood_of_fields_closes_the_connection_early() {
    bounded(continuation_flood(|n| {
        let mut fragment = Vec::new();
        literal(
            &mut fragment,
            format!("x-flood-{n}").as_bytes(),
            &[b'f'; 1000],
        );
        fragment
    }))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_empty_continuation_frames_closes_the_connection_early() {
    bounded(continuation_flood(|_| Vec::new())).await;
}

/// 200,000 frames that each ask for an answer, from a client that reads nothing: lbhost stops
/// reading or answers them with bounded memory, and another client is served throughout.
async fn unread_flood(one: Vec<u8>) {
    const FRAMES: usize = 200_000;
    const PER_WRITE: usize = 1_000;
    const HOLD: Duration = Duration::from_secs(2);
    let backends = start_backends(&["a"]).await;
    let lb = lb_with(&backends, json!({})).await;
    served_on_a_new_connection(&lb).await;
    let before = lb.rss_bytes();
    let peak = lb.watch_rss();
    let bystander = Bystander::start(&lb);
    // Its preface and SETTINGS, then the flood; never a read.
    let mut h2 = H2::connect(lb.listen(), &[]).await;
    let batch = one.repeat(PER_WRITE);
    let seen = AtomicBool::new(false);
    let started = tokio::time::Instant::now();
    let (written, ended) = flood(
        &mut h2.writer,
        std::iter::repeat_n(batch, FRAMES / PER_WRITE),
        Duration::ZERO,
        &seen,
    )
    .await;
    let writing = started.elapsed();
    // The socket's buffers may have taken the whole flood at once: lbhost reads it afterwards,
    // while the flooding connection stays as it is (blocked, or its answers unread).
    tokio::time::sleep(HOLD).await;
    let slowest = bystander.slowest();
    let answered = bystander.stop().await;
    let peak = peak.stop();
    eprintln!(
        "{} frames written in {writing:?} ({ended:?}); RSS {} -> peak {} KiB; the other client \
         answered {answered} times in the {:?} since, slowest answer {slowest:?}",
        written * PER_WRITE,
        before / 1024,
        peak / 1024,
        started.elapsed()
    );
    assert!(
        answered >= 20,
        "the other client was answered only {answered} times"
    );
    assert!(
        slowest < Duration::from_secs(2),
        "the other client waited {slowest:?} for an answer"
    );
    assert!(
        peak.saturating_sub(before) < RSS_GROWTH,
        "lbhost's RSS grew from {} to {} KiB",
        before / 1024,
        peak / 1024
    );
    served_on_a_new_connection(&lb).await;
    drop(h2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_from_a_client_that_does_not_read_stays_bounded() {
    bounded(unread_flood(frame(kind::PING, 0, 0, b"flooding"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settings_flood_from_a_client_that_does_not_read_stays_bounded() {
    let one = lbhost_e2e::h2raw::settings_frame(&[(setting::INITIAL_WINDOW_SIZE, 65_535)]);
    bounded(unread_flood(one)).await;
}

/// 10,000 empty DATA frames on one open stream end the connection (GOAWAY ENHANCE_YOUR_CALM,
/// or a close); another client is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_data_flood_ends_the_connection() {
    bounded(async {
        let backends = start_backends(&["a"]).await;
        let lb = lb_with(&backends, json!({})).await;
        let bystander = Bystander::start(&lb);
        let mut h2 = H2::handshake(lb.listen(), &[]).await;
        let upload = request_block("POST", "/upload", AUTHORITY, &[]);
        h2.headers(1, &upload, false).await;
        let empty = frame(kind::DATA, 0, 1, &[]);
        let batches = (0..100).map(|_| empty.repeat(100));
        let seen = AtomicBool::new(false);
        let ((sent, ended), (closed, read)) = tokio::join!(
            flood(&mut h2.writer, batches, Duration::from_millis(2), &seen),
            watch_close(&mut h2.reader, FLOOD_FOR + CLOSE_WITHIN, &seen),
        );
        let goaway = h2.reader.goaway;
        eprintln!(
            "empty DATA flood: {} frames written ({ended:?}), GOAWAY {goaway:?}, closed {closed}",
            sent * 100
        );
        assert!(
            closed,
            "the connection is open {CLOSE_WITHIN:?} after {} empty DATA frames (GOAWAY \
             {goaway:?}; frames {read:?})",
            sent * 100
        );
        if let Some((_, code)) = goaway {
            assert_eq!(code, code::ENHANCE_YOUR_CALM, "the GOAWAY's code");
        }
        let during = bystander.stop().await;
        assert!(during > 0, "the other client was answered during the flood");
        served_on_a_new_connection(&lb).await;
    })
    .await;
}
