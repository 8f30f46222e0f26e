//! The waiting line in front of a site's origins: who waits, in what order they are let in,
//! and who is turned away when it is full. Plain data, no clock and no lock: the gate
//! (`super`) holds it under its mutex and decides when a slot is free.
//!
//! Each request waits with a [`Class`] and its arrival. The line lets in the best class
//! first, in arrival order, and when full turns away the worst, the latest comer first. It
//! also keeps the load of each client network (its requests waiting here, and in flight after
//! being let in from here): a network holding more than twice the others' average is *heavy*, and
//! its requests of no better class than [`Class::Unknown`] count as [`Class::Heavy`]. Heaviness
//! is judged when it matters (when a request is let in, or one must be turned away), not only
//! on arrival: a flood that filled the line before others came is ranked as heavy as soon as
//! they do.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// How deserving a waiting request is, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// Its client holds clearance (the challenge's cookie), or an allow list or rule let it
    /// through the shield.
    Trusted,
    /// Its client's address was served by the origin in calm times before this congestion
    /// began (`super::regulars`).
    Regular,
    /// Nothing known either way.
    Unknown,
    /// An unknown client in a network holding more than twice what the other networks hold
    /// on average, of the requests waiting and let in from the line.
    Heavy,
    /// It matched an attack signature's mitigation and went on (`SiteRequest::suspect`).
    Suspect,
}

/// What the gate knows of a request that has to wait.
#[derive(Debug, Clone, Copy)]
pub struct Claims {
    /// The client's network (an IPv4 /24 or IPv6 /48), hashed.
    pub network: u64,
    /// Clearance, or an allow list or rule.
    pub trusted: bool,
    /// A regular client (`super::regulars`).
    pub regular: bool,
    /// Matched an attack signature's mitigation.
    pub suspect: bool,
}

impl Claims {
    /// The class these claims earn, heaviness aside.
    fn class(&self) -> Class {
        if self.suspect {
            Class::Suspect
        } else if self.trusted {
            Class::Trusted
        } else if self.regular {
            // Before the network's load: an office's NAT is one busy network of regulars.
            Class::Regular
        } else {
            Class::Unknown
        }
    }
}

/// A waiting request's ticket: its arrival number, unique in the line.
pub type Ticket = u64;

/// What joining the line did.
#[derive(Debug)]
pub enum Joined<T> {
    /// Waiting with this ticket.
    Waiting(Ticket),
    /// Waiting with this ticket, in the place of the least deserving request, which is out of
    /// the line (its payload handed back).
    Displaced(Ticket, T),
    /// The line is full of requests at least as deserving: not let in (payload handed back).
    Refused(T),
}

struct Waiter<T> {
    network: u64,
    /// Its class on arrival, heaviness aside (or `Heavy` once found heavy).
    class: Class,
    payload: T,
}

#[derive(Default)]
struct Network {
    /// Requests waiting, and let in from the line still in flight.
    load: u32,
    /// Tickets of its requests waiting.
    waiting: BTreeSet<Ticket>,
}

/// The waiting line and the per-network loads. Its memory is bounded by what it counts:
/// one entry per waiting request, one per network with a request waiting or let in from here.
pub struct Line<T> {
    waiters: BTreeMap<Ticket, Waiter<T>>,
    /// The waiting requests, best first.
    order: BTreeSet<(Class, Ticket)>,
    next_ticket: Ticket,
    networks: HashMap<u64, Network>,
    /// Networks by load, to find the heaviest.
    by_load: BTreeSet<(u32, u64)>,
    /// The sum of the networks' loads.
    total: u64,
}

impl<T> Default for Line<T> {
    fn default() -> Self {
        Line {
            waiters: BTreeMap::new(),
            order: BTreeSet::new(),
            next_ticket: 0,
            networks: HashMap::new(),
            by_load: BTreeSet::new(),
            total: 0,
        }
    }
}

impl<T> Line<T> {
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.waiters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }

    /// Requests waiting or let in from the line, from `network`.
    pub fn load(&self, network: u64) -> u32 {
        self.networks.get(&network).map_or(0, |n| n.load)
    }

    /// Whether a network holding `load` requests takes more than its fair share: more than
    /// twice what the other networks in the line hold on average, and more than two. (Measured
    /// against the others, not the mean of all: one network holding nearly everything would
    /// otherwise pull the mean up to itself. Twice: a browser's few parallel requests among
    /// single ones are not a flood.) Alone in the line, a network is never heavy.
    fn is_heavy(&self, load: u32) -> bool {
        let others = self.networks.len().saturating_sub(1);
        if others == 0 {
            return false;
        }
        let others_mean = self.total.saturating_sub(u64::from(load)) as f64 / others as f64;
        f64::from(load) > 2.0 * others_mean.max(1.0)
    }

    /// `class` as it stands now: an unknown client's request counts as heavy while its network
    /// is.
    fn judged(&self, class: Class, network: u64) -> Class {
        if class == Class::Unknown && self.is_heavy(self.load(network)) {
            Class::Heavy
        } else {
            class
        }
    }

    /// A request joins the line, which holds at most `capacity` (at least 1).
    pub fn join(&mut self, claims: Claims, payload: T, capacity: usize) -> Joined<T> {
        self.add_load(claims.network);
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        let class = self.judged(claims.class(), claims.network);
        if self.waiters.len() >= capacity.max(1) {
            // Full: the newcomer takes the place of the least deserving, if it is more
            // deserving (and came later than everyone, so a tie goes to those waiting).
            match self.least_deserving() {
                Some((worst, victim)) if (class, ticket) < worst => {
                    let displaced = self.remove(victim);
                    self.insert(ticket, claims.network, class, payload);
                    return Joined::Displaced(ticket, displaced);
                }
                _ => {
                    self.remove_load(claims.network);
                    return Joined::Refused(payload);
                }
            }
        }
        self.insert(ticket, claims.network, class, payload);
        Joined::Waiting(ticket)
    }

    /// The least deserving request waiting, as it stands now: the last in the order, or the
    /// newest request of the heaviest network if that one is heavy and ranks lower.
    fn least_deserving(&self) -> Option<((Class, Ticket), Ticket)> {
        let last = *self.order.last()?;
        let heaviest = self.by_load.last().and_then(|(_, network)| {
            let newest = *self.networks.get(network)?.waiting.last()?;
            let class = self.judged(self.waiters.get(&newest)?.class, *network);
            Some((class, newest))
        });
        Some(match heaviest {
            Some(heavy) if heavy > last => (heavy, heavy.1),
            _ => (last, last.1),
        })
    }

    /// The most deserving request is let in: it leaves the line, and its network's load
    /// stays counted until [`Line::finished`].
    pub fn let_in(&mut self) -> Option<(u64, T)> {
        loop {
            let (class, ticket) = self.order.pop_first()?;
            let network = self.waiters.get(&ticket)?.network;
            let now = self.judged(class, network);
            if now != class {
                // Its network turned heavy while it waited: it waits among the heavy.
                self.order.insert((now, ticket));
                if let Some(waiter) = self.waiters.get_mut(&ticket) {
                    waiter.class = now;
                }
                continue;
            }
            let waiter = self.waiters.remove(&ticket)?;
            if let Some(n) = self.networks.get_mut(&network) {
                n.waiting.remove(&ticket);
            }
            return Some((waiter.network, waiter.payload));
        }
    }

    /// The request with `ticket` leaves without being let in (it waited too long, or its
    /// client went away); `None` if it is no longer in the line.
    pub fn leave(&mut self, ticket: Ticket) -> Option<T> {
        self.waiters
            .contains_key(&ticket)
            .then(|| self.remove(ticket))
    }

    /// A request let in from the line is done with the origin.
    pub fn finished(&mut self, network: u64) {
        self.remove_load(network);
    }

    fn insert(&mut self, ticket: Ticket, network: u64, class: Class, payload: T) {
        self.order.insert((class, ticket));
        self.networks
            .entry(network)
            .or_default()
            .waiting
            .insert(ticket);
        self.waiters.insert(
            ticket,
            Waiter {
                network,
                class,
                payload,
            },
        );
    }

    /// Takes a waiting request out of the line, load and all (the ticket is in it).
    fn remove(&mut self, ticket: Ticket) -> T {
        let Some(waiter) = self.waiters.remove(&ticket) else {
            unreachable!("the caller found the ticket in the line")
        };
        self.order.remove(&(waiter.class, ticket));
        if let Some(n) = self.networks.get_mut(&waiter.network) {
            n.waiting.remove(&ticket);
        }
        self.remove_load(waiter.network);
        waiter.payload
    }

    fn add_load(&mut self, network: u64) {
        self.total += 1;
        let entry = self.networks.entry(network).or_default();
        self.by_load.remove(&(entry.load, network));
        entry.load += 1;
        self.by_load.insert((entry.load, network));
    }

    fn remove_load(&mut self, network: u64) {
        let Some(entry) = self.networks.get_mut(&network) else {
            return;
        };
        self.total = self.total.saturating_sub(1);
        self.by_load.remove(&(entry.load, network));
        entry.load = entry.load.saturating_sub(1);
        if entry.load == 0 && entry.waiting.is_empty() {
            self.networks.remove(&network);
        } else {
            self.by_load.insert((entry.load, network));
        }
        if self.networks.is_empty() && self.networks.capacity() > 1024 {
            // A flood's worth of networks is not kept once it has passed.
            self.networks = HashMap::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(network: u64) -> Claims {
        Claims {
            network,
            trusted: false,
            regular: false,
            suspect: false,
        }
    }

    fn trusted(network: u64) -> Claims {
        Claims {
            trusted: true,
            ..claims(network)
        }
    }

    fn suspect(network: u64) -> Claims {
        Claims {
            suspect: true,
            trusted: true,
            ..claims(network)
        }
    }

    fn regular(network: u64) -> Claims {
        Claims {
            regular: true,
            ..claims(network)
        }
    }

    fn waiting(joined: Joined<&'static str>) -> Ticket {
        match joined {
            Joined::Waiting(place) => place,
            other => panic!("not simply waiting: {other:?}"),
        }
    }

    fn order(line: &mut Line<&'static str>) -> Vec<&'static str> {
        std::iter::from_fn(|| line.let_in().map(|(_, name)| name)).collect()
    }

    #[test]
    fn trusted_then_regular_then_unknown_then_suspect_each_in_arrival_order() {
        let mut line = Line::default();
        waiting(line.join(suspect(1), "suspect", 10));
        waiting(line.join(claims(2), "unknown-1", 10));
        waiting(line.join(regular(3), "regular", 10));
        waiting(line.join(trusted(4), "trusted-1", 10));
        waiting(line.join(claims(5), "unknown-2", 10));
        waiting(line.join(trusted(6), "trusted-2", 10));
        assert_eq!(
            order(&mut line),
            [
                "trusted-1",
                "trusted-2",
                "regular",
                "unknown-1",
                "unknown-2",
                "suspect"
            ]
        );
    }

    #[test]
    fn a_network_past_twice_its_fair_share_waits_behind_light_ones() {
        let mut line = Line::default();
        // Ten light networks with one request each, and one network with many.
        for network in 0..10 {
            waiting(line.join(claims(network), "light", 100));
        }
        for _ in 0..30 {
            waiting(line.join(claims(99), "heavy", 100));
        }
        // A light network arriving last still goes before the heavy network's excess.
        waiting(line.join(claims(50), "late light", 100));
        let order = order(&mut line);
        assert_eq!(&order[..10], ["light"; 10]);
        assert_eq!(order[10], "late light", "{order:?}");
    }

    #[test]
    fn a_flood_that_filled_the_line_first_is_ranked_heavy_once_others_come() {
        let mut line = Line::default();
        // Alone in the line a network is never heavy: its share is all of it.
        for _ in 0..20 {
            waiting(line.join(claims(99), "flood", 21));
        }
        waiting(line.join(claims(1), "light", 21));
        assert_eq!(line.let_in().map(|(_, n)| n), Some("light"));
        // And when the line is full, a light newcomer displaces the flood's newest request.
        waiting(line.join(claims(2), "light", 21));
        match line.join(claims(3), "light", 21) {
            Joined::Displaced(_, out) => assert_eq!(out, "flood"),
            other => panic!("{other:?}"),
        }
        // The flood's own newcomer is refused.
        assert!(matches!(
            line.join(claims(99), "flood", 21),
            Joined::Refused(_)
        ));
    }

    #[test]
    fn a_regular_or_trusted_client_is_never_ranked_heavy() {
        let mut line = Line::default();
        waiting(line.join(claims(1), "light", 100));
        for _ in 0..20 {
            waiting(line.join(regular(2), "office", 100));
        }
        waiting(line.join(trusted(2), "cleared", 100));
        let order = order(&mut line);
        assert_eq!(order[0], "cleared");
        assert_eq!(order.last(), Some(&"light"), "{order:?}");
    }

    #[test]
    fn a_full_line_displaces_its_least_deserving_newest_request() {
        let mut line = Line::default();
        waiting(line.join(claims(1), "unknown-1", 3));
        waiting(line.join(suspect(2), "suspect", 3));
        waiting(line.join(claims(3), "unknown-2", 3));
        // Full. An unknown client takes the suspect's place...
        match line.join(claims(4), "unknown-3", 3) {
            Joined::Displaced(_, out) => assert_eq!(out, "suspect"),
            other => panic!("{other:?}"),
        }
        // ...a trusted one the newest unknown's...
        match line.join(trusted(5), "trusted", 3) {
            Joined::Displaced(_, out) => assert_eq!(out, "unknown-3"),
            other => panic!("{other:?}"),
        }
        // ...and an unknown one is refused: everyone waiting is at least as deserving and
        // came first.
        match line.join(claims(6), "unknown-4", 3) {
            Joined::Refused(out) => assert_eq!(out, "unknown-4"),
            other => panic!("{other:?}"),
        }
        assert_eq!(line.len(), 3);
        assert_eq!(order(&mut line), ["trusted", "unknown-1", "unknown-2"]);
    }

    #[test]
    fn loads_count_waiting_and_let_in_requests_and_are_forgotten_when_done() {
        let mut line = Line::default();
        let a = waiting(line.join(claims(7), "a", 10));
        waiting(line.join(claims(7), "b", 10));
        assert_eq!(line.load(7), 2);
        // One leaves (timed out), one is let in and still in flight.
        assert_eq!(line.leave(a), Some("a"));
        assert_eq!(line.leave(a), None, "leaving twice changes nothing");
        let (network, _) = line.let_in().unwrap();
        assert_eq!(line.load(7), 1);
        line.finished(network);
        assert_eq!(line.load(7), 0);
        assert!(line.networks.is_empty() && line.by_load.is_empty());
        assert_eq!(line.total, 0);
        // A refused or displaced request's load is not kept either.
        let mut line = Line::default();
        waiting(line.join(claims(1), "x", 1));
        assert!(matches!(line.join(claims(2), "y", 1), Joined::Refused(_)));
        assert!(matches!(
            line.join(trusted(3), "z", 1),
            Joined::Displaced(..)
        ));
        assert_eq!((line.load(1), line.load(2), line.load(3)), (0, 0, 1));
    }
}
