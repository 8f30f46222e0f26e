//! The address conditions of many rules (`ip.src in {...}`, `ip.src eq ...`, the orderings)
//! answered by one lookup.
//!
//! Each condition is a set of ranges of addresses. Cut at every range's ends, the address
//! space becomes intervals inside which every address is in the same conditions' ranges; each
//! interval keeps the rules of those conditions. One bisection finds the client's interval,
//! and with it every rule whose condition holds, however many rules name addresses.

use super::eval::{Comparison, IpTest};
use super::ruleset::Fired;
use std::net::IpAddr;

/// The most rule indices the intervals may hold in all. Conditions on wide, overlapping
/// ranges copy their rule into every interval they cover; a rule set past this leaves its
/// address conditions to be evaluated rule by rule.
const MAX_ENTRIES: usize = 1 << 20;

/// One address condition of a rule.
pub(super) type Condition<'n> = (&'n IpTest, u32);

/// The address conditions of a rule set, by interval.
#[derive(Debug, Clone)]
pub(super) struct AddressGroup {
    v4: Intervals<u32>,
    v6: Intervals<u128>,
}

impl AddressGroup {
    /// `None` when the intervals would hold more than [`MAX_ENTRIES`] rule indices.
    pub fn new(conditions: &[Condition<'_>]) -> Option<AddressGroup> {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for &(test, rule) in conditions {
            match test {
                IpTest::In(ranges) => {
                    v4.extend(ranges.v4().iter().map(|&(first, last)| (first, last, rule)));
                    v6.extend(ranges.v6().iter().map(|&(first, last)| (first, last, rule)));
                }
                IpTest::Compare(comparison, IpAddr::V4(literal)) => {
                    let (same, other) = compared(*comparison, u32::from(*literal));
                    v4.extend(same.into_iter().flatten().map(|(a, b)| (a, b, rule)));
                    if other {
                        v6.push((0, u128::MAX, rule));
                    }
                }
                IpTest::Compare(comparison, IpAddr::V6(literal)) => {
                    let (same, other) = compared(*comparison, u128::from(*literal));
                    v6.extend(same.into_iter().flatten().map(|(a, b)| (a, b, rule)));
                    if other {
                        v4.push((0, u32::MAX, rule));
                    }
                }
            }
        }
        let mut budget = MAX_ENTRIES;
        Some(AddressGroup {
            v4: Intervals::new(v4, &mut budget)?,
            v6: Intervals::new(v6, &mut budget)?,
        })
    }

    /// Records in `fired` every rule one of whose conditions holds for `ip`, canonical (see
    /// [`IpAddr::to_canonical`]).
    #[inline]
    pub fn find(&self, ip: IpAddr, fired: &mut Fired) {
        match ip {
            IpAddr::V4(ip) => self.v4.find(u32::from(ip), fired),
            IpAddr::V6(ip) => self.v6.find(u128::from(ip), fired),
        }
    }
}

/// The ranges of one family that `address comparison literal` holds for (at most two), and
/// whether it holds for every address of the other family: addresses of two families are
/// never equal and have no order between them, so only `ne` holds across.
fn compared<T: Address>(comparison: Comparison, literal: T) -> ([Option<(T, T)>; 2], bool) {
    let below = literal.before().map(|before| (T::ZERO, before));
    let above = literal.after().map(|after| (after, T::MAX));
    match comparison {
        Comparison::Eq => ([Some((literal, literal)), None], false),
        Comparison::Ne => ([below, above], true),
        Comparison::Lt => ([below, None], false),
        Comparison::Le => ([Some((T::ZERO, literal)), None], false),
        Comparison::Gt => ([above, None], false),
        Comparison::Ge => ([Some((literal, T::MAX)), None], false),
    }
}

/// `u32` for IPv4, `u128` for IPv6.
trait Address: Copy + Ord {
    const ZERO: Self;
    const MAX: Self;
    fn before(self) -> Option<Self>;
    fn after(self) -> Option<Self>;
}

impl Address for u32 {
    const ZERO: u32 = 0;
    const MAX: u32 = u32::MAX;
    fn before(self) -> Option<u32> {
        self.checked_sub(1)
    }
    fn after(self) -> Option<u32> {
        self.checked_add(1)
    }
}

impl Address for u128 {
    const ZERO: u128 = 0;
    const MAX: u128 = u128::MAX;
    fn before(self) -> Option<u128> {
        self.checked_sub(1)
    }
    fn after(self) -> Option<u128> {
        self.checked_add(1)
    }
}

/// Disjoint intervals of one family, sorted, each with the rules whose condition covers it.
#[derive(Debug, Clone)]
struct Intervals<T> {
    firsts: Box<[T]>,
    lasts: Box<[T]>,
    /// Interval `i`'s rules are `rules[starts[i]..starts[i + 1]]`.
    starts: Box<[u32]>,
    rules: Box<[u32]>,
}

impl<T: Address> Intervals<T> {
    /// From `(first, last, rule)` ranges; `None` past the budget of rule indices.
    fn new(ranges: Vec<(T, T, u32)>, budget: &mut usize) -> Option<Intervals<T>> {
        // Every address where what holds may change: the start of a range, and the one after
        // its end.
        let mut cuts: Vec<T> = Vec::with_capacity(2 * ranges.len());
        for &(first, last, _) in &ranges {
            cuts.push(first);
            cuts.extend(last.after());
        }
        cuts.sort_unstable();
        cuts.dedup();
        // Elementary interval `i` runs from `cuts[i]` to the address before `cuts[i + 1]`.
        let mut covering: Vec<Vec<u32>> = vec![Vec::new(); cuts.len()];
        for &(first, last, rule) in &ranges {
            let from = cuts.partition_point(|&cut| cut < first);
            let to = last
                .after()
                .map_or(cuts.len(), |after| cuts.partition_point(|&cut| cut < after));
            *budget = budget.checked_sub(to - from)?;
            for rules in &mut covering[from..to] {
                rules.push(rule);
            }
        }
        let mut firsts = Vec::new();
        let mut lasts: Vec<T> = Vec::new();
        let mut starts = vec![0u32];
        let mut rules: Vec<u32> = Vec::new();
        for (index, mut covered) in covering.into_iter().enumerate() {
            if covered.is_empty() {
                continue;
            }
            covered.sort_unstable();
            covered.dedup();
            let first = cuts[index];
            let last = cuts
                .get(index + 1)
                .and_then(|next| next.before())
                .unwrap_or(T::MAX);
            let previous = starts.len().checked_sub(2);
            // Next to the previous interval and with the same rules: one interval.
            if let Some(at) = previous
                && lasts.last().and_then(|&l| l.after()) == Some(first)
                && rules[starts[at] as usize..] == covered[..]
            {
                if let Some(end) = lasts.last_mut() {
                    *end = last;
                }
                continue;
            }
            firsts.push(first);
            lasts.push(last);
            rules.extend_from_slice(&covered);
            starts.push(u32::try_from(rules.len()).ok()?);
        }
        Some(Intervals {
            firsts: firsts.into(),
            lasts: lasts.into(),
            starts: starts.into(),
            rules: rules.into(),
        })
    }

    #[inline]
    fn find(&self, address: T, fired: &mut Fired) {
        let after = self.firsts.partition_point(|&first| first <= address);
        let Some(at) = after.checked_sub(1) else {
            return;
        };
        if address > self.lasts[at] {
            return;
        }
        let (from, to) = (self.starts[at] as usize, self.starts[at + 1] as usize);
        for &rule in &self.rules[from..to] {
            fired.insert(rule);
        }
    }
}
