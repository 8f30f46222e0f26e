//! A site's rules evaluated together, in file order, driven by the conditions that can decide
//! them.
//!
//! Rule by rule, a hundred rules cost a hundred evaluations per request, most of them reading a
//! header the request does not carry and failing. Measured under callgrind on
//! `bench/shield.sh`'s rules (bench/README.md, "Shield benchmark"), that was 7.2k instructions
//! per request, a third of them `HeaderMap` lookups. A rule set instead
//!
//! 1. reads every header its rules name in one pass over the request's fields (`headers`);
//! 2. gives each rule a *trigger*: conditions of which at least one holds whenever the rule
//!    does. A condition alone is its own; an `or` has those of all its terms, an `and` those of
//!    its most selective term (`not` is pushed inwards: `not (a and b)` is `not a or not b`).
//!    Text conditions on one field are tested together, one read of the field for all of them
//!    (`literals`), and so are the address conditions of every rule, one lookup for all
//!    (`addresses`); a header a request does not carry costs nothing, what its conditions say
//!    of an empty field being known beforehand;
//! 3. evaluates only the rules whose trigger fired, in order. A rule that is its trigger (an
//!    `or` of conditions, or one) is decided by the firing alone. Rules without a trigger
//!    (`ssl`, negated conditions) are evaluated on every request, as are rules past
//!    [`TRIGGERED_RULES`].
//!
//! A rule cannot match unless its trigger fires, so which rules match is the same as rule by
//! rule (`tests::agreement::a_rule_set_agrees_with_each_rule_alone`).

use super::Expr;
use super::addresses::{self, AddressGroup};
use super::eval::{Fields, IpTest, Node, Read, TextTest};
use super::headers::{HeaderSlots, HeaderValues, SLOTS, SlotMask};
use super::literals::{self, TextGroup};
use crate::RequestFacts;
use std::ops::ControlFlow;

/// Rules past this index in a set are evaluated one by one on every request: the record of
/// whose triggers fired is then a fixed array on the stack.
pub(super) const TRIGGERED_RULES: usize = 512;

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
///     version: http::Version::HTTP_11,
///     connection: shield::ConnectionTraits::none(),
/// };
/// assert_eq!(set.matched(&request), [false, true]);
/// # Ok::<(), shield::rules::RuleError>(())
/// ```
#[derive(Debug, Clone)]
pub struct RuleSet {
    rules: Box<[Rule]>,
    headers: HeaderSlots,
    groups: Box<[TextGroup]>,
    /// The groups on fields without a header slot, run on every request.
    unslotted: Box<[usize]>,
    /// The group on each header slot's field.
    by_slot: [Option<u16>; SLOTS],
    /// Slots with a group.
    grouped_slots: SlotMask,
    /// Slots whose group fires something for an empty field, so runs even when the header is
    /// absent.
    fire_when_absent: SlotMask,
    addresses: Option<AddressGroup>,
    /// Rules without a trigger, evaluated on every request.
    untriggered: Fired,
    /// Words of [`Fired`] that rules use.
    words: usize,
}

#[derive(Debug, Clone)]
enum Rule {
    /// An `or` of the conditions of its trigger (or one): matches when the trigger fired.
    Fired,
    /// Evaluated when its trigger fired, or on every request when it has none.
    Checked(Node),
}

impl RuleSet {
    /// The rules, in the order given, which is the order [`RuleSet::walk`] visits them in.
    pub fn new<'e>(rules: impl IntoIterator<Item = &'e Expr>) -> RuleSet {
        let mut headers = HeaderSlots::default();
        let roots: Vec<Node> = rules
            .into_iter()
            .map(|rule| {
                let mut root = rule.root.clone();
                assign_slots(&mut root, &mut headers);
                root
            })
            .collect();
        headers.finish();
        let triggered = roots.len().min(TRIGGERED_RULES);
        let triggers_of = |addresses: bool| -> Vec<Option<Trigger<'_>>> {
            roots[..triggered]
                .iter()
                .map(|root| trigger(root, false, addresses))
                .collect()
        };
        let mut triggers = triggers_of(true);
        let mut address_group = None;
        let address_conditions = address_conditions(&triggers);
        if !address_conditions.is_empty() {
            address_group = AddressGroup::new(&address_conditions);
            if address_group.is_none() {
                // Too many wide, overlapping ranges to share a lookup: evaluated rule by rule.
                triggers = triggers_of(false);
            }
        }

        // The text conditions of each field, in order of the field's first use.
        let mut by_field: Vec<(&Read, Vec<literals::Condition<'_>>)> = Vec::new();
        let mut untriggered = Fired::default();
        for (index, trigger) in triggers.iter().enumerate() {
            let Some(trigger) = trigger else {
                untriggered.insert(index as u32);
                continue;
            };
            for leaf in &trigger.leaves {
                let Leaf::Text(read, test) = leaf else {
                    continue;
                };
                let condition = (*test, index as u32);
                match by_field
                    .iter_mut()
                    .find(|(known, _)| known.field == read.field)
                {
                    Some((_, conditions)) => conditions.push(condition),
                    None => by_field.push((read, vec![condition])),
                }
            }
        }
        let mut groups = Vec::with_capacity(by_field.len());
        let mut unslotted = Vec::new();
        let mut by_slot = [None; SLOTS];
        let mut grouped_slots: SlotMask = 0;
        let mut fire_when_absent: SlotMask = 0;
        for (read, conditions) in by_field {
            let group = TextGroup::new(read.clone(), &conditions);
            let index = groups.len();
            match u16::try_from(index) {
                Ok(index) if read.slot != Read::UNCACHED => {
                    let slot = usize::from(read.slot);
                    by_slot[slot] = Some(index);
                    grouped_slots |= 1 << slot;
                    if !group.on_empty.is_empty() {
                        fire_when_absent |= 1 << slot;
                    }
                }
                _ => unslotted.push(index),
            }
            groups.push(group);
        }
        let exact: Vec<bool> = triggers
            .iter()
            .map(|trigger| trigger.as_ref().is_some_and(|t| t.exact))
            .collect();
        drop(triggers);
        let rules: Vec<Rule> = roots
            .into_iter()
            .enumerate()
            .map(|(index, root)| match exact.get(index) {
                Some(true) => Rule::Fired,
                _ => Rule::Checked(root),
            })
            .collect();
        RuleSet {
            words: triggered.div_ceil(64),
            rules: rules.into(),
            headers,
            groups: groups.into(),
            unslotted: unslotted.into(),
            by_slot,
            grouped_slots,
            fire_when_absent,
            addresses: address_group,
            untriggered,
        }
    }

    /// How many rules the set holds.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True when the set holds no rule.
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
        let mut fields = Request {
            facts,
            slots: &self.headers,
            headers: HeaderValues::new(),
        };
        self.headers.read(facts, &mut fields.headers);
        // Every trigger is worked out up front, even if an early rule decides: a group costs
        // about what one of its rules would, and this keeps the walk below a plain loop.
        let mut fired = self.untriggered;
        for &group in &self.unslotted {
            let group = &self.groups[group];
            fields.text(&group.read, |value| group.find(value, &mut fired));
        }
        let mut slots = (fields.headers.present | self.fire_when_absent) & self.grouped_slots;
        while slots != 0 {
            let slot = slots.trailing_zeros() as usize;
            slots &= slots - 1;
            if let Some(group) = self.by_slot[slot] {
                let group = &self.groups[usize::from(group)];
                fields.text(&group.read, |value| group.find(value, &mut fired));
            }
        }
        if let Some(addresses) = &self.addresses {
            addresses.find(facts.ip.to_canonical(), &mut fired);
        }
        for (word_index, &word) in fired.0[..self.words].iter().enumerate() {
            let mut word = word;
            while word != 0 {
                let index = word_index * 64 + word.trailing_zeros() as usize;
                word &= word - 1;
                let matches = match &self.rules[index] {
                    Rule::Fired => true,
                    Rule::Checked(node) => node.eval(&mut fields),
                };
                if matches && let ControlFlow::Break(decided) = visit(index) {
                    return Some(decided);
                }
            }
        }
        for (index, rule) in self.rules.iter().enumerate().skip(TRIGGERED_RULES) {
            let matches = match rule {
                Rule::Fired => true,
                Rule::Checked(node) => node.eval(&mut fields),
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

/// The rules (by index, below [`TRIGGERED_RULES`]) whose triggers fired for this request.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Fired([u64; TRIGGERED_RULES / 64]);

impl Fired {
    #[inline]
    pub fn insert(&mut self, rule: u32) {
        let rule = rule as usize % TRIGGERED_RULES;
        self.0[rule / 64] |= 1 << (rule % 64);
    }

    /// The rules, in order.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..TRIGGERED_RULES).filter(|&rule| self.0[rule / 64] & (1 << (rule % 64)) != 0)
    }
}

/// Conditions of which at least one holds whenever a node does.
struct Trigger<'n> {
    /// How often it may fire, roughly: what picks an `and`'s term.
    cost: u32,
    leaves: Vec<Leaf<'n>>,
    /// Whether the node holds exactly when one of the conditions does.
    exact: bool,
}

enum Leaf<'n> {
    Text(&'n Read, &'n TextTest),
    Address(&'n IpTest),
}

/// The trigger of `node` (of `not node` when `negated`), `None` when it has none: conditions
/// under `not`, `ssl`, and what is made of them. Address conditions only when `addresses`.
fn trigger(node: &Node, negated: bool, addresses: bool) -> Option<Trigger<'_>> {
    match (node, negated) {
        (Node::Not(inner), _) => trigger(inner, !negated, addresses),
        // Holds only if every term does: any term's trigger will do; the one that fires least.
        (Node::All(terms), false) | (Node::Any(terms), true) => {
            let mut best = terms
                .iter()
                .filter_map(|term| trigger(term, negated, addresses))
                .min_by_key(|trigger| trigger.cost)?;
            best.exact &= terms.len() == 1;
            Some(best)
        }
        // Holds if any term does: it needs every term's trigger.
        (Node::Any(terms), false) | (Node::All(terms), true) => {
            let mut all = Trigger {
                cost: 0,
                leaves: Vec::new(),
                exact: true,
            };
            for term in terms {
                let trigger = trigger(term, negated, addresses)?;
                all.cost = all.cost.saturating_add(trigger.cost);
                all.leaves.extend(trigger.leaves);
                all.exact &= trigger.exact;
            }
            Some(all)
        }
        (Node::Text(read, test), false) => Some(Trigger {
            cost: text_cost(test),
            leaves: vec![Leaf::Text(read, test)],
            exact: true,
        }),
        (Node::ClientIp(test), false) if addresses => Some(Trigger {
            cost: match test {
                IpTest::In(_) | IpTest::Compare(super::eval::Comparison::Eq, _) => RARE,
                IpTest::Compare(..) => COMMON,
            },
            leaves: vec![Leaf::Address(test)],
            exact: true,
        }),
        _ => None,
    }
}

/// A condition that holds for few requests: a literal, an address set.
const RARE: u32 = 1;
/// One that holds whenever the field is there (`ne ""`, an integer comparison).
const PRESENT: u32 = 4;
/// One that holds for most requests: on an empty or absent field, or across most addresses.
const COMMON: u32 = 16;

fn text_cost(test: &TextTest) -> u32 {
    if test.holds(b"") {
        return COMMON;
    }
    match test {
        TextTest::Contains(_)
        | TextTest::StartsWith(_)
        | TextTest::EndsWith(_)
        | TextTest::Compare(super::eval::Comparison::Eq, _)
        | TextTest::In(_)
        | TextTest::Matches(_) => RARE,
        _ => PRESENT,
    }
}

fn address_conditions<'n>(triggers: &[Option<Trigger<'n>>]) -> Vec<addresses::Condition<'n>> {
    let mut conditions = Vec::new();
    for (index, trigger) in triggers.iter().enumerate() {
        for leaf in trigger.iter().flat_map(|trigger| &trigger.leaves) {
            if let Leaf::Address(test) = leaf {
                conditions.push((*test, index as u32));
            }
        }
    }
    conditions
}

/// Gives every header field `node` reads its slot, adding slots for new fields while there are
/// some left.
fn assign_slots(node: &mut Node, slots: &mut HeaderSlots) {
    match node {
        Node::All(nodes) | Node::Any(nodes) => {
            for node in nodes {
                assign_slots(node, slots);
            }
        }
        Node::Not(node) => assign_slots(node, slots),
        Node::Tls | Node::ClientIp(_) => {}
        Node::Text(read, _) => read.slot = slots.slot(&read.field).unwrap_or(Read::UNCACHED),
    }
}

/// The request as a rule set's evaluation reads it: the header fields from its slots, filled
/// in one pass; the others straight from the request.
struct Request<'r, 'a> {
    facts: &'r RequestFacts<'a>,
    slots: &'r HeaderSlots,
    headers: HeaderValues<'a>,
}

impl<'a> Fields<'a> for Request<'_, 'a> {
    fn facts(&self) -> &RequestFacts<'a> {
        self.facts
    }

    #[inline]
    fn text<R>(&mut self, read: &Read, then: impl FnOnce(&[u8]) -> R) -> R {
        if read.slot == Read::UNCACHED {
            return then(&read.field.read(self.facts));
        }
        self.headers.text(self.slots, read.slot, self.facts, then)
    }
}
