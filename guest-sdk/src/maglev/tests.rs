use super::*;
use crate::testing::backend;
use crate::Backend;

fn pool(n: usize) -> Vec<Backend> {
    (0..n)
        .map(|i| backend(&format!("10.2.0.{i}:8080")))
        .collect()
}

fn view<'a>(set: &'a BackendSet, in_flight: &'a [u32], exclude: &'a [u32]) -> Backends<'a> {
    Backends {
        set,
        sequence: 0,
        random: 0,
        in_flight,
        latency_ewma_us: &[],
        now_ms: None,
        exclude,
    }
}

/// Slots owned per backend index.
fn counts(table: &MaglevTable, n: usize) -> Vec<usize> {
    let mut counts = vec![0; n];
    for &owner in &table.slots {
        counts[owner as usize] += 1;
    }
    counts
}

#[test]
fn equal_weights_own_equal_shares_to_one_slot() {
    let set = BackendSet::new(pool(7));
    let table = MaglevTable::new(&set, DEFAULT_TABLE_SIZE);
    assert_eq!(table.size(), 65_537);
    let counts = counts(&table, 7);
    let (min, max) = (counts.iter().min(), counts.iter().max());
    assert!(max.zip(min).is_some_and(|(a, b)| a - b <= 1), "{counts:?}");
}

#[test]
fn weights_shape_the_shares_and_zero_or_down_owns_nothing() {
    let set = BackendSet::new(vec![
        backend("a:1").weight(1),
        backend("b:1").weight(3),
        backend("c:1").weight(0),
        backend("d:1").down(),
    ]);
    let table = MaglevTable::new(&set, DEFAULT_TABLE_SIZE);
    let counts = counts(&table, 4);
    assert_eq!(counts[2] + counts[3], 0);
    let heavy = counts[1] as f64 / table.size() as f64;
    assert!((heavy - 0.75).abs() < 0.001, "{counts:?}");
}

#[test]
fn the_table_depends_on_the_backend_keys_not_on_their_order() {
    let forward = pool(5);
    let mut shuffled = forward.clone();
    shuffled.rotate_left(2);
    shuffled.swap(0, 3);
    let (a, b) = (BackendSet::new(forward), BackendSet::new(shuffled));
    let (ta, tb) = (
        MaglevTable::new(&a, DEFAULT_TABLE_SIZE),
        MaglevTable::new(&b, DEFAULT_TABLE_SIZE),
    );
    for slot in 0..ta.size() {
        assert_eq!(
            a.all()[ta.slots[slot] as usize].address,
            b.all()[tb.slots[slot] as usize].address
        );
    }
}

#[test]
fn the_size_is_a_prime_of_at_least_100_slots_per_backend() {
    assert_eq!(MaglevTable::size_for(DEFAULT_TABLE_SIZE, 3), 65_537);
    assert_eq!(MaglevTable::size_for(DEFAULT_TABLE_SIZE, 1000), 100_003);
    assert_eq!(MaglevTable::size_for(101, 1), 101);
    assert_eq!(MaglevTable::size_for(7, 1), 101);
    assert_eq!(
        MaglevTable::size_for(DEFAULT_TABLE_SIZE, 1 << 20),
        MAX_TABLE_SIZE
    );
    assert!(is_prime(MAX_TABLE_SIZE));
    assert!(is_prime(65_537) && is_prime(2) && is_prime(3) && is_prime(5));
    assert!(!is_prime(65_535) && !is_prime(1) && !is_prime(0) && !is_prime(25));
    assert_eq!(next_prime(65_536), 65_537);
    // A backend going down keeps the size: the set's length counts.
    let mut backends = pool(700);
    let full = MaglevTable::new(&BackendSet::new(backends.clone()), DEFAULT_TABLE_SIZE);
    backends[0].eligible = false;
    let reduced = MaglevTable::new(&BackendSet::new(backends), DEFAULT_TABLE_SIZE);
    assert_eq!(full.size(), reduced.size());
    assert_eq!(full.size(), 70_001);
}

#[test]
fn lookups_are_stable_and_skip_excluded_backends() {
    let set = BackendSet::new(pool(4));
    let table = MaglevTable::new(&set, DEFAULT_TABLE_SIZE);
    for key in 0..1000u64 {
        let first = table.lookup(key, &view(&set, &[], &[])).unwrap();
        assert_eq!(table.lookup(key, &view(&set, &[], &[])), Some(first));
        let exclude = [first as u32];
        let second = table.lookup(key, &view(&set, &[], &exclude)).unwrap();
        assert_ne!(second, first);
    }
    assert_eq!(table.lookup(1, &view(&set, &[], &[0, 1, 2, 3])), None);
    let empty = MaglevTable::new(&BackendSet::new(vec![backend("a:1").down()]), 101);
    assert_eq!(empty.size(), 0);
    assert_eq!(empty.lookup(1, &view(&set, &[], &[])), None);
}

#[test]
fn bounded_lookups_stay_under_the_bound() {
    let set = BackendSet::new(pool(4));
    let table = MaglevTable::new(&set, DEFAULT_TABLE_SIZE);
    let key = 42;
    let home = table.lookup(key, &view(&set, &[], &[])).unwrap();
    // Idle: the key's own backend (bound ⌈1.25 × 1/4⌉ = 1).
    assert_eq!(
        table.lookup_bounded(key, &view(&set, &[0; 4], &[]), 1.25),
        Some(home)
    );
    // Home holds 3 of 4 in flight: bound ⌈1.25 × 5/4⌉ = 2, so the key walks on.
    let mut in_flight = [0u32; 4];
    in_flight[home] = 3;
    in_flight[(home + 1) % 4] = 1;
    let other = table
        .lookup_bounded(key, &view(&set, &in_flight, &[]), 1.25)
        .unwrap();
    assert_ne!(other, home);
    assert!(in_flight[other] < 2);
    // Everything excluded but the overloaded home: it is still chosen.
    let exclude: Vec<u32> = (0..4).filter(|&i| i != home as u32).collect();
    assert_eq!(
        table.lookup_bounded(key, &view(&set, &in_flight, &exclude), 1.25),
        Some(home)
    );
}
