//! Weighted round robin without a lock: the smooth weighted sequence (as nginx computes it) is
//! laid out once per upstream, and requests walk it with one atomic counter.

use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug)]
pub struct Schedule {
    order: Vec<u8>,
    cursor: AtomicUsize,
}

impl Schedule {
    /// For weights [5, 1, 1] this lays out a a b a c a a: heavy origins spread out rather than
    /// bunched, so a burst does not land on one origin.
    pub fn smooth_weighted(weights: &[u32]) -> Schedule {
        let total: i64 = weights.iter().map(|w| i64::from(*w)).sum();
        let mut current = vec![0i64; weights.len()];
        let mut order = Vec::with_capacity(total as usize);
        for _ in 0..total {
            for (c, w) in current.iter_mut().zip(weights) {
                *c += i64::from(*w);
            }
            let (best, _) = current
                .iter()
                .enumerate()
                .max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i)))
                .expect("an upstream has at least one origin");
            current[best] -= total;
            order.push(best as u8);
        }
        Schedule {
            order,
            cursor: AtomicUsize::new(0),
        }
    }

    /// The whole cycle once, starting at the next position (and advancing it by one).
    pub fn iter_from_next(&self) -> impl Iterator<Item = usize> + '_ {
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        let len = self.order.len();
        (0..len).map(move |k| self.order[(start + k) % len] as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_honoured_over_a_cycle_and_spread_out() {
        let schedule = Schedule::smooth_weighted(&[5, 1, 1]);
        let picks: Vec<usize> = (0..7)
            .map(|_| schedule.iter_from_next().next().unwrap())
            .collect();
        assert_eq!(picks.iter().filter(|i| **i == 0).count(), 5);
        assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn equal_weights_alternate() {
        let schedule = Schedule::smooth_weighted(&[1, 1]);
        let picks: Vec<usize> = (0..4)
            .map(|_| schedule.iter_from_next().next().unwrap())
            .collect();
        assert_eq!(picks, vec![0, 1, 0, 1]);
    }
}
