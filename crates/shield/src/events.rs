//! Security events: every block, challenge and limit hit, kept in a bounded ring in memory.
//!
//! Under a flood this is written for every refused request, so a record is a few words (no
//! formatted strings) and the ring's lock is held only to move one record in. When the ring
//! is full the oldest events go; the metrics keep the totals.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// What the shield did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventAction {
    /// 403: a deny list or a `block` rule.
    Block,
    /// The browser challenge was served instead of the page.
    Challenge,
    /// Over a rate limit: 429.
    RateLimit,
    /// A `log` rule or limit matched; the request went on.
    Log,
    /// Origin protection: the site's cap on concurrent origin requests was full.
    Shed,
    /// Automatic attack detection switched under-attack mode on or off.
    UnderAttackOn,
    /// Traffic settled and under-attack mode went off.
    UnderAttackOff,
    /// A browser answered its challenge and got clearance.
    ChallengeSolved,
    /// An answer to a challenge was refused.
    ChallengeFailed,
    /// A mitigation derived from an attack's signature came into force.
    MitigationOn,
    /// A mitigation ended (the attack settled, or an operator dismissed it).
    MitigationOff,
    /// No signature matched enough of a surge: everyone without clearance is challenged.
    ChallengeEveryoneOn,
    /// Challenging everyone ended.
    ChallengeEveryoneOff,
    /// A clearance that kept carrying a flood past the challenge was revoked.
    ClearanceRevoked,
    /// The challenge's difficulty changed on evidence of solvers (the value is the new
    /// difficulty).
    Difficulty,
}

impl EventAction {
    /// The action as the API and the CLI write it (`block`, `rate_limit`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            EventAction::Block => "block",
            EventAction::Challenge => "challenge",
            EventAction::RateLimit => "rate_limit",
            EventAction::Log => "log",
            EventAction::Shed => "shed",
            EventAction::UnderAttackOn => "under_attack_on",
            EventAction::UnderAttackOff => "under_attack_off",
            EventAction::ChallengeSolved => "challenge_solved",
            EventAction::ChallengeFailed => "challenge_failed",
            EventAction::MitigationOn => "mitigation_on",
            EventAction::MitigationOff => "mitigation_off",
            EventAction::ChallengeEveryoneOn => "challenge_everyone_on",
            EventAction::ChallengeEveryoneOff => "challenge_everyone_off",
            EventAction::ClearanceRevoked => "clearance_revoked",
            EventAction::Difficulty => "difficulty",
        }
    }
}

/// Why: which part of the shield decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventReason {
    /// In a deny list.
    DenyList,
    /// A `[[site.rule]]` matched.
    Rule,
    /// A `[[site.rate_limit]]` was exceeded.
    RateLimit,
    /// Too many cache misses from one address.
    CacheMisses,
    /// `max_origin_concurrency` was reached.
    OriginConcurrency,
    /// The site is in under-attack mode.
    UnderAttack,
    /// Traffic rose beyond the site's baseline (attack detection).
    RequestSpike,
    /// 5xx answers rose beyond the site's baseline (attack detection).
    ErrorSpike,
    /// Traffic settled back (attack detection).
    Settled,
    /// A challenge's proof of work checked out (the value is the solve time in seconds).
    ProofOfWork,
    /// Answers refused: not a token this edge issued (or for another site, network or
    /// browser), too old, not a solution, or a solution sent before.
    InvalidAnswer,
    /// The answer came after its challenge expired.
    ExpiredAnswer,
    /// The answer's proof of work does not check out.
    WrongAnswer,
    /// The challenge was answered before.
    ReplayedAnswer,
    /// A mitigation derived from the attack's signature matched (`rule_id` names it).
    Signature,
    /// An operator dismissed the mitigation.
    Dismissed,
    /// No signature matched enough of the surge.
    NoSignature,
    /// Evidence of an attacker that solves challenges: a clearance carrying a flood.
    Solver,
}

impl EventReason {
    /// The reason as the API and the CLI write it (`deny_list`, `cache_misses`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            EventReason::DenyList => "deny_list",
            EventReason::Rule => "rule",
            EventReason::RateLimit => "rate_limit",
            EventReason::CacheMisses => "cache_misses",
            EventReason::OriginConcurrency => "origin_concurrency",
            EventReason::UnderAttack => "under_attack",
            EventReason::RequestSpike => "request_spike",
            EventReason::ErrorSpike => "error_spike",
            EventReason::Settled => "settled",
            EventReason::ProofOfWork => "proof_of_work",
            EventReason::InvalidAnswer => "invalid_answer",
            EventReason::ExpiredAnswer => "expired_answer",
            EventReason::WrongAnswer => "wrong_answer",
            EventReason::ReplayedAnswer => "replayed_answer",
            EventReason::Signature => "signature",
            EventReason::Dismissed => "dismissed",
            EventReason::NoSignature => "no_signature",
            EventReason::Solver => "solver",
        }
    }
}

/// One security event: what happened, numbered and stamped.
#[derive(Debug, Clone, Serialize)]
pub struct SecurityEvent {
    /// Increasing from 1 for the life of the process: a reader can ask for what is newer.
    pub id: u64,
    /// When the ring took it (the edge that saw it, for another node's); serialised as unix
    /// milliseconds.
    #[serde(serialize_with = "unix_ms")]
    pub time: SystemTime,
    /// The node of a cluster that saw it (`None` on a node alone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<Arc<str>>,
    /// What happened.
    #[serde(flatten)]
    pub event: NewEvent,
}

fn unix_ms<S: serde::Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    let ms = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    s.serialize_u64(ms)
}

/// What happened, before the ring numbers and stamps it.
#[derive(Debug, Clone, Serialize)]
pub struct NewEvent {
    /// The site it happened on.
    pub site: Arc<str>,
    /// The client's address; absent for site-wide events (attack detection).
    pub client_ip: Option<IpAddr>,
    /// What the shield did.
    pub action: EventAction,
    /// Which part of the shield decided.
    pub reason: EventReason,
    /// The rule, limit or list that decided, when there is one.
    pub rule_id: Option<Arc<str>>,
    /// A figure that goes with the reason: the count over a limit, the request rate of a
    /// spike, the share of a surge a mitigation covers.
    pub value: Option<f64>,
    /// For a mitigation's start and end: the mitigation, with its signature and coverage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mitigation: Option<Arc<crate::signature::Mitigation>>,
}

impl NewEvent {
    /// An event about one client's request, decided by no named rule.
    pub fn for_client(
        site: &Arc<str>,
        client_ip: IpAddr,
        action: EventAction,
        reason: EventReason,
    ) -> NewEvent {
        NewEvent {
            site: Arc::clone(site),
            client_ip: Some(client_ip),
            action,
            reason,
            rule_id: None,
            value: None,
            mitigation: None,
        }
    }
}

/// The most recent events, bounded.
#[derive(Debug)]
pub struct EventRing {
    events: Mutex<VecDeque<SecurityEvent>>,
    capacity: usize,
    next_id: AtomicU64,
    /// In a cluster, this node's name: its own events are shown with it.
    node: std::sync::OnceLock<Arc<str>>,
}

/// Which events a reader wants.
#[derive(Debug, Clone, Default)]
pub struct EventQuery<'a> {
    /// Only this site's events.
    pub site: Option<&'a str>,
    /// Only events of these sites (what a token limited to sites may read).
    pub sites: Option<&'a [String]>,
    /// Only events with a larger id.
    pub after: Option<u64>,
    /// At most this many events, newest first.
    pub limit: usize,
}

impl EventRing {
    /// A ring that keeps the last `capacity` events (at least one).
    pub fn new(capacity: usize) -> EventRing {
        EventRing {
            events: Mutex::new(VecDeque::with_capacity(capacity.min(4096))),
            capacity: capacity.max(1),
            next_id: AtomicU64::new(1),
            node: std::sync::OnceLock::new(),
        }
    }

    /// Names this node (in a cluster): its own events are shown with the name.
    pub fn name_node(&self, node: &str) {
        let _ = self.node.set(node.into());
    }

    /// Keeps an event another node of the cluster saw, at the time it saw it, numbered here.
    pub fn record_from(&self, node: Arc<str>, time: SystemTime, event: NewEvent) {
        self.push(SecurityEvent {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            time,
            node: Some(node),
            event,
        });
    }

    /// Numbers, stamps and keeps `event`, dropping the oldest when the ring is full.
    pub fn record(&self, event: NewEvent) {
        self.push(SecurityEvent {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            time: SystemTime::now(),
            node: None,
            event,
        });
    }

    fn push(&self, event: SecurityEvent) {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if events.len() == self.capacity {
            events.pop_front();
        }
        events.push_back(event);
    }

    /// The newest events first.
    pub fn recent(&self, query: &EventQuery<'_>) -> Vec<SecurityEvent> {
        let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        events
            .iter()
            .rev()
            .take_while(|e| query.after.is_none_or(|after| e.id > after))
            .filter(|e| query.site.is_none_or(|site| &*e.event.site == site))
            .filter(|e| {
                query
                    .sites
                    .is_none_or(|sites| sites.iter().any(|s| **s == *e.event.site))
            })
            .take(query.limit)
            .map(|e| {
                let mut e = e.clone();
                if e.node.is_none() {
                    e.node = self.node.get().cloned();
                }
                e
            })
            .collect()
    }

    /// How many events the ring keeps.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(site: &str, n: u8) -> NewEvent {
        NewEvent {
            site: site.into(),
            client_ip: Some(IpAddr::from([10, 0, 0, n])),
            action: EventAction::Block,
            reason: EventReason::Rule,
            rule_id: Some("r".into()),
            value: None,
            mitigation: None,
        }
    }

    #[test]
    fn keeps_the_newest_within_its_capacity() {
        let ring = EventRing::new(3);
        for n in 1..=5 {
            ring.record(event("a", n));
        }
        let all = ring.recent(&EventQuery {
            limit: 10,
            ..Default::default()
        });
        let ids: Vec<u64> = all.iter().map(|e| e.id).collect();
        assert_eq!(ids, vec![5, 4, 3]);
    }

    #[test]
    fn filters_by_site_and_by_id() {
        let ring = EventRing::new(100);
        for n in 1..=6 {
            ring.record(event(if n % 2 == 0 { "a" } else { "b" }, n));
        }
        let a = ring.recent(&EventQuery {
            site: Some("a"),
            limit: 10,
            ..Default::default()
        });
        assert_eq!(a.iter().map(|e| e.id).collect::<Vec<_>>(), vec![6, 4, 2]);
        let newer = ring.recent(&EventQuery {
            after: Some(4),
            limit: 10,
            ..Default::default()
        });
        assert_eq!(newer.iter().map(|e| e.id).collect::<Vec<_>>(), vec![6, 5]);
        let json = serde_json::to_value(&newer[0]).unwrap();
        assert_eq!(json["action"], "block");
        assert_eq!(json["reason"], "rule");
        assert_eq!(json["client_ip"], "10.0.0.6");
        assert!(json["time"].as_u64().unwrap() > 1_700_000_000_000);
    }

    #[test]
    fn a_reader_limited_to_sites_gets_only_their_events() {
        let ring = EventRing::new(100);
        for (n, site) in ["a", "b", "c", "a"].into_iter().enumerate() {
            ring.record(event(site, n as u8 + 1));
        }
        let mine = ["a".to_string(), "c".to_string()];
        let seen = ring.recent(&EventQuery {
            sites: Some(&mine),
            limit: 10,
            ..Default::default()
        });
        let sites: Vec<&str> = seen.iter().map(|e| &*e.event.site).collect();
        assert_eq!(sites, vec!["a", "c", "a"]);
    }
}
