use super::*;
use lbhost_sdk::testing::{backend, Harness, TestRequest};

/// Backends 0 and 1 in zone a (this node's), 2 and 3 in zone b.
fn zones() -> Vec<Backend> {
    (0..4)
        .map(|i| {
            backend(&format!("10.9.0.{i}:80")).with_label("zone", if i < 2 { "a" } else { "b" })
        })
        .collect()
}

fn harness(params: &[(&str, &str)], backends: Vec<Backend>) -> Harness<Locality> {
    let mut h = Harness::new(params).unwrap();
    h.set_backends(backends);
    h
}

/// Share of 10,000 requests that went to each backend.
fn shares(h: &mut Harness<Locality>) -> Vec<f64> {
    let mut counts = [0u32; 4];
    for _ in 0..10_000 {
        counts[h.select(&TestRequest::default()).unwrap()] += 1;
    }
    counts.iter().map(|&c| f64::from(c) / 10_000.0).collect()
}

#[test]
fn a_healthy_zone_keeps_all_its_traffic_in_even_shares() {
    let mut h = harness(&[("local", "a")], zones());
    assert_eq!(shares(&mut h), [0.5, 0.5, 0.0, 0.0]);
}

#[test]
fn traffic_spills_over_gradually_below_the_minimum_share() {
    // One of two local backends down: healthy share 0.5, under 0.7: 0.5 / 0.7 stays local.
    let mut backends = zones();
    backends[0] = backends[0].clone().down();
    let mut h = harness(&[("local", "a")], backends.clone());
    let s = shares(&mut h);
    assert!((s[1] - 0.5 / 0.7).abs() < 0.02, "{s:?}");
    assert!((s[2] - s[3]).abs() < 0.02, "{s:?}");
    // With a minimum of 0.5 the zone keeps everything.
    let mut h = harness(
        &[("local", "a"), ("min_local_share", "0.5")],
        backends.clone(),
    );
    assert_eq!(shares(&mut h), [0.0, 1.0, 0.0, 0.0]);
    // Both down: everything goes out; and back when they return.
    backends[1] = backends[1].clone().down();
    h.set_backends(backends);
    assert_eq!(shares(&mut h), [0.0, 0.0, 0.5, 0.5]);
    h.set_backends(zones());
    assert_eq!(shares(&mut h), [0.5, 0.5, 0.0, 0.0]);
}

#[test]
fn a_node_of_a_zone_without_backends_uses_the_others_and_retries_cross_over() {
    let mut h = harness(&[("local", "c")], zones());
    assert_eq!(shares(&mut h), [0.25, 0.25, 0.25, 0.25]);
    let mut h = harness(&[("local", "a"), ("label", "zone")], zones());
    h.exclude = vec![0, 1];
    let chosen = h.select(&TestRequest::default()).unwrap();
    assert!(chosen >= 2, "{chosen}");
    h.exclude = vec![0, 1, 2, 3];
    assert_eq!(h.select(&TestRequest::default()), None);
}

#[test]
fn weights_count_in_the_healthy_share_and_the_rotation() {
    let mut backends = zones();
    backends[0] = backends[0].clone().weight(3);
    let mut h = harness(&[("local", "a")], backends.clone());
    let s = shares(&mut h);
    assert!((s[0] - 0.75).abs() < 0.001, "{s:?}");
    // The heavy local backend down: healthy share 1/4, so 0.25 / 0.7 stays local.
    backends[0] = backends[0].clone().down();
    h.set_backends(backends);
    let s = shares(&mut h);
    assert!((s[1] - 0.25 / 0.7).abs() < 0.02, "{s:?}");
}

#[test]
fn bad_parameters_are_refused_with_their_name() {
    for (params, key) in [
        (vec![], "local"),
        (
            vec![("local", "a"), ("min_local_share", "0")],
            "min_local_share",
        ),
        (
            vec![("local", "a"), ("min_local_share", "1.5")],
            "min_local_share",
        ),
        (vec![("local", "a"), ("label", "")], "label"),
        (vec![("local", "a"), ("zone", "a")], "zone"),
    ] {
        let err = Harness::<Locality>::new(&params).err().unwrap();
        assert!(
            err.contains(&format!("strategy_config.{key}")),
            "{key}: {err}"
        );
    }
}
