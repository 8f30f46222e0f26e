//! A change to the running configuration, site by site: what the control plane hands the edge
//! for one API change instead of a whole configuration, and what a cluster ships between
//! machines. Applying a delta costs the sites it names, not the sites the edge runs.

use crate::{Site, SiteState, Suspension};

/// One site's change.
#[derive(Debug, Clone, PartialEq)]
pub enum SiteChange {
    /// A site the configuration did not have.
    Added(Site),
    /// A site whose settings changed (hosts, origins, rules, anything but its state alone).
    Changed(Site),
    /// The site of that name is gone.
    Removed(String),
    /// Only the site's state moved (switched, suspended, reinstated): its compiled rules, its
    /// origins and its certificate stay as they are.
    State {
        /// The site's name.
        name: String,
        /// The state it runs in from now on.
        state: SiteState,
        /// Its suspension, when `state` is `suspended` by one.
        suspension: Option<Suspension>,
    },
}

impl SiteChange {
    /// The change that takes a site from `before` to `after` (either absent: the site is new,
    /// or gone); `None` when nothing the edge runs differs.
    pub fn between(before: Option<&Site>, after: Option<Site>) -> Option<SiteChange> {
        match (before, after) {
            (None, None) => None,
            (None, Some(site)) => Some(SiteChange::Added(site)),
            (Some(site), None) => Some(SiteChange::Removed(site.name.clone())),
            (Some(old), Some(new)) if *old == new => None,
            (Some(old), Some(new)) => {
                let state_only = Site {
                    state: new.state,
                    suspension: new.suspension,
                    ..old.clone()
                } == new;
                Some(if state_only {
                    SiteChange::State {
                        name: new.name,
                        state: new.state,
                        suspension: new.suspension,
                    }
                } else {
                    SiteChange::Changed(new)
                })
            }
        }
    }

    /// The name of the site it changes.
    pub fn site(&self) -> &str {
        match self {
            SiteChange::Added(site) | SiteChange::Changed(site) => &site.name,
            SiteChange::Removed(name) | SiteChange::State { name, .. } => name,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HostPattern, Origin, OriginUrl};

    fn site(name: &str) -> Site {
        let mut config = crate::Config::single_origin(Origin {
            url: OriginUrl::parse("http://127.0.0.1:9").unwrap(),
            weight: 1,
        });
        let mut site = config.sites.remove(0);
        site.name = name.into();
        site.hosts = vec![HostPattern::parse(&format!("{name}.example")).unwrap()];
        site
    }

    #[test]
    fn a_change_names_what_moved_and_nothing_when_nothing_did() {
        let blog = site("blog");
        assert_eq!(SiteChange::between(None, None), None);
        assert_eq!(SiteChange::between(Some(&blog), Some(blog.clone())), None);
        assert_eq!(
            SiteChange::between(None, Some(blog.clone())),
            Some(SiteChange::Added(blog.clone()))
        );
        assert_eq!(
            SiteChange::between(Some(&blog), None),
            Some(SiteChange::Removed("blog".into()))
        );
        let mut moved = blog.clone();
        moved
            .hosts
            .push(HostPattern::parse("www.blog.example").unwrap());
        assert_eq!(
            SiteChange::between(Some(&blog), Some(moved.clone())),
            Some(SiteChange::Changed(moved))
        );
    }

    #[test]
    fn a_suspension_or_a_state_switch_alone_is_a_state_change() {
        let blog = site("blog");
        let mut suspended = blog.clone();
        suspended.state = SiteState::Suspended;
        suspended.suspension = Some(Suspension { legal: true });
        let change = SiteChange::between(Some(&blog), Some(suspended)).unwrap();
        assert_eq!(
            change,
            SiteChange::State {
                name: "blog".into(),
                state: SiteState::Suspended,
                suspension: Some(Suspension { legal: true }),
            }
        );
        assert_eq!(change.site(), "blog");
        // A state switch that comes with another change is a whole change.
        let mut both = blog.clone();
        both.state = SiteState::UnderAttack;
        both.max_fails += 1;
        assert!(matches!(
            SiteChange::between(Some(&blog), Some(both)),
            Some(SiteChange::Changed(_))
        ));
    }
}
