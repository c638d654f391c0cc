//! Power of two choices: two candidates drawn at random, the cheaper one wins.

use crate::hash::{mix64, scale};
use crate::Backends;

/// Draws two distinct candidates (see [`Backends::is_candidate`]) uniformly at random from the
/// host's per-call random bits and returns the one with the lower `cost`, the first drawn on a
/// tie. With one candidate, that one; with none, `None`.
///
/// Two random choices avoid both the herd that "always the least loaded" sends to one backend
/// between load updates and the imbalance of one random choice (Mitzenmacher, "The Power of Two
/// Choices in Randomized Load Balancing"). Calls `cost` at most twice; O(1) unless backends are
/// excluded (a retry).
pub fn power_of_two_choices<C: PartialOrd>(
    backends: &Backends<'_>,
    mut cost: impl FnMut(usize) -> C,
) -> Option<usize> {
    // On a retry, the candidates left; otherwise every eligible backend is one.
    let remaining: Vec<usize>;
    let candidates: &[usize] = if backends.has_exclusions() {
        remaining = backends.candidates().collect();
        &remaining
    } else {
        backends.set().eligible()
    };
    let n = candidates.len() as u64;
    match n {
        0 => None,
        1 => Some(candidates[0]),
        _ => {
            let bits = backends.random();
            let a = scale(bits, n);
            let mut b = scale(mix64(bits), n - 1);
            if b >= a {
                b += 1;
            }
            let (a, b) = (candidates[a as usize], candidates[b as usize]);
            Some(if cost(b) < cost(a) { b } else { a })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::backend;
    use crate::BackendSet;

    fn view<'a>(set: &'a BackendSet, random: u64, exclude: &'a [u32]) -> Backends<'a> {
        Backends {
            set,
            sequence: 0,
            random,
            in_flight: &[],
            latency_ewma_us: &[],
            now_ms: None,
            exclude,
        }
    }

    #[test]
    fn the_cheaper_of_two_distinct_draws_wins() {
        let set = BackendSet::new((0..4).map(|i| backend(&format!("b:{i}"))).collect());
        let mut wins = [0u32; 4];
        for r in 0..4000u64 {
            let mut drawn = Vec::new();
            let choice = power_of_two_choices(&view(&set, mix64(r), &[]), |i| {
                drawn.push(i);
                i
            })
            .unwrap();
            assert_eq!(drawn.len(), 2);
            assert_ne!(drawn[0], drawn[1]);
            assert_eq!(choice, drawn[0].min(drawn[1]));
            wins[choice] += 1;
        }
        // Backend 3 is the most expensive: it never wins; backend 0 wins whenever drawn (1/2).
        assert_eq!(wins[3], 0);
        assert!((1800..2200).contains(&wins[0]), "{wins:?}");
    }

    #[test]
    fn exclusions_and_small_sets() {
        let set = BackendSet::new(vec![backend("a:1"), backend("b:1").down(), backend("c:1")]);
        for r in 0..50 {
            assert_eq!(
                power_of_two_choices(&view(&set, mix64(r), &[0]), |_| 0),
                Some(2)
            );
            assert_eq!(power_of_two_choices(&view(&set, r, &[0, 2]), |_| 0), None);
        }
        let empty = BackendSet::default();
        assert_eq!(power_of_two_choices(&view(&empty, 1, &[]), |_| 0), None);
    }
}
