//! The sites of one snapshot: the list, the host table that routes a request to one, and the
//! index by name that the admin API and a delta find a site by.
//!
//! A snapshot's table is never changed; a delta edits a copy ([`SiteTable::put`],
//! [`SiteTable::remove`]). The copy shares every site that did not change (one reference count
//! each) and the host names (see `router`), so a change at 100,000 sites costs a few
//! milliseconds of copying, not a rebuild. A removed site's place is taken by the last site,
//! so no other index moves: the list is in configuration order until the first removal.

use crate::metrics::SiteMetrics;
use crate::origin::Upstream;
use crate::protection::SiteProtection;
use crate::router::{HostRouter, SiteIndex};
use analytics::SiteAnalytics;
use model::{HostPattern, Site};
use shield::challenge::SiteChallenge;
use shield::guard::SiteGuard;
use shield::ratelimit::WindowCounter;
use std::collections::HashMap;
use std::sync::Arc;

/// A site as the edge runs it.
pub struct SiteRuntime {
    pub name: Arc<str>,
    pub config: Site,
    pub upstream: Arc<Upstream>,
    pub metrics: Arc<SiteMetrics>,
    /// This minute's counts and top lists, kept across reloads like `metrics`.
    pub analytics: Arc<SiteAnalytics>,
    /// Lists, rules and rate limits, compiled.
    pub guard: SiteGuard,
    /// The shield's state that outlives this snapshot (attack baseline, origin slots).
    pub protection: Arc<SiteProtection>,
    /// Cache misses per client address over `shield.misses_period`.
    pub misses: Arc<WindowCounter>,
    /// The browser challenge's settings, its `exempt` expression compiled.
    pub challenge: SiteChallenge,
    /// The certificate TLS clients asking for one of its names get; `None` without `tls`.
    pub cert: Option<Arc<rustls::sign::CertifiedKey>>,
}

/// The sites, by index, host and name.
#[derive(Clone, Default)]
pub struct SiteTable {
    sites: Vec<Arc<SiteRuntime>>,
    router: HostRouter,
    by_name: HashMap<Arc<str>, SiteIndex>,
    /// How many sites have a certificate: TLS is offered while any does.
    with_certs: usize,
}

impl SiteTable {
    /// A table of `sites`, in that order. Their names and host names must be unique (the
    /// configuration's checks see to it).
    pub fn new(sites: Vec<Arc<SiteRuntime>>) -> SiteTable {
        let mut table = SiteTable {
            sites: Vec::with_capacity(sites.len()),
            ..SiteTable::default()
        };
        for site in sites {
            table.put(site);
        }
        table
    }

    /// The site `host` (normalised, see [`model::normalize_host`]) routes to.
    pub fn route(&self, host: &str) -> Option<SiteIndex> {
        self.router.route(host)
    }

    /// The site of that name.
    pub fn by_name(&self, name: &str) -> Option<&Arc<SiteRuntime>> {
        self.by_name.get(name).map(|i| &self.sites[*i])
    }

    /// Where the site of that name is.
    pub fn index_of(&self, name: &str) -> Option<SiteIndex> {
        self.by_name.get(name).copied()
    }

    /// The site that holds exactly this host pattern.
    pub fn holder(&self, host: &HostPattern) -> Option<&Arc<SiteRuntime>> {
        self.router.holder(host).map(|i| &self.sites[i])
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Arc<SiteRuntime>> {
        self.sites.iter()
    }

    pub fn len(&self) -> usize {
        self.sites.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sites.is_empty()
    }

    /// Whether any site has a certificate.
    pub fn has_certs(&self) -> bool {
        self.with_certs > 0
    }

    /// Puts `site` in the table: in the place of the site of the same name, or last. The
    /// caller has checked that no other site holds its host names.
    pub fn put(&mut self, site: Arc<SiteRuntime>) {
        self.with_certs += usize::from(site.cert.is_some());
        match self.by_name.get(&*site.name) {
            Some(&index) => {
                let old = std::mem::replace(&mut self.sites[index], Arc::clone(&site));
                self.with_certs -= usize::from(old.cert.is_some());
                self.router.release(&old.config, index);
                self.router.claim(&site.config, index);
            }
            None => {
                let index = self.sites.len();
                self.router.claim(&site.config, index);
                self.by_name.insert(Arc::clone(&site.name), index);
                self.sites.push(site);
            }
        }
    }

    /// Takes the site of that name out of the table; the last site takes its place.
    pub fn remove(&mut self, name: &str) -> Option<Arc<SiteRuntime>> {
        let index = self.by_name.remove(name)?;
        let last = self.sites.len() - 1;
        let removed = self.sites.swap_remove(index);
        self.router.release(&removed.config, index);
        self.with_certs -= usize::from(removed.cert.is_some());
        if index != last {
            let moved = &self.sites[index];
            self.router.release(&moved.config, last);
            self.router.claim(&moved.config, index);
            self.by_name.insert(Arc::clone(&moved.name), index);
        }
        Some(removed)
    }
}

impl std::ops::Index<SiteIndex> for SiteTable {
    type Output = Arc<SiteRuntime>;

    fn index(&self, index: SiteIndex) -> &Arc<SiteRuntime> {
        &self.sites[index]
    }
}

impl std::fmt::Debug for SiteTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteTable")
            .field("sites", &self.sites.len())
            .field("with_certs", &self.with_certs)
            .finish()
    }
}
