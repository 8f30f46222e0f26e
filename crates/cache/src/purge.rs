//! Purging: by URL, prefix, host, tag, or a whole site; hard (gone) or soft (stale, to be
//! revalidated).
//!
//! A purge is a rule appended to a log, which is O(1) whatever the number of stored objects
//! (Varnish's bans, not a scan under a lock): every stored object remembers the log position at
//! the time its fill started, and an object is judged against the rules added after that
//! position, when it is looked up and when it is stored. A background pass (the "lurker") then
//! walks the stored objects once, removes or marks those the new rules match, and retires the
//! rules; objects stored during the pass were judged at store time.

use crate::key::host_of;
use crate::object::StoredObject;
use parking_lot::RwLock;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What a purge selects, within one site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgeScope {
    /// One URL (`https://host/path?query`; the scheme is not compared, a URL is one object
    /// whichever scheme stored it).
    Url(String),
    /// Every URL starting with this (`https://host/dir/`).
    Prefix(String),
    /// Every URL on this host.
    Host(String),
    /// Every response the origin tagged with this (`Cache-Tag` / `Surrogate-Key`).
    Tag(String),
    /// Every response of the site.
    Everything,
}

/// A purge as the operator asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purge {
    /// The site whose responses it selects; other sites' are never touched.
    pub site: Arc<str>,
    /// What it selects.
    pub scope: PurgeScope,
    /// Mark stale (revalidated on next use, stale-while-revalidate and stale-if-error still
    /// apply) rather than delete.
    pub soft: bool,
}

/// How a purge log judges a stored object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No purge applies to it.
    Keep,
    /// Soft-purged: treat as stale.
    Stale,
    /// Hard-purged: treat as absent.
    Gone,
}

struct Rule {
    seq: u64,
    purge: Purge,
}

/// The purge rules not yet applied to every stored object.
pub struct PurgeLog {
    /// The position the next rule gets; objects record the current value as their mark.
    next: AtomicU64,
    /// Rules in the order added; the lurker retires them from the front.
    rules: RwLock<Vec<Arc<Rule>>>,
    /// Sequence of the newest rule still in `rules`, 0 when there are none: the lookup's fast
    /// path is one load and a compare.
    newest_live: AtomicU64,
}

impl Default for PurgeLog {
    fn default() -> Self {
        PurgeLog {
            next: AtomicU64::new(1),
            rules: RwLock::new(Vec::new()),
            newest_live: AtomicU64::new(0),
        }
    }
}

impl PurgeLog {
    /// The current position: a fill records it when it starts, so rules added while it runs
    /// apply to what it stores.
    pub fn mark(&self) -> u64 {
        self.next.load(Ordering::Acquire)
    }

    /// Appends a rule; returns its sequence number.
    pub fn add(&self, purge: Purge) -> u64 {
        let mut rules = self.rules.write();
        let seq = self.next.fetch_add(1, Ordering::AcqRel);
        rules.push(Arc::new(Rule { seq, purge }));
        self.newest_live.store(seq, Ordering::Release);
        seq
    }

    /// Judges an object stored with `object.purge_mark` against the rules added since.
    pub fn verdict(&self, object: &StoredObject) -> Verdict {
        if self.newest_live.load(Ordering::Acquire) < object.purge_mark {
            return Verdict::Keep;
        }
        let rules = self.rules.read();
        let mut verdict = Verdict::Keep;
        for rule in rules.iter().rev() {
            if rule.seq < object.purge_mark {
                break;
            }
            if matches(&rule.purge, object) {
                if !rule.purge.soft {
                    return Verdict::Gone;
                }
                verdict = Verdict::Stale;
            }
        }
        verdict
    }

    /// The newest rule's sequence number (0 when none are live): what a lurker pass covers.
    pub fn newest(&self) -> u64 {
        self.newest_live.load(Ordering::Acquire)
    }

    /// Drops the rules up to `seq`, which a completed pass applied to every stored object.
    pub fn retire_through(&self, seq: u64) {
        let mut rules = self.rules.write();
        rules.retain(|rule| rule.seq > seq);
        let newest = rules.last().map_or(0, |rule| rule.seq);
        self.newest_live.store(newest, Ordering::Release);
    }

    /// Rules waiting for a pass.
    pub fn pending(&self) -> usize {
        self.rules.read().len()
    }
}

fn matches(purge: &Purge, object: &StoredObject) -> bool {
    if *purge.site != *object.site {
        return false;
    }
    match &purge.scope {
        PurgeScope::Everything => true,
        PurgeScope::Url(url) => without_scheme(url) == without_scheme(&object.url),
        PurgeScope::Prefix(prefix) => {
            without_scheme(&object.url).starts_with(without_scheme(prefix))
        }
        PurgeScope::Host(host) => host_of(&object.url).eq_ignore_ascii_case(host),
        PurgeScope::Tag(tag) => object.tags.iter().any(|t| t == tag),
    }
}

fn without_scheme(url: &str) -> &str {
    url.split_once("://").map_or(url, |(_, rest)| rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Timing;
    use bytes::Bytes;
    use http::{HeaderMap, HeaderValue, StatusCode};

    fn object(site: &str, url: &str, tags: &'static str, mark: u64) -> StoredObject {
        let mut headers = HeaderMap::new();
        headers.insert("cache-tag", HeaderValue::from_static(tags));
        let mut object = StoredObject::new(
            StatusCode::OK,
            headers,
            &[],
            Bytes::new(),
            Timing {
                initial_age: 0,
                response_time: 0,
                lifetime: 60,
                heuristic: false,
            },
            url.to_string(),
            mark,
        );
        object.site = site.into();
        object
    }

    fn purge(scope: PurgeScope, soft: bool) -> Purge {
        Purge {
            site: "blog".into(),
            scope,
            soft,
        }
    }

    #[test]
    fn each_scope_selects_its_objects_in_its_site_only() {
        let log = PurgeLog::default();
        let mark = log.mark();
        let page = object("blog", "https://blog.example/dir/page?x=1", "post-1", mark);
        let other = object("blog", "https://img.blog.example/logo.png", "logo", mark);
        let shop = object("shop", "https://blog.example/dir/page?x=1", "post-1", mark);
        log.add(purge(
            PurgeScope::Prefix("http://blog.example/dir/".into()),
            false,
        ));
        assert_eq!(log.verdict(&page), Verdict::Gone, "scheme is not compared");
        assert_eq!(log.verdict(&other), Verdict::Keep);
        assert_eq!(log.verdict(&shop), Verdict::Keep, "another site's object");
        log.add(purge(PurgeScope::Tag("logo".into()), true));
        assert_eq!(log.verdict(&other), Verdict::Stale);
        log.add(purge(PurgeScope::Host("IMG.blog.example".into()), false));
        assert_eq!(log.verdict(&other), Verdict::Gone, "hard wins over soft");
        log.add(purge(
            PurgeScope::Url("https://blog.example/dir/page?x=1".into()),
            false,
        ));
        log.add(purge(PurgeScope::Everything, true));
        assert_eq!(log.verdict(&shop), Verdict::Keep);
    }

    #[test]
    fn objects_stored_after_a_purge_are_not_affected_by_it() {
        let log = PurgeLog::default();
        log.add(purge(PurgeScope::Everything, false));
        let fresh = object("blog", "https://blog.example/", "", log.mark());
        assert_eq!(log.verdict(&fresh), Verdict::Keep);
    }

    #[test]
    fn a_fill_started_before_a_purge_is_purged_when_it_lands() {
        let log = PurgeLog::default();
        let mark = log.mark(); // the fill starts
        log.add(purge(PurgeScope::Everything, false)); // the purge arrives meanwhile
        let landed = object("blog", "https://blog.example/", "", mark);
        assert_eq!(log.verdict(&landed), Verdict::Gone);
    }

    #[test]
    fn retired_rules_no_longer_apply_and_the_fast_path_returns() {
        let log = PurgeLog::default();
        let old = object("blog", "https://blog.example/", "", log.mark());
        let seq = log.add(purge(PurgeScope::Everything, false));
        assert_eq!(log.pending(), 1);
        log.retire_through(seq);
        assert_eq!(log.pending(), 0);
        assert_eq!(log.newest(), 0);
        assert_eq!(log.verdict(&old), Verdict::Keep);
    }
}
