//! What the browser challenge costs the server, per operation: serving a challenge page to a
//! flood, checking answers (right, wrong, forged), and checking a cleared visitor's cookie.
//!
//! `cargo bench -p shield --bench challenge` (release build). Prints nanoseconds per operation,
//! each the best of several rounds (other work on the machine only ever slows a round down),
//! and what that is in operations per second of one core. These are the cryptography and the
//! page alone; `bench/challenge.sh` measures the same through HTTP, where the kernel's socket
//! work and HTTP framing come on top.
//!
//! - A **page** is `token::issue` (a nonce, one HMAC) and `page::render` (the template with the
//!   token and the return path in it, one allocation).
//! - An **accepted answer** is `token::verify` (base64, one HMAC, eight SHA-256, the replay
//!   filter) and `clearance::mint` (one HMAC). The replay filter accepts each nonce once, so
//!   every round verifies its own batch of tokens, issued and solved beforehand, against its
//!   own filter of the edge's size (its memory touched beforehand, as a running edge's is).
//!   They are solved at 2 bits: verifying hashes each part once whatever the difficulty.
//! - A **refused answer**: a wrong number stops at the first part that fails (one hash when
//!   it is the first, eight when it is the last); a forged token stops at the HMAC.
//! - A **cleared request** pays `clearance::verify` (base64, one HMAC) before anything else.
//!
//! `CHALLENGE_BENCH_ITERATIONS` (default 20,000) sets the operations per round.

use model::{ChallengeSettings, MAX_CHALLENGE_TTL};
use shield::challenge::page::{PageParams, render};
use shield::challenge::pow::{part_solved, solve};
use shield::challenge::replay::DEFAULT_BITS;
use shield::challenge::{
    Binding, ChallengeKeys, NonceSource, PARTS, Puzzle, ReplayFilter, VERIFY_PATH, clearance, token,
};
use std::hint::black_box;
use std::time::{Instant, SystemTime};

const ROUNDS: usize = 5;

/// A browser's request, as the edge binds it.
fn binding() -> Binding<'static> {
    Binding {
        site: "blog",
        ip: "203.0.113.7".parse().expect("an address"),
        user_agent: b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
                      (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
    }
}

/// A page for that request: a product page it asked for.
fn page_params(token: &str, puzzle: Puzzle) -> PageParams<'_> {
    PageParams {
        host: "blog.example.com",
        token,
        bits: puzzle.bits,
        parts: puzzle.parts,
        verify_path: VERIFY_PATH,
        return_to: "/products/category/shoes/item-12345?color=red&ref=newsletter",
    }
}

/// Nanoseconds per call of `op` (given the round and the call's index in it), best of
/// `ROUNDS` rounds of `iterations`.
fn best_ns(iterations: usize, mut op: impl FnMut(usize, usize) -> usize) -> f64 {
    let mut best = f64::MAX;
    for round in 0..ROUNDS {
        let start = Instant::now();
        let mut sink = 0usize;
        for i in 0..iterations {
            sink = sink.wrapping_add(op(round, i));
        }
        black_box(sink);
        best = best.min(start.elapsed().as_nanos() as f64 / iterations as f64);
    }
    best
}

/// A replay filter of the edge's size whose memory has been touched, as a running edge's has
/// (a fresh one would take a page fault on the first write to each of its pages).
fn warm_replay_filter(now: SystemTime) -> ReplayFilter {
    let filter = ReplayFilter::new(MAX_CHALLENGE_TTL, DEFAULT_BITS);
    for i in 0..4096u64 {
        let mut nonce = [0xa5u8; 16];
        nonce[..8].copy_from_slice(&i.to_le_bytes());
        filter.first_use(&nonce, now);
    }
    filter
}

fn row(ns: f64, what: &str) {
    println!("{ns:>9.0} {:>12.0}  {what}", 1e9 / ns);
}

fn main() {
    let iterations: usize = std::env::var("CHALLENGE_BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(20_000);
    let settings = ChallengeSettings::default();
    let keys = ChallengeKeys::ephemeral().expect("the system's random number generator");
    let nonces = NonceSource::new();
    let binding = binding();
    let puzzle = Puzzle {
        bits: settings.difficulty,
        parts: PARTS,
    };
    let sample = token::issue(&keys, &nonces, &binding, puzzle, SystemTime::now());
    let page_bytes = render(&page_params(&sample, puzzle)).len();

    println!(
        "challenge operations: best of {ROUNDS} rounds of {iterations}, one thread; difficulty {} \
         bits x {} parts",
        puzzle.bits, puzzle.parts
    );
    println!("{:>9} {:>12}  operation", "ns/op", "per core/s");

    // Serving a page.
    let issue = best_ns(iterations, |_, _| {
        black_box(token::issue(
            &keys,
            &nonces,
            &binding,
            puzzle,
            SystemTime::now(),
        ))
        .len()
    });
    row(issue, "token::issue (nonce + HMAC-SHA256)");
    let render_ns = best_ns(iterations, |_, _| {
        black_box(render(&page_params(&sample, puzzle))).len()
    });
    row(render_ns, &format!("page::render ({page_bytes} bytes)"));
    let page = best_ns(iterations, |_, _| {
        let token = token::issue(&keys, &nonces, &binding, puzzle, SystemTime::now());
        black_box(render(&page_params(&token, puzzle))).len()
    });
    row(page, "challenge page: issue + render");

    // Answers. Every round's tokens are fresh: the replay filter takes each nonce once.
    let easy = Puzzle {
        bits: 2,
        parts: PARTS,
    };
    let issued_at = SystemTime::now();
    let batches: Vec<Vec<(String, Vec<u64>)>> = (0..ROUNDS)
        .map(|_| {
            (0..iterations)
                .map(|_| {
                    let t = token::issue(&keys, &nonces, &binding, easy, issued_at);
                    let answers = solve(&t, easy.bits, easy.parts);
                    (t, answers)
                })
                .collect()
        })
        .collect();
    let now = SystemTime::now();
    let filters: Vec<ReplayFilter> = (0..ROUNDS).map(|_| warm_replay_filter(now)).collect();
    let verify_ok = best_ns(iterations, |round, i| {
        let (t, answers) = &batches[round][i];
        let solved = token::verify(
            &keys,
            &binding,
            t,
            answers,
            settings.challenge_ttl,
            &filters[round],
            now,
        );
        assert!(solved.is_ok(), "a solved token verifies once: {solved:?}");
        1
    });
    row(
        verify_ok,
        "token::verify, right answer (HMAC, 8 SHA-256, replay filter)",
    );
    let mint = best_ns(iterations, |_, _| {
        black_box(clearance::mint(
            &keys,
            &binding,
            settings.clearance_ttl,
            now,
        ))
        .len()
    });
    row(mint, "clearance::mint (the cookie of an accepted answer)");

    // Refused answers: none reaches the replay filter, so one token serves every iteration.
    let (t, answers) = &batches[0][0];
    let wrong_at = |part: usize| {
        let mut wrong = answers.clone();
        wrong[part] = (0..)
            .find(|&n| !part_solved(t, part as u8, n, easy.bits))
            .unwrap_or(0);
        wrong
    };
    let refused = |t: &str, answers: &[u64]| {
        best_ns(iterations, |_, _| {
            let result = token::verify(
                &keys,
                &binding,
                t,
                answers,
                settings.challenge_ttl,
                &filters[0],
                now,
            );
            assert!(result.is_err(), "refused");
            1
        })
    };
    let first = wrong_at(0);
    row(
        refused(t, &first),
        "token::verify, wrong answer in part 1 (HMAC, 1 SHA-256)",
    );
    let last = wrong_at(usize::from(PARTS) - 1);
    row(
        refused(t, &last),
        "token::verify, wrong answer in part 8 (HMAC, 8 SHA-256)",
    );
    let mut forged = t.clone().into_bytes();
    forged[20] = if forged[20] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("base64url is ASCII");
    row(
        refused(&forged, answers),
        "token::verify, forged token (HMAC fails)",
    );

    // A cleared visitor's request.
    let cookie = clearance::mint(&keys, &binding, settings.clearance_ttl, now);
    let cleared = best_ns(iterations, |_, _| {
        let ok = clearance::verify(
            &keys,
            &binding,
            black_box(cookie.as_bytes()),
            settings.clearance_ttl,
            now,
        );
        assert!(ok, "the cookie verifies");
        1
    });
    row(cleared, "clearance::verify, valid cookie (HMAC)");
}
