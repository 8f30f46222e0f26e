//! A site's rules evaluated together, in file order, sharing one read of each text field.
//!
//! One expression alone reads a field about once, but a site's hundred rules read the user
//! agent and a few headers dozens of times, each read a `HeaderMap` lookup (hash the name,
//! probe, compare): measured under callgrind, about a third of what 100 rules cost
//! (bench/README.md, "Shield benchmark"). A rule set gives each distinct text field its rules
//! read a slot when it is built, and reads each slot at most once per request.
//!
//! It also matches the rules that are one text condition (`contains`, `starts_with`,
//! `ends_with`, `eq`, `in` with strings, `matches`) or an `or` of them together, per field
//! (see `literals`), so that a request that matches none of them costs one pass per
//! field rather than one per rule; an `and` chain with such a conjunct is evaluated only when
//! the pass found that conjunct true; other rules are evaluated one by one. Which rules match is
//! the same either way (`tests::agreement::a_rule_set_agrees_with_each_rule_alone`).

use super::Expr;
use super::eval::{Fields, Node, Read};
use super::field::TextField;
use super::literals::{
    GROUPED_RULES, LiteralGroup, LiteralRule, Matched, literal_conditions, literal_conjunct,
};
use crate::RequestFacts;
use std::borrow::Cow;
use std::ops::ControlFlow;

/// How many distinct text fields a rule set keeps for the request; fields past these (more
/// headers than any site writes rules for) are read each time a condition asks.
const SLOTS: usize = 16;

/// Rules compiled together: built once per config snapshot from a site's rules in file order,
/// then asked which rules match each request.
///
/// ```
/// use http::HeaderMap;
/// use shield::RequestFacts;
/// use shield::rules::{Expr, RuleSet};
///
/// let rules = [
///     Expr::parse(r#"http.user_agent contains "sqlmap""#)?,
///     Expr::parse(r#"http.request.uri.path starts_with "/admin""#)?,
/// ];
/// let set = RuleSet::new(&rules);
/// let headers = HeaderMap::new();
/// let request = RequestFacts {
///     ip: "203.0.113.7".parse().unwrap(),
///     host: "example.com",
///     method: "GET",
///     path: "/admin/users",
///     query: "",
///     headers: &headers,
///     tls: true,
/// };
/// assert_eq!(set.matched(&request), [false, true]);
/// # Ok::<(), shield::rules::RuleError>(())
/// ```
#[derive(Debug, Clone)]
pub struct RuleSet {
    rules: Box<[Rule]>,
    /// Evaluated first, each with one read of its field; they record which grouped rules match.
    groups: Box<[LiteralGroup]>,
}

#[derive(Debug, Clone)]
enum Rule {
    /// Evaluated on its own, its fields read through the set's slots.
    Alone(Node),
    /// Answered by a literal group.
    Grouped,
    /// An `and` chain one of whose conjuncts a literal group tests: evaluated only when the
    /// group found that conjunct true.
    Prefiltered(Node),
}

impl RuleSet {
    /// The rules, in the order given, which is the order [`RuleSet::walk`] visits them in.
    pub fn new<'e>(rules: impl IntoIterator<Item = &'e Expr>) -> RuleSet {
        let mut slots: Vec<TextField> = Vec::new();
        let roots: Vec<Node> = rules
            .into_iter()
            .map(|rule| {
                let mut root = rule.root.clone();
                assign_slots(&mut root, &mut slots);
                root
            })
            .collect();
        // The literal rules of each field, in order of the field's first use.
        let mut by_field: Vec<(Read, Vec<LiteralRule>)> = Vec::new();
        for (index, root) in roots.iter().enumerate().take(GROUPED_RULES) {
            let Some((read, literals)) =
                literal_conditions(root).or_else(|| literal_conjunct(root))
            else {
                continue;
            };
            let rule = (index as u32, literals);
            match by_field
                .iter_mut()
                .find(|(known, _)| known.field == read.field)
            {
                Some((_, rules)) => rules.push(rule),
                None => by_field.push((read.clone(), vec![rule])),
            }
        }
        let mut rules: Vec<Rule> = roots.into_iter().map(Rule::Alone).collect();
        let mut groups = Vec::new();
        for (read, literal_rules) in by_field {
            // A lone rule is as fast on its own.
            if literal_rules.len() < 2 {
                continue;
            }
            let Some(group) = LiteralGroup::new(read, &literal_rules) else {
                continue;
            };
            for (index, _) in &literal_rules {
                let rule = &mut rules[*index as usize];
                if let Rule::Alone(root) = std::mem::replace(rule, Rule::Grouped)
                    && literal_conditions(&root).is_none()
                {
                    *rule = Rule::Prefiltered(root);
                }
            }
            groups.push(group);
        }
        RuleSet {
            rules: rules.into(),
            groups: groups.into(),
        }
    }

    /// How many rules the set holds.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Hands `visit` the index of each rule that matches the request, in order, until it
    /// breaks; returns what it broke with. Rules after the break are not evaluated.
    pub fn walk<B>(
        &self,
        facts: &RequestFacts<'_>,
        mut visit: impl FnMut(usize) -> ControlFlow<B>,
    ) -> Option<B> {
        let mut fields = Cached::new(facts);
        // Every group runs up front, even if an early rule decides: a group costs about what
        // one of its rules would, and this keeps the walk below a plain loop.
        let mut matched = Matched::default();
        for group in &self.groups {
            fields.text(&group.read, |value| group.find(value, &mut matched));
        }
        for (index, rule) in self.rules.iter().enumerate() {
            let matches = match rule {
                Rule::Alone(node) => node.eval(&mut fields),
                Rule::Grouped => matched.contains(index),
                Rule::Prefiltered(node) => matched.contains(index) && node.eval(&mut fields),
            };
            if matches && let ControlFlow::Break(decided) = visit(index) {
                return Some(decided);
            }
        }
        None
    }

    /// Whether each rule matches the request, every rule evaluated: for `palisade explain`
    /// and tests, not the request path.
    pub fn matched(&self, facts: &RequestFacts<'_>) -> Vec<bool> {
        let mut matched = vec![false; self.rules.len()];
        self.walk(facts, |index| {
            matched[index] = true;
            ControlFlow::<()>::Continue(())
        });
        matched
    }
}

/// Gives every text field of `node` the slot of its field, adding slots for new fields while
/// there are some left.
fn assign_slots(node: &mut Node, slots: &mut Vec<TextField>) {
    match node {
        Node::All(nodes) | Node::Any(nodes) => {
            for node in nodes {
                assign_slots(node, slots);
            }
        }
        Node::Not(node) => assign_slots(node, slots),
        Node::Tls | Node::ClientIp(_) => {}
        Node::Text(read, _) => read.slot = slot(&read.field, slots),
    }
}

fn slot(field: &TextField, slots: &mut Vec<TextField>) -> u8 {
    let index = match slots.iter().position(|known| known == field) {
        Some(index) => index,
        None if slots.len() < SLOTS => {
            slots.push(field.clone());
            slots.len() - 1
        }
        None => return Read::UNCACHED,
    };
    u8::try_from(index).unwrap_or(Read::UNCACHED)
}

/// The text fields read so far in this request, by slot. On the stack; a value is borrowed
/// from the request unless a header was sent several times and had to be joined.
struct Cached<'r, 'a> {
    facts: &'r RequestFacts<'a>,
    values: [Option<Cow<'a, [u8]>>; SLOTS],
}

impl<'r, 'a> Cached<'r, 'a> {
    fn new(facts: &'r RequestFacts<'a>) -> Self {
        Cached {
            facts,
            values: [const { None }; SLOTS],
        }
    }
}

impl<'a> Fields<'a> for Cached<'_, 'a> {
    fn facts(&self) -> &RequestFacts<'a> {
        self.facts
    }

    #[inline]
    fn text<R>(&mut self, read: &Read, then: impl FnOnce(&[u8]) -> R) -> R {
        let facts = self.facts;
        match self.values.get_mut(usize::from(read.slot)) {
            Some(value) => then(value.get_or_insert_with(|| read.field.read(facts))),
            None => then(&read.field.read(facts)),
        }
    }
}
