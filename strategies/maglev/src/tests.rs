use super::*;
use lbhost_sdk::hash::mix64;
use lbhost_sdk::testing::{backend, Harness, TestRequest};
use lbhost_sdk::Backend;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

fn pool(n: usize) -> Vec<Backend> {
    (0..n)
        .map(|i| backend(&format!("10.5.0.{i}:8080")))
        .collect()
}

fn harness(params: &[(&str, &str)], backends: Vec<Backend>) -> Harness<Maglev> {
    let mut h = Harness::new(params).unwrap();
    h.set_backends(backends);
    h
}

fn user(n: usize) -> TestRequest {
    TestRequest::default().with_header("x-user", &format!("user-{n}"))
}

fn client(n: u32) -> TestRequest {
    TestRequest::from_ip(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n)))
}

#[test]
fn one_backend_per_key_and_even_shares() {
    let mut h = harness(&[("key", "header:x-user")], pool(4));
    let mut counts = [0u32; 4];
    for n in 0..20_000 {
        let first = h.select(&user(n)).unwrap();
        assert_eq!(h.select(&user(n).with_cookie("other", "x")), Some(first));
        counts[first] += 1;
    }
    for c in counts {
        assert!((4_700..5_300).contains(&c), "{counts:?}");
    }
}

#[test]
fn removing_one_of_ten_backends_moves_at_most_12_percent_of_the_keys() {
    const KEYS: usize = 100_000;
    let mut h = harness(&[("key", "header:x-user")], pool(10));
    let before: Vec<String> = (0..KEYS)
        .map(|n| pool(10)[h.select(&user(n)).unwrap()].address.clone())
        .collect();
    // Removed from the config (the set shrinks), and, separately, down (the set keeps it).
    let mut removed = pool(10);
    removed.remove(3);
    let mut down = pool(10);
    down[3] = down[3].clone().down();
    for after in [removed, down] {
        h.set_backends(after.clone());
        let moved = (0..KEYS)
            .filter(|&n| after[h.select(&user(n)).unwrap()].address != before[n])
            .count() as f64
            / KEYS as f64;
        // The removed backend's tenth must move; Maglev moves little more.
        assert!(
            (0.09..=0.12).contains(&moved),
            "{moved:.4} of the keys moved"
        );
    }
}

#[test]
fn nodes_agree_whatever_the_order_of_their_backends() {
    let forward = pool(6);
    let mut shuffled = forward.clone();
    shuffled.reverse();
    shuffled.swap(1, 4);
    let mut a = harness(&[], forward.clone());
    let mut b = harness(&[], shuffled.clone());
    for n in 0..10_000 {
        let (ia, ib) = (a.select(&client(n)).unwrap(), b.select(&client(n)).unwrap());
        assert_eq!(forward[ia].address, shuffled[ib].address, "client {n}");
    }
}

#[test]
fn a_missing_key_falls_back_to_the_client_ip() {
    let mut by_cookie = harness(&[("key", "cookie:sid")], pool(5));
    let mut by_ip = harness(&[], pool(5));
    for n in 0..500 {
        assert_eq!(by_cookie.select(&client(n)), by_ip.select(&client(n)));
    }
}

#[test]
fn bounded_load_keeps_every_backend_within_c_times_the_average_plus_one() {
    // 40 clients, half of the requests on one hot key: without a bound its backend would hold
    // about half of everything in flight.
    const C: f64 = 1.25;
    let request = |n: usize| {
        if mix64(n as u64).is_multiple_of(2) {
            user(0)
        } else {
            user(n % 997)
        }
    };
    let latency =
        |_: usize, at: Duration| Duration::from_micros(5_000 + at.as_micros() as u64 % 3_000);
    let peak_over_bound = |params: &[(&str, &str)]| {
        let mut h = harness(params, pool(8));
        let served = h.closed_loop(40, 20_000, latency, request);
        served
            .iter()
            .map(|s| {
                let total: u32 = s.in_flight.iter().sum();
                let bound = C * f64::from(total) / 8.0 + 1.0;
                f64::from(s.in_flight[s.backend]) - bound
            })
            .fold(f64::MIN, f64::max)
    };
    let bounded = peak_over_bound(&[("key", "header:x-user"), ("bounded_load", "1.25")]);
    assert!(bounded <= 0.0, "a backend went {bounded:.2} over the bound");
    let unbounded = peak_over_bound(&[("key", "header:x-user")]);
    assert!(
        unbounded > 5.0,
        "the hot key should overload its backend: {unbounded:.2}"
    );
}

#[test]
fn never_down_or_excluded_and_none_when_nothing_is_left() {
    for params in [&[][..], &[("bounded_load", "1.5")][..]] {
        let mut backends = pool(3);
        backends[0] = backends[0].clone().down();
        let mut h = harness(params, backends);
        h.exclude = vec![1];
        for n in 0..200 {
            assert_eq!(h.select(&client(n)), Some(2));
        }
        h.exclude = vec![1, 2];
        assert_eq!(h.select(&client(0)), None);
    }
}

#[test]
fn bad_parameters_are_refused_with_their_name() {
    for (key, value, says) in [
        ("table_size", "65536", "65537"),
        ("table_size", "97", "101"),
        ("table_size", "2000003", "between"),
        ("bounded_load", "0.9", "at least 1"),
        ("bounded_load", "lots", "bounded_load"),
        ("key", "header:", "name"),
        ("key", "body", "client_ip"),
        ("hash_on", "path", "unknown"),
    ] {
        let err = Harness::<Maglev>::new(&[(key, value)]).err().unwrap();
        assert!(err.contains(&format!("strategy_config.{key}")), "{err}");
        assert!(err.contains(says), "{err}");
    }
    assert!(Harness::<Maglev>::new(&[("table_size", "101"), ("key", "path")]).is_ok());
}
