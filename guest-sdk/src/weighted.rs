//! Smooth weighted round-robin, as nginx does it, precomputed over one period.

use crate::BackendSet;

/// The most entries a period may have; larger weight sums are scaled down proportionally.
const MAX_PERIOD: u64 = 1 << 16;
/// The most work (period × backends) spent building one table.
const MAX_BUILD_STEPS: u64 = 1 << 24;

/// One period of nginx's smooth weighted round-robin over the eligible backends: weights 5, 1, 1
/// give `a a b a c a a`, spreading each backend's turns instead of bursting them. Index it with a
/// global sequence number to get exact ratios across threads.
#[derive(Clone, Debug, Default)]
pub struct SmoothWeighted {
    order: Vec<usize>,
}

impl SmoothWeighted {
    /// Builds the period for the eligible backends with a weight above 0.
    pub fn new(set: &BackendSet) -> Self {
        let mut weights: Vec<(usize, u64)> = set
            .eligible()
            .iter()
            .map(|&i| (i, u64::from(set.all()[i].weight)))
            .collect();
        if weights.is_empty() {
            return SmoothWeighted::default();
        }
        let divisor = weights.iter().fold(0, |g, &(_, w)| gcd(g, w));
        weights.iter_mut().for_each(|(_, w)| *w /= divisor);
        let n = weights.len() as u64;
        let limit = MAX_PERIOD.min((MAX_BUILD_STEPS / n).max(n));
        let total: u64 = weights.iter().map(|&(_, w)| w).sum();
        if total > limit {
            weights
                .iter_mut()
                .for_each(|(_, w)| *w = (*w * limit / total).max(1));
        }
        let total: i64 = weights.iter().map(|&(_, w)| w as i64).sum();
        let mut current = vec![0i64; weights.len()];
        let mut order = Vec::with_capacity(total as usize);
        for _ in 0..total {
            let mut best = 0;
            for (slot, &(_, w)) in weights.iter().enumerate() {
                current[slot] += w as i64;
                if current[slot] > current[best] {
                    best = slot;
                }
            }
            current[best] -= total;
            order.push(weights[best].0);
        }
        SmoothWeighted { order }
    }

    /// One period of backend indices.
    pub fn order(&self) -> &[usize] {
        &self.order
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::backend;

    fn set(weights: &[u32]) -> BackendSet {
        BackendSet::new(
            weights
                .iter()
                .enumerate()
                .map(|(i, &w)| backend(&format!("10.0.0.{i}:80")).weight(w))
                .collect(),
        )
    }

    #[test]
    fn five_one_one_is_smooth_like_nginx() {
        let table = SmoothWeighted::new(&set(&[5, 1, 1]));
        assert_eq!(table.order(), &[0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn common_factors_are_reduced_and_zero_weight_drains() {
        let table = SmoothWeighted::new(&set(&[20, 10, 0]));
        assert_eq!(table.order(), &[0, 1, 0]);
    }

    #[test]
    fn huge_weights_are_scaled_into_a_bounded_period() {
        let table = SmoothWeighted::new(&set(&[1_000_000, 999_999, 3]));
        assert!(table.order().len() as u64 <= MAX_PERIOD + 3);
        assert!(table.order().contains(&2));
    }
}
