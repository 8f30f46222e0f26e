//! The proof of work: for each part `i`, a number `n` such that
//! `SHA-256(token ":" i ":" n)` starts with at least `bits` zero bits.
//!
//! Several small parts rather than one big one: the expected work is the same, but the time a
//! visitor waits varies much less (one part's tries follow a geometric law whose tail is long;
//! the sum of eight is close to its mean).

use ring::digest::{Context, SHA256};

/// The most parts a challenge may have (the answer is read into a fixed array).
pub const MAX_PARTS: usize = 16;

/// True when `n` answers part `part` of `token` at `bits`.
pub fn part_solved(token: &str, part: u8, n: u64, bits: u8) -> bool {
    leading_zero_bits(&digest(token, part, n)) >= u32::from(bits)
}

fn digest(token: &str, part: u8, n: u64) -> [u8; 32] {
    let mut context = Context::new(&SHA256);
    context.update(token.as_bytes());
    context.update(b":");
    context.update(decimal(u64::from(part), &mut [0; 20]));
    context.update(b":");
    context.update(decimal(n, &mut [0; 20]));
    let mut out = [0; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// Leading zero bits of a SHA-256 hash, 0 to 256.
pub fn leading_zero_bits(hash: &[u8; 32]) -> u32 {
    let mut bits = 0;
    for &byte in hash {
        if byte != 0 {
            return bits + byte.leading_zeros();
        }
        bits += 8;
    }
    bits
}

/// Solves a challenge the way the page does (for tests and benchmarks).
pub fn solve(token: &str, bits: u8, parts: u8) -> Vec<u64> {
    (0..parts)
        .map(|part| {
            (0..)
                .find(|&n| part_solved(token, part, n, bits))
                .unwrap_or(0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_the_text_the_page_hashes() {
        // The page hashes the UTF-8 text "token:part:n"; the same input through one update.
        let whole = ring::digest::digest(&SHA256, b"abc:3:1234567");
        assert_eq!(digest("abc", 3, 1_234_567), whole.as_ref());
        assert_eq!(decimal(0, &mut [0; 20]), b"0");
        assert_eq!(decimal(u64::MAX, &mut [0; 20]), b"18446744073709551615");
    }

    #[test]
    fn counts_leading_zero_bits() {
        let mut h = [0xffu8; 32];
        assert_eq!(leading_zero_bits(&h), 0);
        h[0] = 0;
        h[1] = 0x10;
        assert_eq!(leading_zero_bits(&h), 11);
        assert_eq!(leading_zero_bits(&[0; 32]), 256);
    }

    #[test]
    fn solutions_meet_the_difficulty_and_others_mostly_do_not() {
        let answers = solve("tok", 10, 4);
        for (part, &n) in answers.iter().enumerate() {
            assert!(part_solved("tok", part as u8, n, 10));
            // The first answer is the smallest: nothing below it works.
            assert!((0..n).all(|m| !part_solved("tok", part as u8, m, 10)));
        }
        // An answer for one token does not carry over to another.
        let moved = answers
            .iter()
            .enumerate()
            .filter(|&(part, &n)| part_solved("tok2", part as u8, n, 10))
            .count();
        assert!(moved < 2, "{moved}");
    }
}
