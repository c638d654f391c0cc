//! Fuzzing harnesses for the parsers that read untrusted bytes: request heads, response heads,
//! chunked bodies, config files, and HTTP/2 frames with their HPACK header blocks. Each takes arbitrary bytes and panics when a property
//! breaks: no panic inside, no growth past the limits, and the same framing whether the input
//! arrives at once or in pieces (a parser that frames a message one way on the first read and
//! another way when fed in pieces is a request-smuggling bug). `fuzz/` runs them under
//! `cargo fuzz`; the unit tests below run them over the seed corpus and mutations of it, so
//! every test run checks the same properties.

use std::path::Path;

use bytes::BytesMut;
use http::Method;

use crate::http1::{parse_request, parse_response, Chunked, Decoded, MAX_HEAD, MAX_HEADERS};

/// The request head limit the harness uses (the default `max_header_bytes`).
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// Piece sizes for the fed-in-pieces half, from the input itself so a failure replays.
fn pieces(data: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let seed = data
        .iter()
        .fold(0u32, |h, &b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    (0u32..).map(move |i| 1 + (seed.rotate_left(i % 32) as usize + i as usize) % 7)
}

/// Feeds `data` to `step` whole, then in pieces (step is called after each piece until it
/// says done), and returns both outcomes.
fn whole_and_pieces<T>(
    data: &[u8],
    mut step: impl FnMut(&mut BytesMut) -> Option<T>,
) -> (Option<T>, Option<T>) {
    let whole = step(&mut BytesMut::from(data));
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut sizes = pieces(data);
    let mut in_pieces = None;
    while fed < data.len() {
        let size = sizes.next().unwrap_or(1).min(data.len() - fed);
        buf.extend_from_slice(&data[fed..fed + size]);
        fed += size;
        if let Some(outcome) = step(&mut buf) {
            in_pieces = Some(outcome);
            break;
        }
    }
    if data.is_empty() {
        in_pieces = step(&mut buf);
    }
    (whole, in_pieces)
}

/// A request head: parsed whole or in pieces, the same head (or the same refusal).
pub fn request_head(data: &[u8]) {
    let (whole, in_pieces) = whole_and_pieces(data, |buf| {
        let before = buf.len();
        match parse_request(buf, MAX_REQUEST_HEAD) {
            Ok(None) => None,
            Ok(Some(parsed)) => {
                let used = before - buf.len();
                assert!(
                    used <= MAX_REQUEST_HEAD,
                    "a head of {used} bytes passed the limit"
                );
                let fields: Vec<_> = parsed.head.fields.iter().collect();
                assert!(fields.len() <= MAX_HEADERS);
                // Where the head ends in the input: the same whole or in pieces (the buffer
                // held a prefix of the input, and the head was consumed from its start).
                Some(format!(
                    "{} {} {:?} {:?} {:?} {:?} {} used={used}",
                    parsed.head.method,
                    parsed.head.uri,
                    parsed.head.version,
                    parsed.body,
                    parsed.exchange,
                    fields,
                    parsed.expect_continue,
                ))
            }
            Err(e) => Some(format!("refused {}", e.status())),
        }
    });
    compare("request head", data, whole, in_pieces);
}

/// A response head: parsed whole or in pieces, the same head and framing (or the same error).
pub fn response_head(data: &[u8]) {
    let Some((&flags, data)) = data.split_first() else {
        return;
    };
    let method = if flags & 1 == 1 {
        Method::HEAD
    } else {
        Method::GET
    };
    let asked_upgrade = flags & 2 == 2;
    let (whole, in_pieces) = whole_and_pieces(data, |buf| {
        let before = buf.len();
        match parse_response(buf, &method, asked_upgrade) {
            Ok(None) => None,
            Ok(Some(parsed)) => {
                let used = before - buf.len();
                assert!(used <= MAX_HEAD, "a head of {used} bytes passed the limit");
                let mut fields = Vec::new();
                parsed.fields.write(&mut fields, true);
                Some(format!(
                    "{} {:?} {:?} keep_alive={} {:?} used={used}",
                    parsed.response.status(),
                    parsed.response.version(),
                    parsed.framing,
                    parsed.keep_alive,
                    String::from_utf8_lossy(&fields),
                ))
            }
            Err(e) => Some(format!("error {e}")),
        }
    });
    compare("response head", data, whole, in_pieces);
}

/// A chunked body (a request's when the first byte is odd, else a response's): decoded whole
/// or in pieces, the same data, trailers and end.
pub fn chunked_body(data: &[u8]) {
    let Some((&flags, data)) = data.split_first() else {
        return;
    };
    let new = || {
        if flags & 1 == 1 {
            Chunked::request()
        } else {
            Chunked::response()
        }
    };
    let decode_all = |chunks: &[&[u8]]| -> String {
        let mut decoder = new();
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut trailers = Vec::new();
        let mut fed = 0;
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            fed += chunk.len();
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Decoded::Data(bytes)) => {
                        assert!(!bytes.is_empty(), "an empty data frame");
                        body.extend_from_slice(&bytes);
                    }
                    Ok(Decoded::Trailers(map)) => {
                        assert!(map.len() <= MAX_HEADERS);
                        trailers.push(format!("{map:?}"));
                    }
                    Ok(Decoded::NeedMore) => break,
                    Ok(Decoded::End) => {
                        // Where the body ends in the input.
                        return format!(
                            "end {:?} {trailers:?} lenient={} used={}",
                            String::from_utf8_lossy(&body),
                            decoder.is_lenient(),
                            fed - buf.len()
                        );
                    }
                    Err(e) => {
                        return format!("error {e} after {:?}", String::from_utf8_lossy(&body))
                    }
                }
            }
            // What waits undecoded is bounded by the limits of a chunk line or a trailer block.
            assert!(
                buf.len() <= MAX_HEAD + 4096 || decoder.left() > 0,
                "{} bytes held",
                buf.len()
            );
        }
        format!("more {:?} {trailers:?}", String::from_utf8_lossy(&body))
    };
    let whole = decode_all(&[data]);
    let mut split = Vec::new();
    let mut at = 0;
    for size in pieces(data) {
        if at >= data.len() {
            break;
        }
        let end = (at + size).min(data.len());
        split.push(&data[at..end]);
        at = end;
    }
    let in_pieces = decode_all(&split);
    // A body that errs whole may err sooner in pieces, with less data before; what it decodes
    // before an error must still agree.
    if whole.starts_with("error") || in_pieces.starts_with("error") {
        assert!(
            whole.starts_with("error") && in_pieces.starts_with("error"),
            "chunked: whole {whole:?}, in pieces {in_pieces:?}, input {:?}",
            String::from_utf8_lossy(data)
        );
        return;
    }
    assert_eq!(
        whole,
        in_pieces,
        "chunked body framed differently in pieces: {:?}",
        String::from_utf8_lossy(data)
    );
}

/// A config file: loaded or refused, never a panic, and a refusal says why in a bounded line.
pub fn config_file(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Err(e) = crate::config::from_file(&text, Path::new("/nonexistent")) {
        let message = e.to_string();
        assert!(message.len() <= 8 * 1024, "a {}-byte error", message.len());
        assert!(!message.contains('\n'), "a multi-line error: {message:?}");
    }
}

fn compare(what: &str, data: &[u8], whole: Option<String>, in_pieces: Option<String>) {
    assert_eq!(
        whole,
        in_pieces,
        "{what} framed differently whole and in pieces: {:?}",
        String::from_utf8_lossy(data)
    );
}

/// What a backend sends over HTTP/2: frames read whole or in pieces are the same frames, and
/// every header block (HEADERS and its CONTINUATIONs) decodes the same through one HPACK
/// decoder, or fails the same; nothing panics.
pub fn http2_frames(data: &[u8]) {
    use crate::http2::frame::{self, Frame};
    use crate::http2::hpack::Decoder;

    /// Frames and decoded blocks as text, frames taken after each piece fed.
    fn run(data: &[u8], mut sizes: impl Iterator<Item = usize>) -> Vec<String> {
        let mut out = Vec::new();
        let mut decoder = Decoder::new(4096);
        let mut block: Vec<u8> = Vec::new();
        let mut buf = BytesMut::new();
        let mut fed = 0;
        while fed < data.len() {
            let size = sizes.next().unwrap_or(data.len()).min(data.len() - fed);
            buf.extend_from_slice(&data[fed..fed + size]);
            fed += size;
            loop {
                let frame = match frame::read(&mut buf, frame::DEFAULT_MAX_FRAME_SIZE) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(e) => {
                        out.push(format!("error {e}"));
                        if e.stream().is_none() {
                            return out;
                        }
                        continue;
                    }
                };
                let (fragment, end_headers) = match &frame {
                    Frame::Headers {
                        fragment,
                        end_headers,
                        ..
                    }
                    | Frame::Continuation {
                        fragment,
                        end_headers,
                        ..
                    } => (Some(fragment.clone()), *end_headers),
                    _ => (None, false),
                };
                out.push(format!("{frame:?}"));
                if let Some(fragment) = fragment {
                    block.extend_from_slice(&fragment);
                    if end_headers {
                        let mut fields = String::new();
                        let mut list = Vec::new();
                        let decoded = decoder.decode(&block, &mut |n, v| {
                            fields.push_str(&format!("{n:?}={v:?};"));
                            list.push((n.to_vec(), v.to_vec()));
                        });
                        out.push(format!("{decoded:?} {fields}"));
                        if decoded.is_ok() {
                            // As lbhost's HTTP/2 server would take it as a request head.
                            out.push(crate::server::http2_request_outcome(
                                &list,
                                MAX_REQUEST_HEAD,
                            ));
                        }
                        block.clear();
                        if decoded.is_err() {
                            return out;
                        }
                    }
                }
            }
        }
        out
    }
    let whole = run(data, std::iter::once(data.len()));
    let in_pieces = run(data, pieces(data));
    assert_eq!(
        whole, in_pieces,
        "HTTP/2 frames differ whole and in pieces: {data:?}"
    );
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// The seed corpus of `target` (`fuzz/corpus/<target>/*`).
    fn corpus(target: &str) -> Vec<Vec<u8>> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(target);
        let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|entry| std::fs::read(entry.ok()?.path()).ok())
            .collect();
        assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
        seeds.sort();
        seeds
    }

    /// Each seed, then mutations of it (bytes flipped, cut, doubled), a bounded number.
    fn run(target: &str, harness: fn(&[u8])) {
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        for seed in corpus(target) {
            harness(&seed);
            for _ in 0..300 {
                let mut input = seed.clone();
                match rng.u8(0..4) {
                    0 if !input.is_empty() => {
                        let i = rng.usize(0..input.len());
                        input[i] = rng.u8(..);
                    }
                    1 if !input.is_empty() => input.truncate(rng.usize(0..input.len())),
                    2 => {
                        let i = rng.usize(0..=input.len());
                        let b = *b"\r\n;:= \t0aAzZ\"\\,"
                            .get(rng.usize(0..16))
                            .unwrap_or(&b'x');
                        input.insert(i, b);
                    }
                    _ => {
                        let copy = input.clone();
                        input.extend_from_slice(&copy);
                    }
                }
                harness(&input);
            }
        }
    }

    #[test]
    fn request_heads_frame_the_same_whole_and_in_pieces() {
        run("request_head", request_head);
    }

    #[test]
    fn response_heads_frame_the_same_whole_and_in_pieces() {
        run("response_head", response_head);
    }

    #[test]
    fn chunked_bodies_decode_the_same_whole_and_in_pieces() {
        run("chunked_body", chunked_body);
    }

    #[test]
    fn http2_frames_read_the_same_whole_and_in_pieces() {
        run("http2_frames", http2_frames);
    }

    #[test]
    fn config_files_load_or_are_refused_in_one_line() {
        run("config_file", config_file);
    }
}
