//! Rate limits: `[[site.rate_limit]]` rules counting requests per key in bounded memory.
//!
//! Each limit owns a sliding-window sketch (`sketch`) and a penalty table (`penalty`), both
//! fixed in size when the limit is built, so memory does not depend on how many distinct keys
//! (addresses, paths, API keys) the traffic carries. That state lives in a [`LimiterState`]
//! that a reload hands on to the new snapshot when the limit is unchanged: a reload must not
//! give every flooding client a fresh allowance.
//!
//! A `scope = "cluster"` limit also keeps a [`SharedCounts`] table (`shared`): what this edge
//! counted, for the cluster's sync task to send, and what the other edges counted, which the
//! limit adds to its own count.

mod penalty;
mod shared;
mod sketch;

pub use penalty::PenaltyBox;
pub use shared::{
    Ask, DIGEST_BYTES, KEYS_PER_LIMIT, KeyBytes, Outgoing, SharedCounts, Sharing, TABLE_BYTES,
    Totals,
};
pub use sketch::WindowCounter;

use crate::RequestFacts;
use crate::carried::Carried;
use crate::rules::{Expr, RuleError};
use http::HeaderName;
use model::{LimitAction, LimitKey, LimitScope, RateLimit};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Counters per row of a limit's sketch: 512 KiB of counters per limit.
pub const SKETCH_WIDTH: usize = 16_384;
/// Keys a limit can hold in penalty at once: 128 KiB per limit.
pub const PENALTY_SLOTS: usize = 16_384;

/// The counting state of one limit; outlives snapshots while the limit stays the same.
#[derive(Debug)]
pub struct LimiterState {
    counter: WindowCounter,
    penalties: PenaltyBox,
    seed: u64,
    /// A `scope = "cluster"` limit's share of the cluster's counts.
    shared: Option<Arc<SharedCounts>>,
}

impl LimiterState {
    fn new(period: Duration, shared: Option<Arc<SharedCounts>>) -> LimiterState {
        LimiterState {
            counter: WindowCounter::new(period, SKETCH_WIDTH),
            penalties: PenaltyBox::new(PENALTY_SLOTS),
            seed: random_seed(),
            shared,
        }
    }

    /// Heap bytes of the counter and the penalty table: fixed when the limit is built.
    pub fn memory_bytes(&self) -> usize {
        self.counter.memory_bytes() + self.penalties.memory_bytes()
    }
}

/// A per-process random seed, so nobody can pick keys that collide in the sketch.
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0x5eed);
    hasher.finish()
}

/// Hands a limit's state to the next snapshot when its definition has not changed, and shows
/// the cluster's sync task the limits that share their counts.
#[derive(Debug, Default)]
pub struct LimiterRegistry {
    states: Mutex<Carried<LimiterState>>,
    /// The `scope = "cluster"` limits' tables, by the same identity.
    shared: Mutex<Carried<SharedCounts>>,
    sharing: Arc<Sharing>,
}

impl LimiterRegistry {
    fn state_for(&self, site: &str, limit: &RateLimit) -> Arc<LimiterState> {
        // Everything that changes what a count means is in the key; `requests`, `action` and
        // `penalty` only change what is done with it.
        let identity = format!(
            "{site}\u{0}{}\u{0}{:?}\u{0}{:?}\u{0}{:?}\u{0}{}",
            limit.id,
            limit.period,
            limit.key,
            limit.scope,
            limit.expr.as_deref().unwrap_or("")
        );
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(state) = states.get(&identity) {
            return state;
        }
        let shared = (limit.scope == LimitScope::Cluster).then(|| {
            // Every edge running this definition names it alike, whatever build it runs (so
            // it is written out as the file writes it, not as a type's debug form), and a
            // changed definition counts apart from the old one's totals.
            let key = match &limit.key {
                LimitKey::Ip => "ip".to_string(),
                LimitKey::IpPath => "ip_path".to_string(),
                LimitKey::Header(name) => format!("header:{name}"),
                LimitKey::Cookie(name) => format!("cookie:{name}"),
            };
            let definition = format!(
                "{site}\u{0}{}\u{0}{}ms\u{0}{key}\u{0}{}",
                limit.id,
                limit.period.as_millis(),
                limit.expr.as_deref().unwrap_or("")
            );
            let digest = ring::digest::digest(&ring::digest::SHA256, definition.as_bytes());
            let name = format!("{site}:{}:{}", limit.id, hex8(digest.as_ref()));
            let shared = Arc::new(SharedCounts::new(
                name,
                limit.period.as_millis() as u64,
                Arc::clone(&self.sharing),
            ));
            self.shared
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(identity.clone(), &shared);
            shared
        });
        let state = Arc::new(LimiterState::new(limit.period, shared));
        states.insert(identity, &state);
        state
    }

    /// Whether this process shares `scope = "cluster"` counts, and what did not fit.
    pub fn sharing(&self) -> &Arc<Sharing> {
        &self.sharing
    }

    /// The `scope = "cluster"` limits the running snapshot holds.
    pub fn shared_limits(&self) -> Vec<Arc<SharedCounts>> {
        self.shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .live()
            .collect()
    }
}

/// The first eight bytes of `bytes` as hex.
fn hex8(bytes: &[u8]) -> String {
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// What a request's key is made of.
#[derive(Debug)]
enum KeyOf {
    Ip,
    IpPath,
    Header(HeaderName),
    Cookie(String),
}

/// A compiled rate limit.
#[derive(Debug)]
pub struct RateLimiter {
    /// The limit's `id`, as events name it.
    pub id: Arc<str>,
    filter: Option<Expr>,
    key: KeyOf,
    requests: u32,
    period: Duration,
    /// What a request over the limit gets.
    pub action: LimitAction,
    penalty: Option<Duration>,
    state: Arc<LimiterState>,
}

/// A request over a limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Over {
    /// How long the client should wait (the penalty left, or until its count falls).
    pub retry_after: Duration,
    /// The key's count over the last period (0 while it serves a penalty).
    pub count: f64,
}

impl RateLimiter {
    /// Compiles `limit` of `site`: its filter expression and its key. Its counts come from
    /// `registry`, so a reload that keeps the limit's id, period, key and filter keeps them.
    pub fn build(
        site: &str,
        limit: &RateLimit,
        registry: &LimiterRegistry,
    ) -> Result<RateLimiter, RuleError> {
        let filter = limit.expr.as_deref().map(Expr::parse).transpose()?;
        let key = match &limit.key {
            LimitKey::Ip => KeyOf::Ip,
            LimitKey::IpPath => KeyOf::IpPath,
            LimitKey::Header(name) => KeyOf::Header(
                HeaderName::from_bytes(name.as_bytes()).map_err(|_| RuleError {
                    line: 1,
                    column: 1,
                    message: format!("{name:?} is not a header name"),
                })?,
            ),
            LimitKey::Cookie(name) => KeyOf::Cookie(name.clone()),
        };
        Ok(RateLimiter {
            id: limit.id.as_str().into(),
            filter,
            key,
            requests: limit.requests,
            period: limit.period,
            action: limit.action,
            penalty: limit.penalty,
            state: registry.state_for(site, limit),
        })
    }

    /// True when the limit counts this request (its filter matches and the request has a key).
    pub fn applies(&self, facts: &RequestFacts<'_>) -> bool {
        self.filter.as_ref().is_none_or(|f| f.eval(facts)) && self.key_hash(facts).is_some()
    }

    /// Counts the request if the limit applies to it; `Some` when it is over the limit.
    pub fn hit(&self, facts: &RequestFacts<'_>, now: Instant) -> Option<Over> {
        if self.filter.as_ref().is_some_and(|f| !f.eval(facts)) {
            return None;
        }
        let hash = self.key_hash(facts)?;
        if let Some(left) = self.state.penalties.remaining(hash, now) {
            return Some(Over {
                retry_after: left,
                count: 0.0,
            });
        }
        let mut count = self.state.counter.hit(hash, now);
        if let Some(shared) = &self.state.shared {
            let key = self.key_bytes(facts)?;
            count += shared.hit(hash, key.as_bytes(), count, unix_ms());
        }
        if count <= f64::from(self.requests) {
            return None;
        }
        let retry_after = match self.penalty {
            Some(penalty) => {
                self.state.penalties.punish(hash, now, penalty);
                penalty
            }
            None => self.period,
        };
        Some(Over { retry_after, count })
    }

    /// The key's count over the last period, without counting this request.
    pub fn peek(&self, facts: &RequestFacts<'_>, now: Instant) -> Option<f64> {
        let hash = self.key_hash(facts)?;
        let others = self
            .state
            .shared
            .as_ref()
            .map_or(0.0, |shared| shared.others(hash, unix_ms()));
        Some(self.state.counter.count(hash, now) + others)
    }

    /// Requests one key may make per [`period`](Self::period).
    pub fn requests(&self) -> u32 {
        self.requests
    }

    /// The window the count covers.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Heap bytes of the limit's state, fixed when it is built.
    pub fn memory_bytes(&self) -> usize {
        self.state.memory_bytes()
    }

    fn key_hash(&self, facts: &RequestFacts<'_>) -> Option<u64> {
        let seed = self.state.seed;
        Some(match self.key_bytes(facts)? {
            Key::Ip(ip) => xxhash_rust::xxh3::xxh3_64_with_seed(&ip, seed),
            Key::IpPath(ip, path) => {
                let ip_hash = xxhash_rust::xxh3::xxh3_64_with_seed(&ip, seed);
                xxhash_rust::xxh3::xxh3_64_with_seed(path.as_bytes(), ip_hash)
            }
            Key::Value(value) => xxhash_rust::xxh3::xxh3_64_with_seed(value, seed),
        })
    }

    /// What the request's key is made of; `None` when the request carries none.
    fn key_bytes<'a>(&self, facts: &RequestFacts<'a>) -> Option<Key<'a>> {
        Some(match &self.key {
            KeyOf::Ip => Key::Ip(client_prefix(facts.ip)),
            KeyOf::IpPath => Key::IpPath(client_prefix(facts.ip), facts.path),
            KeyOf::Header(name) => Key::Value(facts.headers.get(name)?.as_bytes()),
            KeyOf::Cookie(name) => Key::Value(cookie_value(facts.headers, name)?),
        })
    }
}

/// A request's key, owning its client prefix.
enum Key<'a> {
    Ip([u8; 16]),
    IpPath([u8; 16], &'a str),
    Value(&'a [u8]),
}

impl Key<'_> {
    fn as_bytes(&self) -> KeyBytes<'_> {
        match self {
            Key::Ip(ip) => KeyBytes::Ip(ip),
            Key::IpPath(ip, path) => KeyBytes::IpPath(ip, path),
            Key::Value(value) => KeyBytes::Value(value),
        }
    }
}

/// Now, in Unix milliseconds: shared counts are numbered by the wall clock, the same on every
/// edge.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The address a client is counted by: IPv4 whole, IPv6 by its /64 (one host usually holds a
/// whole /64 and could otherwise take a fresh allowance on each address in it).
pub fn client_prefix(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_ipv6_mapped().octets(),
            None => {
                let mut bytes = v6.octets();
                bytes[8..].fill(0);
                bytes
            }
        },
    }
}

/// A cookie's value from the request's Cookie header fields.
pub fn cookie_value<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|field| field.as_bytes().split(|b| *b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|b| *b == b'=')?;
            (pair[..eq].trim_ascii() == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    fn limit(key: LimitKey, requests: u32, penalty: Option<Duration>) -> RateLimit {
        RateLimit {
            id: "l".into(),
            expr: Some(r#"http.request.uri.path starts_with "/api/""#.into()),
            expr_at: None,
            key,
            requests,
            period: Duration::from_secs(10),
            action: LimitAction::Block,
            penalty,
            scope: model::LimitScope::Edge,
        }
    }

    fn facts<'a>(ip: &str, path: &'a str, headers: &'a HeaderMap) -> RequestFacts<'a> {
        RequestFacts {
            ip: ip.parse().unwrap(),
            host: "a.example",
            method: "GET",
            path,
            query: "",
            headers,
            tls: false,
            version: http::Version::HTTP_11,
            connection: crate::ConnectionTraits::none(),
        }
    }

    #[test]
    fn counts_per_address_and_only_what_the_filter_matches() {
        let registry = LimiterRegistry::default();
        let limiter = RateLimiter::build("s", &limit(LimitKey::Ip, 3, None), &registry).unwrap();
        let h = HeaderMap::new();
        let t = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.hit(&facts("10.0.0.1", "/api/x", &h), t), None);
        }
        let over = limiter.hit(&facts("10.0.0.1", "/api/y", &h), t).unwrap();
        assert_eq!(over.retry_after, Duration::from_secs(10));
        assert_eq!(limiter.hit(&facts("10.0.0.2", "/api/x", &h), t), None);
        assert_eq!(limiter.hit(&facts("10.0.0.1", "/home", &h), t), None);
    }

    #[test]
    fn ipv6_clients_count_per_64() {
        let registry = LimiterRegistry::default();
        let limiter = RateLimiter::build("s", &limit(LimitKey::Ip, 1, None), &registry).unwrap();
        let h = HeaderMap::new();
        let t = Instant::now();
        assert_eq!(limiter.hit(&facts("2001:db8::1", "/api/", &h), t), None);
        assert!(limiter.hit(&facts("2001:db8::2", "/api/", &h), t).is_some());
        assert_eq!(limiter.hit(&facts("2001:db8:0:1::1", "/api/", &h), t), None);
        // An IPv4-mapped address is the IPv4 client.
        assert_eq!(limiter.hit(&facts("10.0.0.9", "/api/", &h), t), None);
        assert!(
            limiter
                .hit(&facts("::ffff:10.0.0.9", "/api/", &h), t)
                .is_some()
        );
    }

    #[test]
    fn a_penalty_outlasts_the_window() {
        let registry = LimiterRegistry::default();
        let limiter = RateLimiter::build(
            "s",
            &limit(LimitKey::Ip, 1, Some(Duration::from_secs(60))),
            &registry,
        )
        .unwrap();
        let h = HeaderMap::new();
        let t = Instant::now();
        limiter.hit(&facts("10.0.0.1", "/api/", &h), t);
        assert!(limiter.hit(&facts("10.0.0.1", "/api/", &h), t).is_some());
        let later = t + Duration::from_secs(40);
        let over = limiter.hit(&facts("10.0.0.1", "/api/", &h), later).unwrap();
        assert!(over.retry_after <= Duration::from_secs(21), "{over:?}");
        assert_eq!(
            limiter.hit(&facts("10.0.0.1", "/api/", &h), t + Duration::from_secs(90)),
            None
        );
    }

    #[test]
    fn header_and_cookie_keys_skip_requests_without_them() {
        let registry = LimiterRegistry::default();
        let by_header = RateLimiter::build(
            "s",
            &limit(LimitKey::Header("x-api-key".into()), 1, None),
            &registry,
        )
        .unwrap();
        let by_cookie = RateLimiter::build(
            "s",
            &limit(LimitKey::Cookie("sid".into()), 1, None),
            &registry,
        )
        .unwrap();
        let none = HeaderMap::new();
        let t = Instant::now();
        for _ in 0..5 {
            assert_eq!(by_header.hit(&facts("10.0.0.1", "/api/", &none), t), None);
            assert_eq!(by_cookie.hit(&facts("10.0.0.1", "/api/", &none), t), None);
        }
        let mut h = HeaderMap::new();
        h.insert("x-api-key", "k1".parse().unwrap());
        h.insert("cookie", "a=1; sid=s1".parse().unwrap());
        assert_eq!(by_header.hit(&facts("10.0.0.1", "/api/", &h), t), None);
        assert!(by_header.hit(&facts("10.0.0.2", "/api/", &h), t).is_some());
        assert_eq!(by_cookie.hit(&facts("10.0.0.1", "/api/", &h), t), None);
        assert!(by_cookie.hit(&facts("10.0.0.3", "/api/", &h), t).is_some());
    }

    #[test]
    fn a_reload_keeps_the_counts_of_an_unchanged_limit() {
        let registry = LimiterRegistry::default();
        let h = HeaderMap::new();
        let t = Instant::now();
        let first = RateLimiter::build("s", &limit(LimitKey::Ip, 2, None), &registry).unwrap();
        first.hit(&facts("10.0.0.1", "/api/", &h), t);
        first.hit(&facts("10.0.0.1", "/api/", &h), t);
        // A new snapshot with a different count but the same key and window.
        let second = RateLimiter::build("s", &limit(LimitKey::Ip, 3, None), &registry).unwrap();
        drop(first);
        assert_eq!(second.hit(&facts("10.0.0.1", "/api/", &h), t), None);
        assert!(second.hit(&facts("10.0.0.1", "/api/", &h), t).is_some());
        // Another site's limit of the same id counts apart.
        let other = RateLimiter::build("t", &limit(LimitKey::Ip, 1, None), &registry).unwrap();
        assert_eq!(other.hit(&facts("10.0.0.1", "/api/", &h), t), None);
    }

    #[test]
    fn a_cluster_limit_adds_what_the_other_edges_counted() {
        let registry = LimiterRegistry::default();
        let cluster = RateLimit {
            scope: LimitScope::Cluster,
            ..limit(LimitKey::Ip, 3, None)
        };
        let h = HeaderMap::new();
        let t = Instant::now();
        // Before the node joins a cluster, it counts alone.
        let limiter = RateLimiter::build("s", &cluster, &registry).unwrap();
        let edge_only = RateLimiter::build("s", &limit(LimitKey::Ip, 3, None), &registry).unwrap();
        assert_eq!(
            registry.shared_limits().len(),
            1,
            "only the cluster limit shares"
        );
        limiter.hit(&facts("10.0.0.1", "/api/", &h), t);
        assert!(
            registry.shared_limits()[0]
                .collect(unix_ms(), 10)
                .is_empty()
        );

        registry.sharing().activate();
        assert_eq!(limiter.hit(&facts("10.0.0.1", "/api/", &h), t), None);
        let shared = &registry.shared_limits()[0];
        // The name every edge gives it, whatever build it runs: the SHA-256 of the definition
        // as the file writes it ("s", "l", "10000ms", "ip", the filter), joined by NULs.
        assert_eq!(shared.name(), "s:l:a858087f13810490");
        let sent = shared.collect(unix_ms(), 10);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].current, Ask::Add(1));
        // Redis answers that the cluster counted 4 in this window: 3 of them elsewhere.
        let totals = [Totals {
            current: Some(4),
            previous: Some(0),
        }];
        shared.settle(&sent, Ok(&totals));
        // 2 here, 3 elsewhere: the next one is over.
        assert_eq!(limiter.peek(&facts("10.0.0.1", "/api/", &h), t), Some(5.0));
        let over = limiter.hit(&facts("10.0.0.1", "/api/", &h), t).unwrap();
        assert_eq!(over.count, 6.0);
        // The edge-scoped limit of the same key knows nothing of the others.
        assert_eq!(edge_only.hit(&facts("10.0.0.1", "/api/", &h), t), None);
    }

    #[test]
    fn cookie_values_are_found_among_several_fields() {
        let mut h = HeaderMap::new();
        h.append("cookie", "a=1".parse().unwrap());
        h.append("cookie", " b = 2 ; sid=xyz".parse().unwrap());
        assert_eq!(cookie_value(&h, "sid"), Some(&b"xyz"[..]));
        assert_eq!(cookie_value(&h, "b"), Some(&b"2"[..]));
        assert_eq!(cookie_value(&h, "c"), None);
    }
}
