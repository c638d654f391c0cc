//! Proxy header semantics: client address, hop-by-hop removal, `X-Forwarded-*` and `Forwarded`.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

/// Headers that describe one connection, not the message; never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// `::ffff:a.b.c.d` is `a.b.c.d`.
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// Whether `ip` is one of the configured trusted proxies.
pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    !trusted.is_empty() && trusted.iter().any(|net| net.contains(&ip))
}

/// The client's address. A peer that is not a trusted proxy is the client, whatever headers it
/// sends. Behind trusted proxies, the right-most `X-Forwarded-For` entry that is not itself a
/// trusted proxy is the client.
pub fn client_ip(
    peer: IpAddr,
    peer_trusted: bool,
    headers: &HeaderMap,
    trusted: &[IpNet],
) -> IpAddr {
    if !peer_trusted {
        return peer;
    }
    let mut client = peer;
    let entries: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
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

/// Removes hop-by-hop headers, including those the `Connection` header names.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Usually one Connection value: take it (a reference-counted clone) without collecting.
    let mut values = headers.get_all(header::CONNECTION).iter();
    let first = values.next().cloned();
    let more: Vec<HeaderValue> = values.cloned().collect();
    for value in first.iter().chain(&more) {
        let Ok(text) = value.to_str() else {
            continue;
        };
        for name in text.split(',').map(str::trim) {
            // By &str: looked up without allocating; a token that is no header name matches none.
            if !name.is_empty() {
                headers.remove(name);
            }
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(&PROXY_CONNECTION);
}

/// Sets `X-Forwarded-For/-Proto/-Host` and `Forwarded` for the backend. From a trusted proxy the
/// existing values are kept and extended; from anyone else they are replaced.
pub fn set_forwarded(
    headers: &mut HeaderMap,
    peer: IpAddr,
    peer_trusted: bool,
    host: Option<&HeaderValue>,
) {
    use std::fmt::Write as _;
    let mut xff = String::with_capacity(48);
    if let Some(prior) = headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        if peer_trusted && !prior.trim().is_empty() {
            xff.push_str(prior);
            xff.push_str(", ");
        }
    }
    let _ = write!(xff, "{peer}");
    if let Some(value) = header_value(xff) {
        headers.insert(&X_FORWARDED_FOR, value);
    }
    if !(peer_trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    if !(peer_trusted && headers.contains_key(&X_FORWARDED_HOST)) {
        match host {
            Some(host) => {
                headers.insert(&X_FORWARDED_HOST, host.clone());
            }
            None => {
                headers.remove(&X_FORWARDED_HOST);
            }
        }
    }
    let mut forwarded = String::with_capacity(64);
    if let Some(prior) = headers.get(header::FORWARDED).and_then(|v| v.to_str().ok()) {
        if peer_trusted {
            forwarded.push_str(prior);
            forwarded.push_str(", ");
        }
    }
    let _ = match peer {
        IpAddr::V4(_) => write!(forwarded, "for={peer};proto=http"),
        IpAddr::V6(_) => write!(forwarded, "for=\"[{peer}]\";proto=http"),
    };
    if let Some(host) = host.and_then(|h| h.to_str().ok()) {
        forwarded.push_str(";host=\"");
        forwarded.extend(host.chars().filter(|c| !matches!(c, '"' | '\\')));
        forwarded.push('"');
    }
    if let Some(value) = header_value(forwarded) {
        headers.insert(header::FORWARDED, value);
    }
}

/// `text` as a header value, taking its buffer instead of copying it; `None` if it is not a
/// valid value.
fn header_value(text: String) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(bytes::Bytes::from(text)).ok()
}

/// The protocol a client asks to upgrade to (`Connection: upgrade` plus `Upgrade: x`), if any.
pub fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let wants_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if wants_upgrade {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
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

    #[test]
    fn connection_named_headers_are_removed() {
        let mut h = headers(&[
            ("connection", "x-foo, keep-alive"),
            ("x-foo", "1"),
            ("x-bar", "2"),
            ("te", "trailers"),
        ]);
        remove_hop_by_hop(&mut h);
        assert!(h.get("x-foo").is_none() && h.get("te").is_none() && h.get("connection").is_none());
        assert_eq!(h.get("x-bar").unwrap(), "2");
    }

    #[test]
    fn forwarded_headers_replace_or_extend() {
        let host = HeaderValue::from_static("example.com");
        let mut h = headers(&[("x-forwarded-for", "6.6.6.6")]);
        set_forwarded(&mut h, "127.0.0.1".parse().unwrap(), false, Some(&host));
        assert_eq!(h.get("x-forwarded-for").unwrap(), "127.0.0.1");
        assert_eq!(
            h.get("forwarded").unwrap(),
            "for=127.0.0.1;proto=http;host=\"example.com\""
        );
        let mut h = headers(&[("x-forwarded-for", "1.2.3.4")]);
        set_forwarded(&mut h, "::1".parse().unwrap(), true, None);
        assert_eq!(h.get("x-forwarded-for").unwrap(), "1.2.3.4, ::1");
        assert_eq!(h.get("forwarded").unwrap(), "for=\"[::1]\";proto=http");
    }
}
