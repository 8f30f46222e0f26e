//! Test-only: deterministic hostile input for the parsers' random-input tests.

/// A xorshift64 generator: fast, seedable, and the same sequence on every run, so a failing
/// input can be replayed.
pub struct Noise(u64);

impl Noise {
    pub fn new(seed: u64) -> Noise {
        Noise(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Appends one of `words` (`word_odds - 1` times in `word_odds`), or else up to
    /// `max_noise` bytes drawn from `alphabet`.
    pub fn piece(
        &mut self,
        out: &mut Vec<u8>,
        words: &[&[u8]],
        alphabet: &[u8],
        max_noise: usize,
        word_odds: usize,
    ) {
        if self.below(word_odds) != 0 {
            out.extend_from_slice(words[self.below(words.len())]);
        } else {
            for _ in 0..self.below(max_noise) {
                out.push(alphabet[self.below(alphabet.len())]);
            }
        }
    }
}
