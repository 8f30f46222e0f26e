//! The literal conditions of many rules on one field, matched together in one pass over the
//! field.
//!
//! Most rules a site writes are one text condition, or an `or` of a few, on one field:
//! `http.user_agent contains "sqlmap"`, `http.request.uri.path starts_with "/wp-admin"`. One by
//! one, each scans the field again; a request that matches none of them, the common case,
//! pays once per rule. Grouped per field, the same request pays once per field: one
//! Aho-Corasick pass for every `contains`, one walk down a byte trie for every `starts_with`
//! (another, over the reversed field, for every `ends_with`), one bisection for every `eq` and
//! `in`, one `RegexSet` search for every `matches`. Each literal carries the index of its rule, so the group answers which rules match.

use super::MAX_REGEX_BYTES;
use super::eval::{Comparison, Node, Read, TextTest};
use aho_corasick::{AhoCorasick, MatchKind};

/// Rules past this index in a set are never grouped: the per-request record of which grouped
/// rules matched is then a fixed array on the stack.
pub(super) const GROUPED_RULES: usize = 512;

/// Which grouped rules matched this request, one bit per rule index.
#[derive(Default)]
pub(super) struct Matched([u64; GROUPED_RULES / 64]);

impl Matched {
    fn insert(&mut self, rule: u32) {
        let rule = rule as usize;
        self.0[rule / 64] |= 1 << (rule % 64);
    }

    pub fn contains(&self, rule: usize) -> bool {
        self.0
            .get(rule / 64)
            .is_some_and(|word| word & (1 << (rule % 64)) != 0)
    }
}

/// One literal condition, with what it compares the field with.
#[derive(Debug, Clone)]
pub(super) enum Literal {
    Contains(Box<[u8]>),
    StartsWith(Box<[u8]>),
    EndsWith(Box<[u8]>),
    /// `eq`, and each string of an `in`.
    Equals(Box<[u8]>),
    Matches(regex::bytes::Regex),
}

/// A rule's index in its set, and its literals.
pub(super) type LiteralRule = (u32, Vec<Literal>);

/// For an `and` chain, the literals of its first conjunct that is one literal condition or an
/// `or` of them on one field: the chain cannot match unless they do, so a group can rule it
/// out in the same pass as the rules it answers whole.
pub(super) fn literal_conjunct(root: &Node) -> Option<(&Read, Vec<Literal>)> {
    let Node::All(conjuncts) = root else {
        return None;
    };
    conjuncts.iter().find_map(literal_conditions)
}

/// The field and literals of a rule whose whole expression is one condition a group can test
/// (`contains`, `starts_with`, `ends_with`, `eq`, `in` with strings, `matches`) or an `or` of
/// them on a single field; `None` for any other shape.
pub(super) fn literal_conditions(root: &Node) -> Option<(&Read, Vec<Literal>)> {
    let conditions: &[Node] = match root {
        Node::Text(..) => std::slice::from_ref(root),
        Node::Any(nodes) => nodes,
        _ => return None,
    };
    let mut field: Option<&Read> = None;
    let mut literals = Vec::new();
    for condition in conditions {
        let Node::Text(read, test) = condition else {
            return None;
        };
        match field {
            Some(known) if known.field != read.field => return None,
            _ => field = Some(read),
        }
        match test {
            TextTest::Contains(finder) => {
                literals.push(Literal::Contains(finder.needle().into()));
            }
            TextTest::StartsWith(prefix) => literals.push(Literal::StartsWith(prefix.clone())),
            TextTest::EndsWith(suffix) => literals.push(Literal::EndsWith(suffix.clone())),
            TextTest::Compare(Comparison::Eq, literal) => {
                literals.push(Literal::Equals(literal.clone()));
            }
            TextTest::In(set) => {
                literals.extend(set.items().iter().cloned().map(Literal::Equals));
            }
            TextTest::Matches(regex) => literals.push(Literal::Matches(regex.clone())),
            _ => return None,
        }
    }
    Some((field?, literals))
}

/// The literal conditions of several rules on one field.
#[derive(Debug, Clone)]
pub(super) struct LiteralGroup {
    pub read: Read,
    /// Every `contains` with a non-empty needle; pattern `i` belongs to rule `contains_rules[i]`.
    contains: Option<AhoCorasick>,
    contains_rules: Box<[u32]>,
    prefixes: Trie,
    /// Built over the suffixes reversed, walked over the field reversed.
    suffixes: Trie,
    /// Sorted by literal.
    equals: Box<[(Box<[u8]>, u32)]>,
    /// Rules that match whatever the field holds (`contains ""`).
    always: Box<[u32]>,
    /// Every `matches`, with its rule; run only when `any_regex` finds one of them matches.
    regexes: Box<[(regex::bytes::Regex, u32)]>,
    /// All of `regexes` as one automaton; `None` when it would be too big, and then each
    /// regex runs on every request.
    any_regex: Option<regex::bytes::RegexSet>,
}

impl LiteralGroup {
    /// The group of `rules`' literals on the field `read`; `None` when the automaton cannot be
    /// built (too many or too long needles), in which case the rules are left alone.
    pub fn new(read: Read, rules: &[LiteralRule]) -> Option<LiteralGroup> {
        let mut needles: Vec<&[u8]> = Vec::new();
        let mut contains_rules = Vec::new();
        let mut prefixes = Trie::default();
        let mut suffixes = Trie::default();
        let mut equals = Vec::new();
        let mut always = Vec::new();
        let mut regexes = Vec::new();
        for (rule, literals) in rules {
            for literal in literals {
                match literal {
                    Literal::Contains(needle) if needle.is_empty() => always.push(*rule),
                    Literal::Contains(needle) => {
                        needles.push(needle);
                        contains_rules.push(*rule);
                    }
                    Literal::StartsWith(prefix) => prefixes.insert(prefix.iter().copied(), *rule),
                    Literal::EndsWith(suffix) => {
                        suffixes.insert(suffix.iter().rev().copied(), *rule);
                    }
                    Literal::Equals(literal) => equals.push((literal.clone(), *rule)),
                    Literal::Matches(regex) => regexes.push((regex.clone(), *rule)),
                }
            }
        }
        let contains = if needles.is_empty() {
            None
        } else {
            // Standard semantics: the only kind that reports every needle that occurs, which
            // overlapping search needs (`find_overlapping_iter` panics on any other).
            let automaton = AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .build(&needles)
                .ok()?;
            Some(automaton)
        };
        equals.sort_unstable();
        equals.dedup();
        // Same patterns, same default flags: the set matches exactly when one of them does.
        let any_regex = if regexes.is_empty() {
            None
        } else {
            regex::bytes::RegexSetBuilder::new(regexes.iter().map(|(regex, _)| regex.as_str()))
                .size_limit(MAX_REGEX_BYTES)
                .build()
                .ok()
        };
        Some(LiteralGroup {
            read,
            contains,
            contains_rules: contains_rules.into(),
            prefixes,
            suffixes,
            equals: equals.into(),
            always: always.into(),
            regexes: regexes.into(),
            any_regex,
        })
    }

    /// Records in `matched` every rule of the group one of whose literals holds for `value`.
    pub fn find(&self, value: &[u8], matched: &mut Matched) {
        for &rule in &self.always {
            matched.insert(rule);
        }
        // Most requests hold no needle: `is_match` answers that with the automaton's fast
        // prefilter, which the overlapping search below cannot use.
        if let Some(automaton) = self.contains.as_ref().filter(|a| a.is_match(value)) {
            // Every occurrence of every needle is reported, so a hostile value can make this
            // report a needle per byte; never more than the needles per byte that searching
            // for each needle alone would cost.
            for found in automaton.find_overlapping_iter(value) {
                matched.insert(self.contains_rules[found.pattern().as_usize()]);
            }
        }
        self.prefixes.walk(value.iter().copied(), matched);
        self.suffixes.walk(value.iter().rev().copied(), matched);
        let start = self
            .equals
            .partition_point(|(literal, _)| **literal < *value);
        for (literal, rule) in &self.equals[start..] {
            if **literal != *value {
                break;
            }
            matched.insert(*rule);
        }
        // As for `contains`: one pass says whether any regex matches, which most requests
        // answer no; only then is each run to say which.
        if !self.regexes.is_empty()
            && self
                .any_regex
                .as_ref()
                .is_none_or(|set| set.is_match(value))
        {
            for (regex, rule) in &self.regexes {
                if regex.is_match(value) {
                    matched.insert(*rule);
                }
            }
        }
    }
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

    fn walk(&self, text: impl Iterator<Item = u8>, matched: &mut Matched) {
        let Some(mut node) = self.nodes.first() else {
            return;
        };
        for byte in text {
            for &rule in &node.rules {
                matched.insert(rule);
            }
            match node.children.binary_search_by_key(&byte, |&(b, _)| b) {
                Ok(at) => node = &self.nodes[node.children[at].1 as usize],
                Err(_) => return,
            }
        }
        for &rule in &node.rules {
            matched.insert(rule);
        }
    }
}
