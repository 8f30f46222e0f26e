//! The challenge a page carries: signed, expiring, bound to the visitor, and stateless (the
//! server keeps nothing per visitor until an answer comes back).
//!
//! A token is base64url of `version (1) | issued, unix milliseconds (8) | bits (1) | parts (1) |
//! nonce (16)` followed by an HMAC-SHA256 tag over those bytes and the [`Binding`].

use super::binding::Binding;
use super::keys::{ChallengeKeys, unix_ms};
use super::pow::{MAX_PARTS, part_solved};
use super::replay::ReplayFilter;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

const VERSION: u8 = 1;
const PAYLOAD_LEN: usize = 1 + 8 + 1 + 1 + 16;
const TOKEN_LEN: usize = PAYLOAD_LEN + 32;
/// A token's length as text.
pub const TOKEN_TEXT_LEN: usize = (TOKEN_LEN * 4).div_ceil(3);

/// What a challenge asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Puzzle {
    /// Leading zero bits each part's hash must have.
    pub bits: u8,
    /// How many proofs the browser must find ([`PARTS`](super::PARTS)).
    pub parts: u8,
}

/// A verified answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Solved {
    /// From serving the page to receiving the answer.
    pub solve_time: Duration,
    /// The difficulty the answer met, in leading zero bits per part.
    pub bits: u8,
}

/// Why an answer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Not a token this edge could have issued, or one for another site, network or browser.
    Invalid,
    /// Answered later than `challenge_ttl` after the page was served.
    Expired,
    /// A part's hash does not have the leading zero bits asked for.
    WrongAnswer,
    /// This token was answered before.
    Replayed,
}

impl Rejection {
    /// The rejection as events and metrics name it: `invalid`, `expired`, `wrong_answer`,
    /// `replayed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Invalid => "invalid",
            Rejection::Expired => "expired",
            Rejection::WrongAnswer => "wrong_answer",
            Rejection::Replayed => "replayed",
        }
    }
}

/// Makes nonces unique per process without a system call per page: a random start and a
/// counter, mixed so consecutive nonces share no visible structure.
#[derive(Debug)]
pub struct NonceSource {
    seed: [u64; 2],
    counter: AtomicU64,
}

impl NonceSource {
    /// A source seeded from the system's random source (or zero, if it fails).
    pub fn new() -> NonceSource {
        let mut seed = [0u8; 24];
        // A failing system RNG leaves a zero seed: nonces stay unique within the process,
        // which is what replay detection needs; tokens stay unforgeable through the key.
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed);
        let word =
            |i: usize| u64::from_le_bytes(seed[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        NonceSource {
            seed: [word(0), word(1)],
            counter: AtomicU64::new(word(2)),
        }
    }

    fn next(&self) -> [u8; 16] {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(
            &xxhash_rust::xxh3::xxh3_64_with_seed(&n.to_le_bytes(), self.seed[0]).to_le_bytes(),
        );
        // The counter itself in the second half keeps nonces distinct even if the hash collides.
        out[8..].copy_from_slice(&(n ^ self.seed[1]).to_le_bytes());
        out
    }
}

impl Default for NonceSource {
    fn default() -> Self {
        NonceSource::new()
    }
}

/// A new challenge for `binding`.
pub fn issue(
    keys: &ChallengeKeys,
    nonces: &NonceSource,
    binding: &Binding<'_>,
    puzzle: Puzzle,
    now: SystemTime,
) -> String {
    let mut token = [0u8; TOKEN_LEN];
    token[0] = VERSION;
    token[1..9].copy_from_slice(&unix_ms(now).to_be_bytes());
    token[9] = puzzle.bits;
    token[10] = puzzle.parts;
    token[11..PAYLOAD_LEN].copy_from_slice(&nonces.next());
    let tag = binding.sign(&keys.current.challenge, &token[..PAYLOAD_LEN]);
    token[PAYLOAD_LEN..].copy_from_slice(tag.as_ref());
    URL_SAFE_NO_PAD.encode(token)
}

/// Checks an answer: the token's signature, its age, every part's proof, and that it was not
/// answered before (in that order: nothing unsigned reaches the replay filter).
pub fn verify(
    keys: &ChallengeKeys,
    binding: &Binding<'_>,
    token: &str,
    answers: &[u64],
    ttl: Duration,
    replay: &ReplayFilter,
    now: SystemTime,
) -> Result<Solved, Rejection> {
    if token.len() != TOKEN_TEXT_LEN {
        return Err(Rejection::Invalid);
    }
    let mut raw = [0u8; TOKEN_LEN];
    match URL_SAFE_NO_PAD.decode_slice(token, &mut raw) {
        Ok(TOKEN_LEN) => {}
        _ => return Err(Rejection::Invalid),
    }
    let (payload, tag) = raw.split_at(PAYLOAD_LEN);
    if payload[0] != VERSION {
        return Err(Rejection::Invalid);
    }
    // A token outlives a key rotation by its own lifetime at most.
    let signed = binding.verify(&keys.current.challenge, payload, tag)
        || keys
            .previous_within(ttl, now)
            .is_some_and(|key| binding.verify(&key.challenge, payload, tag));
    if !signed {
        return Err(Rejection::Invalid);
    }
    let issued = u64::from_be_bytes(payload[1..9].try_into().map_err(|_| Rejection::Invalid)?);
    let now_ms = unix_ms(now);
    // A little slack for clocks that differ between the edge that issued and this one.
    if issued > now_ms.saturating_add(5_000)
        || now_ms >= issued.saturating_add(ttl.as_millis() as u64)
    {
        return Err(Rejection::Expired);
    }
    let (bits, parts) = (payload[9], payload[10]);
    if answers.len() != usize::from(parts) || answers.len() > MAX_PARTS {
        return Err(Rejection::WrongAnswer);
    }
    let all_solved = answers
        .iter()
        .enumerate()
        .all(|(part, &n)| part_solved(token, part as u8, n, bits));
    if !all_solved {
        return Err(Rejection::WrongAnswer);
    }
    let nonce: [u8; 16] = payload[11..PAYLOAD_LEN]
        .try_into()
        .map_err(|_| Rejection::Invalid)?;
    if !replay.first_use(&nonce, now) {
        return Err(Rejection::Replayed);
    }
    Ok(Solved {
        solve_time: Duration::from_millis(now_ms.saturating_sub(issued)),
        bits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::challenge::keys::unix;
    use crate::challenge::pow::solve;

    fn binding() -> Binding<'static> {
        Binding {
            site: "blog",
            ip: "192.0.2.10".parse().unwrap(),
            user_agent: b"Mozilla/5.0",
        }
    }

    const TTL: Duration = Duration::from_secs(300);
    const PUZZLE: Puzzle = Puzzle { bits: 6, parts: 4 };

    #[test]
    fn a_solved_challenge_is_accepted_once() {
        let keys = ChallengeKeys::ephemeral().unwrap();
        let replay = ReplayFilter::new(TTL, 1 << 16);
        let now = SystemTime::now();
        let token = issue(&keys, &NonceSource::new(), &binding(), PUZZLE, now);
        assert_eq!(token.len(), TOKEN_TEXT_LEN);
        let answers = solve(&token, PUZZLE.bits, PUZZLE.parts);
        let later = now + Duration::from_secs(2);
        let solved = verify(&keys, &binding(), &token, &answers, TTL, &replay, later).unwrap();
        assert_eq!(solved.bits, 6);
        assert_eq!(solved.solve_time, Duration::from_secs(2));
        assert_eq!(
            verify(&keys, &binding(), &token, &answers, TTL, &replay, later),
            Err(Rejection::Replayed)
        );
    }

    #[test]
    fn wrong_late_forged_and_moved_answers_are_refused() {
        let keys = ChallengeKeys::ephemeral().unwrap();
        let replay = ReplayFilter::new(TTL, 1 << 16);
        let nonces = NonceSource::new();
        let now = SystemTime::now();
        let token = issue(&keys, &nonces, &binding(), PUZZLE, now);
        let answers = solve(&token, PUZZLE.bits, PUZZLE.parts);
        let check = |b: &Binding<'_>, t: &str, a: &[u64], at: SystemTime| {
            verify(&keys, b, t, a, TTL, &replay, at)
        };
        // Too few parts, or one wrong.
        assert_eq!(
            check(&binding(), &token, &answers[..3], now),
            Err(Rejection::WrongAnswer)
        );
        let mut wrong = answers.clone();
        wrong[2] = (0..)
            .find(|&n| !part_solved(&token, 2, n, PUZZLE.bits))
            .unwrap();
        assert_eq!(
            check(&binding(), &token, &wrong, now),
            Err(Rejection::WrongAnswer)
        );
        // Past its lifetime.
        assert_eq!(
            check(&binding(), &token, &answers, now + TTL),
            Err(Rejection::Expired)
        );
        // Another site, another network, another browser.
        for other in [
            Binding {
                site: "shop",
                ..binding()
            },
            Binding {
                ip: "198.51.100.1".parse().unwrap(),
                ..binding()
            },
            Binding {
                user_agent: b"curl/8",
                ..binding()
            },
        ] {
            assert_eq!(
                check(&other, &token, &answers, now),
                Err(Rejection::Invalid)
            );
        }
        // Another edge's key; a token with a byte changed; garbage.
        let other_keys = ChallengeKeys::ephemeral().unwrap();
        assert_eq!(
            verify(&other_keys, &binding(), &token, &answers, TTL, &replay, now),
            Err(Rejection::Invalid)
        );
        let mut tampered = token.clone().into_bytes();
        tampered[12] = if tampered[12] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(
            check(&binding(), &tampered, &answers, now),
            Err(Rejection::Invalid)
        );
        for junk in ["", "x", &"A".repeat(TOKEN_TEXT_LEN), &"é".repeat(40)] {
            assert_eq!(
                check(&binding(), junk, &answers, now),
                Err(Rejection::Invalid)
            );
        }
        // None of that used the token up.
        assert!(check(&binding(), &token, &answers, now).is_ok());
    }

    #[test]
    fn tokens_signed_before_a_rotation_verify_for_one_lifetime() {
        let old = ChallengeKeys::ephemeral().unwrap();
        let replay = ReplayFilter::new(TTL, 1 << 16);
        let now = SystemTime::now();
        let token = issue(&old, &NonceSource::new(), &binding(), PUZZLE, now);
        let answers = solve(&token, PUZZLE.bits, PUZZLE.parts);
        let mut rotated = ChallengeKeys::ephemeral().unwrap();
        rotated.previous = Some((old.current.clone(), unix(now)));
        assert!(verify(&rotated, &binding(), &token, &answers, TTL, &replay, now).is_ok());
        let mut long_ago = rotated.clone();
        long_ago.previous = Some((old.current.clone(), unix(now) - TTL.as_secs()));
        let token = issue(&old, &NonceSource::new(), &binding(), PUZZLE, now);
        let answers = solve(&token, PUZZLE.bits, PUZZLE.parts);
        assert_eq!(
            verify(&long_ago, &binding(), &token, &answers, TTL, &replay, now),
            Err(Rejection::Invalid)
        );
    }

    #[test]
    fn nonces_do_not_repeat() {
        let nonces = NonceSource::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            assert!(seen.insert(nonces.next()));
        }
    }
}
