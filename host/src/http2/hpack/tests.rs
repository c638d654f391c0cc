//! Tests of the codec as a whole: RFC 7541 Appendix C, size updates, every
//! error, robustness on arbitrary input, encoder round trips.

use super::encoder::put_int_for_tests;
use super::huffman;
use super::{DecodeError, Decoder, Encoder};

type Fields = Vec<(String, String)>;

/// Parses the RFC's hex dumps (whitespace ignored).
fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

fn decode(d: &mut Decoder, block: &[u8]) -> Result<Fields, DecodeError> {
    let mut out = Vec::new();
    d.decode(block, &mut |n, v| {
        out.push((
            String::from_utf8_lossy(n).into_owned(),
            String::from_utf8_lossy(v).into_owned(),
        ))
    })?;
    Ok(out)
}

fn fields(list: &[(&str, &str)]) -> Fields {
    list.iter()
        .map(|&(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
}

fn entries(d: &Decoder) -> Vec<(String, String)> {
    d.table_entries()
        .into_iter()
        .map(|(n, v)| (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap()))
        .collect()
}

// ---- Appendix C.1: integers ----

#[test]
fn c1_integers() {
    let mut b = Vec::new();
    put_int_for_tests(&mut b, 0, 5, 10);
    assert_eq!(&b[..], &[0x0a]);
    b.clear();
    put_int_for_tests(&mut b, 0, 5, 1337);
    assert_eq!(&b[..], &[0x1f, 0x9a, 0x0a]);
    b.clear();
    put_int_for_tests(&mut b, 0, 8, 42);
    assert_eq!(&b[..], &[0x2a]);
    // 1337 as a table size update (5-bit prefix) is read back as such.
    let mut d = Decoder::new(4096);
    assert_eq!(decode(&mut d, &[0x3f, 0x9a, 0x0a]), Ok(vec![]));
    assert_eq!(d.table_max_size(), 1337);
}

// ---- Appendix C.2 ----

#[test]
fn c2_1_literal_with_indexing() {
    let mut d = Decoder::new(4096);
    let block = hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572");
    assert_eq!(
        decode(&mut d, &block),
        Ok(fields(&[("custom-key", "custom-header")]))
    );
    assert_eq!(entries(&d), fields(&[("custom-key", "custom-header")]));
    assert_eq!(d.table_size(), 55);
}

#[test]
fn c2_2_literal_without_indexing() {
    let mut d = Decoder::new(4096);
    let block = hex("040c 2f73 616d 706c 652f 7061 7468");
    assert_eq!(
        decode(&mut d, &block),
        Ok(fields(&[(":path", "/sample/path")]))
    );
    assert_eq!(d.table_size(), 0);
}

#[test]
fn c2_3_literal_never_indexed() {
    let mut d = Decoder::new(4096);
    let block = hex("1008 7061 7373 776f 7264 0673 6563 7265 74");
    assert_eq!(
        decode(&mut d, &block),
        Ok(fields(&[("password", "secret")]))
    );
    assert_eq!(d.table_size(), 0);
}

#[test]
fn c2_4_indexed() {
    let mut d = Decoder::new(4096);
    assert_eq!(decode(&mut d, &[0x82]), Ok(fields(&[(":method", "GET")])));
    assert_eq!(d.table_size(), 0);
}

// ---- Appendix C.3 / C.4: requests ----

const REQ1: &[(&str, &str)] = &[
    (":method", "GET"),
    (":scheme", "http"),
    (":path", "/"),
    (":authority", "www.example.com"),
];
const REQ2: &[(&str, &str)] = &[
    (":method", "GET"),
    (":scheme", "http"),
    (":path", "/"),
    (":authority", "www.example.com"),
    ("cache-control", "no-cache"),
];
const REQ3: &[(&str, &str)] = &[
    (":method", "GET"),
    (":scheme", "https"),
    (":path", "/index.html"),
    (":authority", "www.example.com"),
    ("custom-key", "custom-value"),
];

fn check_requests(blocks: [&str; 3]) {
    let mut d = Decoder::new(4096);
    assert_eq!(decode(&mut d, &hex(blocks[0])), Ok(fields(REQ1)));
    assert_eq!(entries(&d), fields(&[(":authority", "www.example.com")]));
    assert_eq!(d.table_size(), 57);

    assert_eq!(decode(&mut d, &hex(blocks[1])), Ok(fields(REQ2)));
    assert_eq!(
        entries(&d),
        fields(&[
            ("cache-control", "no-cache"),
            (":authority", "www.example.com")
        ])
    );
    assert_eq!(d.table_size(), 110);

    assert_eq!(decode(&mut d, &hex(blocks[2])), Ok(fields(REQ3)));
    assert_eq!(
        entries(&d),
        fields(&[
            ("custom-key", "custom-value"),
            ("cache-control", "no-cache"),
            (":authority", "www.example.com")
        ])
    );
    assert_eq!(d.table_size(), 164);
}

const C3: [&str; 3] = [
    "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
    "8286 84be 5808 6e6f 2d63 6163 6865",
    "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
];

const C4: [&str; 3] = [
    "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
    "8286 84be 5886 a8eb 1064 9cbf",
    "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
];

#[test]
fn c3_requests_without_huffman() {
    check_requests(C3);
}

#[test]
fn c4_requests_with_huffman() {
    check_requests(C4);
}

// ---- Appendix C.5 / C.6: responses, table size 256, evictions ----

const RESP1: &[(&str, &str)] = &[
    (":status", "302"),
    ("cache-control", "private"),
    ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
    ("location", "https://www.example.com"),
];
const RESP2: &[(&str, &str)] = &[
    (":status", "307"),
    ("cache-control", "private"),
    ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
    ("location", "https://www.example.com"),
];
const RESP3: &[(&str, &str)] = &[
    (":status", "200"),
    ("cache-control", "private"),
    ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
    ("location", "https://www.example.com"),
    ("content-encoding", "gzip"),
    (
        "set-cookie",
        "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
    ),
];

fn check_responses(blocks: [&str; 3]) {
    let mut d = Decoder::new(256);
    assert_eq!(decode(&mut d, &hex(blocks[0])), Ok(fields(RESP1)));
    assert_eq!(
        entries(&d),
        fields(&[
            ("location", "https://www.example.com"),
            ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
            ("cache-control", "private"),
            (":status", "302"),
        ])
    );
    assert_eq!(d.table_size(), 222);

    assert_eq!(decode(&mut d, &hex(blocks[1])), Ok(fields(RESP2)));
    assert_eq!(
        entries(&d),
        fields(&[
            (":status", "307"),
            ("location", "https://www.example.com"),
            ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
            ("cache-control", "private"),
        ])
    );
    assert_eq!(d.table_size(), 222);

    assert_eq!(decode(&mut d, &hex(blocks[2])), Ok(fields(RESP3)));
    assert_eq!(
        entries(&d),
        fields(&[
            (
                "set-cookie",
                "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"
            ),
            ("content-encoding", "gzip"),
            ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
        ])
    );
    assert_eq!(d.table_size(), 215);
}

const C5: [&str; 3] = [
    "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
     2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70
     6c65 2e63 6f6d",
    "4803 3330 37c1 c0bf",
    "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
     54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
     5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e
     3d31",
];

const C6: [&str; 3] = [
    "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
     2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
    "4883 640e ffc1 c0bf",
    "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
     77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
     9587 3160 65c0 03ed 4ee5 b106 3d50 07",
];

#[test]
fn c5_responses_without_huffman() {
    check_responses(C5);
}

#[test]
fn c6_responses_with_huffman() {
    check_responses(C6);
}

// ---- Dynamic table details ----

#[test]
fn indexed_name_survives_its_own_eviction() {
    // RFC 7541 §4.4: the new entry's name refers to the entry it evicts.
    let mut d = Decoder::new(100);
    // custom-key: custom-header (55 bytes).
    let first = hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572");
    decode(&mut d, &first).unwrap();
    // Literal with indexing, name = index 62, value of 20 bytes: 10 + 20 + 32
    // = 62, and 55 + 62 > 100, so the referenced entry is evicted first.
    let mut block = vec![0x7e, 20];
    block.extend_from_slice(b"aaaaaaaaaaaaaaaaaaaa");
    assert_eq!(
        decode(&mut d, &block),
        Ok(fields(&[("custom-key", "aaaaaaaaaaaaaaaaaaaa")]))
    );
    assert_eq!(
        entries(&d),
        fields(&[("custom-key", "aaaaaaaaaaaaaaaaaaaa")])
    );
    assert_eq!(d.table_size(), 62);
}

#[test]
fn field_larger_than_table_empties_it() {
    let mut d = Decoder::new(64);
    decode(&mut d, &[0x41, 0x01, b'x']).unwrap(); // :authority: x (43)
    assert_eq!(d.table_size(), 43);
    let mut block = vec![0x40, 0x04];
    block.extend_from_slice(b"name");
    block.push(40);
    block.extend_from_slice(&[b'v'; 40]);
    let out = decode(&mut d, &block).unwrap();
    assert_eq!(out, vec![("name".to_owned(), "v".repeat(40))]);
    assert_eq!(d.table_size(), 0);
    assert!(entries(&d).is_empty());
    // Referencing the vanished entry fails.
    assert_eq!(decode(&mut d, &[0xbe]), Err(DecodeError::BadIndex(62)));
}

#[test]
fn dynamic_name_without_indexing_borrows_table() {
    let mut d = Decoder::new(4096);
    decode(&mut d, &hex(C3[0])).unwrap();
    // Literal without indexing, name index 62 (4-bit prefix: 15 + 47).
    let block = [0x0f, 47, 0x01, b'y', 0x1f, 47, 0x01, b'z'];
    assert_eq!(
        decode(&mut d, &block),
        Ok(fields(&[(":authority", "y"), (":authority", "z")]))
    );
    assert_eq!(d.table_size(), 57);
}

// ---- Size updates ----

#[test]
fn size_update_rules() {
    let mut d = Decoder::new(4096);
    decode(&mut d, &hex(C3[0])).unwrap();
    decode(&mut d, &hex(C3[1])).unwrap();
    assert_eq!(d.table_size(), 110);

    // Two in a row at the start: shrink to 0 (empties), then back to 4096.
    let mut block = vec![0x20, 0x3f, 0xe1, 0x1f];
    block.push(0x82);
    assert_eq!(decode(&mut d, &block), Ok(fields(&[(":method", "GET")])));
    assert_eq!((d.table_size(), d.table_max_size()), (0, 4096));

    // Shrinking evicts down to the new size.
    decode(&mut d, &hex(C3[0])).unwrap();
    decode(&mut d, &hex(C3[1])).unwrap();
    assert_eq!(decode(&mut d, &[0x3f, 0x1f]), Ok(vec![])); // 31 + 31 = 62
    assert_eq!(entries(&d), fields(&[("cache-control", "no-cache")]));
    assert_eq!(d.table_size(), 53);
    // New entries respect the lowered maximum.
    decode(&mut d, &hex(C3[0])).unwrap();
    assert_eq!(entries(&d), fields(&[(":authority", "www.example.com")]));

    // Exactly the advertised maximum is fine; one more is not.
    assert_eq!(decode(&mut d, &[0x3f, 0xe1, 0x1f]), Ok(vec![]));
    assert_eq!(
        decode(&mut Decoder::new(4096), &[0x3f, 0xe2, 0x1f]),
        Err(DecodeError::SizeUpdateTooLarge {
            size: 4097,
            max: 4096
        })
    );
    // After a field, in the same block.
    assert_eq!(
        decode(&mut Decoder::new(4096), &[0x82, 0x20]),
        Err(DecodeError::SizeUpdateNotAtStart)
    );
    // Allowed again at the start of the next block.
    let mut d = Decoder::new(4096);
    assert_eq!(decode(&mut d, &[0x82]), Ok(fields(&[(":method", "GET")])));
    assert_eq!(
        decode(&mut d, &[0x20, 0x82]),
        Ok(fields(&[(":method", "GET")]))
    );
    assert_eq!(d.table_max_size(), 0);
    // A table of size 0 takes nothing.
    decode(&mut d, &hex(C3[0])).unwrap();
    assert_eq!(d.table_size(), 0);
}

// ---- Every error, from a minimal input ----

#[test]
fn every_error_is_reachable() {
    let err = |block: &[u8]| decode(&mut Decoder::new(4096), block).unwrap_err();

    assert_eq!(err(&[0x80]), DecodeError::BadIndex(0));
    assert_eq!(err(&[0xbe]), DecodeError::BadIndex(62));
    assert_eq!(err(&[0x7e, 0x00]), DecodeError::BadIndex(62));
    assert_eq!(err(&[0x0f, 47, 0x00]), DecodeError::BadIndex(62));

    assert_eq!(
        err(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]),
        DecodeError::IntegerOverflow
    );
    // Small value, but padded with zero continuation bytes.
    assert_eq!(
        err(&[0xff, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00]),
        DecodeError::IntegerOverflow
    );
    // 2^28 + 1 as a string length.
    assert_eq!(
        err(&[0x40, 0x7f, 0x82, 0xff, 0xff, 0x7f]),
        DecodeError::IntegerOverflow
    );

    assert_eq!(err(&[0x40, 0x05, b'a']), DecodeError::StringPastBlock);
    assert_eq!(err(&[0x04, 0x81]), DecodeError::StringPastBlock);

    assert_eq!(
        err(&[0x40, 0x81, 0xff, 0x00]),
        DecodeError::HuffmanPaddingTooLong
    );
    assert_eq!(
        err(&[0x40, 0x81, 0x00, 0x00]),
        DecodeError::HuffmanPaddingNotOnes
    );
    assert_eq!(
        err(&[0x04, 0x84, 0xff, 0xff, 0xff, 0xff]),
        DecodeError::HuffmanEos
    );

    assert_eq!(
        err(&[0x3f, 0xe2, 0x1f]),
        DecodeError::SizeUpdateTooLarge {
            size: 4097,
            max: 4096
        }
    );
    assert_eq!(err(&[0x82, 0x3f, 0x01]), DecodeError::SizeUpdateNotAtStart);

    assert_eq!(err(&[0xff]), DecodeError::Truncated);
    assert_eq!(err(&[0x40]), DecodeError::Truncated);
    assert_eq!(err(&[0x40, 0x00]), DecodeError::Truncated);
    assert_eq!(err(&[0x3f]), DecodeError::Truncated);
}

#[test]
fn error_messages_are_plain_lowercase() {
    let all = [
        DecodeError::BadIndex(70),
        DecodeError::IntegerOverflow,
        DecodeError::StringPastBlock,
        DecodeError::HuffmanPaddingTooLong,
        DecodeError::HuffmanPaddingNotOnes,
        DecodeError::HuffmanEos,
        DecodeError::SizeUpdateTooLarge { size: 2, max: 1 },
        DecodeError::SizeUpdateNotAtStart,
        DecodeError::Truncated,
    ];
    for e in all {
        let msg = e.to_string();
        assert_eq!(msg, msg.to_lowercase(), "{msg}");
        assert!(!msg.ends_with('.'), "{msg}");
    }
}

// ---- Robustness ----

/// Decodes and checks what must hold whatever the input.
fn survive(d: &mut Decoder, block: &[u8]) {
    let mut total = 0usize;
    let _ = d.decode(block, &mut |n, v| total += n.len() + v.len());
    assert!(d.table_size() <= d.table_max_size());
    assert!(d.table_max_size() <= 4096);
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut rng = fastrand::Rng::with_seed(0x9e37_79b9_7f4a_7c15);
    let mut d = Decoder::new(4096);
    let mut block = Vec::new();
    for i in 0..400_000 {
        if i % 1000 == 0 {
            d = Decoder::new(if i % 2000 == 0 { 4096 } else { 64 });
        }
        block.clear();
        let len = rng.usize(0..48);
        for _ in 0..len {
            // Bias towards interesting values: 0x00, 0xff, small, prefixes.
            let b = match rng.usize(0..8) {
                0 => 0xff,
                1 => 0x00,
                2 => rng.usize(0..8) as u8,
                3 => 0x80 | rng.usize(0..80) as u8,
                _ => rng.u64(..) as u8,
            };
            block.push(b);
        }
        survive(&mut d, &block);
    }
}

#[test]
fn mutated_rfc_vectors_never_panic() {
    let mut rng = fastrand::Rng::with_seed(42);
    let vectors: Vec<Vec<u8>> = C3
        .iter()
        .chain(&C4)
        .chain(&C5)
        .chain(&C6)
        .map(|s| hex(s))
        .collect();
    for round in 0..20_000 {
        let mut d = Decoder::new(256);
        // Warm the table with the valid sequence, then feed mutants.
        let group = (round % 4) * 3;
        for v in &vectors[group..group + 3] {
            survive(&mut d, v);
        }
        let mut m = vectors[rng.usize(0..vectors.len())].clone();
        for _ in 0..=rng.usize(0..4) {
            match rng.usize(0..5) {
                0 if !m.is_empty() => {
                    let i = rng.usize(0..m.len());
                    m[i] ^= 1 << rng.usize(0..8);
                }
                1 if !m.is_empty() => {
                    let i = rng.usize(0..m.len());
                    m[i] = rng.u64(..) as u8;
                }
                2 => {
                    let i = rng.usize(0..m.len() + 1);
                    m.truncate(i);
                }
                3 => {
                    let i = rng.usize(0..m.len() + 1);
                    m.insert(i, rng.u64(..) as u8);
                }
                _ if !m.is_empty() => {
                    let i = rng.usize(0..m.len());
                    m.remove(i);
                }
                _ => {}
            }
        }
        survive(&mut d, &m);
        survive(&mut d, &m);
    }
}

// ---- Encoder ----

fn encode(list: &[(&[u8], &[u8], bool)]) -> Vec<u8> {
    let mut b = Vec::new();
    for &(n, v, s) in list {
        Encoder::field(&mut b, n, v, s);
    }
    b
}

#[test]
fn encoder_bytes_match_hand_computed() {
    // Static pairs: one byte each.
    assert_eq!(
        &encode(&[
            (b":method", b"GET", false),
            (b":method", b"POST", false),
            (b":path", b"/", false),
            (b":scheme", b"http", false),
            (b":scheme", b"https", false),
            (b":status", b"200", false),
            (b":status", b"404", false),
            (b"accept-encoding", b"gzip, deflate", false),
            (b":authority", b"", false),
            (b"accept", b"", false),
        ])[..],
        &[0x82, 0x83, 0x84, 0x86, 0x87, 0x88, 0x8d, 0x90, 0x81, 0x93]
    );
    // C.2.2: indexed name (4), literal value, without indexing.
    assert_eq!(
        &encode(&[(b":path", b"/sample/path", false)])[..],
        &hex("040c 2f73 616d 706c 652f 7061 7468")[..]
    );
    // C.2.3: never indexed, literal name.
    assert_eq!(
        &encode(&[(b"password", b"secret", true)])[..],
        &hex("1008 7061 7373 776f 7264 0673 6563 7265 74")[..]
    );
    // Literal name without indexing.
    assert_eq!(
        &encode(&[(b"x-a", b"b", false)])[..],
        &[0x00, 0x03, b'x', b'-', b'a', 0x01, b'b']
    );
    // :authority (1) with a value: 0000 0001.
    assert_eq!(
        &encode(&[(b":authority", b"h", false)])[..],
        &[0x01, 0x01, b'h']
    );
    // :method with a value not in the table: name index 2.
    assert_eq!(
        &encode(&[(b":method", b"PUT", false)])[..],
        &[0x02, 0x03, b'P', b'U', b'T']
    );
    // authorization (23): never indexed, 15 + 8.
    assert_eq!(
        &encode(&[(b"authorization", b"k", false)])[..],
        &[0x1f, 0x08, 0x01, b'k']
    );
    // cookie (32): 15 + 17; proxy-authorization (49): 15 + 34.
    assert_eq!(
        &encode(&[(b"cookie", b"a=b", false)])[..],
        &[0x1f, 0x11, 0x03, b'a', b'=', b'b']
    );
    assert_eq!(
        &encode(&[(b"proxy-authorization", b"", false)])[..],
        &[0x1f, 0x22, 0x00]
    );
    // Sensitive static pair: never indexed, not the indexed form.
    assert_eq!(
        &encode(&[(b":method", b"GET", true)])[..],
        &[0x12, 0x03, b'G', b'E', b'T']
    );
    // content-type (31) without indexing: 15 + 16; a 200-byte value has a
    // two-byte length (127 + 73).
    let long = vec![b'z'; 200];
    let out = encode(&[(b"content-type", &long, false)]);
    assert_eq!(&out[..4], &[0x0f, 0x10, 0x7f, 0x49]);
    assert_eq!(&out[4..], &long[..]);
}

#[test]
fn encoder_round_trips_through_decoder() {
    let mut rng = fastrand::Rng::with_seed(7);
    let names: Vec<Vec<u8>> = [
        ":method",
        ":path",
        ":scheme",
        ":authority",
        ":status",
        "accept-encoding",
        "content-type",
        "cookie",
        "authorization",
        "proxy-authorization",
        "x-request-id",
        "te",
        "www-authenticate",
        "set-cookie",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    let values: Vec<Vec<u8>> = [
        "GET",
        "POST",
        "/",
        "/index.html",
        "http",
        "https",
        "200",
        "500",
        "gzip, deflate",
        "",
        "trailers",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    let mut d = Decoder::new(4096);
    for _ in 0..2_000 {
        let mut list = Vec::new();
        for _ in 0..rng.usize(0..20) {
            let name = if rng.usize(0..4) == 0 {
                let len = 1 + rng.usize(0..300);
                (0..len).map(|_| b'a' + rng.usize(0..26) as u8).collect()
            } else {
                names[rng.usize(0..names.len())].clone()
            };
            let value = if rng.usize(0..3) == 0 {
                let len = rng.usize(0..400);
                (0..len).map(|_| rng.u64(..) as u8).collect()
            } else {
                values[rng.usize(0..values.len())].clone()
            };
            list.push((name, value, rng.usize(0..5) == 0));
        }
        let mut block = Vec::new();
        for (n, v, s) in &list {
            let start = block.len();
            Encoder::field(&mut block, n, v, *s);
            let never = *s
                || n.as_slice() == b"cookie"
                || n.as_slice() == b"authorization"
                || n.as_slice() == b"proxy-authorization";
            if never {
                assert_eq!(block[start] & 0xf0, 0x10, "never indexed");
            } else {
                assert!(block[start] & 0xf0 == 0x00 || block[start] & 0x80 != 0);
            }
        }
        let mut got = Vec::new();
        d.decode(&block, &mut |n, v| got.push((n.to_vec(), v.to_vec())))
            .unwrap();
        let want: Vec<_> = list.into_iter().map(|(n, v, _)| (n, v)).collect();
        assert_eq!(got, want);
        // The encoder never touches the peer's table.
        assert_eq!(d.table_size(), 0);
    }
}

#[test]
fn huffman_strings_in_blocks_round_trip() {
    let mut rng = fastrand::Rng::with_seed(99);
    let mut d = Decoder::new(4096);
    for _ in 0..2_000 {
        let name: Vec<u8> = (0..1 + rng.usize(0..40))
            .map(|_| rng.u64(..) as u8)
            .collect();
        let value: Vec<u8> = (0..rng.usize(0..200)).map(|_| rng.u64(..) as u8).collect();
        let mut block = vec![0x40];
        for s in [&name, &value] {
            let mut h = Vec::new();
            huffman::encode(s, &mut h);
            let mut b = Vec::new();
            put_int_for_tests(&mut b, 0x80, 7, h.len());
            block.extend_from_slice(&b);
            block.extend_from_slice(&h);
        }
        block.push(0xbe); // and the entry just added
        let mut got = Vec::new();
        d.decode(&block, &mut |n, v| got.push((n.to_vec(), v.to_vec())))
            .unwrap();
        assert_eq!(
            got,
            vec![(name.clone(), value.clone()), (name.clone(), value.clone())]
        );
    }
}

// ---- Micro-benchmark ----

#[test]
#[ignore = "timing only: cargo test --release -- --ignored --nocapture"]
fn bench_decode() {
    use std::time::Instant;
    for (label, vectors) in [("C.5 raw", C5), ("C.6 huffman", C6)] {
        let blocks: Vec<Vec<u8>> = vectors.iter().map(|s| hex(s)).collect();
        let bytes: usize = blocks.iter().map(Vec::len).sum();
        let rounds = 200_000;
        let start = Instant::now();
        let mut n = 0usize;
        for _ in 0..rounds {
            let mut d = Decoder::new(256);
            for b in &blocks {
                d.decode(b, &mut |k, v| n += k.len() + v.len()).unwrap();
            }
        }
        let t = start.elapsed();
        println!(
            "{label}: {:.0} ns per 3-block sequence, {:.0} MB/s of block ({n} field bytes)",
            t.as_nanos() as f64 / rounds as f64,
            (bytes * rounds) as f64 / t.as_secs_f64() / 1e6
        );
    }
    let mut b = Vec::with_capacity(256);
    let rounds = 2_000_000;
    let start = Instant::now();
    for _ in 0..rounds {
        b.clear();
        Encoder::field(&mut b, b":method", b"GET", false);
        Encoder::field(&mut b, b":scheme", b"https", false);
        Encoder::field(&mut b, b":path", b"/api/v1/items?id=42", false);
        Encoder::field(&mut b, b":authority", b"backend.internal:8080", false);
        Encoder::field(&mut b, b"user-agent", b"lbhost", false);
        Encoder::field(&mut b, b"x-forwarded-for", b"10.0.0.1", false);
    }
    println!(
        "encode: {:.0} ns per 6-field request",
        start.elapsed().as_nanos() as f64 / rounds as f64
    );
}
