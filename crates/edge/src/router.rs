//! Host → site routing: exact names first, then the longest wildcard suffix, then the catch-all.
//!
//! A change to one site changes only that site's entries ([`HostRouter::release`],
//! [`HostRouter::claim`]) in a copy of the table; the names are shared, so copying a table of
//! 200,000 names allocates none of them again.

use model::{HostPattern, Site};
use std::collections::HashMap;
use std::sync::Arc;

/// Index of a site in its snapshot.
pub type SiteIndex = usize;

/// Answers "which site claims this (normalised) host?" without allocating.
#[derive(Debug, Default, Clone)]
pub struct HostRouter {
    exact: HashMap<Arc<str>, SiteIndex>,
    /// Keyed by suffix including the leading dot (".blog.example").
    wildcard: HashMap<Arc<str>, SiteIndex>,
    any: Option<SiteIndex>,
}

impl HostRouter {
    pub fn new(sites: &[Site]) -> HostRouter {
        let mut router = HostRouter::default();
        for (index, site) in sites.iter().enumerate() {
            router.claim(site, index);
        }
        router
    }

    /// Routes `site`'s host names to `index`, over whatever held them.
    pub fn claim(&mut self, site: &Site, index: SiteIndex) {
        for host in &site.hosts {
            match host {
                HostPattern::Exact(name) => {
                    self.exact.insert(name.as_str().into(), index);
                }
                HostPattern::Wildcard(suffix) => {
                    self.wildcard.insert(suffix.as_str().into(), index);
                }
                HostPattern::Any => self.any = Some(index),
            }
        }
    }

    /// Forgets `site`'s host names, those that still route to `index`.
    pub fn release(&mut self, site: &Site, index: SiteIndex) {
        for host in &site.hosts {
            let entry = match host {
                HostPattern::Exact(name) => self.exact.get(name.as_str()),
                HostPattern::Wildcard(suffix) => self.wildcard.get(suffix.as_str()),
                HostPattern::Any => self.any.as_ref(),
            };
            if entry != Some(&index) {
                continue;
            }
            match host {
                HostPattern::Exact(name) => {
                    self.exact.remove(name.as_str());
                }
                HostPattern::Wildcard(suffix) => {
                    self.wildcard.remove(suffix.as_str());
                }
                HostPattern::Any => self.any = None,
            }
        }
    }

    /// The site that holds exactly this pattern (not the one a name would route to: a
    /// wildcard does not hold the names under it).
    pub fn holder(&self, host: &HostPattern) -> Option<SiteIndex> {
        match host {
            HostPattern::Exact(name) => self.exact.get(name.as_str()).copied(),
            HostPattern::Wildcard(suffix) => self.wildcard.get(suffix.as_str()).copied(),
            HostPattern::Any => self.any,
        }
    }

    /// `host` must already be normalised (see [`model::normalize_host`]).
    pub fn route(&self, host: &str) -> Option<SiteIndex> {
        if let Some(index) = self.exact.get(host) {
            return Some(*index);
        }
        if !self.wildcard.is_empty() {
            // Walk the suffixes from longest to shortest: "a.b.example" tries ".b.example",
            // then ".example".
            let mut rest = host;
            while let Some(dot) = rest.find('.') {
                let suffix = &rest[dot..];
                if let Some(index) = self.wildcard.get(suffix) {
                    return Some(*index);
                }
                rest = &rest[dot + 1..];
            }
        }
        self.any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(name: &str, hosts: &[&str]) -> Site {
        let mut config = model::Config::single_origin(model::Origin {
            url: model::OriginUrl::parse("http://127.0.0.1:1").unwrap(),
            weight: 1,
        });
        let mut site = config.sites.remove(0);
        site.name = name.into();
        site.hosts = hosts
            .iter()
            .map(|h| HostPattern::parse(h).unwrap())
            .collect();
        site
    }

    #[test]
    fn exact_beats_wildcard_and_longest_wildcard_wins() {
        let router = HostRouter::new(&[
            site("blog", &["blog.example", "*.blog.example"]),
            site("shop", &["*.shop.blog.example"]),
            site("www", &["www.blog.example"]),
        ]);
        assert_eq!(router.route("blog.example"), Some(0));
        assert_eq!(router.route("a.blog.example"), Some(0));
        assert_eq!(router.route("x.y.blog.example"), Some(0));
        assert_eq!(router.route("a.shop.blog.example"), Some(1));
        assert_eq!(router.route("www.blog.example"), Some(2));
    }

    #[test]
    fn unknown_host_routes_nowhere() {
        let router = HostRouter::new(&[site("blog", &["blog.example", "*.blog.example"])]);
        assert_eq!(router.route("evil.example"), None);
        assert_eq!(router.route("blog.example.evil"), None);
        assert_eq!(router.route("xblog.example"), None);
    }

    #[test]
    fn a_site_released_and_claimed_again_routes_by_its_new_names_only() {
        let blog = site("blog", &["blog.example", "*.blog.example"]);
        let shop = site("shop", &["shop.example"]);
        let mut router = HostRouter::new(&[blog.clone(), shop.clone()]);
        let moved = site("blog", &["news.example"]);
        router.release(&blog, 0);
        router.claim(&moved, 0);
        assert_eq!(router.route("blog.example"), None);
        assert_eq!(router.route("a.blog.example"), None);
        assert_eq!(router.route("news.example"), Some(0));
        assert_eq!(router.route("shop.example"), Some(1));
        // Releasing under another index leaves names that route elsewhere alone.
        router.release(&shop, 0);
        assert_eq!(router.route("shop.example"), Some(1));
        assert_eq!(
            router.holder(&HostPattern::parse("shop.example").unwrap()),
            Some(1)
        );
        assert_eq!(
            router.holder(&HostPattern::parse("*.news.example").unwrap()),
            None
        );
        let any = site("rest", &["*"]);
        router.claim(&any, 2);
        assert_eq!(router.holder(&HostPattern::Any), Some(2));
        router.release(&any, 2);
        assert_eq!(router.route("other.example"), None);
    }

    #[test]
    fn catch_all_takes_what_nobody_claims() {
        let router = HostRouter::new(&[site("blog", &["blog.example"]), site("rest", &["*"])]);
        assert_eq!(router.route("blog.example"), Some(0));
        assert_eq!(router.route("anything.example"), Some(1));
    }
}
