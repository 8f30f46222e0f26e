//! A site's shield as one compiled unit: lists, then firewall rules, then rate limits, each able
//! to decide, in that order.
//!
//! ```text
//! lists        longest matching prefix of the site's and the global lists: allow | deny
//! rules        in file order; block, challenge and allow end the walk, log records and goes on
//! rate limits  every limit whose filter matches counts the request; the first one over decides
//! ```
//! `allow` (a list or a rule) skips everything after it, the challenge gate included. What each
//! step decided is recorded as a [`SecurityEvent`](crate::events::SecurityEvent).

use crate::RequestFacts;
use crate::events::{EventAction, EventReason, NewEvent};
use crate::iplist::{IpTable, IpTableBuilder, ListError};
use crate::ratelimit::{LimiterRegistry, RateLimiter};
use crate::rules::{Expr, RuleError, RuleSet};
use ipnet::IpNet;
use model::{IpLists, LimitAction, RuleAction};
use std::fmt;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An entry of the allow and deny lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listed {
    /// Let through the rest of the shield, the challenge gate included.
    Allow,
    /// Refused with 403.
    Deny,
}

/// The lists that apply to every site, built once per snapshot and shared.
pub type GlobalLists = IpTable<Listed>;

/// Why an allow or deny list could not be built from the files it names.
#[derive(Debug, thiserror::Error)]
pub enum ListsError {
    /// A file named by `allow_files` or `deny_files` could not be read.
    #[error("{}key `{key}`: cannot read {}: {error}", at_line(*.line), .path.display())]
    Read {
        /// The configuration file's line that names the file, when known.
        line: Option<usize>,
        /// The list's key, `site[0].shield.allow_files` say.
        key: String,
        /// The file as the configuration names it.
        path: PathBuf,
        /// Why it could not be read.
        error: std::io::Error,
    },
    /// A line of the file is not an address or a CIDR.
    #[error("{}key `{key}`: {}: {error}", at_line(*.line), .path.display())]
    Entry {
        /// The configuration file's line that names the file, when known.
        line: Option<usize>,
        /// The list's key, `site[0].shield.allow_files` say.
        key: String,
        /// The file as the configuration names it.
        path: PathBuf,
        /// The first bad line and what is wrong with it.
        error: ListError,
    },
}

/// `line N: ` ahead of a configuration error, when its line is known.
fn at_line(line: Option<usize>) -> String {
    line.map_or_else(String::new, |line| format!("line {line}: "))
}

/// Reads list files and builds a table from config entries and files. `key` names the list's
/// table in errors (`shield`, `site[0].shield`).
pub fn build_lists(lists: &IpLists, key: &str) -> Result<IpTable<Listed>, ListsError> {
    let mut builder = IpTableBuilder::new();
    let add_file = |path: &Path, listed: Listed, field: &str| {
        let key = || format!("{key}.{field}");
        // Where the key stands in the configuration file, ahead of the key as in every
        // configuration error.
        let line = match listed {
            Listed::Allow => lists.allow_files_line,
            Listed::Deny => lists.deny_files_line,
        };
        let text = std::fs::read_to_string(path).map_err(|error| ListsError::Read {
            line,
            key: key(),
            path: path.to_path_buf(),
            error,
        })?;
        let nets = crate::iplist::parse_list(&text).map_err(|error| ListsError::Entry {
            line,
            key: key(),
            path: path.to_path_buf(),
            error,
        })?;
        Ok::<Vec<(IpNet, Listed)>, ListsError>(nets.into_iter().map(|n| (n, listed)).collect())
    };
    let mut entries = Vec::new();
    for path in &lists.allow_files {
        entries.extend(add_file(path, Listed::Allow, "allow_files")?);
    }
    for path in &lists.deny_files {
        entries.extend(add_file(path, Listed::Deny, "deny_files")?);
    }
    // Entries written in the config come last, so they win over a file's same prefix; a deny
    // of a prefix that is also allowed is a deny (the safer reading of a contradiction).
    entries.extend(lists.allow.iter().map(|n| (*n, Listed::Allow)));
    entries.extend(lists.deny.iter().map(|n| (*n, Listed::Deny)));
    for (net, listed) in entries {
        builder.insert(net, listed);
    }
    Ok(builder.build())
}

/// A `[[site.rule]]`, compiled.
#[derive(Debug)]
pub struct FirewallRule {
    /// The rule's `id`, as events name it.
    pub id: Arc<str>,
    /// The rule's expression, compiled.
    pub expr: Expr,
    /// What a match does.
    pub action: RuleAction,
}

/// What the shield decided for one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Go on to the challenge gate, the cache and the origin.
    Pass,
    /// Allowed by a list or a rule: skip the rest of the shield.
    Allowed,
    /// 403.
    Block {
        /// Which part of the shield refused it.
        reason: EventReason,
    },
    /// The browser challenge.
    Challenge {
        /// Which part of the shield asked for it.
        reason: EventReason,
    },
    /// 429 with Retry-After.
    Limited {
        /// What `Retry-After` says: the penalty left, or until the count falls.
        retry_after: Duration,
    },
}

/// A site's compiled shield.
#[derive(Debug)]
pub struct SiteGuard {
    site: Arc<str>,
    lists: IpTable<Listed>,
    global: Arc<GlobalLists>,
    rules: Vec<FirewallRule>,
    /// `rules`' expressions, evaluated together: each field read once per request.
    rule_set: RuleSet,
    limits: Vec<RateLimiter>,
    list_id: Arc<str>,
}

/// A rule or limit that failed to compile, with the key that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError {
    /// The key holding the expression, e.g. `site[0].rule[2].expr`.
    pub key: String,
    /// Where the expression starts in the file, when known.
    pub expr_at: Option<(usize, usize)>,
    /// What is wrong, with its line and column within the expression.
    pub error: RuleError,
}

impl BuildError {
    /// The error's line and column in the config file: the expression's own position shifted
    /// by where the expression starts.
    pub fn file_position(&self) -> Option<(usize, usize)> {
        let (line, column) = self.expr_at?;
        Some(if self.error.line <= 1 {
            (line, column + self.error.column - 1)
        } else {
            (line + self.error.line - 1, self.error.column)
        })
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.file_position() {
            Some((line, column)) => write!(
                f,
                "line {line}, column {column}: key `{}`: {}",
                self.key, self.error.message
            ),
            None => write!(f, "key `{}`: {}", self.key, self.error),
        }
    }
}

// The rule error's message is part of this one's, so it is not also a source.
impl std::error::Error for BuildError {}

/// Why a site's shield could not be built.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// The site's allow or deny list files.
    #[error(transparent)]
    Lists(#[from] ListsError),
    /// A rule's or a rate limit's expression does not compile.
    #[error(transparent)]
    Expr(#[from] BuildError),
}

impl SiteGuard {
    /// Compiles the lists, rules and rate limits of `site`, the `site_index`th of the
    /// configuration (errors name its keys), to be checked with the `[shield]` lists in
    /// `global`. A rate limit keeps its counts across reloads through `limiters`.
    pub fn build(
        site_index: usize,
        site: &model::Site,
        global: Arc<GlobalLists>,
        limiters: &LimiterRegistry,
    ) -> Result<SiteGuard, GuardError> {
        let key = format!("site[{site_index}]");
        let lists = build_lists(&site.shield.lists, &format!("{key}.shield"))?;
        let mut rules = Vec::with_capacity(site.rules.len());
        for (i, rule) in site.rules.iter().enumerate() {
            let expr = Expr::parse(&rule.expr).map_err(|error| BuildError {
                key: format!("{key}.rule[{i}].expr"),
                expr_at: rule.expr_at,
                error,
            })?;
            rules.push(FirewallRule {
                id: rule.id.as_str().into(),
                expr,
                action: rule.action,
            });
        }
        let mut limits = Vec::with_capacity(site.rate_limits.len());
        for (i, limit) in site.rate_limits.iter().enumerate() {
            let built =
                RateLimiter::build(&site.name, limit, limiters).map_err(|error| BuildError {
                    key: format!("{key}.rate_limit[{i}].expr"),
                    expr_at: limit.expr_at,
                    error,
                })?;
            limits.push(built);
        }
        let rule_set = RuleSet::new(rules.iter().map(|rule| &rule.expr));
        Ok(SiteGuard {
            site: site.name.as_str().into(),
            lists,
            global,
            rules,
            rule_set,
            limits,
            list_id: "ip_list".into(),
        })
    }

    /// True when the guard can decide nothing (no lists, rules or limits): the edge skips it.
    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
            && self.global.is_empty()
            && self.rules.is_empty()
            && self.limits.is_empty()
    }

    /// The longest listed prefix holding `ip`, site entries winning a tie with global ones.
    pub fn listed(&self, ip: std::net::IpAddr) -> Option<(IpNet, Listed, bool)> {
        let site = self.lists.lookup_prefix(ip);
        let global = self.global.lookup_prefix(ip);
        match (site, global) {
            (Some((s, l)), Some((g, _))) if s.prefix_len() >= g.prefix_len() => Some((s, l, false)),
            (_, Some((g, l))) => Some((g, l, true)),
            (Some((s, l)), None) => Some((s, l, false)),
            (None, None) => None,
        }
    }

    /// Runs the request through the lists, rules and limits; hands `record` an event for each
    /// thing they do.
    pub fn check(
        &self,
        facts: &RequestFacts<'_>,
        now: Instant,
        record: &dyn Fn(NewEvent),
    ) -> Verdict {
        self.check_cleared(facts, now, record, &|| false)
    }

    /// The allow and deny lists alone: `Allowed`, `Block` (recorded) or `Pass`.
    pub fn check_lists(&self, ip: std::net::IpAddr, record: &dyn Fn(NewEvent)) -> Verdict {
        match self.listed(ip) {
            Some((_, Listed::Allow, _)) => Verdict::Allowed,
            Some((_, Listed::Deny, _)) => {
                record(NewEvent {
                    rule_id: Some(Arc::clone(&self.list_id)),
                    ..NewEvent::for_client(
                        &self.site,
                        ip,
                        EventAction::Block,
                        EventReason::DenyList,
                    )
                });
                Verdict::Block {
                    reason: EventReason::DenyList,
                }
            }
            None => Verdict::Pass,
        }
    }

    /// [`check`](Self::check) for a client that may hold a clearance: a rule or limit whose
    /// action is `challenge` lets a cleared client go on to the next rule. `cleared` is asked
    /// only then (it verifies a cookie).
    // Never inlined: one call per request is nothing, and the benchmark's callgrind pass
    // finds the shield's cost under this name.
    #[inline(never)]
    pub fn check_cleared(
        &self,
        facts: &RequestFacts<'_>,
        now: Instant,
        record: &dyn Fn(NewEvent),
        cleared: &dyn Fn() -> bool,
    ) -> Verdict {
        let event = |action, reason, rule_id: Option<&Arc<str>>, value| {
            record(NewEvent {
                site: Arc::clone(&self.site),
                client_ip: Some(facts.ip),
                action,
                reason,
                rule_id: rule_id.cloned(),
                value,
                mitigation: None,
            })
        };
        match self.check_lists(facts.ip, record) {
            Verdict::Pass => {}
            decided => return decided,
        }
        let decided = self.rule_set.walk(facts, |index| {
            let rule = &self.rules[index];
            let reason = EventReason::Rule;
            match rule.action {
                RuleAction::Allow => ControlFlow::Break(Verdict::Allowed),
                RuleAction::Block => {
                    event(EventAction::Block, reason, Some(&rule.id), None);
                    ControlFlow::Break(Verdict::Block { reason })
                }
                RuleAction::Challenge if cleared() => ControlFlow::Continue(()),
                RuleAction::Challenge => {
                    event(EventAction::Challenge, reason, Some(&rule.id), None);
                    ControlFlow::Break(Verdict::Challenge { reason })
                }
                RuleAction::Log => {
                    event(EventAction::Log, reason, Some(&rule.id), None);
                    ControlFlow::Continue(())
                }
            }
        });
        if let Some(verdict) = decided {
            return verdict;
        }
        for limit in &self.limits {
            let Some(over) = limit.hit(facts, now) else {
                continue;
            };
            let reason = EventReason::RateLimit;
            let count = Some(over.count);
            match limit.action {
                LimitAction::Block => {
                    event(EventAction::RateLimit, reason, Some(&limit.id), count);
                    return Verdict::Limited {
                        retry_after: over.retry_after,
                    };
                }
                LimitAction::Challenge if cleared() => {}
                LimitAction::Challenge => {
                    event(EventAction::Challenge, reason, Some(&limit.id), count);
                    return Verdict::Challenge { reason };
                }
                LimitAction::Log => event(EventAction::Log, reason, Some(&limit.id), count),
            }
        }
        Verdict::Pass
    }

    /// What [`check`](Self::check) would meet and decide, without counting anything: for
    /// `palisade explain`.
    pub fn explain(&self, facts: &RequestFacts<'_>, now: Instant) -> Explanation {
        let mut steps = Vec::new();
        let mut verdict = None;
        match self.listed(facts.ip) {
            Some((net, listed, global)) => {
                let scope = if global { "global" } else { "site" };
                let (word, decided) = match listed {
                    Listed::Allow => ("allow", Verdict::Allowed),
                    Listed::Deny => (
                        "deny",
                        Verdict::Block {
                            reason: EventReason::DenyList,
                        },
                    ),
                };
                steps.push(format!(
                    "list: {} is in the {scope} {word} list ({net})",
                    facts.ip
                ));
                verdict = Some(decided);
            }
            None => steps.push(format!("list: {} is in no list", facts.ip)),
        }
        let matches = self.rule_set.matched(facts);
        for (rule, matched) in self.rules.iter().zip(matches) {
            let action = rule_action_name(rule.action);
            let decided = verdict.is_some();
            steps.push(format!(
                "rule {} ({action}): {}{}",
                rule.id,
                if matched { "matches" } else { "no match" },
                if matched && decided {
                    " (not reached)"
                } else {
                    ""
                }
            ));
            if matched && !decided {
                verdict = match rule.action {
                    RuleAction::Allow => Some(Verdict::Allowed),
                    RuleAction::Block => Some(Verdict::Block {
                        reason: EventReason::Rule,
                    }),
                    RuleAction::Challenge => Some(Verdict::Challenge {
                        reason: EventReason::Rule,
                    }),
                    RuleAction::Log => None,
                };
            }
        }
        for limit in &self.limits {
            let line = if limit.applies(facts) {
                let count = limit.peek(facts, now).unwrap_or(0.0);
                format!(
                    "rate_limit {}: counts this request (limit {} per {:?}; {count:.0} counted so far)",
                    limit.id,
                    limit.requests(),
                    limit.period()
                )
            } else {
                format!("rate_limit {}: does not apply", limit.id)
            };
            steps.push(line);
        }
        Explanation {
            steps,
            verdict: verdict.unwrap_or(Verdict::Pass),
        }
    }
}

fn rule_action_name(action: RuleAction) -> &'static str {
    match action {
        RuleAction::Block => "block",
        RuleAction::Challenge => "challenge",
        RuleAction::Allow => "allow",
        RuleAction::Log => "log",
    }
}

/// The result of [`SiteGuard::explain`].
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// One line per step of the walk, in order.
    pub steps: Vec<String>,
    /// What the walk decided.
    pub verdict: Verdict,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for step in &self.steps {
            writeln!(f, "{step}")?;
        }
        let verdict = match &self.verdict {
            Verdict::Pass => {
                "pass (on to the under-attack gate, the cache and the origin)".to_string()
            }
            Verdict::Allowed => "allow (the rest of the shield is skipped)".to_string(),
            Verdict::Block { reason } => format!("block: 403 ({})", reason.as_str()),
            Verdict::Challenge { reason } => format!("challenge ({})", reason.as_str()),
            Verdict::Limited { retry_after } => {
                format!("rate limited: 429, Retry-After {}", retry_after.as_secs())
            }
        };
        write!(f, "verdict: {verdict}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{EventQuery, EventRing};
    use http::HeaderMap;

    fn site(extra: &str) -> model::Site {
        let text = format!(
            "[[site]]\nname = \"s\"\nhosts = [\"a.example\"]\norigins = [\"http://127.0.0.1:1\"]\n{extra}"
        );
        model::Config::from_toml_str("t.toml", &text)
            .unwrap()
            .sites
            .remove(0)
    }

    fn guard(extra: &str) -> SiteGuard {
        SiteGuard::build(0, &site(extra), Arc::default(), &LimiterRegistry::default()).unwrap()
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

    const RULES: &str = r#"
[[site.rule]]
id = "ok-monitor"
expr = 'http.user_agent eq "monitor"'
action = "allow"

[[site.rule]]
id = "watch"
expr = 'http.request.uri.path starts_with "/admin"'
action = "log"

[[site.rule]]
id = "no-wp-admin"
expr = 'http.request.uri.path starts_with "/wp-admin"'
action = "block"

[[site.rule]]
id = "login"
expr = 'http.request.uri.path eq "/login"'
action = "challenge"

[[site.rate_limit]]
id = "api"
expr = 'http.request.uri.path starts_with "/api/"'
requests = 2
period = "10s"

[site.shield]
deny = ["203.0.113.0/24"]
allow = ["203.0.113.7"]
"#;

    #[test]
    fn lists_rules_and_limits_decide_in_order() {
        let g = guard(RULES);
        let events = EventRing::new(100);
        let h = HeaderMap::new();
        let now = Instant::now();
        let record = |e| events.record(e);
        let check = |ip, path| g.check(&facts(ip, path, &h), now, &record);
        assert_eq!(
            check("203.0.113.9", "/"),
            Verdict::Block {
                reason: EventReason::DenyList
            }
        );
        // The longer prefix wins: one address of the denied network is allowed, even to
        // what a rule blocks.
        assert_eq!(check("203.0.113.7", "/wp-admin/"), Verdict::Allowed);
        assert_eq!(
            check("10.0.0.1", "/wp-admin/x"),
            Verdict::Block {
                reason: EventReason::Rule
            }
        );
        assert_eq!(
            check("10.0.0.1", "/login"),
            Verdict::Challenge {
                reason: EventReason::Rule
            }
        );
        assert_eq!(check("10.0.0.1", "/admin"), Verdict::Pass);
        assert_eq!(check("10.0.0.1", "/api/a"), Verdict::Pass);
        assert_eq!(check("10.0.0.1", "/api/b"), Verdict::Pass);
        assert_eq!(
            check("10.0.0.1", "/api/c"),
            Verdict::Limited {
                retry_after: Duration::from_secs(10)
            }
        );
        let mut monitor = HeaderMap::new();
        monitor.insert("user-agent", "monitor".parse().unwrap());
        assert_eq!(
            g.check(&facts("10.0.0.1", "/api/d", &monitor), now, &record),
            Verdict::Allowed
        );
        let recorded: Vec<(EventAction, Option<String>)> = events
            .recent(&EventQuery {
                limit: 100,
                ..Default::default()
            })
            .into_iter()
            .rev()
            .map(|e| (e.event.action, e.event.rule_id.map(|r| r.to_string())))
            .collect();
        assert_eq!(
            recorded,
            vec![
                (EventAction::Block, Some("ip_list".into())),
                (EventAction::Block, Some("no-wp-admin".into())),
                (EventAction::Challenge, Some("login".into())),
                (EventAction::Log, Some("watch".into())),
                (EventAction::RateLimit, Some("api".into())),
            ]
        );
    }

    /// Rules the rule set answers together in one pass over the path (`starts_with`,
    /// `contains`, `matches`), and an `and` it evaluates only when that pass found its first
    /// conjunct: the verdict and events must still follow file order.
    const MIXED_RULES: &str = r#"
[[site.rule]]
id = "log-admin"
expr = 'http.request.uri.path starts_with "/admin"'
action = "log"

[[site.rule]]
id = "challenge-admin-get"
expr = 'http.request.uri.path starts_with "/admin/x" and http.request.method eq "GET"'
action = "challenge"

[[site.rule]]
id = "log-x"
expr = 'http.request.uri.path contains "/x"'
action = "log"

[[site.rule]]
id = "block-admin-x"
expr = 'http.request.uri.path starts_with "/admin/x" or http.request.uri.path contains "/x"'
action = "block"

[[site.rule]]
id = "log-php"
expr = 'http.request.uri.path matches "\\.php$"'
action = "log"

[[site.rule]]
id = "log-after"
expr = 'http.request.uri.path contains "admin"'
action = "log"
"#;

    fn checked(g: &SiteGuard, path: &str) -> (Verdict, Vec<(EventAction, String)>) {
        let events = EventRing::new(100);
        let record = |e| events.record(e);
        let h = HeaderMap::new();
        let verdict = g.check(&facts("10.0.0.1", path, &h), Instant::now(), &record);
        let recorded = events
            .recent(&EventQuery {
                limit: 100,
                ..Default::default()
            })
            .into_iter()
            .rev()
            .map(|e| {
                (
                    e.event.action,
                    e.event.rule_id.map(|r| r.to_string()).unwrap_or_default(),
                )
            })
            .collect();
        (verdict, recorded)
    }

    #[test]
    fn a_cleared_client_passes_challenge_rules_and_meets_the_next_ones() {
        let g = guard(MIXED_RULES);
        let events = EventRing::new(100);
        let record = |e| events.record(e);
        let h = HeaderMap::new();
        let asked = std::cell::Cell::new(0);
        let cleared = || {
            asked.set(asked.get() + 1);
            true
        };
        let f = facts("10.0.0.1", "/admin/x.php", &h);
        // Cleared, the challenge rule steps aside and the block rule after it decides.
        let verdict = g.check_cleared(&f, Instant::now(), &record, &cleared);
        assert_eq!(
            verdict,
            Verdict::Block {
                reason: EventReason::Rule
            }
        );
        assert_eq!(asked.get(), 1);
        // Requests no challenge rule meets never ask (no cookie is verified for them).
        let f = facts("10.0.0.1", "/other", &h);
        assert_eq!(
            g.check_cleared(&f, Instant::now(), &record, &cleared),
            Verdict::Pass
        );
        assert_eq!(asked.get(), 1);
    }

    #[test]
    fn the_first_deciding_rule_in_file_order_wins_and_only_earlier_logs_record() {
        let g = guard(MIXED_RULES);
        let challenge = Verdict::Challenge {
            reason: EventReason::Rule,
        };
        let (verdict, recorded) = checked(&g, "/admin/x.php");
        assert_eq!(verdict, challenge);
        assert_eq!(
            recorded,
            [
                (EventAction::Log, "log-admin".to_owned()),
                (EventAction::Challenge, "challenge-admin-get".to_owned()),
            ]
        );
        let (verdict, recorded) = checked(&g, "/y/x.php");
        assert_eq!(
            verdict,
            Verdict::Block {
                reason: EventReason::Rule
            }
        );
        assert_eq!(
            recorded,
            [
                (EventAction::Log, "log-x".to_owned()),
                (EventAction::Block, "block-admin-x".to_owned()),
            ]
        );
        // Nothing decides: every matching log rule records, in file order.
        let (verdict, recorded) = checked(&g, "/admin.php");
        assert_eq!(verdict, Verdict::Pass);
        assert_eq!(
            recorded,
            [
                (EventAction::Log, "log-admin".to_owned()),
                (EventAction::Log, "log-php".to_owned()),
                (EventAction::Log, "log-after".to_owned()),
            ]
        );
        let e = g.explain(
            &facts("10.0.0.1", "/admin/x.php", &HeaderMap::new()),
            Instant::now(),
        );
        assert_eq!(e.verdict, challenge);
        let text = e.to_string();
        for line in [
            "rule log-admin (log): matches\n",
            "rule challenge-admin-get (challenge): matches\n",
            "rule log-x (log): matches (not reached)\n",
            "rule block-admin-x (block): matches (not reached)\n",
            "rule log-php (log): matches (not reached)\n",
        ] {
            assert!(text.contains(line), "{line:?} in {text}");
        }
    }

    #[test]
    fn global_lists_apply_and_a_longer_site_prefix_overrides_them() {
        let mut global = IpTableBuilder::new();
        global.insert("10.0.0.0/8".parse().unwrap(), Listed::Deny);
        let g = SiteGuard::build(
            0,
            &site("[site.shield]\nallow = [\"10.1.0.0/16\"]\n"),
            Arc::new(global.build()),
            &LimiterRegistry::default(),
        )
        .unwrap();
        let events = EventRing::new(10);
        let record = |e| events.record(e);
        let h = HeaderMap::new();
        let now = Instant::now();
        assert!(matches!(
            g.check(&facts("10.2.0.1", "/", &h), now, &record),
            Verdict::Block { .. }
        ));
        assert_eq!(
            g.check(&facts("10.1.0.1", "/", &h), now, &record),
            Verdict::Allowed
        );
        assert_eq!(
            g.check(&facts("11.0.0.1", "/", &h), now, &record),
            Verdict::Pass
        );
    }

    #[test]
    fn a_bad_rule_is_reported_at_its_place_in_the_file() {
        let site = site(
            "[[site.rule]]\nid = \"bad\"\nexpr = 'http.request.uri.path starts_with'\naction = \"block\"\n",
        );
        let err = SiteGuard::build(0, &site, Arc::default(), &LimiterRegistry::default())
            .unwrap_err()
            .to_string();
        // The expression starts on line 7, column 9; its end is 32 characters in.
        assert!(err.starts_with("line 7, column "), "{err}");
        assert!(err.contains("key `site[0].rule[0].expr`"), "{err}");
    }

    #[test]
    fn a_list_file_that_cannot_be_read_is_a_read_error_with_its_cause() {
        let lists = IpLists {
            deny_files: vec!["/nonexistent/palisade-deny.txt".into()],
            ..IpLists::default()
        };
        let err = build_lists(&lists, "site[0].shield").unwrap_err();
        let ListsError::Read { key, error, .. } = &err else {
            panic!("not a read error: {err}");
        };
        assert_eq!(key, "site[0].shield.deny_files");
        assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
        assert!(
            err.to_string()
                .starts_with("key `site[0].shield.deny_files`: cannot read /nonexistent/"),
            "{err}"
        );
    }

    #[test]
    fn explain_walks_every_step_without_counting() {
        let g = guard(RULES);
        let h = HeaderMap::new();
        let now = Instant::now();
        for _ in 0..5 {
            let e = g.explain(&facts("10.0.0.1", "/api/x", &h), now);
            assert_eq!(e.verdict, Verdict::Pass);
            assert!(
                e.to_string()
                    .contains("rate_limit api: counts this request (limit 2 per 10s; 0 counted"),
                "{e}"
            );
        }
        let e = g.explain(&facts("10.0.0.1", "/wp-admin/", &h), now);
        assert_eq!(
            e.verdict,
            Verdict::Block {
                reason: EventReason::Rule
            }
        );
        let text = e.to_string();
        assert!(text.contains("rule no-wp-admin (block): matches"), "{text}");
        assert!(text.ends_with("verdict: block: 403 (rule)"), "{text}");
    }
}
