//! Proxy header semantics: client address, hop-by-hop removal, `X-Forwarded-*` and `Forwarded`.

use std::net::IpAddr;

use bytes::Bytes;
use http::Response;
use ipnet::IpNet;

use super::ProxyBody;
use crate::http1;
use crate::http1::{RequestHeadBuilder, Value};
use crate::request::{is_named, visible_ascii, RequestFields, UpstreamFields};
use crate::strategy::ResponseFields;

const X_FORWARDED_FOR: &str = "x-forwarded-for";
const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
const X_FORWARDED_HOST: &str = "x-forwarded-host";
const FORWARDED: &str = "forwarded";
const HOST: &str = "host";
const CONNECTION: &str = "connection";
const TRANSFER_ENCODING: &str = "transfer-encoding";

/// `::ffff:a.b.c.d` is `a.b.c.d`.
pub(super) fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// Whether `ip` is one of the configured trusted proxies.
pub(super) fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    !trusted.is_empty() && trusted.iter().any(|net| net.contains(&ip))
}

/// The client's address. A peer that is not a trusted proxy is the client, whatever headers it
/// sends. Behind trusted proxies, the right-most `X-Forwarded-For` entry that is not itself a
/// trusted proxy is the client.
pub(super) fn client_ip(
    peer: IpAddr,
    peer_trusted: bool,
    fields: &RequestFields,
    trusted: &[IpNet],
) -> IpAddr {
    if !peer_trusted {
        return peer;
    }
    let mut client = peer;
    let entries: Vec<&str> = fields
        .get_all(X_FORWARDED_FOR)
        .filter_map(visible_ascii)
        .flat_map(|v| v.split(','))
        .collect();
    for entry in entries.iter().rev() {
        let Some(ip) = parse_forwarded_ip(entry.trim()) else {
            break;
        };
        client = ip;
        if !is_trusted(ip, trusted) {
            break;
        }
    }
    client
}

/// Parses `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1` or `[2001:db8::1]:80`.
fn parse_forwarded_ip(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Some(rest) = entry.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok().map(canonical);
    }
    entry.rsplit_once(':')?.0.parse().ok().map(canonical)
}

/// What the backend is told about the client, beyond the client's own headers.
pub(super) struct Forwarding<'a> {
    /// The connection's peer (the client, or the proxy in front).
    pub peer: IpAddr,
    /// Whether the peer is a trusted proxy, whose forwarding headers are kept and extended.
    pub peer_trusted: bool,
    /// The client's connection is TLS: `https` in the forwarding fields.
    pub secure: bool,
    /// The host the client asked for (the target's authority, or `Host`), if any.
    pub host: Option<&'a [u8]>,
    /// The `Host` to send when the client named none: the backend's own.
    pub fallback_host: &'a str,
    /// The protocol of an upgrade the client asked for.
    pub upgrade: Option<&'a [u8]>,
}

impl UpstreamFields for RequestHeadBuilder {
    fn header(&mut self, name: &[u8], value: &[u8]) {
        RequestHeadBuilder::header(self, name, value);
    }

    fn header_with(&mut self, name: &str, write: impl FnOnce(&mut Value<'_>)) {
        RequestHeadBuilder::header_with(self, name, write);
    }

    fn transfer_encoding(&mut self, value: &[u8]) {
        RequestHeadBuilder::transfer_encoding(self, value);
    }
}

/// Writes the fields the backend gets into `head`: the client's `fields` (names as the client
/// wrote them) without the hop-by-hop ones (RFC 9110 §7.6.1, including those `Connection`
/// names; the transfer codings of `Transfer-Encoding` go to `head` to be written with the
/// framing), then `Host` and `X-Forwarded-For/-Proto/-Host` and `Forwarded`. From a trusted
/// proxy the existing forwarding values are kept and extended; from anyone else they are
/// replaced.
pub(super) fn write_upstream<H: UpstreamFields>(
    head: &mut H,
    fields: &RequestFields,
    f: &Forwarding<'_>,
) {
    let connection = fields.contains(CONNECTION);
    // Whether the client's field `name` goes to the backend as it is.
    let forwarded = |head: &mut H, name: &[u8], value: &[u8]| {
        if http1::is_hop_by_hop(name) {
            if is_named(name, TRANSFER_ENCODING) {
                head.transfer_encoding(value);
            }
            return false;
        }
        !(is_rewritten(name) || (connection && named_by_connection(fields, name)))
    };
    match fields {
        RequestFields::Map(map) => {
            for (name, value) in map {
                if forwarded(head, name.as_str().as_bytes(), value.as_bytes()) {
                    head.field(name, value);
                }
            }
        }
        RequestFields::Head { .. } => {
            for (name, value) in fields.iter() {
                if forwarded(head, name, value) {
                    head.header(name, value);
                }
            }
        }
    }
    let host = f.host.unwrap_or(f.fallback_host.as_bytes());
    head.header(b"host", host);

    let mut peer = [0u8; 48];
    let peer = format_ip(f.peer, &mut peer);
    head.header_with("x-forwarded-for", |value| {
        if f.peer_trusted {
            for prior in fields.get_all(X_FORWARDED_FOR) {
                if !prior.trim_ascii().is_empty() {
                    value.push(prior);
                    value.push(b", ");
                }
            }
        }
        value.push(peer);
    });

    let kept = |name: &str| f.peer_trusted && fields.contains(name);
    if kept(X_FORWARDED_PROTO) {
        for value in fields.get_all(X_FORWARDED_PROTO) {
            head.header(b"x-forwarded-proto", value);
        }
    } else {
        head.header(
            b"x-forwarded-proto",
            if f.secure { b"https" } else { b"http" },
        );
    }
    if kept(X_FORWARDED_HOST) {
        for value in fields.get_all(X_FORWARDED_HOST) {
            head.header(b"x-forwarded-host", value);
        }
    } else if let Some(host) = f.host {
        head.header(b"x-forwarded-host", host);
    }

    head.header_with("forwarded", |value| {
        if f.peer_trusted {
            if let Some(prior) = fields.get(FORWARDED) {
                value.push(prior);
                value.push(b", ");
            }
        }
        match f.peer {
            IpAddr::V4(_) => {
                value.push(b"for=");
                value.push(peer);
            }
            IpAddr::V6(_) => {
                value.push(b"for=\"[");
                value.push(peer);
                value.push(b"]\"");
            }
        }
        value.push(if f.secure {
            b";proto=https"
        } else {
            b";proto=http"
        });
        if let Some(host) = f.host {
            value.push(b";host=\"");
            // Quotes and backslashes would end or escape the quoted string: left out.
            for piece in host.split(|&b| b == b'"' || b == b'\\') {
                value.push(piece);
            }
            value.push(b"\"");
        }
    });

    if let Some(protocol) = f.upgrade {
        head.header(b"connection", b"upgrade");
        head.header(b"upgrade", protocol);
    }
}

/// Fields [`write_upstream`] writes itself, and `Content-Length`, which the backend's head gets
/// from the body (`RequestHeadBuilder::finish`): a list the parser accepted as one length (`5, 5`)
/// goes out as one number.
fn is_rewritten(name: &[u8]) -> bool {
    // Most names have a length none of the six has: decided without comparing bytes.
    matches!(name.len(), 4 | 9 | 14 | 15 | 16 | 17)
        && [
            HOST,
            X_FORWARDED_FOR,
            X_FORWARDED_PROTO,
            X_FORWARDED_HOST,
            FORWARDED,
            "content-length",
        ]
        .iter()
        .any(|rewritten| is_named(name, rewritten))
}

/// Whether a `Connection` field names `name` (making it hop-by-hop).
fn named_by_connection(fields: &RequestFields, name: &[u8]) -> bool {
    fields
        .get_all(CONNECTION)
        .flat_map(http1::tokens)
        .any(|token| token.eq_ignore_ascii_case(name))
}

/// `ip` as text in `buf`, without the formatting machinery's cost for the common IPv4 case.
fn format_ip(ip: IpAddr, buf: &mut [u8; 48]) -> &[u8] {
    use std::io::Write as _;
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    let _ = cursor.write_all(b".");
                }
                let mut digits = [0u8; 3];
                let mut n = octet;
                let mut len = 0;
                loop {
                    digits[2 - len] = b'0' + n % 10;
                    len += 1;
                    n /= 10;
                    if n == 0 {
                        break;
                    }
                }
                let _ = cursor.write_all(&digits[3 - len..]);
            }
        }
        // An IPv6 address is at most 45 characters: it fits.
        IpAddr::V6(v6) => {
            let _ = write!(cursor, "{v6}");
        }
    }
    let len = cursor.position() as usize;
    &buf[..len]
}

/// The protocol a client asks to upgrade to (`Connection: upgrade` plus `Upgrade: x`), if any.
pub(super) fn upgrade_protocol(fields: &RequestFields) -> Option<Bytes> {
    let wants_upgrade = fields
        .get_all(CONNECTION)
        .flat_map(http1::tokens)
        .any(|t| t.eq_ignore_ascii_case(b"upgrade"));
    if wants_upgrade {
        fields.get("upgrade").map(Bytes::copy_from_slice)
    } else {
        None
    }
}

/// Puts the fields the strategy chose for this response (`add-response-header`, e.g. a
/// `Set-Cookie`) on it, after the backend's own (a backend's `Set-Cookie` stays). `fields` is
/// left empty. Nothing to do, and nothing done, for the strategies that put none.
pub(super) fn add_strategy_fields(response: &mut Response<ProxyBody>, fields: &mut ResponseFields) {
    if fields.is_empty() {
        return;
    }
    let headers = response.headers_mut();
    for (name, value) in fields.drain(..) {
        headers.append(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    /// `pairs` as the fields of an HTTP/1.1 head, as `server::h1` parses them.
    fn headers(pairs: &[(&str, &str)]) -> RequestFields {
        let mut wire = String::from("GET / HTTP/1.1\r\n");
        for (name, value) in pairs {
            wire.push_str(&format!("{name}: {value}\r\n"));
        }
        wire.push_str("\r\n");
        let wire = bytes::Bytes::from(wire);
        let mut slots = [httparse::EMPTY_HEADER; 16];
        let mut parsed = httparse::Request::new(&mut slots);
        assert!(parsed.parse(&wire).unwrap().is_complete());
        let spans = crate::http1::FieldSpans::record(&wire, parsed.headers);
        RequestFields::Head { head: wire, spans }
    }

    #[test]
    fn untrusted_peer_cannot_spoof_its_address() {
        let h = headers(&[("x-forwarded-for", "6.6.6.6")]);
        let peer = "203.0.113.9".parse().unwrap();
        assert_eq!(client_ip(peer, false, &h, &nets(&["10.0.0.0/8"])), peer);
    }

    #[test]
    fn right_most_untrusted_entry_is_the_client() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 198.51.100.7"),
            ("x-forwarded-for", "10.1.1.1"),
        ]);
        let ip = client_ip("10.0.0.2".parse().unwrap(), true, &h, &trusted);
        assert_eq!(ip, "198.51.100.7".parse::<IpAddr>().unwrap());
    }

    /// The header lines [`write_upstream`] writes for `headers`.
    fn upstream(headers: &RequestFields, peer: &str, trusted: bool, host: Option<&str>) -> String {
        let mut head = RequestHeadBuilder::new(&http::Method::GET, "/");
        let forwarding = Forwarding {
            peer: peer.parse().unwrap(),
            peer_trusted: trusted,
            secure: false,
            host: host.map(str::as_bytes),
            fallback_host: "backend:80",
            upgrade: None,
        };
        write_upstream(&mut head, headers, &forwarding);
        let outgoing = head.finish(&http_body_util::Empty::<bytes::Bytes>::new());
        let text = String::from_utf8(outgoing.bytes.to_vec()).unwrap();
        text.trim_start_matches("GET / HTTP/1.1\r\n")
            .trim_end()
            .to_string()
    }

    #[test]
    fn forwarded_headers_replace_or_extend() {
        let h = headers(&[("x-forwarded-for", "6.6.6.6"), ("accept", "*/*")]);
        assert_eq!(
            upstream(&h, "127.0.0.1", false, Some("example.com")),
            "accept: */*\r\nhost: example.com\r\nx-forwarded-for: 127.0.0.1\r\n\
             x-forwarded-proto: http\r\nx-forwarded-host: example.com\r\n\
             forwarded: for=127.0.0.1;proto=http;host=\"example.com\""
        );
        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "5.6.7.8"),
            ("x-forwarded-proto", "https"),
        ]);
        assert_eq!(
            upstream(&h, "::1", true, None),
            "host: backend:80\r\nx-forwarded-for: 1.2.3.4, 5.6.7.8, ::1\r\n\
             x-forwarded-proto: https\r\nforwarded: for=\"[::1]\";proto=http"
        );
    }

    #[test]
    fn hop_by_hop_headers_stay_behind() {
        let h = headers(&[
            ("connection", "x-foo, keep-alive"),
            ("x-foo", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("proxy-connection", "keep-alive"),
            ("x-bar", "2"),
        ]);
        let lines = upstream(&h, "10.0.0.1", false, Some("h"));
        assert!(lines.starts_with("x-bar: 2\r\nhost: h\r\n"), "{lines}");
    }

    #[test]
    fn the_transfer_codings_go_with_the_framing() {
        let h = headers(&[
            ("transfer-encoding", "gzip"),
            ("x-a", "1"),
            ("Transfer-Encoding", "chunked"),
        ]);
        let mut head = RequestHeadBuilder::new(&http::Method::POST, "/");
        let forwarding = Forwarding {
            peer: "10.0.0.1".parse().unwrap(),
            peer_trusted: false,
            secure: false,
            host: Some(b"h"),
            fallback_host: "backend:80",
            upgrade: None,
        };
        write_upstream(&mut head, &h, &forwarding);
        let outgoing = head.finish(&http_body_util::Full::new(bytes::Bytes::from("x")));
        let text = String::from_utf8(outgoing.bytes.to_vec()).unwrap();
        assert!(
            text.starts_with("POST / HTTP/1.1\r\nx-a: 1\r\nhost: h\r\n"),
            "{text}"
        );
        assert!(
            text.ends_with("\r\ntransfer-encoding: gzip, chunked\r\n\r\n"),
            "{text}"
        );
        assert_eq!(text.matches("transfer-encoding").count(), 1, "{text}");
    }

    #[test]
    fn ip_addresses_format_as_std_does() {
        for ip in [
            "0.0.0.0",
            "1.2.3.4",
            "10.200.30.255",
            "255.255.255.255",
            "::1",
            "2001:db8::7:1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut buf = [0u8; 48];
            assert_eq!(format_ip(ip, &mut buf), ip.to_string().as_bytes());
        }
    }
}
