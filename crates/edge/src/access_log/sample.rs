//! `access_log_sample`: which requests get a line, for sites too busy to log every one.
//!
//! Each request is kept at random with the configured probability, independently of the others
//! (a counter would keep every n-th request, which a client could time its requests around).
//! The rate is written in every line, so that counts read from a sampled log can be scaled back.

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};

/// The draw a request's line is kept on.
pub(super) struct Sample {
    /// A draw below this keeps the request; `None` keeps every request without a draw.
    below: Option<u64>,
}

impl Sample {
    /// Keeps `rate` of the requests (more than 0, at most 1: checked with the configuration).
    pub(super) fn new(rate: f64) -> Sample {
        let below = (rate < 1.0).then(|| (rate * 2f64.powi(64)) as u64);
        Sample { below }
    }

    /// Whether this request is logged.
    pub(super) fn keep(&self) -> bool {
        match self.below {
            None => true,
            Some(below) => DRAWS.with(|draws| {
                let mut state = Xorshift(draws.get());
                let keep = state.next() < below;
                draws.set(state.0);
                keep
            }),
        }
    }
}

thread_local! {
    /// Each thread draws from its own generator: no shared state between worker threads.
    static DRAWS: Cell<u64> = Cell::new(seed());
}

/// A random non-zero seed, from the randomly keyed hasher the standard library already seeds
/// from the operating system.
fn seed() -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
        | 1
}

/// Marsaglia's xorshift64*: a few instructions a draw, and uniform enough to choose log lines
/// (nothing here needs to be unpredictable).
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_of_one_keeps_every_request() {
        let sample = Sample::new(1.0);
        assert!((0..10_000).all(|_| sample.keep()));
    }

    #[test]
    fn a_rate_keeps_about_that_fraction_of_requests() {
        for rate in [0.5, 0.1, 0.01] {
            let sample = Sample::new(rate);
            let draws = 200_000;
            let kept = (0..draws).filter(|_| sample.keep()).count() as f64;
            let expected = rate * draws as f64;
            // Ten standard deviations of a binomial count: a generator that is off by even a
            // few percent fails, a fair one never does.
            let spread = 10.0 * (draws as f64 * rate * (1.0 - rate)).sqrt();
            assert!(
                (kept - expected).abs() < spread,
                "rate {rate}: kept {kept} of {draws}, expected {expected} ± {spread}"
            );
        }
    }

    #[test]
    fn a_tiny_rate_still_keeps_some_requests_and_not_all() {
        let sample = Sample::new(1e-3);
        let kept = (0..1_000_000).filter(|_| sample.keep()).count();
        assert!((500..2000).contains(&kept), "kept {kept} of 1,000,000");
    }
}
