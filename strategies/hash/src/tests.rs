use super::*;
use lbhost_sdk::testing::{backend, Harness, TestRequest};
use lbhost_sdk::Backend;

fn pool(n: usize) -> Vec<Backend> {
    (0..n)
        .map(|i| backend(&format!("10.6.0.{i}:8080")))
        .collect()
}

fn harness(params: &[(&str, &str)], backends: Vec<Backend>) -> Harness<Hash> {
    let mut h = Harness::new(params).unwrap();
    h.set_backends(backends);
    h
}

/// A request carrying key number `n`.
type Keyed = fn(usize) -> TestRequest;

#[test]
fn every_key_source_gives_one_backend_per_key() {
    let cases: [(&str, Keyed); 4] = [
        ("header:x-user", |n| {
            TestRequest::default().with_header("X-User", &format!("u{n}"))
        }),
        ("cookie:sid", |n| {
            TestRequest::default().with_cookie("sid", &format!("s{n}"))
        }),
        ("query:id", |n| {
            TestRequest::default().with_query(&format!("page=2&id={n}"))
        }),
        ("path", |n| {
            TestRequest::default().with_path(&format!("/item/{n}"))
        }),
    ];
    for (key, request) in cases {
        let mut h = harness(&[("key", key)], pool(3));
        let mut counts = [0u32; 3];
        for n in 0..3000 {
            let first = h.select(&request(n)).unwrap();
            for _ in 0..3 {
                assert_eq!(h.select(&request(n)), Some(first), "{key}: key {n} moved");
            }
            counts[first] += 1;
        }
        assert!(
            counts.iter().all(|&c| (850..1150).contains(&c)),
            "{key}: {counts:?}"
        );
    }
}

#[test]
fn nodes_agree_and_only_a_leaving_backends_keys_move() {
    let request = |n: usize| TestRequest::default().with_header("x-user", &format!("u{n}"));
    let forward = pool(5);
    let mut shuffled = forward.clone();
    shuffled.rotate_right(2);
    let mut a = harness(&[("key", "header:x-user")], forward.clone());
    let mut b = harness(&[("key", "header:x-user")], shuffled.clone());
    let before: Vec<&str> = (0..10_000)
        .map(|n| forward[a.select(&request(n)).unwrap()].address.as_str())
        .collect();
    for (n, was) in before.iter().enumerate() {
        assert_eq!(shuffled[b.select(&request(n)).unwrap()].address, *was);
    }
    let mut without = forward.clone();
    let gone = without.remove(1).address;
    a.set_backends(without.clone());
    for (n, was) in before.iter().enumerate() {
        let now = without[a.select(&request(n)).unwrap()].address.as_str();
        if *was != gone {
            assert_eq!(now, *was, "key {n} moved though its backend stayed");
        }
    }
}

#[test]
fn without_the_key_round_robin_rotates_by_weight() {
    let mut h = harness(&[("key", "cookie:sid")], pool(3));
    let picks: Vec<_> = (0..6).map(|_| h.select(&TestRequest::default())).collect();
    assert_eq!(
        picks,
        [Some(0), Some(1), Some(2), Some(0), Some(1), Some(2)]
    );
    // An empty value is no key either.
    let empty = TestRequest::default().with_cookie("sid", "");
    assert_eq!(h.select(&empty), Some(0));
    let mut weighted = harness(
        &[("key", "cookie:sid"), ("fallback", "round_robin")],
        vec![backend("a:1").weight(2), backend("b:1")],
    );
    let picks: Vec<_> = (0..3)
        .map(|_| weighted.select(&TestRequest::default()))
        .collect();
    assert_eq!(picks, [Some(0), Some(1), Some(0)]);
}

#[test]
fn without_the_key_least_request_avoids_the_busiest() {
    let mut h = harness(
        &[("key", "query:id"), ("fallback", "least_request")],
        pool(3),
    );
    h.in_flight = vec![2, 9, 3];
    for _ in 0..200 {
        assert_ne!(h.select(&TestRequest::default()), Some(1));
    }
    // Keyed requests still hash, busy or not.
    let keyed = TestRequest::default().with_query("id=7");
    let home = h.select(&keyed);
    h.in_flight = vec![50, 50, 50];
    assert_eq!(h.select(&keyed), home);
}

#[test]
fn never_down_or_excluded() {
    for fallback in ["round_robin", "least_request"] {
        let mut backends = pool(3);
        backends[0] = backends[0].clone().down();
        let mut h = harness(
            &[("key", "header:x-user"), ("fallback", fallback)],
            backends,
        );
        h.exclude = vec![2];
        for n in 0..100 {
            let keyed = TestRequest::default().with_header("x-user", &n.to_string());
            assert_eq!(h.select(&keyed), Some(1));
            assert_eq!(h.select(&TestRequest::default()), Some(1));
        }
        h.exclude = vec![1, 2];
        assert_eq!(h.select(&TestRequest::default()), None);
    }
}

#[test]
fn bad_parameters_are_refused_with_their_name() {
    for (params, says) in [
        (&[][..], "required"),
        (&[("key", "header")][..], "expected"),
        (
            &[("key", "path"), ("fallback", "random")][..],
            "least_request",
        ),
        (&[("key", "path"), ("header", "x")][..], "unknown"),
    ] {
        let err = Harness::<Hash>::new(params).err().unwrap();
        let name = params.last().map_or("key", |p| p.0);
        assert!(err.contains(&format!("strategy_config.{name}")), "{err}");
        assert!(err.contains(says), "{err}");
    }
}
