//! Host → site routing: exact names first, then the longest wildcard suffix, then the catch-all.

use model::{HostPattern, Site};
use std::collections::HashMap;

/// Index of a site in its snapshot.
pub type SiteIndex = usize;

/// Answers "which site claims this (normalised) host?" without allocating.
#[derive(Debug, Default)]
pub struct HostRouter {
    exact: HashMap<Box<str>, SiteIndex>,
    /// Keyed by suffix including the leading dot (".blog.example").
    wildcard: HashMap<Box<str>, SiteIndex>,
    any: Option<SiteIndex>,
}

impl HostRouter {
    pub fn new(sites: &[Site]) -> HostRouter {
        let mut router = HostRouter::default();
        for (index, site) in sites.iter().enumerate() {
            for host in &site.hosts {
                match host {
                    HostPattern::Exact(name) => {
                        router.exact.insert(name.as_str().into(), index);
                    }
                    HostPattern::Wildcard(suffix) => {
                        router.wildcard.insert(suffix.as_str().into(), index);
                    }
                    HostPattern::Any => router.any = Some(index),
                }
            }
        }
        router
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
    fn catch_all_takes_what_nobody_claims() {
        let router = HostRouter::new(&[site("blog", &["blog.example"]), site("rest", &["*"])]);
        assert_eq!(router.route("blog.example"), Some(0));
        assert_eq!(router.route("anything.example"), Some(1));
    }
}
