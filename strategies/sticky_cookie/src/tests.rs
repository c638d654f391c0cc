use super::*;
use lbhost_sdk::testing::{backend, Harness, TestRequest};
use lbhost_sdk::Backend;

fn pool(n: usize) -> Vec<Backend> {
    (0..n).map(|i| backend(&format!("10.7.0.{i}:80"))).collect()
}

fn harness(params: &[(&str, &str)], n: usize) -> Harness<StickyCookie> {
    let mut h = Harness::new(params).unwrap();
    h.set_backends(pool(n));
    h
}

/// The value the last response's `Set-Cookie` gave cookie `name`, and its attributes.
fn set_cookie(h: &Harness<StickyCookie>, name: &str) -> Option<(String, String)> {
    let [(field, value)] = h.response_headers.as_slice() else {
        assert!(h.response_headers.is_empty(), "{:?}", h.response_headers);
        return None;
    };
    assert_eq!(field, "set-cookie");
    let (pair, attributes) = value.split_once(';').unwrap_or((value, ""));
    let (n, v) = pair.split_once('=').unwrap();
    assert_eq!(n, name);
    Some((v.to_string(), attributes.trim().to_string()))
}

#[test]
fn the_first_response_pins_and_the_pin_is_honoured_after() {
    let mut h = harness(&[], 3);
    let first = h.select(&TestRequest::default()).unwrap();
    let (pin, attributes) = set_cookie(&h, "lbsticky").unwrap();
    assert_eq!(attributes, "Path=/; HttpOnly; SameSite=Lax");
    assert_eq!(pin.len(), 16);
    assert!(!pin.contains("10.7"), "no address in {pin}");
    let pinned = TestRequest::default().with_cookie("lbsticky", &pin);
    for _ in 0..50 {
        assert_eq!(h.select(&pinned), Some(first));
        assert_eq!(
            set_cookie(&h, "lbsticky"),
            None,
            "no new cookie once pinned"
        );
    }
    // New clients still spread over every backend.
    let mut seen = [false; 3];
    for _ in 0..6 {
        seen[h.select(&TestRequest::default()).unwrap()] = true;
        assert!(set_cookie(&h, "lbsticky").is_some());
    }
    assert_eq!(seen, [true; 3]);
}

#[test]
fn pins_agree_across_instances_and_orders_and_depend_on_the_salt() {
    let mut a = harness(&[], 3);
    let chosen = a.select(&TestRequest::default()).unwrap();
    let (pin, _) = set_cookie(&a, "lbsticky").unwrap();
    // Another node with the backends in another order reads the same pin as the same backend.
    let mut b = Harness::<StickyCookie>::new(&[]).unwrap();
    let mut reversed = pool(3);
    reversed.reverse();
    b.set_backends(reversed);
    let pinned = TestRequest::default().with_cookie("lbsticky", &pin);
    assert_eq!(b.select(&pinned), Some(2 - chosen));
    // With a salt the same backend gets another pin.
    let mut salted = harness(&[("salt", "s3cret")], 3);
    salted.select(&pinned).unwrap();
    let (salted_pin, _) = set_cookie(&salted, "lbsticky").expect("not a pin here: re-pinned");
    assert_ne!(salted_pin, pin);
}

#[test]
fn a_gone_backend_re_pins_the_client() {
    let mut h = harness(&[], 3);
    let first = h.select(&TestRequest::default()).unwrap();
    let (pin, _) = set_cookie(&h, "lbsticky").unwrap();
    let pinned = TestRequest::default().with_cookie("lbsticky", &pin);
    // Down: another backend, and a new pin for it.
    let mut backends = pool(3);
    backends[first] = backends[first].clone().down();
    h.set_backends(backends);
    let second = h.select(&pinned).unwrap();
    assert_ne!(second, first);
    let (new_pin, _) = set_cookie(&h, "lbsticky").unwrap();
    assert_ne!(new_pin, pin);
    // Removed altogether: the same.
    let mut remaining = pool(3);
    remaining.remove(first);
    h.set_backends(remaining);
    assert!(h.select(&pinned).is_some());
    assert!(set_cookie(&h, "lbsticky").is_some());
    // Already tried for this request (a retry): re-pinned to another one.
    h.set_backends(pool(3));
    h.exclude = vec![first as u32];
    assert_ne!(h.select(&pinned), Some(first));
    assert!(set_cookie(&h, "lbsticky").is_some());
    // Nothing left: no backend, no cookie.
    h.set_backends(vec![backend("10.7.0.9:80").down()]);
    h.exclude.clear();
    assert_eq!(h.select(&pinned), None);
    assert!(h.response_headers.is_empty());
}

#[test]
fn garbage_pins_are_ignored() {
    let mut h = harness(&[], 2);
    for value in [
        "",
        "zz",
        "0123456789abcdef",
        "10.7.0.1:80",
        "ffffffffffffffffff",
    ] {
        let request = TestRequest::default().with_cookie("lbsticky", value);
        assert!(h.select(&request).is_some());
        assert!(
            set_cookie(&h, "lbsticky").is_some(),
            "{value:?}: pinned anew"
        );
    }
}

#[test]
fn attributes_follow_the_parameters() {
    let mut h = harness(
        &[
            ("cookie", "route"),
            ("max_age", "1h"),
            ("secure", "true"),
            ("http_only", "false"),
            ("same_site", "none"),
            ("path", "/app"),
        ],
        2,
    );
    h.select(&TestRequest::default()).unwrap();
    let (_, attributes) = set_cookie(&h, "route").unwrap();
    assert_eq!(attributes, "Path=/app; Max-Age=3600; Secure; SameSite=None");
    let mut h = harness(&[("max_age", "600")], 2);
    h.select(&TestRequest::default()).unwrap();
    assert!(set_cookie(&h, "lbsticky")
        .unwrap()
        .1
        .contains("Max-Age=600"));
}

#[test]
fn least_request_fallback_places_new_clients_by_load() {
    let mut h = harness(&[("fallback", "least_request")], 3);
    h.in_flight = vec![9, 0, 0];
    for _ in 0..50 {
        // Power of two choices: the busy backend loses every draw it is in.
        assert_ne!(h.select(&TestRequest::default()), Some(0));
    }
}

#[test]
fn bad_parameters_are_refused_with_their_name() {
    for (key, value) in [
        ("cookie", "a b"),
        ("cookie", ""),
        ("max_age", "0"),
        ("max_age", "forever"),
        ("secure", "yes"),
        ("same_site", "none"),
        ("same_site", "loose"),
        ("path", "app"),
        ("path", "/a;b"),
        ("fallback", "random"),
        ("domain", "example.com"),
    ] {
        let err = Harness::<StickyCookie>::new(&[(key, value)]).err().unwrap();
        assert!(
            err.contains(&format!("strategy_config.{key}")),
            "{key}: {err}"
        );
    }
}
