//! The shield's configuration: `[shield]` (lists for every site), and per site `[site.shield]`,
//! `[[site.rule]]` and `[[site.rate_limit]]`.
//!
//! Rule expressions stay text here, with where they stand in the file: the rule language lives
//! in the `shield` crate, which compiles them when the edge builds its snapshot and reports a bad
//! expression at its line and column in this file.

use crate::duration::{as_text, as_text_opt};
use ipnet::IpNet;
use serde::Deserialize;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

/// The top-level `[shield]` table: what applies to every site.
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalShield {
    /// Lists for every site, looked up with each site's own: the longer prefix wins, the
    /// site's on a tie.
    pub lists: IpLists,
    /// Security events kept in memory for `GET /api/events` (the oldest are dropped).
    pub events: usize,
}

/// Allow and deny lists. Where both hold a prefix of an address, the longer prefix decides.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IpLists {
    /// Addresses and networks let through the rest of the shield, challenge included.
    pub allow: Vec<IpNet>,
    /// Addresses and networks refused with 403.
    pub deny: Vec<IpNet>,
    /// Files of one address or CIDR per line (`#` comments), read at every reload.
    pub allow_files: Vec<PathBuf>,
    /// Like `allow_files`, for the deny list.
    pub deny_files: Vec<PathBuf>,
    /// Where `allow_files` stands in the configuration file, so that a file that cannot be
    /// read is reported at its line.
    pub allow_files_line: Option<usize>,
    /// Where `deny_files` stands in the configuration file.
    pub deny_files_line: Option<usize>,
}

impl IpLists {
    /// True when nothing is listed, in the configuration or in files.
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty()
            && self.deny.is_empty()
            && self.allow_files.is_empty()
            && self.deny_files.is_empty()
    }
}

/// A site's `[site.shield]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteShield {
    /// The site's own lists, checked with the `[shield]` lists (the longer prefix wins).
    pub lists: IpLists,
    /// Origin requests in flight at once for this site; over it a request waits in the
    /// site's origin queue, then gets the cache's stale copy or 503 with Retry-After. 0 means
    /// no cap.
    pub max_origin_concurrency: u32,
    /// The origin queue: how long, and how many, requests wait for a slot under
    /// `max_origin_concurrency` before they are shed.
    pub origin_queue: OriginQueue,
    /// Cache misses one client address may cause per `misses_period` (a cache-busting flood of
    /// random query strings); over it, `misses_action`. 0 means no limit.
    pub max_misses_per_ip: u32,
    /// The window `max_misses_per_ip` counts over; default 60s.
    pub misses_period: Duration,
    /// What a miss over the limit gets: `Challenge` (the challenge for a client that can take
    /// one, 429 for the others), `Block` (429) or `Log`.
    pub misses_action: LimitAction,
    /// The miss limit acts only while the origin is under pressure (`pressure`): it exists to
    /// keep a cache-busting flood off an origin that is struggling, not to refuse a heavy
    /// client (a crawler, an office NAT) an origin serves with ease.
    pub misses_only_under_pressure: bool,
    /// When the origin counts as under pressure (what `misses_only_under_pressure` waits for).
    pub pressure: OriginPressure,
    /// Automatic under-attack mode.
    pub attack: AttackDetection,
}

/// The short waiting line in front of a site's origins when `max_origin_concurrency` is
/// reached (`origin_queue_timeout`, `origin_queue_length`). Either at 0 turns it off: over the
/// cap a request is shed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OriginQueue {
    /// The longest a request waits for a slot; past it, the stale copy or 503.
    pub timeout: Duration,
    /// The most requests waiting at once; a newcomer more deserving than the least
    /// deserving one waiting takes its place, which is shed.
    pub length: u32,
}

impl OriginQueue {
    /// Largest `origin_queue_length`: each waiting request holds its client's connection.
    pub const MAX_LENGTH: u32 = 65_536;
    /// Longest `origin_queue_timeout`: a queue is for riding out a burst, not an outage.
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);

    /// Whether requests over the cap wait at all.
    pub fn is_on(&self) -> bool {
        !self.timeout.is_zero() && self.length > 0
    }
}

/// When a site's origin counts as under pressure: either signal is enough, and the site stays
/// under pressure for a hold time after the last sign of it.
#[derive(Debug, Clone, PartialEq)]
pub struct OriginPressure {
    /// Origin requests in flight, as a share of `max_origin_concurrency`, at which the origin
    /// is under pressure (0 turns this signal off; so does a site without a cap).
    pub concurrency: f64,
    /// Most origin responses over the last few seconds took this many times the origin's
    /// usual latency (0 turns this signal off)...
    pub latency_factor: f64,
    /// ...and at least this long.
    pub min_latency: Duration,
}

/// Automatic attack detection and mitigation.
#[derive(Debug, Clone, PartialEq)]
pub struct AttackDetection {
    /// Whether traffic spikes are detected and mitigated by their signature
    /// (`auto_under_attack`; default on).
    pub enabled: bool,
    /// A request rate (or error rate) this many times the site's baseline is an attack...
    pub factor: f64,
    /// ...provided it is at least this many requests per second (a quiet site doubling its
    /// traffic is not under attack).
    pub min_rps: f64,
    /// How long mitigation lasts once traffic has settled.
    pub hold: Duration,
    /// How long a site's traffic is learned, from its first request, before detection may
    /// trip (`attack_learning`): a new site's first traffic has no baseline to differ from.
    pub learning: Duration,
    /// What happens when no signature covers enough of a surge (`attack_fallback`).
    pub fallback: AttackFallback,
    /// The share of a surge the signature rules must match together
    /// (`signature_min_coverage`); below it, the fallback applies.
    pub min_coverage: f64,
    /// The most of a site's usual traffic one signature rule may match
    /// (`signature_max_baseline_share`).
    pub max_baseline_share: f64,
    /// How long a request a mitigation answers is held before its answer
    /// (`mitigation_hold`; zero: answered at once).
    pub mitigation_hold: Duration,
}

/// What a site does about a surge no signature covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttackFallback {
    /// Nothing more: the origin's cap and fair shedding protect the origin (the default).
    Off,
    /// Challenge every client without clearance until the attack ends.
    Challenge,
}

/// What a matching firewall rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    /// 403.
    Block,
    /// The browser challenge.
    Challenge,
    /// Skip the rest of the shield.
    Allow,
    /// Record a security event and go on.
    Log,
}

/// A `[[site.rule]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Names the rule in events, metrics and `palisade explain`: 1 to 64 of `a-zA-Z0-9-_.`,
    /// unique among the site's rules and rate limits.
    pub id: String,
    /// The rule's expression, compiled by the `shield` crate when a snapshot is built.
    pub expr: String,
    /// What a match does.
    pub action: RuleAction,
    /// Where the expression's text starts in the file (line, column), for error messages.
    pub expr_at: Option<(usize, usize)>,
}

/// What a rate limit counts by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKey {
    /// The client's address.
    Ip,
    /// The client's address and the request's path together.
    IpPath,
    /// A request header's value (lowercase name); requests without it are not counted.
    Header(String),
    /// A cookie's value; requests without it are not counted.
    Cookie(String),
}

/// What happens to requests over a rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitAction {
    /// 429 with Retry-After.
    Block,
    /// The browser challenge; a client with a valid clearance cookie goes on.
    Challenge,
    /// Record a security event and serve the request.
    Log,
}

/// Where a rate limit counts: on each edge apart, or across every edge of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitScope {
    /// Each edge counts the requests it sees (the default).
    #[default]
    Edge,
    /// Every edge of a `[cluster]` counts together: each counts locally first and shares its
    /// counts through the cluster's Redis (docs/cluster.md states the error). A node without
    /// `[cluster]` is the whole cluster, so it counts as `edge` does.
    Cluster,
}

/// A `[[site.rate_limit]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimit {
    /// Names the limit in events, metrics and `palisade explain`; written like a
    /// [`Rule::id`], and unique among the site's rules and limits.
    pub id: String,
    /// Only requests matching this expression are counted; all when absent.
    pub expr: Option<String>,
    /// Where `expr`'s text starts in the file (line, column), for error messages.
    pub expr_at: Option<(usize, usize)>,
    /// What requests are counted by (default the client's address).
    pub key: LimitKey,
    /// Requests one key may make per `period`.
    pub requests: u32,
    /// The window the count covers.
    pub period: Duration,
    /// What a request over the limit gets (default `block`: 429).
    pub action: LimitAction,
    /// Once over the limit, the key stays limited this long (at least until its count falls).
    pub penalty: Option<Duration>,
    /// Counted on this edge alone (default) or across the cluster.
    pub scope: LimitScope,
}

/// An IP list entry that is not an address or a CIDR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// Nothing but whitespace.
    #[error("empty entry: expected an IP address or a CIDR like 192.0.2.0/24")]
    Empty,
    /// Not an IPv4 or IPv6 address before the `/`.
    #[error("`{0}` is not an IP address or a CIDR like 192.0.2.0/24 or 2001:db8::/32")]
    NotAnAddress(String),
    /// A prefix length that is not digits, or longer than the address (32 or 128).
    #[error("`{entry}`: the prefix length must be 0 to {max}")]
    PrefixLength {
        /// The entry as written, trimmed.
        entry: String,
        /// The family's longest prefix: 32 or 128.
        max: u8,
    },
    /// Bits set after the prefix (`10.1.2.3/8`); `network` is the prefix it would mean.
    #[error("`{entry}` has host bits set after the /{length}; did you mean `{network}`?")]
    HostBits {
        /// The entry as written, trimmed.
        entry: String,
        /// The prefix length written.
        length: u8,
        /// The entry with its host bits cleared.
        network: IpNet,
    },
}

/// Parses one entry: an IPv4 or IPv6 address (a /32 or /128) or a CIDR, whitespace around it
/// trimmed. A CIDR with host bits set (`10.1.2.3/8`) is refused rather than silently widened:
/// it is usually a typo for a longer prefix or for a single address, and the error names the
/// network it would mean.
///
/// ```
/// use model::{NetError, parse_net};
///
/// assert_eq!(parse_net("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
/// assert_eq!(parse_net("2001:db8::1").unwrap().to_string(), "2001:db8::1/128");
/// assert!(parse_net("10.1.2.3/8").unwrap_err().to_string().contains("10.0.0.0/8"));
/// let Err(NetError::HostBits { network, .. }) = parse_net("10.1.2.3/8") else {
///     panic!("host bits are refused");
/// };
/// assert_eq!(network.to_string(), "10.0.0.0/8");
/// ```
pub fn parse_net(entry: &str) -> Result<IpNet, NetError> {
    let entry = entry.trim();
    if entry.is_empty() {
        return Err(NetError::Empty);
    }
    let (address, length) = match entry.split_once('/') {
        Some((address, length)) => (address, Some(length)),
        None => (entry, None),
    };
    let Ok(address) = address.parse::<IpAddr>() else {
        return Err(NetError::NotAnAddress(entry.to_string()));
    };
    let max_length = match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    let prefix_length = || NetError::PrefixLength {
        entry: entry.to_string(),
        max: max_length,
    };
    let length = match length {
        None => max_length,
        Some(length) => parse_prefix_length(length, max_length).ok_or_else(prefix_length)?,
    };
    let net = IpNet::new(address, length).map_err(|_| prefix_length())?;
    if net.trunc() != net {
        return Err(NetError::HostBits {
            entry: entry.to_string(),
            length,
            network: net.trunc(),
        });
    }
    Ok(net)
}

/// Digits only: `u8::from_str` would also take `+8`, which no one writes in a CIDR on purpose.
fn parse_prefix_length(length: &str, max_length: u8) -> Option<u8> {
    if length.is_empty() || !length.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    length.parse().ok().filter(|&length| length <= max_length)
}

// ---- The file as written ------------------------------------------------------------------

type Invalid = (Option<std::ops::Range<usize>>, String, String);

/// The list keys as written, shared by `[shield]` and `[site.shield]` (serde's `flatten` does
/// not mix with `deny_unknown_fields`, so each table repeats the four fields).
#[derive(Default)]
struct FileLists {
    allow: Vec<Spanned<String>>,
    deny: Vec<Spanned<String>>,
    allow_files: Vec<PathBuf>,
    deny_files: Vec<PathBuf>,
}

impl FileLists {
    fn into_lists(self, key: &str) -> Result<IpLists, Invalid> {
        let parse = |list: Vec<Spanned<String>>, name: &str| {
            list.into_iter()
                .enumerate()
                .map(|(i, entry)| {
                    parse_net(entry.get_ref()).map_err(|e| {
                        (
                            Some(entry.span()),
                            format!("{key}.{name}[{i}]"),
                            e.to_string(),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(IpLists {
            allow: parse(self.allow, "allow")?,
            deny: parse(self.deny, "deny")?,
            allow_files: self.allow_files,
            deny_files: self.deny_files,
            allow_files_line: None,
            deny_files_line: None,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct FileGlobalShield {
    allow: Vec<Spanned<String>>,
    deny: Vec<Spanned<String>>,
    allow_files: Vec<PathBuf>,
    deny_files: Vec<PathBuf>,
    events: usize,
}

impl Default for FileGlobalShield {
    fn default() -> Self {
        FileGlobalShield {
            allow: Vec::new(),
            deny: Vec::new(),
            allow_files: Vec::new(),
            deny_files: Vec::new(),
            events: 10_000,
        }
    }
}

impl Default for GlobalShield {
    fn default() -> Self {
        FileGlobalShield::default()
            .validate()
            .expect("the defaults are valid")
    }
}

impl FileGlobalShield {
    pub(crate) fn validate(self) -> Result<GlobalShield, Invalid> {
        if self.events == 0 {
            return Err((None, "shield.events".into(), "must be at least 1".into()));
        }
        let lists = FileLists {
            allow: self.allow,
            deny: self.deny,
            allow_files: self.allow_files,
            deny_files: self.deny_files,
        };
        Ok(GlobalShield {
            lists: lists.into_lists("shield")?,
            events: self.events,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct FileSiteShield {
    allow: Vec<Spanned<String>>,
    deny: Vec<Spanned<String>>,
    allow_files: Vec<PathBuf>,
    deny_files: Vec<PathBuf>,
    max_origin_concurrency: u32,
    #[serde(with = "as_text")]
    origin_queue_timeout: Duration,
    origin_queue_length: u32,
    max_misses_per_ip: u32,
    #[serde(with = "as_text")]
    misses_period: Duration,
    misses_action: LimitAction,
    misses_only_under_pressure: bool,
    origin_pressure_concurrency: f64,
    origin_pressure_latency_factor: f64,
    #[serde(with = "as_text")]
    origin_pressure_min_latency: Duration,
    auto_under_attack: bool,
    attack_factor: f64,
    attack_min_rps: f64,
    #[serde(with = "as_text")]
    attack_hold: Duration,
    #[serde(with = "as_text")]
    attack_learning: Duration,
    attack_fallback: AttackFallback,
    signature_min_coverage: f64,
    signature_max_baseline_share: f64,
    #[serde(with = "as_text")]
    mitigation_hold: Duration,
}

impl Default for FileSiteShield {
    fn default() -> Self {
        FileSiteShield {
            allow: Vec::new(),
            deny: Vec::new(),
            allow_files: Vec::new(),
            deny_files: Vec::new(),
            max_origin_concurrency: 256,
            // docs/shield.md, "Origin protection": a second rides out a burst (a browser
            // waits that long without noticing much) and is short enough that a client
            // shed after it retries soon.
            origin_queue_timeout: Duration::from_secs(1),
            // Four times the default cap: more than an origin at the cap serves within the
            // timeout unless it answers in under a quarter of a second; the rest is shed.
            origin_queue_length: 1024,
            // docs/shield.md, "Per-address defaults": the numbers and why.
            max_misses_per_ip: 600,
            misses_period: Duration::from_secs(60),
            misses_action: LimitAction::Challenge,
            misses_only_under_pressure: true,
            origin_pressure_concurrency: 0.5,
            origin_pressure_latency_factor: 4.0,
            origin_pressure_min_latency: Duration::from_millis(100),
            // On: a surge is answered by its signature only (docs/shield.md), so a false
            // alarm touches at most `signature_max_baseline_share` of the usual traffic.
            auto_under_attack: true,
            attack_factor: 8.0,
            attack_min_rps: 200.0,
            // Short: mitigation ends soon after the surge, and trips again at once if it
            // returns (the baseline does not learn during an attack).
            attack_hold: Duration::from_secs(30),
            // A new site (or one just load-tested by its operator) is not under attack: half
            // a minute of its traffic is learned first.
            attack_learning: Duration::from_secs(30),
            attack_fallback: AttackFallback::Off,
            signature_min_coverage: 0.8,
            signature_max_baseline_share: 0.01,
            // A tool in a closed loop then sends a request a second per connection instead of
            // as many as the edge can answer; a held request costs the edge a timer.
            mitigation_hold: Duration::from_secs(1),
        }
    }
}

impl Default for SiteShield {
    fn default() -> Self {
        FileSiteShield::default()
            .validate("shield")
            .expect("the defaults are valid")
    }
}

impl FileSiteShield {
    pub(crate) fn validate(self, key: &str) -> Result<SiteShield, Invalid> {
        for (field, period) in [
            ("misses_period", self.misses_period),
            ("attack_hold", self.attack_hold),
        ] {
            if period.is_zero() {
                return Err((
                    None,
                    format!("{key}.{field}"),
                    "must be more than zero".into(),
                ));
            }
        }
        if !(self.attack_factor > 1.0 && self.attack_factor.is_finite()) {
            return Err((
                None,
                format!("{key}.attack_factor"),
                "must be a number above 1".into(),
            ));
        }
        if !(self.attack_min_rps >= 0.0 && self.attack_min_rps.is_finite()) {
            return Err((
                None,
                format!("{key}.attack_min_rps"),
                "must be zero or more".into(),
            ));
        }
        if self.mitigation_hold > Duration::from_secs(60) {
            return Err((
                None,
                format!("{key}.mitigation_hold"),
                "must be at most 60s".into(),
            ));
        }
        for (field, share) in [
            ("signature_min_coverage", self.signature_min_coverage),
            (
                "signature_max_baseline_share",
                self.signature_max_baseline_share,
            ),
        ] {
            if !(share > 0.0 && share <= 1.0) {
                return Err((
                    None,
                    format!("{key}.{field}"),
                    "must be a share above 0 and at most 1".into(),
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.origin_pressure_concurrency) {
            return Err((
                None,
                format!("{key}.origin_pressure_concurrency"),
                "must be a share of max_origin_concurrency from 0 (off) to 1".into(),
            ));
        }
        let factor = self.origin_pressure_latency_factor;
        if !(factor == 0.0 || (factor > 1.0 && factor.is_finite())) {
            return Err((
                None,
                format!("{key}.origin_pressure_latency_factor"),
                "must be a number above 1, or 0 (off)".into(),
            ));
        }
        if self.origin_queue_timeout > OriginQueue::MAX_TIMEOUT {
            return Err((
                None,
                format!("{key}.origin_queue_timeout"),
                "must be at most 60s (0s: no queue)".into(),
            ));
        }
        if self.origin_queue_length > OriginQueue::MAX_LENGTH {
            return Err((
                None,
                format!("{key}.origin_queue_length"),
                format!("must be at most {} (0: no queue)", OriginQueue::MAX_LENGTH),
            ));
        }
        let lists = FileLists {
            allow: self.allow,
            deny: self.deny,
            allow_files: self.allow_files,
            deny_files: self.deny_files,
        };
        Ok(SiteShield {
            lists: lists.into_lists(key)?,
            max_origin_concurrency: self.max_origin_concurrency,
            origin_queue: OriginQueue {
                timeout: self.origin_queue_timeout,
                length: self.origin_queue_length,
            },
            max_misses_per_ip: self.max_misses_per_ip,
            misses_period: self.misses_period,
            misses_action: self.misses_action,
            misses_only_under_pressure: self.misses_only_under_pressure,
            pressure: OriginPressure {
                concurrency: self.origin_pressure_concurrency,
                latency_factor: factor,
                min_latency: self.origin_pressure_min_latency,
            },
            attack: AttackDetection {
                enabled: self.auto_under_attack,
                factor: self.attack_factor,
                min_rps: self.attack_min_rps,
                hold: self.attack_hold,
                learning: self.attack_learning,
                fallback: self.attack_fallback,
                min_coverage: self.signature_min_coverage,
                max_baseline_share: self.signature_max_baseline_share,
                mitigation_hold: self.mitigation_hold,
            },
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileRule {
    id: Spanned<String>,
    expr: Spanned<String>,
    action: RuleAction,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileRateLimit {
    id: Spanned<String>,
    expr: Option<Spanned<String>>,
    #[serde(default = "default_limit_key")]
    key: Spanned<String>,
    requests: u32,
    #[serde(with = "as_text")]
    period: Duration,
    #[serde(default = "default_limit_action")]
    action: LimitAction,
    #[serde(default, with = "as_text_opt")]
    penalty: Option<Duration>,
    #[serde(default)]
    scope: LimitScope,
}

fn default_limit_key() -> Spanned<String> {
    Spanned::new(0..0, "ip".into())
}

fn default_limit_action() -> LimitAction {
    LimitAction::Block
}

/// Where a string value's text starts in `source` (the whole file): past its opening `'` or
/// `"`, or past a `'''` or `"""` and the newline TOML trims right after one, so that a rule
/// written over several lines has its errors placed on the right line.
pub(crate) fn text_start(
    spanned: &Spanned<String>,
    source: &crate::locate::Source<'_>,
) -> Option<(usize, usize)> {
    let span = spanned.span();
    let text = source.text();
    let raw = text.get(span.clone()).filter(|raw| !raw.is_empty())?;
    let mut start = span.start + 1;
    if raw.starts_with("'''") || raw.starts_with("\"\"\"") {
        start = span.start + 3;
        let rest = &text[start..];
        start += if rest.starts_with("\r\n") {
            2
        } else {
            usize::from(rest.starts_with('\n'))
        };
    }
    Some(source.line_and_column(start))
}

/// Rule and limit ids name them in events, metrics and `palisade explain`.
fn check_id(id: &Spanned<String>, key: String, seen: &mut Vec<String>) -> Result<(), Invalid> {
    let text = id.get_ref();
    let valid = (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !valid {
        return Err((
            Some(id.span()),
            key,
            format!(
                "id {} must be 1 to 64 characters of a-z, A-Z, 0-9, '-', '_' and '.'",
                crate::shown(text)
            ),
        ));
    }
    if seen.contains(text) {
        return Err((
            Some(id.span()),
            key,
            format!("id {} is used twice in this site", crate::shown(text)),
        ));
    }
    seen.push(text.clone());
    Ok(())
}

pub(crate) fn validate_rules(
    rules: Vec<FileRule>,
    site_key: &str,
    seen: &mut Vec<String>,
    source: &crate::locate::Source<'_>,
) -> Result<Vec<Rule>, Invalid> {
    let mut out = Vec::with_capacity(rules.len());
    for (i, rule) in rules.into_iter().enumerate() {
        check_id(&rule.id, format!("{site_key}.rule[{i}].id"), seen)?;
        out.push(Rule {
            expr_at: text_start(&rule.expr, source),
            id: rule.id.into_inner(),
            expr: rule.expr.into_inner(),
            action: rule.action,
        });
    }
    Ok(out)
}

pub(crate) fn validate_rate_limits(
    limits: Vec<FileRateLimit>,
    site_key: &str,
    seen: &mut Vec<String>,
    source: &crate::locate::Source<'_>,
) -> Result<Vec<RateLimit>, Invalid> {
    let mut out = Vec::with_capacity(limits.len());
    for (i, limit) in limits.into_iter().enumerate() {
        let key = |field: &str| format!("{site_key}.rate_limit[{i}].{field}");
        check_id(&limit.id, key("id"), seen)?;
        let by = parse_limit_key(limit.key.get_ref())
            .map_err(|e| (Some(limit.key.span()), key("key"), e))?;
        if limit.requests == 0 {
            return Err((None, key("requests"), "must be at least 1".into()));
        }
        if limit.period.is_zero() {
            return Err((None, key("period"), "must be more than zero".into()));
        }
        if limit.penalty.is_some_and(|p| p.is_zero()) {
            return Err((
                None,
                key("penalty"),
                "must be more than zero (leave it out for none)".into(),
            ));
        }
        out.push(RateLimit {
            id: limit.id.into_inner(),
            expr_at: limit.expr.as_ref().and_then(|e| text_start(e, source)),
            expr: limit.expr.map(Spanned::into_inner),
            key: by,
            requests: limit.requests,
            period: limit.period,
            action: limit.action,
            penalty: limit.penalty,
            scope: limit.scope,
        });
    }
    Ok(out)
}

fn parse_limit_key(text: &str) -> Result<LimitKey, String> {
    let named = |name: &str, what: &str| {
        if name.is_empty() || !name.bytes().all(crate::config::is_token_byte) {
            Err(format!("{what} name {} is not valid", crate::shown(name)))
        } else {
            Ok(name.to_string())
        }
    };
    match text.split_once(':') {
        None if text == "ip" => Ok(LimitKey::Ip),
        None if text == "ip_path" => Ok(LimitKey::IpPath),
        Some(("header", name)) => Ok(LimitKey::Header(
            named(name, "header")?.to_ascii_lowercase(),
        )),
        Some(("cookie", name)) => Ok(LimitKey::Cookie(named(name, "cookie")?)),
        _ => Err(format!(
            "key {} must be one of ip, ip_path, header:NAME, cookie:NAME",
            crate::shown(text)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_entries_are_addresses_or_networks_without_host_bits() {
        assert_eq!(
            parse_net("203.0.113.0/24").unwrap().to_string(),
            "203.0.113.0/24"
        );
        assert_eq!(parse_net("127.0.0.1").unwrap().to_string(), "127.0.0.1/32");
        assert_eq!(
            parse_net("2001:db8::1").unwrap().to_string(),
            "2001:db8::1/128"
        );
        let err = parse_net("10.1.2.3/8").unwrap_err().to_string();
        assert!(err.contains("10.0.0.0/8"), "{err}");
        assert!(parse_net("10.0.0.0/33").is_err());
        assert!(parse_net("example.com").is_err());
    }

    #[test]
    fn limit_keys() {
        assert_eq!(parse_limit_key("ip"), Ok(LimitKey::Ip));
        assert_eq!(parse_limit_key("ip_path"), Ok(LimitKey::IpPath));
        assert_eq!(
            parse_limit_key("header:X-Api-Key"),
            Ok(LimitKey::Header("x-api-key".into()))
        );
        assert_eq!(
            parse_limit_key("cookie:session"),
            Ok(LimitKey::Cookie("session".into()))
        );
        assert!(parse_limit_key("header:").is_err());
        assert!(parse_limit_key("path").is_err());
        assert!(parse_limit_key("cookie:a b").is_err());
    }

    fn parse(text: &str) -> Result<crate::Config, crate::ConfigError> {
        crate::Config::from_toml_str("palisade.toml", text)
    }

    const ISSUE_EXAMPLE: &str = r#"
[[site]]
name = "blog"
hosts = ["blog.example"]
origins = ["http://127.0.0.1:3000"]

[[site.rule]]
id = "no-wp-admin"
expr = 'http.request.uri.path starts_with "/wp-admin"'
action = "block"

[[site.rate_limit]]
id = "api"
expr = 'http.request.uri.path starts_with "/api/"'   # optional filter
key = "ip"                                           # ip | ip_path | header:NAME | cookie:NAME
requests = 100
period = "10s"
action = "block"                                     # block | challenge | log
penalty = "60s"

[site.shield]
deny = ["203.0.113.0/24"]
allow = ["127.0.0.1/32"]
max_origin_concurrency = 256
"#;

    #[test]
    fn the_issue_example_parses() {
        let config = parse(ISSUE_EXAMPLE).unwrap();
        let site = &config.sites[0];
        assert_eq!(site.rules.len(), 1);
        assert_eq!(site.rules[0].action, RuleAction::Block);
        // The expression's text starts one past its opening quote, on line 9 (the text opens
        // with a newline).
        assert_eq!(site.rules[0].expr_at, Some((9, 9)));
        let limit = &site.rate_limits[0];
        assert_eq!(limit.key, LimitKey::Ip);
        assert_eq!(limit.requests, 100);
        assert_eq!(limit.period, Duration::from_secs(10));
        assert_eq!(limit.penalty, Some(Duration::from_secs(60)));
        assert_eq!(limit.scope, LimitScope::Edge);
        let cluster =
            parse(&ISSUE_EXAMPLE.replace("penalty = \"60s\"", "scope = \"cluster\"")).unwrap();
        assert_eq!(cluster.sites[0].rate_limits[0].scope, LimitScope::Cluster);
        assert_eq!(site.shield.lists.deny[0].to_string(), "203.0.113.0/24");
        assert_eq!(site.shield.max_origin_concurrency, 256);
        assert_eq!(config.shield.events, 10_000);
    }

    #[test]
    fn a_multi_line_expression_starts_on_the_line_after_its_delimiter() {
        let text = "[[site]]\nname = \"a\"\nhosts = [\"a.example\"]\norigins = [\"http://127.0.0.1:1\"]\n\
                    [[site.rule]]\nid = \"r\"\nexpr = '''\n  http.user_agent eq \"x\"\n'''\naction = \"block\"\n\
                    [[site.rate_limit]]\nid = \"l\"\nexpr = \"\"\"\r\nssl\"\"\"\nrequests = 1\nperiod = \"1s\"\n";
        let config = parse(text).unwrap();
        // TOML drops the newline (LF or CRLF) right after the opening delimiter: the texts are
        // on lines 8 and 14.
        assert_eq!(config.sites[0].rules[0].expr_at, Some((8, 1)));
        assert_eq!(config.sites[0].rate_limits[0].expr_at, Some((14, 1)));
    }

    #[test]
    fn defaults_without_a_shield_table() {
        let config = parse(
            "[[site]]\nname = \"a\"\nhosts = [\"a.example\"]\norigins = [\"http://127.0.0.1:1\"]\n",
        )
        .unwrap();
        let shield = &config.sites[0].shield;
        assert_eq!(shield, &SiteShield::default());
        assert!(shield.lists.is_empty());
        // On: a surge is answered by its signature only; challenging everyone is off.
        assert!(shield.attack.enabled);
        assert_eq!(shield.attack.fallback, AttackFallback::Off);
        assert_eq!(shield.attack.hold, Duration::from_secs(30));
    }

    #[test]
    fn the_origin_queue_waits_a_second_for_at_most_1024_and_either_zero_turns_it_off() {
        let queue = SiteShield::default().origin_queue;
        assert_eq!(queue.timeout, Duration::from_secs(1));
        assert_eq!(queue.length, 1024);
        assert!(queue.is_on());
        let site = "[[site]]\nname = \"a\"\nhosts = [\"a.example\"]\norigins = [\"http://127.0.0.1:1\"]\n[site.shield]\n";
        for (keys, on) in [
            (
                "origin_queue_timeout = \"250ms\"\norigin_queue_length = 10",
                true,
            ),
            ("origin_queue_timeout = \"0s\"", false),
            ("origin_queue_length = 0", false),
        ] {
            let config = parse(&format!("{site}{keys}\n")).unwrap();
            assert_eq!(config.sites[0].shield.origin_queue.is_on(), on, "{keys}");
        }
        for (keys, key) in [
            (
                "origin_queue_timeout = \"61s\"",
                "site[0].shield.origin_queue_timeout",
            ),
            (
                "origin_queue_length = 65537",
                "site[0].shield.origin_queue_length",
            ),
        ] {
            let err = parse(&format!("{site}{keys}\n")).unwrap_err();
            assert_eq!(err.key, key, "{keys}: {err}");
        }
    }

    #[test]
    fn the_miss_limit_defaults_to_a_challenge_while_the_origin_is_under_pressure() {
        let shield = SiteShield::default();
        assert_eq!(shield.max_misses_per_ip, 600);
        assert_eq!(shield.misses_action, LimitAction::Challenge);
        assert!(shield.misses_only_under_pressure);
        assert_eq!(
            shield.pressure,
            OriginPressure {
                concurrency: 0.5,
                latency_factor: 4.0,
                min_latency: Duration::from_millis(100),
            }
        );
        // The old behaviour, spelled out: 429 whatever the origin's state.
        let config = parse(
            "[[site]]\nname = \"a\"\nhosts = [\"a.example\"]\norigins = [\"http://127.0.0.1:1\"]\n\
             [site.shield]\nmisses_action = \"block\"\nmisses_only_under_pressure = false\n\
             origin_pressure_concurrency = 0\norigin_pressure_latency_factor = 0\n\
             origin_pressure_min_latency = \"250ms\"\n",
        )
        .unwrap();
        let shield = &config.sites[0].shield;
        assert_eq!(shield.misses_action, LimitAction::Block);
        assert!(!shield.misses_only_under_pressure);
        assert_eq!(shield.pressure.concurrency, 0.0);
        assert_eq!(shield.pressure.latency_factor, 0.0);
        assert_eq!(shield.pressure.min_latency, Duration::from_millis(250));
    }

    #[test]
    fn mistakes_name_their_key() {
        let base =
            "[[site]]\nname = \"a\"\nhosts = [\"a.example\"]\norigins = [\"http://127.0.0.1:1\"]\n";
        let cases = [
            (
                "[site.shield]\ndeny = [\"10.1.2.3/8\"]\n",
                "site[0].shield.deny[0]",
            ),
            (
                "[[site.rule]]\nid = \"x y\"\nexpr = \"ssl\"\naction = \"block\"\n",
                "site[0].rule[0].id",
            ),
            (
                "[[site.rate_limit]]\nid = \"r\"\nkey = \"path\"\nrequests = 1\nperiod = \"1s\"\n",
                "site[0].rate_limit[0].key",
            ),
            (
                "[[site.rate_limit]]\nid = \"r\"\nrequests = 0\nperiod = \"1s\"\n",
                "site[0].rate_limit[0].requests",
            ),
            (
                "[[site.rate_limit]]\nid = \"r\"\nrequests = 1\nperiod = \"1s\"\nscope = \"global\"\n",
                "site[0].rate_limit[0].scope",
            ),
            (
                "[site.shield]\nattack_factor = 0.5\n",
                "site[0].shield.attack_factor",
            ),
            (
                "[site.shield]\norigin_pressure_concurrency = 1.5\n",
                "site[0].shield.origin_pressure_concurrency",
            ),
            (
                "[site.shield]\norigin_pressure_latency_factor = 0.5\n",
                "site[0].shield.origin_pressure_latency_factor",
            ),
            ("[shield]\nallow = [\"nope\"]\n", "shield.allow[0]"),
        ];
        for (extra, key) in cases {
            let err = parse(&format!("{base}{extra}")).unwrap_err();
            assert_eq!(err.key, key, "{err}");
        }
        let twice = format!(
            "{base}[[site.rule]]\nid = \"x\"\nexpr = \"ssl\"\naction = \"log\"\n[[site.rate_limit]]\nid = \"x\"\nrequests = 1\nperiod = \"1s\"\n"
        );
        let err = parse(&twice).unwrap_err();
        assert!(err.message.contains("used twice"), "{err}");
        let action = parse(&format!(
            "{base}[[site.rule]]\nid = \"x\"\nexpr = \"ssl\"\naction = \"explode\"\n"
        ))
        .unwrap_err();
        assert_eq!(action.line, Some(8), "{action}");
    }
}
