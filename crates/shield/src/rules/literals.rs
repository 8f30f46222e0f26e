//! The text conditions of many rules on one field, matched together on one read of the field.
//!
//! Most rules a site writes are one text condition, or an `or` of a few, on one field:
//! `http.user_agent contains "sqlmap"`, `http.request.uri.path starts_with "/wp-admin"`. One by
//! one, each scans the field again; a request that matches none of them, the common case,
//! pays once per rule. Grouped per field, the same request pays once per field: one
//! Aho-Corasick pass for every `contains`, one walk down a byte trie for every `starts_with`
//! (another, over the reversed field, for every `ends_with`), one bisection for every `eq` and
//! `in`, one `RegexSet` search for every `matches`. The other tests (`ne`, the orderings, the
//! integer ones) run one by one on the same read, the field read as an integer once. Each
//! condition carries the index of its rule, so the group says which rules it fired for.
//!
//! What a group fires for an empty field is worked out when it is built: most of the headers
//! rules name are absent from most requests, and then the group costs nothing to ask.

use super::MAX_REGEX_BYTES;
use super::eval::{Comparison, Read, TextTest, as_integer, same_bytes};
use super::ruleset::Fired;
use aho_corasick::{AhoCorasick, MatchKind};

/// One text condition of a rule, as a group takes it.
pub(super) type Condition<'n> = (&'n TextTest, u32);

/// The text conditions of several rules on one field.
#[derive(Debug, Clone)]
pub(super) struct TextGroup {
    pub read: Read,
    /// Every `contains` with a non-empty needle: whether any occurs, then which (pattern `i`
    /// belongs to rule `contains_rules[i]`).
    contains: Option<Needles>,
    contains_rules: Box<[u32]>,
    prefixes: Trie,
    /// Built over the suffixes reversed, walked over the field reversed.
    suffixes: Trie,
    /// Sorted by length, then bytes.
    equals: Box<[(Box<[u8]>, u32)]>,
    /// Rules that match whatever the field holds (`contains ""`).
    always: Box<[u32]>,
    /// Every `matches`, with its rule; run only when `gate` and `any_regex` let them.
    regexes: Box<[(regex::bytes::Regex, u32)]>,
    /// Literals one of which every value some regex matches holds; `None` when a regex has no
    /// such literals, and then the regexes are searched on every value.
    gate: Option<RegexGate>,
    /// Whether any of `regexes` matches, in one search; `None` when there are none, or they
    /// are too big together, and then each runs on every request.
    any_regex: Option<AnyRegex>,
    /// Tests on the field read as an integer, which is read once for all of them.
    integers: Box<[(TextTest, u32)]>,
    /// Every other test, run one by one.
    others: Box<[(TextTest, u32)]>,
    /// The rules the group fires for an empty field, sorted.
    pub on_empty: Box<[u32]>,
}

impl TextGroup {
    /// The group of `conditions`, all on the field `read`.
    pub fn new(read: Read, conditions: &[Condition<'_>]) -> TextGroup {
        let mut needles: Vec<&[u8]> = Vec::new();
        let mut contains_rules = Vec::new();
        let mut prefixes = Trie::default();
        let mut suffixes = Trie::default();
        let mut equals = Vec::new();
        let mut always = Vec::new();
        let mut regexes = Vec::new();
        let mut integers = Vec::new();
        let mut others = Vec::new();
        for &(test, rule) in conditions {
            match test {
                TextTest::Contains(finder) if finder.needle().is_empty() => always.push(rule),
                TextTest::Contains(finder) => {
                    needles.push(finder.needle());
                    contains_rules.push(rule);
                }
                TextTest::StartsWith(prefix) => prefixes.insert(prefix.iter().copied(), rule),
                TextTest::EndsWith(suffix) => suffixes.insert(suffix.iter().rev().copied(), rule),
                TextTest::Compare(Comparison::Eq, literal) => equals.push((literal.clone(), rule)),
                TextTest::In(set) => {
                    equals.extend(set.items().iter().map(|item| (item.clone(), rule)));
                }
                TextTest::Matches(regex) => regexes.push((regex.clone(), rule)),
                TextTest::CompareInteger(..) | TextTest::InIntegers(_) => {
                    integers.push((test.clone(), rule));
                }
                TextTest::Compare(..) => others.push((test.clone(), rule)),
            }
        }
        let contains = (!needles.is_empty())
            .then(|| Needles::new(&needles))
            .flatten();
        if contains.is_none() {
            // Too many or too long needles for an automaton: each is searched for alone.
            for &(test, rule) in conditions {
                if matches!(test, TextTest::Contains(finder) if !finder.needle().is_empty()) {
                    others.push((test.clone(), rule));
                }
            }
            contains_rules.clear();
        }
        equals.sort_unstable_by(|(a, rule_a), (b, rule_b)| {
            (a.len(), a, rule_a).cmp(&(b.len(), b, rule_b))
        });
        equals.dedup();
        let any_regex = AnyRegex::new(&regexes);
        let gate = RegexGate::new(&regexes);
        let mut group = TextGroup {
            read,
            contains,
            contains_rules: contains_rules.into(),
            prefixes,
            suffixes,
            equals: equals.into(),
            always: always.into(),
            regexes: regexes.into(),
            gate,
            any_regex,
            integers: integers.into(),
            others: others.into(),
            on_empty: Box::default(),
        };
        let mut fired = Fired::default();
        group.find_in(b"", &mut fired);
        group.on_empty = fired.iter().map(|rule| rule as u32).collect();
        group
    }

    /// Records in `fired` every rule of the group one of whose conditions holds for `value`.
    #[inline]
    pub fn find(&self, value: &[u8], fired: &mut Fired) {
        if value.is_empty() {
            for &rule in &self.on_empty {
                fired.insert(rule);
            }
        } else {
            self.find_in(value, fired);
        }
    }

    fn find_in(&self, value: &[u8], fired: &mut Fired) {
        for &rule in &self.always {
            fired.insert(rule);
        }
        // Most requests hold no needle: `any` answers that with its fast prefilter, which the
        // overlapping search below cannot use.
        if let Some(needles) = self.contains.as_ref().filter(|n| n.any.is_match(value)) {
            // Every occurrence of every needle is reported, so a hostile value can make this
            // report a needle per byte; never more than the needles per byte that searching
            // for each needle alone would cost.
            for found in needles.every.find_overlapping_iter(value) {
                fired.insert(self.contains_rules[found.pattern().as_usize()]);
            }
        }
        self.prefixes.walk(value.iter().copied(), fired);
        self.suffixes.walk(value.iter().rev().copied(), fired);
        if !self.equals.is_empty() {
            // By length first: most literals differ from the value in length, which settles
            // the comparison without looking at a byte.
            let start = self
                .equals
                .partition_point(|(literal, _)| (literal.len(), &**literal) < (value.len(), value));
            for (literal, rule) in &self.equals[start..] {
                if !same_bytes(literal, value) {
                    break;
                }
                fired.insert(*rule);
            }
        }
        // As for `contains`: a search for the literals the regexes need, then one search says
        // whether any regex matches, which most requests answer no; only then is each run to
        // say which.
        if !self.regexes.is_empty()
            && self.gate.as_ref().is_none_or(|gate| gate.may_match(value))
            && self
                .any_regex
                .as_ref()
                .is_none_or(|any| any.is_match(value))
        {
            for (regex, rule) in &self.regexes {
                if regex.is_match(value) {
                    fired.insert(*rule);
                }
            }
        }
        if !self.integers.is_empty()
            && let Some(number) = as_integer(value)
        {
            for (test, rule) in &self.integers {
                if test.holds_for_integer(number) {
                    fired.insert(*rule);
                }
            }
        }
        for (test, rule) in &self.others {
            if test.holds(value) {
                fired.insert(*rule);
            }
        }
    }
}

/// The needles of a group's `contains`, as two automata.
#[derive(Debug, Clone)]
struct Needles {
    /// Leftmost-first: it finds a match exactly when some needle occurs, and is the only kind
    /// that can skip ahead with the packed (SIMD) prefilter. Measured under callgrind on a
    /// browser's user agent with `bench/shield.sh`'s twenty agents, 0.34k instructions where
    /// `every` takes 1.9k.
    any: AhoCorasick,
    /// Standard semantics: the only kind that reports every needle that occurs, which
    /// overlapping search needs (`find_overlapping_iter` panics on any other).
    every: AhoCorasick,
}

impl Needles {
    /// `None` when the automata cannot be built (too many or too long needles).
    fn new(needles: &[&[u8]]) -> Option<Needles> {
        let build = |kind| AhoCorasick::builder().match_kind(kind).build(needles).ok();
        Some(Needles {
            any: build(MatchKind::LeftmostFirst)?,
            every: build(MatchKind::Standard)?,
        })
    }
}

/// Several regexes searched as one, to say whether any matches.
#[derive(Debug, Clone)]
enum AnyRegex {
    /// The regexes as alternatives of one: the `regex` crate then uses the literals they start
    /// with to skip ahead, which it does not for a `RegexSet`. Measured under callgrind on the
    /// regexes of `bench/shield.sh`, a set costs 2.3k instructions on a browser's user agent
    /// where the regex alone costs 0.5k, and 0.9k on a query string where the alternation
    /// costs 0.4k; never less than the alternation.
    Alternation(regex::bytes::Regex),
    /// When the alternation cannot be written (a pattern may hold a `(?x)` comment, which
    /// would swallow the closing parenthesis) or is too big: same patterns, same default
    /// flags, so the set matches exactly when one of them does.
    Set(regex::bytes::RegexSet),
}

impl AnyRegex {
    /// `None` for no regex or one (which is searched alone), or when neither form builds.
    fn new(regexes: &[(regex::bytes::Regex, u32)]) -> Option<AnyRegex> {
        if regexes.len() < 2 {
            return None;
        }
        let patterns = || regexes.iter().map(|(regex, _)| regex.as_str());
        // A flag set inside a group ends with the group, so each alternative keeps its own.
        if patterns().all(|pattern| !pattern.contains('#')) {
            let alternation = patterns()
                .map(|pattern| format!("(?:{pattern})"))
                .collect::<Vec<_>>()
                .join("|");
            if let Ok(regex) = regex::bytes::RegexBuilder::new(&alternation)
                .size_limit(MAX_REGEX_BYTES)
                .build()
            {
                return Some(AnyRegex::Alternation(regex));
            }
        }
        regex::bytes::RegexSetBuilder::new(patterns())
            .size_limit(MAX_REGEX_BYTES)
            .build()
            .ok()
            .map(AnyRegex::Set)
    }

    #[inline]
    fn is_match(&self, value: &[u8]) -> bool {
        match self {
            AnyRegex::Alternation(regex) => regex.is_match(value),
            AnyRegex::Set(set) => set.is_match(value),
        }
    }
}

/// Literals one of which occurs in every value one of a group's regexes matches: a match
/// starts with one of a regex's prefix literals and ends with one of its suffix literals
/// (`regex_syntax`'s extraction), so a value holding none of either cannot match.
///
/// Measured under callgrind on `bench/shield.sh`'s `GET /hit`, its four path regexes as one
/// alternation cost 570 instructions (the `regex` crate's set-up and prefilter, on a
/// four-byte path); an Aho-Corasick search of their literals 330, since every path holds the
/// `/` some of them start with; a look at the path's byte pairs about 30.
#[derive(Debug, Clone)]
struct RegexGate {
    /// The first byte of every literal: a bit per byte.
    firsts: [u64; 4],
    /// The first two bytes of every literal of two bytes or more: a bit per pair.
    pairs: Box<[u64; PAIR_WORDS]>,
    /// Whether a literal of one byte is among them (then `firsts` alone decides).
    singles: bool,
    literals: AhoCorasick,
}

const PAIR_WORDS: usize = (1 << 16) / 64;

/// Values up to this long are first looked at pair by pair, which costs a few instructions a
/// byte; longer ones go to the automaton, whose prefilter skips ahead faster on long text.
const SHORT_VALUE: usize = 64;

impl RegexGate {
    /// `None` unless every regex has literals that can gate it.
    fn new(regexes: &[(regex::bytes::Regex, u32)]) -> Option<RegexGate> {
        if regexes.is_empty() {
            return None;
        }
        let mut literals = Vec::new();
        for (regex, _) in regexes {
            literals.extend(required_literals(regex.as_str())?);
        }
        let mut firsts = [0u64; 4];
        let mut pairs = Box::new([0u64; PAIR_WORDS]);
        let mut singles = false;
        for literal in &literals {
            match **literal {
                [] => return None,
                [only] => {
                    singles = true;
                    firsts[usize::from(only) / 64] |= 1 << (only % 64);
                }
                [first, second, ..] => {
                    firsts[usize::from(first) / 64] |= 1 << (first % 64);
                    let pair = pair(first, second);
                    pairs[pair / 64] |= 1 << (pair % 64);
                }
            }
        }
        let literals = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostFirst)
            .build(&literals)
            .ok()?;
        Some(RegexGate {
            firsts,
            pairs,
            singles,
            literals,
        })
    }

    /// False only when no regex of the group can match `value`.
    #[inline]
    fn may_match(&self, value: &[u8]) -> bool {
        if value.len() <= SHORT_VALUE && !self.may_hold_a_literal(value) {
            return false;
        }
        self.literals.is_match(value)
    }

    /// False when no literal can start anywhere in `value`.
    fn may_hold_a_literal(&self, value: &[u8]) -> bool {
        let first = |byte: u8| self.firsts[usize::from(byte) / 64] & (1 << (byte % 64)) != 0;
        if self.singles {
            return value.iter().any(|&byte| first(byte));
        }
        value.windows(2).any(|w| {
            let pair = pair(w[0], w[1]);
            self.pairs[pair / 64] & (1 << (pair % 64)) != 0
        })
    }
}

#[inline]
fn pair(first: u8, second: u8) -> usize {
    usize::from(first) << 8 | usize::from(second)
}

/// Literals one of which every match of `pattern` holds: its prefix or its suffix literals,
/// whichever are longer, so fewer values hold them. `None` when neither kind is a finite set of
/// non-empty literals (a match may start and end with almost anything), or the pattern does not
/// parse as `regex::bytes` parses it.
pub(super) fn required_literals(pattern: &str) -> Option<Vec<Vec<u8>>> {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    // `regex::bytes` parses with these options: Unicode on, matching not limited to UTF-8.
    let hir = regex_syntax::ParserBuilder::new()
        .utf8(false)
        .build()
        .parse(pattern)
        .ok()?;
    [ExtractKind::Prefix, ExtractKind::Suffix]
        .into_iter()
        .filter_map(|kind| {
            let seq = Extractor::new().kind(kind).extract(&hir);
            let literals = seq.literals()?;
            // An empty set says the pattern matches nothing; kept out rather than trusted.
            let shortest = seq.min_literal_len()?;
            (shortest > 0).then(|| {
                let literals: Vec<Vec<u8>> =
                    literals.iter().map(|l| l.as_bytes().to_vec()).collect();
                (shortest, std::cmp::Reverse(literals.len()), literals)
            })
        })
        .max_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)))
        .map(|(_, _, literals)| literals)
}

/// Literals byte by byte: the rules of the literals that end at a node are those of every
/// node a walk passes, so one walk finds every literal the text starts with.
#[derive(Debug, Clone, Default)]
struct Trie {
    /// The root first; empty until a literal is inserted.
    nodes: Vec<TrieNode>,
}

#[derive(Debug, Clone, Default)]
struct TrieNode {
    /// Sorted by byte.
    children: Vec<(u8, u32)>,
    rules: Vec<u32>,
}

impl Trie {
    fn insert(&mut self, literal: impl Iterator<Item = u8>, rule: u32) {
        if self.nodes.is_empty() {
            self.nodes.push(TrieNode::default());
        }
        let mut node = 0usize;
        for byte in literal {
            let children = &self.nodes[node].children;
            node = match children.binary_search_by_key(&byte, |&(b, _)| b) {
                Ok(at) => children[at].1 as usize,
                Err(at) => {
                    let child = self.nodes.len();
                    self.nodes.push(TrieNode::default());
                    self.nodes[node].children.insert(at, (byte, child as u32));
                    child
                }
            };
        }
        self.nodes[node].rules.push(rule);
    }

    fn walk(&self, text: impl Iterator<Item = u8>, fired: &mut Fired) {
        let Some(mut node) = self.nodes.first() else {
            return;
        };
        for byte in text {
            for &rule in &node.rules {
                fired.insert(rule);
            }
            match node.children.binary_search_by_key(&byte, |&(b, _)| b) {
                Ok(at) => node = &self.nodes[node.children[at].1 as usize],
                Err(_) => return,
            }
        }
        for &rule in &node.rules {
            fired.insert(rule);
        }
    }
}
