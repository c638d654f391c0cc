use super::*;

fn parse_all(wire: &[u8]) -> Result<Option<ParsedRequest>, RequestHeadError> {
    parse_request(&mut BytesMut::from(wire), 64 * 1024)
}

#[test]
fn a_simple_head_parses_and_leaves_what_follows() {
    let mut buf =
        BytesMut::from(&b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nX-A: 2\r\n\r\nGET"[..]);
    let head = parse_request(&mut buf, 1024).unwrap().unwrap();
    assert_eq!(head.head.method, Method::GET);
    assert_eq!(head.head.uri, "/a?b=1");
    assert_eq!(head.head.fields.get_all("x-a").count(), 2);
    assert_eq!(head.body, BodyDecoder::Done);
    assert!(head.exchange.keep_alive && !head.exchange.head);
    assert_eq!(&buf[..], b"GET");
}

#[test]
fn partial_heads_wait_and_long_ones_are_refused() {
    assert!(parse_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .unwrap()
        .is_none());
    let long = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(2000));
    let err = parse_request(&mut BytesMut::from(long.as_bytes()), 1024).unwrap_err();
    assert_eq!(err.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
}

#[test]
fn body_framing_follows_the_rules_and_refuses_smuggling() {
    let body = |extra: &str| {
        parse_all(format!("POST / HTTP/1.1\r\nhost: a\r\n{extra}\r\n").as_bytes())
            .map(|h| h.unwrap().body)
    };
    assert_eq!(
        body("content-length: 5\r\n").unwrap(),
        BodyDecoder::Length(5)
    );
    assert_eq!(
        body("content-length: 5, 5\r\n").unwrap(),
        BodyDecoder::Length(5)
    );
    assert_eq!(body("content-length: 0\r\n").unwrap(), BodyDecoder::Done);
    assert!(matches!(
        body("transfer-encoding: gzip, chunked\r\n").unwrap(),
        BodyDecoder::Chunked(_)
    ));
    for bad in [
        "content-length: 5\r\ncontent-length: 6\r\n",
        "content-length: -1\r\n",
        "content-length: 5x\r\n",
        "transfer-encoding: chunked, gzip\r\n",
        "transfer-encoding: gzip\r\n",
        "transfer-encoding: chunked, chunked\r\n",
        "transfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n",
        "transfer-encoding: chunked\r\ntransfer-encoding: gzip\r\n",
        "transfer-encoding: chunked\r\ncontent-length: 5\r\n",
    ] {
        assert_eq!(
            body(bad).unwrap_err().status(),
            StatusCode::BAD_REQUEST,
            "{bad:?}"
        );
    }
    let old = parse_all(b"POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n");
    assert!(old.is_err());
}

#[test]
fn keep_alive_expect_and_trailers_are_read_from_the_head() {
    let head = |wire: &[u8]| parse_all(wire).unwrap().unwrap();
    assert!(!head(b"GET / HTTP/1.0\r\n\r\n").exchange.keep_alive);
    assert!(
        head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .exchange
            .keep_alive
    );
    assert!(
        !head(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, close\r\n\r\n")
            .exchange
            .keep_alive
    );
    let h = head(
        b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nTE: trailers\r\ncontent-length: 1\r\n\r\n",
    );
    assert!(h.expect_continue && h.exchange.trailers);
    assert!(head(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n").exchange.head);
}

#[test]
fn garbage_is_a_bad_request() {
    for wire in [
        &b"HELLO THERE\r\n\r\n"[..],
        b"GET / HTTP/2.0\r\n\r\n",
        b"GET / HTTP/1.1\r\nbad header\r\n\r\n",
    ] {
        assert_eq!(
            parse_all(wire).unwrap_err().status(),
            StatusCode::BAD_REQUEST,
            "{wire:?}"
        );
    }
}

#[test]
fn a_bare_lf_anywhere_in_the_head_is_a_bad_request() {
    for wire in [
        &b"GET / HTTP/1.1\nHost: a\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nUseless:\n\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nDummy: x\nContent-Length: 23\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n\n",
        b"GET / HTTP/1.0\n\n",
        b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        let err = parse_all(wire).unwrap_err();
        assert_eq!(
            err.status(),
            StatusCode::BAD_REQUEST,
            "{:?}",
            String::from_utf8_lossy(wire)
        );
    }
    // RFC 9112 §2.2: an empty line (CRLF) before the request line is ignored.
    assert!(parse_all(b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap()
        .is_some());
}

#[test]
fn connect_is_not_allowed() {
    let err = parse_all(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        .unwrap_err();
    assert_eq!(err.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[test]
fn targets_are_origin_form_absolute_form_or_an_asterisk_for_options() {
    let target = |method: &str, target: &str| {
        let wire = format!("{method} {target} HTTP/1.1\r\nHost: a\r\n\r\n");
        parse_all(wire.as_bytes()).map(|h| h.unwrap().head.uri)
    };
    assert_eq!(target("GET", "/a/b?c=d").unwrap(), "/a/b?c=d");
    assert_eq!(target("GET", "//double").unwrap(), "//double");
    let absolute = target("GET", "http://Example.com:8080?x=1").unwrap();
    assert_eq!(absolute.authority().unwrap(), "Example.com:8080");
    assert_eq!(absolute.query(), Some("x=1"));
    assert!(target("GET", "https://example.com/p").is_ok());
    assert_eq!(target("OPTIONS", "*").unwrap(), "*");
    for (method, bad) in [
        ("GET", "!"),
        ("GET", "*"),
        ("OPTIONS", "*x"),
        ("GET", "example.com:80"),
        ("GET", "example.com"),
        ("GET", "/a#frag"),
        ("GET", "http://example.com/a#frag"),
        ("GET", "http://user@example.com/"),
        ("GET", "ftp://example.com/"),
        ("GET", "http:///nohost"),
        ("GET", "a/b"),
    ] {
        let err = target(method, bad).unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{method} {bad}");
    }
}

#[test]
fn http_1_1_needs_exactly_one_host_and_http_1_0_at_most_one() {
    for wire in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nX: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n",
        b"GET http://a/ HTTP/1.1\r\n\r\n",
    ] {
        let err = parse_all(wire).unwrap_err();
        assert_eq!(
            err.status(),
            StatusCode::BAD_REQUEST,
            "{:?}",
            String::from_utf8_lossy(wire)
        );
    }
    assert!(parse_all(b"GET / HTTP/1.0\r\n\r\n").unwrap().is_some());
    assert!(parse_all(b"GET / HTTP/1.1\r\nHOST: a\r\n\r\n")
        .unwrap()
        .is_some());
}
