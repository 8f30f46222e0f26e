//! A bounded, seeded fuzz run that fits in CI on stable Rust: random and mutated text is fed to
//! the parser; nothing may panic, and every error must point inside the text. (The open-ended
//! run is `crates/shield/fuzz`, with cargo-fuzz on nightly.)

use super::{Request, lies_within};
use crate::rules::{Expr, MAX_NESTING};
use std::panic::{AssertUnwindSafe, catch_unwind};

const RUNS: usize = 100_000;

/// Valid expressions between them using every token kind; the mutations start from these.
const SEEDS: &[&str] = &[
    "ssl",
    "not ssl and ip.src eq 10.0.0.1",
    "ip.src in {10.0.0.0/8 192.168.0.0/16, 2001:db8::/32 ::ffff:1.2.3.4}",
    "ip.src >= 2001:db8::1 || ip.src < 10.0.0.0",
    r#"http.host == "example.com" && !(http.request.method in {"GET" "HEAD"})"#,
    r#"http.request.uri.path starts_with "/admin" or http.request.uri.path ends_with ".php""#,
    r#"http.request.uri.query contains "union select" and http.cookie ne "a\"b\\c""#,
    r#"http.user_agent ~ "(?i)^(curl|wget)/[0-9.]+$""#,
    "http.request.headers[\"Content-Length\"] gt 1000 and\n  http.request.headers[\"x-n\"] in {1, 2, 3}",
    r#"(ssl or (http.host lt "m" and http.host ge "a")) and not not ssl"#,
    "http.request.uri.path matches \"^/é+\"\nor http.host eq \"été\"",
];

/// Fragments that steer mutations toward the lexer's and parser's decisions.
const FRAGMENTS: &[&str] = &[
    "(",
    ")",
    "{",
    "}",
    "[",
    "]",
    ",",
    "\"",
    "\\",
    "\\\"",
    "\n",
    " ",
    "!",
    "!=",
    "=",
    "==",
    "<",
    "<=",
    ">",
    ">=",
    "~",
    "&",
    "&&",
    "|",
    "||",
    "not",
    "and",
    "or",
    "in",
    "eq",
    "matches",
    "contains",
    "ssl",
    "ip.src",
    "http.host",
    "http.request.headers",
    "10.0.0.1",
    "::",
    "::1",
    "1.2.3.4/33",
    "/",
    ":",
    ".",
    "99999999999999999999",
    "0",
    "é",
    "\u{0}",
    "\r",
    "\t",
    "\"(\"",
    "\"\\\\w{1000}{1000}\"",
];

/// splitmix64: a few lines, seeded, the same sequence on every machine.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

fn mutated(random: &mut Random) -> String {
    let seed = random.pick(SEEDS);
    let mut bytes = seed.as_bytes().to_vec();
    match random.below(8) {
        // Byte flips: any byte, so invalid UTF-8 too (made lossy below).
        0 => {
            for _ in 0..=random.below(4) {
                if !bytes.is_empty() {
                    let at = random.below(bytes.len());
                    bytes[at] = random.next() as u8;
                }
            }
        }
        // Truncation anywhere, inside a string or a multi-byte character included.
        1 => bytes.truncate(random.below(bytes.len() + 1)),
        // Splicing the start of one expression onto the end of another.
        2 => {
            let other = random.pick(SEEDS).as_bytes();
            bytes.truncate(random.below(bytes.len() + 1));
            bytes.extend_from_slice(&other[random.below(other.len() + 1)..]);
        }
        // Deep nesting, around the limit and far past it.
        3 => {
            let opens = random.below(MAX_NESTING * 3);
            let closes = random.below(MAX_NESTING * 3);
            let nots = if random.below(2) == 0 { "" } else { "not !" };
            let text = format!("{}{nots}{seed}{}", "(".repeat(opens), ")".repeat(closes));
            bytes = text.into_bytes();
        }
        // Fragments inserted at random places.
        4 => {
            for _ in 0..=random.below(3) {
                let at = random.below(bytes.len() + 1);
                let fragment = random.pick(FRAGMENTS).as_bytes();
                bytes.splice(at..at, fragment.iter().copied());
            }
        }
        // Token soup.
        5 => {
            bytes.clear();
            for _ in 0..random.below(24) {
                bytes.extend_from_slice(random.pick(FRAGMENTS).as_bytes());
                if random.below(2) == 0 {
                    bytes.push(b' ');
                }
            }
        }
        // Random bytes.
        6 => bytes = (0..random.below(48)).map(|_| random.next() as u8).collect(),
        // Long chains, some past the length limit.
        _ => {
            // Few long ones: each copy of a seed with a regex compiles it again, which is
            // slow in a debug build.
            let copies = if random.below(500) == 0 {
                1 + random.below(800)
            } else {
                2 + random.below(2)
            };
            bytes = vec![seed; copies].join(" and ").into_bytes();
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn random_and_mutated_text_never_panics() {
    let mut random = Random(0x5eed_5a11_ade5_0f00);
    let request = Request::typical().with_header("content-length", "1500");
    let facts = request.facts();
    let mut parsed = 0;
    for run in 0..RUNS {
        let text = mutated(&mut random);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            Expr::parse(&text).map(|expr| expr.eval(&facts))
        }));
        match outcome {
            Err(_) => panic!("run {run}: parsing {text:?} panicked"),
            Ok(Ok(_)) => parsed += 1,
            Ok(Err(error)) => {
                assert!(
                    lies_within(&text, error.line, error.column),
                    "run {run}: {text:?}: {error} points outside the text"
                );
                assert!(!error.message.is_empty());
            }
        }
    }
    // Mutations that leave the text valid exercise evaluation; there must be some.
    assert!(parsed > RUNS / 20, "only {parsed} of {RUNS} inputs parsed");
}
