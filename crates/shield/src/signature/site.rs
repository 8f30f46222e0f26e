//! One site's signature state: the two sample windows, the mitigations in force, and the
//! fallback. The request path reads it with a few atomic loads; the once-a-second tick and
//! sampled requests take its lock.

use super::derive::{self, Condition, Found, Thresholds, matches};
use super::traits::{Sample, Traits, condition};
use crate::RequestFacts;
use crate::events::{EventAction, EventReason, NewEvent};
use crate::rules::Expr;
use arc_swap::ArcSwap;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Samples the attack window holds at most.
const ATTACK_CAPACITY: usize = 1024;
/// How many seconds of traffic the attack window aims to hold, and the oldest sample a
/// derivation reads.
const ATTACK_SECONDS: u32 = 3;
/// Samples the baseline window holds at most.
const BASELINE_CAPACITY: usize = 2048;
/// How many seconds of usual traffic the baseline window aims to hold.
const BASELINE_SECONDS: f64 = 600.0;
/// Mitigations in force at once for one site, at most.
pub const MAX_MITIGATIONS: usize = 8;
/// Ticks a proposed rule waits for a matching request to be written from before it is
/// dropped.
const PENDING_TICKS: u32 = 10;
/// Below this share of surge in the attack window, there is nothing to single out.
const MIN_SURGE_SHARE: f64 = 0.2;

/// What a mitigation does to the requests it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MitigationAction {
    /// The browser challenge (403 for a client that cannot take it).
    Challenge,
    /// 403 and the connection closed: the signature is certain not to be a browser.
    Block,
}

impl MitigationAction {
    /// `challenge` or `block`, as a rule's action is written.
    pub fn as_str(self) -> &'static str {
        match self {
            MitigationAction::Challenge => "challenge",
            MitigationAction::Block => "block",
        }
    }
}

/// A temporary rule derived from an attack's signature.
#[derive(Debug, Serialize)]
pub struct Mitigation {
    /// `sig-N`, numbered per site from 1 for the life of the process.
    pub id: Arc<str>,
    /// The rule, in the rules language.
    #[serde(serialize_with = "expr_source")]
    pub rule: Expr,
    /// What it does.
    pub action: MitigationAction,
    /// The conditions, as trait name and value.
    pub conditions: Vec<(&'static str, String)>,
    /// The estimated share of the surge it matches, when it was found.
    pub surge_coverage: f64,
    /// The share of the site's usual traffic it would have matched (its false positives).
    pub baseline_share: f64,
    /// When it came into force; serialised as unix milliseconds.
    #[serde(serialize_with = "unix_ms")]
    pub started: SystemTime,
    /// Requests it has matched.
    pub matched: AtomicU64,
    #[serde(skip)]
    hashes: Vec<Condition>,
}

fn expr_source<S: serde::Serializer>(expr: &Expr, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(expr.source())
}

fn unix_ms<S: serde::Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    let ms = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    s.serialize_u64(ms)
}

/// A change the caller reports (events, logs, metrics).
#[derive(Debug, Clone)]
pub enum SignatureChange {
    /// A mitigation came into force.
    Started(Arc<Mitigation>),
    /// A mitigation ended: the attack is over, or an operator dismissed it.
    Ended {
        /// Which.
        mitigation: Arc<Mitigation>,
        /// True when an operator dismissed it.
        dismissed: bool,
    },
    /// No signature matches enough of the surge: challenging everyone is on (the site allows
    /// the fallback).
    FallbackOn {
        /// The share of the surge the mitigations match.
        coverage: f64,
    },
    /// The fallback is off again.
    FallbackOff,
}

impl SignatureChange {
    /// The security event that records the change on `site`.
    pub fn event(&self, site: Arc<str>) -> NewEvent {
        let (action, reason, mitigation, value) = match self {
            SignatureChange::Started(m) => (
                EventAction::MitigationOn,
                EventReason::Signature,
                Some(m),
                Some(m.surge_coverage),
            ),
            SignatureChange::Ended {
                mitigation,
                dismissed,
            } => (
                EventAction::MitigationOff,
                if *dismissed {
                    EventReason::Dismissed
                } else {
                    EventReason::Settled
                },
                Some(mitigation),
                Some(mitigation.matched.load(Ordering::Relaxed) as f64),
            ),
            SignatureChange::FallbackOn { coverage } => (
                EventAction::ChallengeEveryoneOn,
                EventReason::NoSignature,
                None,
                Some(*coverage),
            ),
            SignatureChange::FallbackOff => (
                EventAction::ChallengeEveryoneOff,
                EventReason::Settled,
                None,
                None,
            ),
        };
        NewEvent {
            site,
            client_ip: None,
            action,
            reason,
            rule_id: mitigation.map(|m| Arc::clone(&m.id)),
            value,
            mitigation: mitigation.cloned(),
        }
    }
}

/// What a tick needs to know from attack detection and the site's settings.
#[derive(Debug, Clone, Copy)]
pub struct TickInput {
    /// Detection says the site is under attack.
    pub under_attack: bool,
    /// The site's current request rate, per second.
    pub current_rps: f64,
    /// Its baseline rate, per second.
    pub baseline_rps: f64,
    /// What a signature must meet.
    pub thresholds: Thresholds,
    /// Whether the site allows challenging everyone when no signature covers the surge.
    pub fallback: bool,
}

/// What a tick changed.
#[derive(Debug, Default)]
pub struct TickOutcome {
    /// Changes to report.
    pub changes: Vec<SignatureChange>,
    /// The estimated share of the surge the mitigations (in force and proposed) match; `None`
    /// while not under attack.
    pub coverage: Option<f64>,
}

/// One site's signature state; lives across reloads, as the site's attack detector does.
#[derive(Debug)]
pub struct SiteSignatures {
    /// One request in this many is sampled into the attack window.
    every: AtomicU64,
    /// Of the sampled ones, one in this many also goes to the baseline window; 0 while under
    /// attack (the baseline learns only usual traffic).
    baseline_stride: AtomicU64,
    /// Mitigations are in force or proposed: only then does the request path look further.
    armed: AtomicBool,
    /// Proposed rules wait for a sampled request to be written from.
    pending_any: AtomicBool,
    challenge_all: AtomicBool,
    /// Requests the mitigations matched since the last tick.
    matches: AtomicU64,
    active: ArcSwap<Vec<Arc<Mitigation>>>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    tick: u32,
    attack: Ring,
    baseline: Ring,
    pending: Vec<Pending>,
    /// Dismissed during this attack: not proposed again until it ends.
    refused: Vec<Vec<Condition>>,
    next_id: u64,
    under_attack: bool,
    /// The tick the current attack was first seen on.
    attack_began: u32,
}

#[derive(Debug)]
struct Pending {
    found: Found,
    /// The share of the whole surge it matches.
    coverage: f64,
    since: u32,
}

/// A ring of stamped samples that grows to its capacity as samples come.
#[derive(Debug, Default)]
struct Ring {
    samples: Vec<(Sample, u32)>,
    next: usize,
}

impl Ring {
    fn push(&mut self, sample: Sample, tick: u32, capacity: usize) {
        if self.samples.len() < capacity {
            self.samples.push((sample, tick));
        } else {
            self.samples[self.next] = (sample, tick);
            self.next = (self.next + 1) % capacity;
        }
    }

    fn since(&self, tick: u32) -> Vec<Sample> {
        self.samples
            .iter()
            .filter(|(_, t)| *t >= tick)
            .map(|(s, _)| *s)
            .collect()
    }

    fn before(&self, tick: u32) -> Vec<Sample> {
        self.samples
            .iter()
            .filter(|(_, t)| *t < tick)
            .map(|(s, _)| *s)
            .collect()
    }
}

impl Default for SiteSignatures {
    fn default() -> Self {
        SiteSignatures {
            every: AtomicU64::new(1),
            baseline_stride: AtomicU64::new(1),
            armed: AtomicBool::new(false),
            pending_any: AtomicBool::new(false),
            challenge_all: AtomicBool::new(false),
            matches: AtomicU64::new(0),
            active: ArcSwap::from_pointee(Vec::new()),
            state: Mutex::new(State::default()),
        }
    }
}

impl SiteSignatures {
    /// Whether the request numbered `count` by attack detection is sampled: `None` if not,
    /// `Some(true)` when it also goes to the baseline window. Two atomic loads.
    pub fn sample(&self, count: u64) -> Option<bool> {
        let every = self.every.load(Ordering::Relaxed).max(1);
        if !count.is_multiple_of(every) {
            return None;
        }
        let stride = self.baseline_stride.load(Ordering::Relaxed);
        Some(stride != 0 && (count / every).is_multiple_of(stride))
    }

    /// Keeps a sampled request; when a proposed rule matches it, the rule is written from its
    /// values and comes into force (returned, for the caller to report).
    pub fn observe(
        &self,
        facts: &RequestFacts<'_>,
        baseline: bool,
    ) -> Option<Vec<SignatureChange>> {
        let traits = Traits::read(facts);
        let sample = traits.sample();
        let mut state = self.lock();
        let tick = state.tick;
        state.attack.push(sample, tick, ATTACK_CAPACITY);
        if baseline {
            state.baseline.push(sample, tick, BASELINE_CAPACITY);
        }
        if !self.pending_any.load(Ordering::Relaxed) {
            return None;
        }
        let (ready, waiting): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut state.pending)
            .into_iter()
            .partition(|p| matches(&p.found.conditions, &sample));
        state.pending = waiting;
        self.pending_any
            .store(!state.pending.is_empty(), Ordering::Relaxed);
        if ready.is_empty() {
            return None;
        }
        let mut started = Vec::new();
        for pending in ready {
            state.next_id += 1;
            if let Some(mitigation) = write_rule(state.next_id, &pending, &traits) {
                started.push(Arc::new(mitigation));
            }
        }
        let mut active = Vec::clone(&self.active.load());
        active.extend(started.iter().cloned());
        self.active.store(Arc::new(active));
        Some(started.into_iter().map(SignatureChange::Started).collect())
    }

    /// The mitigation in force that `facts` matches, if any; counts the match. Costs one
    /// atomic load when none is in force.
    pub fn matching(&self, facts: &RequestFacts<'_>) -> Option<Arc<Mitigation>> {
        if !self.armed.load(Ordering::Relaxed) {
            return None;
        }
        let active = self.active.load();
        let found = active.iter().find(|m| m.rule.eval(facts))?;
        found.matched.fetch_add(1, Ordering::Relaxed);
        self.matches.fetch_add(1, Ordering::Relaxed);
        Some(Arc::clone(found))
    }

    /// Requests the mitigations matched since the last call (once a second, by the tick): an
    /// attack whose requests are held goes on while they keep coming, however slowly the hold
    /// lets them.
    pub fn take_matches(&self) -> u64 {
        self.matches.swap(0, Ordering::Relaxed)
    }

    /// True while no signature covers enough of the surge and the site allows challenging
    /// everyone.
    pub fn challenge_all(&self) -> bool {
        self.challenge_all.load(Ordering::Relaxed)
    }

    /// The mitigations in force.
    pub fn mitigations(&self) -> Vec<Arc<Mitigation>> {
        Vec::clone(&self.active.load())
    }

    /// Ends the mitigation `id` at an operator's word; it is not proposed again while this
    /// attack lasts. `None` when no such mitigation is in force.
    pub fn dismiss(&self, id: &str) -> Option<SignatureChange> {
        let mut state = self.lock();
        let active = self.active.load();
        let found = active.iter().find(|m| &*m.id == id).cloned()?;
        let rest: Vec<Arc<Mitigation>> = active.iter().filter(|m| &*m.id != id).cloned().collect();
        self.active.store(Arc::new(rest));
        state.refused.push(found.hashes.clone());
        Some(SignatureChange::Ended {
            mitigation: found,
            dismissed: true,
        })
    }

    /// Once a second: adjusts sampling to the current rate; under attack, proposes rules for
    /// the part of the surge no mitigation matches yet and judges the fallback; when the
    /// attack is over, ends every mitigation.
    pub fn tick(&self, input: &TickInput) -> TickOutcome {
        let mut state = self.lock();
        state.tick = state.tick.wrapping_add(1);
        let every = (input.current_rps * f64::from(ATTACK_SECONDS) / ATTACK_CAPACITY as f64)
            .ceil()
            .max(1.0);
        self.every.store(every as u64, Ordering::Relaxed);
        let stride = if input.under_attack {
            0
        } else {
            // A new site's baseline fills ten times faster to half the window, so that a
            // flood in its first minutes meets a known baseline.
            let filling = state.baseline.samples.len() < BASELINE_CAPACITY / 2;
            let seconds = if filling {
                BASELINE_SECONDS / 10.0
            } else {
                BASELINE_SECONDS
            };
            let per_second = BASELINE_CAPACITY as f64 / seconds;
            ((input.current_rps / per_second) / every).round().max(1.0) as u64
        };
        self.baseline_stride.store(stride, Ordering::Relaxed);

        let mut outcome = TickOutcome::default();
        if !input.under_attack {
            if state.under_attack {
                self.end_all(&mut state, &mut outcome.changes);
            }
            return outcome;
        }
        if !state.under_attack {
            state.under_attack = true;
            state.attack_began = state.tick;
        }
        let now = state.tick;
        state
            .pending
            .retain(|p| now.wrapping_sub(p.since) <= PENDING_TICKS);
        let coverage = self.propose(&mut state, input);
        outcome.coverage = Some(coverage);
        let fallback = input.fallback && coverage < input.thresholds.min_coverage;
        if fallback != self.challenge_all.swap(fallback, Ordering::Relaxed) {
            outcome.changes.push(if fallback {
                SignatureChange::FallbackOn { coverage }
            } else {
                SignatureChange::FallbackOff
            });
        }
        self.pending_any
            .store(!state.pending.is_empty(), Ordering::Relaxed);
        self.armed.store(true, Ordering::Relaxed);
        outcome
    }

    /// Proposes rules for the unmatched part of the surge; the share of the surge matched
    /// once they are in force.
    fn propose(&self, state: &mut State, input: &TickInput) -> f64 {
        let surge_share = if input.current_rps > 0.0 {
            (1.0 - input.baseline_rps / input.current_rps).clamp(0.0, 1.0)
        } else {
            0.0
        };
        if surge_share < MIN_SURGE_SHARE {
            return 0.0;
        }
        let window = state
            .attack
            .since(state.tick.saturating_sub(ATTACK_SECONDS));
        if window.is_empty() {
            return 0.0;
        }
        let active = self.active.load();
        let known: Vec<&[Condition]> = active
            .iter()
            .map(|m| m.hashes.as_slice())
            .chain(state.pending.iter().map(|p| p.found.conditions.as_slice()))
            .collect();
        let unmatched: Vec<Sample> = window
            .iter()
            .filter(|s| !known.iter().any(|c| matches(c, s)))
            .copied()
            .collect();
        // The usual traffic stays unmatched; what else is unmatched is surge.
        let unmatched_share = unmatched.len() as f64 / window.len() as f64;
        let unmatched_surge =
            ((unmatched_share - (1.0 - surge_share)) / surge_share).clamp(0.0, 1.0);
        let mut coverage = 1.0 - unmatched_surge;
        if coverage >= input.thresholds.min_coverage || known.len() >= MAX_MITIGATIONS {
            return coverage;
        }
        // Within the unmatched samples, the share that is surge.
        let surge_in_unmatched = (1.0 - (1.0 - surge_share) / unmatched_share).clamp(0.0, 1.0);
        // The seconds before detection tripped may hold the attack's start: the baseline is
        // what came before them.
        let baseline = state
            .baseline
            .before(state.attack_began.saturating_sub(ATTACK_SECONDS + 1));
        let found = derive::derive(
            &unmatched,
            &baseline,
            surge_in_unmatched,
            &input.thresholds,
            &state.refused,
        );
        let room = MAX_MITIGATIONS - known.len();
        for rule in found.rules.into_iter().take(room) {
            let whole = rule.surge_coverage * unmatched_surge;
            coverage += whole;
            state.pending.push(Pending {
                found: rule,
                coverage: whole,
                since: state.tick,
            });
        }
        coverage.min(1.0)
    }

    fn end_all(&self, state: &mut State, changes: &mut Vec<SignatureChange>) {
        state.under_attack = false;
        state.pending.clear();
        state.refused.clear();
        let ended = self.active.swap(Arc::new(Vec::new()));
        changes.extend(ended.iter().map(|m| SignatureChange::Ended {
            mitigation: Arc::clone(m),
            dismissed: false,
        }));
        if self.challenge_all.swap(false, Ordering::Relaxed) {
            changes.push(SignatureChange::FallbackOff);
        }
        self.armed.store(false, Ordering::Relaxed);
        self.pending_any.store(false, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The mitigation for `pending`, its rule written from the values of a request it matched.
fn write_rule(number: u64, pending: &Pending, traits: &Traits) -> Option<Mitigation> {
    let mut conditions = Vec::with_capacity(pending.found.conditions.len());
    let mut text = String::new();
    for &(t, _) in &pending.found.conditions {
        let value = traits.value(t)?;
        if !text.is_empty() {
            text.push_str(" and ");
        }
        text.push_str(&condition(t, value));
        conditions.push((t.as_str(), value.to_string()));
    }
    // Every condition is written from a value the traits read, so it parses; a value the
    // language cannot hold would only lose this rule.
    let rule = Expr::parse(&text).ok()?;
    Some(Mitigation {
        id: format!("sig-{number}").into(),
        rule,
        action: if pending.found.certain {
            MitigationAction::Block
        } else {
            MitigationAction::Challenge
        },
        conditions,
        surge_coverage: pending.coverage,
        baseline_share: pending.found.baseline_share,
        started: SystemTime::now(),
        matched: AtomicU64::new(0),
        hashes: pending.found.conditions.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ConnectionTraits;
    use http::{HeaderMap, Version};

    const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

    fn browser_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("host", "example.com".parse().unwrap());
        h.insert("user-agent", CHROME.parse().unwrap());
        h.insert("accept", "text/html".parse().unwrap());
        h.insert("accept-language", "en-GB".parse().unwrap());
        h.insert("accept-encoding", "gzip, br".parse().unwrap());
        h
    }

    fn tool_headers(user_agent: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("host", "example.com".parse().unwrap());
        h.insert("user-agent", user_agent.parse().unwrap());
        h.insert("accept", "*/*".parse().unwrap());
        h
    }

    fn facts<'a>(
        headers: &'a HeaderMap,
        ip: [u8; 4],
        path: &'a str,
        query: &'a str,
    ) -> RequestFacts<'a> {
        RequestFacts {
            ip: ip.into(),
            host: "example.com",
            method: "GET",
            path,
            query,
            headers,
            tls: false,
            version: Version::HTTP_11,
            connection: ConnectionTraits::none(),
        }
    }

    fn input(under_attack: bool, current: f64, baseline: f64) -> TickInput {
        TickInput {
            under_attack,
            current_rps: current,
            baseline_rps: baseline,
            thresholds: Thresholds::default(),
            fallback: false,
        }
    }

    /// Feeds `n` requests through the sampler the way the shield phase does; returns the
    /// changes they caused.
    fn feed(
        sig: &SiteSignatures,
        counter: &mut u64,
        n: usize,
        make: &dyn Fn(usize) -> (HeaderMap, [u8; 4], String, String),
    ) -> Vec<SignatureChange> {
        let mut changes = Vec::new();
        for i in 0..n {
            let (headers, ip, path, query) = make(i);
            let f = facts(&headers, ip, &path, &query);
            *counter += 1;
            if let Some(baseline) = sig.sample(*counter)
                && let Some(started) = sig.observe(&f, baseline)
            {
                changes.extend(started);
            }
        }
        changes
    }

    fn browsing(i: usize) -> (HeaderMap, [u8; 4], String, String) {
        let paths = ["/", "/about", "/blog/1", "/blog/2", "/shop", "/search"];
        (
            browser_headers(),
            [10, 0, (i % 7) as u8, (i % 20) as u8],
            paths[i % paths.len()].to_string(),
            if i % 6 == 5 {
                "q=shoes".into()
            } else {
                String::new()
            },
        )
    }

    fn flood(i: usize) -> (HeaderMap, [u8; 4], String, String) {
        (
            tool_headers("python-requests/2.31.0"),
            [172, 16, (i % 200) as u8, (i / 200 % 250) as u8],
            "/search".into(),
            format!("q={:x}{}", i * 7919, i % 10),
        )
    }

    #[test]
    fn a_tool_flood_gets_a_precise_mitigation_and_it_ends_with_the_attack() {
        let sig = SiteSignatures::default();
        let mut n = 0;
        // Two minutes of usual traffic at 20 requests a second.
        for _ in 0..120 {
            sig.tick(&input(false, 20.0, 20.0));
            feed(&sig, &mut n, 20, &browsing);
        }
        // The flood: 2,000 requests a second among the browsers' 20.
        sig.tick(&input(false, 20.0, 20.0));
        feed(&sig, &mut n, 2000, &flood);
        feed(&sig, &mut n, 20, &browsing);
        let outcome = sig.tick(&input(true, 2020.0, 20.0));
        assert!(outcome.coverage.unwrap() >= 0.8, "{outcome:?}");
        // The next sampled flood request writes the rule.
        let started = feed(&sig, &mut n, 50, &flood);
        let [SignatureChange::Started(m)] = started.as_slice() else {
            panic!("{started:?}");
        };
        assert_eq!(m.action, MitigationAction::Challenge);
        assert_eq!(
            m.rule.source(),
            r#"http.user_agent eq "python-requests/2.31.0""#
        );
        assert!(m.baseline_share < 0.01);
        // It matches the flood and no browser.
        let (h, ip, p, q) = flood(3);
        assert!(sig.matching(&facts(&h, ip, &p, &q)).is_some());
        for i in 0..50 {
            let (h, ip, p, q) = browsing(i);
            assert!(sig.matching(&facts(&h, ip, &p, &q)).is_none());
        }
        // Still under attack: nothing more is proposed for a covered surge.
        feed(&sig, &mut n, 2000, &flood);
        let again = sig.tick(&input(true, 2020.0, 20.0));
        assert!(again.changes.is_empty(), "{again:?}");
        assert_eq!(sig.mitigations().len(), 1);
        // The attack ends: so does the mitigation.
        let ended = sig.tick(&input(false, 20.0, 20.0));
        assert!(matches!(
            ended.changes.as_slice(),
            [SignatureChange::Ended {
                dismissed: false,
                ..
            }]
        ));
        assert!(sig.mitigations().is_empty());
        let (h, ip, p, q) = flood(3);
        assert!(sig.matching(&facts(&h, ip, &p, &q)).is_none());
    }

    #[test]
    fn a_tool_claiming_a_browser_name_is_blocked() {
        let sig = SiteSignatures::default();
        let mut n = 0;
        for _ in 0..60 {
            sig.tick(&input(false, 20.0, 20.0));
            feed(&sig, &mut n, 20, &browsing);
        }
        let disguised = |i: usize| {
            let (_, ip, path, query) = flood(i);
            (tool_headers(CHROME), ip, path, query)
        };
        feed(&sig, &mut n, 2000, &disguised);
        sig.tick(&input(true, 2000.0, 20.0));
        let started = feed(&sig, &mut n, 50, &disguised);
        let [SignatureChange::Started(m)] = started.as_slice() else {
            panic!("{started:?}");
        };
        assert_eq!(m.action, MitigationAction::Block, "{}", m.rule.source());
        for i in 0..50 {
            let (h, ip, p, q) = browsing(i);
            assert!(sig.matching(&facts(&h, ip, &p, &q)).is_none());
        }
    }

    #[test]
    fn a_flood_like_the_usual_traffic_falls_back_only_when_allowed() {
        for fallback in [false, true] {
            let sig = SiteSignatures::default();
            let mut n = 0;
            for _ in 0..60 {
                sig.tick(&input(false, 20.0, 20.0));
                feed(&sig, &mut n, 20, &browsing);
            }
            feed(&sig, &mut n, 2000, &|i| browsing(i * 13));
            let outcome = sig.tick(&TickInput {
                fallback,
                ..input(true, 2000.0, 20.0)
            });
            assert!(outcome.coverage.unwrap() < 0.8, "{outcome:?}");
            assert_eq!(sig.challenge_all(), fallback);
            assert_eq!(
                matches!(
                    outcome.changes.as_slice(),
                    [SignatureChange::FallbackOn { .. }]
                ),
                fallback
            );
            let ended = sig.tick(&input(false, 20.0, 20.0));
            assert!(!sig.challenge_all());
            assert_eq!(ended.changes.len(), usize::from(fallback));
        }
    }

    #[test]
    fn a_dismissed_mitigation_stays_dismissed_until_the_attack_ends() {
        let sig = SiteSignatures::default();
        let mut n = 0;
        for _ in 0..60 {
            sig.tick(&input(false, 20.0, 20.0));
            feed(&sig, &mut n, 20, &browsing);
        }
        feed(&sig, &mut n, 2000, &flood);
        sig.tick(&input(true, 2000.0, 20.0));
        let started = feed(&sig, &mut n, 50, &flood);
        let [SignatureChange::Started(m)] = started.as_slice() else {
            panic!("{started:?}");
        };
        assert!(sig.dismiss("sig-404").is_none());
        assert!(matches!(
            sig.dismiss(&m.id),
            Some(SignatureChange::Ended {
                dismissed: true,
                ..
            })
        ));
        feed(&sig, &mut n, 2000, &flood);
        sig.tick(&input(true, 2000.0, 20.0));
        let again = feed(&sig, &mut n, 200, &flood);
        assert!(
            again.iter().all(|c| match c {
                SignatureChange::Started(other) => other.rule.source() != m.rule.source(),
                _ => true,
            }),
            "{again:?}"
        );
    }

    #[test]
    fn sampling_follows_the_rate_and_the_baseline_pauses_under_attack() {
        let sig = SiteSignatures::default();
        // A new site at 10 requests a second: every request fills its baseline...
        sig.tick(&input(false, 10.0, 10.0));
        assert_eq!(sig.sample(7), Some(true));
        // ...at 100 a second, one in three, until half the window is full.
        sig.tick(&input(false, 100.0, 100.0));
        assert_eq!(sig.sample(6), Some(true));
        assert_eq!(sig.sample(7), Some(false));
        sig.tick(&input(false, 100_000.0, 10.0));
        let sampled = (0..100_000u64).filter(|&c| sig.sample(c).is_some()).count();
        // About the attack window's capacity per three seconds.
        assert!((300..=400).contains(&sampled), "{sampled}");
        sig.tick(&input(true, 100_000.0, 10.0));
        assert!((0..100_000u64).all(|c| sig.sample(c) != Some(true)));
    }
}
