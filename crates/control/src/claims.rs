//! Which host names a token limited to sites may give its sites.
//!
//! Host names are how the edge picks a site for a request, so giving a site a name is a claim
//! on whatever traffic comes for it. A provider hands each customer a token limited to the
//! customer's sites; with it, a customer must not claim a name under another customer's
//! domain (`shop.b.test` when `*.b.test` is theirs), nor one that a catch-all `*` site serves
//! today and that nobody gave them.
//!
//! The rule: a token limited to sites may give its sites only names that one of its sites
//! already holds, or that lie under one: below an exact name at a label boundary
//! (`www.a.test` under `a.test`, not `xa.test`), or inside a `*.` wildcard (`x.a.test` under
//! `*.a.test`). An IP address has nothing under it, and `*` is under nothing. A name another
//! site holds is a conflict that does not say whose it is. A token for every site (the
//! operator's) gives any free name, and from then on the names under it are the customer's.

use model::{Config, HostPattern};
use std::net::IpAddr;

use crate::store::tokens::Token;

/// Why a token may not give a site a name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// The name is not under any name the token's sites hold (403).
    #[error(
        "host {0} is not under a name this token's sites hold: ask the operator (a token for every site) to add it"
    )]
    NotUnder(HostPattern),
    /// Another site, one the token does not reach, holds the name (409).
    #[error("host {0} is already claimed by another site")]
    Taken(HostPattern),
}

/// The sites a claim is judged against, as they run before the change.
pub trait Holdings {
    /// The host names of the site of that name, when there is one.
    fn hosts_of(&self, site: &str) -> Option<&[HostPattern]>;
    /// The name of the site that holds exactly `host` (a wildcard does not hold the names
    /// under it).
    fn holder_of(&self, host: &HostPattern) -> Option<&str>;
}

/// The edge's running sites: a claim costs the token's sites and the names claimed, not the
/// number of sites.
impl Holdings for edge::Snapshot {
    fn hosts_of(&self, site: &str) -> Option<&[HostPattern]> {
        self.sites.by_name(site).map(|s| &s.config.hosts[..])
    }

    fn holder_of(&self, host: &HostPattern) -> Option<&str> {
        self.sites.holder(host).map(|s| &*s.name)
    }
}

impl Holdings for Config {
    fn hosts_of(&self, site: &str) -> Option<&[HostPattern]> {
        self.sites
            .iter()
            .find(|s| s.name == site)
            .map(|s| &s.hosts[..])
    }

    fn holder_of(&self, host: &HostPattern) -> Option<&str> {
        self.sites
            .iter()
            .find(|s| s.hosts.contains(host))
            .map(|s| s.name.as_str())
    }
}

/// Checks the names `token` would give `site` (its whole new host list), against `current`,
/// the sites before the change. Names the site already holds are always fine.
pub fn check(
    token: &Token,
    site: &str,
    hosts: &[HostPattern],
    current: &impl Holdings,
) -> Result<(), ClaimError> {
    let Some(token_sites) = &token.sites else {
        return Ok(());
    };
    let held: Vec<&HostPattern> = token_sites
        .iter()
        .filter_map(|name| current.hosts_of(name))
        .flatten()
        .collect();
    let kept = current.hosts_of(site).unwrap_or(&[]);
    for host in hosts.iter().filter(|h| !kept.contains(h)) {
        if !held.iter().any(|parent| under(host, parent)) {
            return Err(ClaimError::NotUnder(host.clone()));
        }
        let holder = current.holder_of(host).filter(|holder| *holder != site);
        if holder.is_some_and(|holder| !token.covers(Some(holder))) {
            return Err(ClaimError::Taken(host.clone()));
        }
    }
    Ok(())
}

/// Whether `host` is `parent` or lies under it (see the module's rule).
fn under(host: &HostPattern, parent: &HostPattern) -> bool {
    use HostPattern::{Any, Exact, Wildcard};
    let below = |name: &str, parent: &str| {
        name.strip_suffix(parent)
            .is_some_and(|rest| rest.ends_with('.'))
    };
    match (parent, host) {
        _ if host == parent => true,
        (Any, _) | (_, Any) => false,
        (Exact(parent), _) if is_address(parent) => false,
        // A wildcard's suffix keeps its leading dot: `*.a.test` is ".a.test".
        (Exact(parent), Exact(name) | Wildcard(name)) => below(name, parent),
        (Wildcard(suffix), Exact(name) | Wildcard(name)) => name.ends_with(suffix.as_str()),
    }
}

fn is_address(name: &str) -> bool {
    name.starts_with('[') || name.parse::<IpAddr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tokens::Scope;

    fn pattern(text: &str) -> HostPattern {
        HostPattern::parse(text).unwrap()
    }

    fn config() -> Config {
        Config::from_toml_str(
            "palisade.toml",
            r#"
            [[site]]
            name = "a"
            hosts = ["a.test", "*.shop.a.test", "127.0.0.1"]
            origins = ["http://127.0.0.1:3000"]
            [[site]]
            name = "b"
            hosts = ["b.test", "*.b.test", "taken.a.test"]
            origins = ["http://127.0.0.1:3000"]
            [[site]]
            name = "everything"
            hosts = ["*"]
            origins = ["http://127.0.0.1:3000"]
            "#,
        )
        .unwrap()
    }

    fn token(sites: Option<&[&str]>) -> Token {
        Token {
            id: "tok_x".into(),
            name: "t".into(),
            scopes: vec![Scope::Edit],
            sites: sites.map(|s| s.iter().map(|n| n.to_string()).collect()),
            created_at: 0,
            created_by: None,
            revoked_at: None,
        }
    }

    fn claim(token: &Token, site: &str, hosts: &[&str]) -> Result<(), ClaimError> {
        let hosts: Vec<HostPattern> = hosts.iter().map(|h| pattern(h)).collect();
        check(token, site, &hosts, &config())
    }

    #[test]
    fn a_limited_token_claims_names_under_its_sites_names() {
        let a = token(Some(&["a", "a2"]));
        for hosts in [
            &["a.test"][..],
            &["a.test", "www.a.test"],
            &["a.test", "*.a.test", "deep.www.a.test"],
            &["a.test", "x.shop.a.test", "*.eu.shop.a.test"],
            &["127.0.0.1"],
        ] {
            assert_eq!(claim(&a, "a", hosts), Ok(()), "{hosts:?}");
        }
        // A new site of the token's starts under its other sites' names.
        assert_eq!(claim(&a, "a2", &["blog.a.test"]), Ok(()));
    }

    #[test]
    fn another_customers_domain_a_catch_all_and_look_alikes_are_refused() {
        let a = token(Some(&["a", "a2"]));
        for host in [
            "x.b.test",
            "*.b.test",
            "unclaimed.test",
            "*",
            "test",
            "xa.test",
            "a.test.evil",
            "1.127.0.0.1",
        ] {
            assert_eq!(
                claim(&a, "a", &["a.test", host]),
                Err(ClaimError::NotUnder(pattern(host))),
                "{host}"
            );
        }
        assert_eq!(
            claim(&a, "a2", &["a2.test"]),
            Err(ClaimError::NotUnder(pattern("a2.test")))
        );
    }

    #[test]
    fn a_name_under_its_own_that_another_site_holds_is_taken_without_saying_by_whom() {
        let a = token(Some(&["a"]));
        let error = claim(&a, "a", &["a.test", "taken.a.test"]).unwrap_err();
        assert_eq!(error, ClaimError::Taken(pattern("taken.a.test")));
        assert!(!error.to_string().contains("\"b\""), "{error}");
        // Held by a site the token reaches: not this rule's business (the composition says).
        let ab = token(Some(&["a", "b"]));
        assert_eq!(claim(&ab, "a", &["a.test", "taken.a.test"]), Ok(()));
    }

    #[test]
    fn a_token_for_every_site_claims_any_name() {
        let operator = token(None);
        assert_eq!(claim(&operator, "a", &["anything.test", "*"]), Ok(()));
    }
}
