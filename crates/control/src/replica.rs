//! What a control node tells the edges of its cluster about its sites, and how an edge turns
//! that back into sites: each site travels as its document (the fields of its `[[site]]`
//! table, as the API shows it) with the state and suspension it runs in, and an edge checks it
//! with the very code that checks a file's site (`documents::parse_site`).
//!
//! Two message bodies: a **change** (the sites one accepted change touched, in the change's
//! transaction, see [`changes_body`]) and a **snapshot** (every site, see [`snapshot`]). Both
//! are JSON; the cluster signs and carries them, this module only says what is in them.

use crate::documents;
use crate::plane::{BaseConfig, ChangeError};
use crate::store::{self, StoreError, outbox};
use model::{Site, SiteChange, SiteState, Suspension};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The outbox kind of a change to some sites.
pub const KIND_SITES: &str = "sites";
/// The outbox kind that says "the base changed: load a new snapshot".
pub const KIND_RESYNC: &str = "resync";
/// The outbox kind of a purge: every edge purges its own cache.
pub const KIND_PURGE: &str = "purge";

/// A purge as it travels: the site and the purge's body as the API took it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WirePurge {
    /// The site.
    pub site: String,
    /// `POST /api/sites/{site}/purge`'s body, which `edge::Edge::purge` reads.
    pub selector: String,
}

/// The body of a purge message.
pub fn purge_body(site: &str, selector: &[u8]) -> Vec<u8> {
    let purge = WirePurge {
        site: site.to_string(),
        selector: String::from_utf8_lossy(selector).into_owned(),
    };
    serde_json::to_vec(&purge).expect("a purge serialises")
}

/// Reads a purge message back.
pub fn decode_purge(body: &[u8]) -> Result<WirePurge, DecodeError> {
    Ok(serde_json::from_slice(body)?)
}

/// One site as it travels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireSite {
    /// Its `[[site]]` table as a document, without `state`.
    pub document: Map<String, Value>,
    /// The state it runs in (the operator's switch and any suspension applied).
    pub state: SiteState,
    /// `Some(legal)` when it is suspended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended_legal: Option<bool>,
}

/// One site's change as it travels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireChange {
    /// Added or changed: the whole site.
    Site(WireSite),
    /// Only its state moved.
    State {
        /// The site.
        name: String,
        /// Its state now.
        state: SiteState,
        /// `Some(legal)` when it is suspended.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        suspended_legal: Option<bool>,
    },
    /// The site is gone.
    Removed {
        /// The site.
        name: String,
    },
}

/// Every site at one version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The configuration version it is: every change through it applied.
    pub version: u64,
    /// The sites, the base's first.
    pub sites: Vec<WireSite>,
    /// Each purged site's newest purge version: an edge that was behind drops what it
    /// caches of those purged after the version it ran.
    #[serde(default)]
    pub purged: Vec<(String, u64)>,
}

/// Why a message could not be turned back into sites.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not the JSON this module writes.
    #[error("not a replica message: {0}")]
    Json(#[from] serde_json::Error),
    /// A site's document does not check.
    #[error("site {site:?} does not check: {error}")]
    Site {
        /// The site's name, as far as it could be read.
        site: String,
        /// What is wrong.
        error: documents::FieldError,
    },
}

/// The wire form of the site `name` as [`crate::plane::compose_site`] composes it; `None`
/// when there is no such site.
pub fn wire_site(
    base: &BaseConfig,
    conn: &Connection,
    name: &str,
) -> Result<Option<WireSite>, ChangeError> {
    let Some(site) = crate::plane::compose_site(base, conn, name)? else {
        return Ok(None);
    };
    let document = match base.document(name) {
        Some(document) => document.clone(),
        None => match store::sites::get(conn, name)? {
            Some(stored) => stored.document,
            None => return Ok(None),
        },
    };
    Ok(Some(WireSite::of(document, &site)))
}

impl WireSite {
    fn of(mut document: Map<String, Value>, site: &Site) -> WireSite {
        document.remove("state");
        WireSite {
            document,
            state: site.state,
            suspended_legal: site.suspension.map(|s| s.legal),
        }
    }

    /// The site it describes, checked as a file's site is.
    pub fn to_site(&self) -> Result<Site, DecodeError> {
        let mut site =
            documents::parse_site(&self.document).map_err(|error| DecodeError::Site {
                site: self
                    .document
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                error,
            })?;
        site.state = self.state;
        site.suspension = self.suspended_legal.map(|legal| Suspension { legal });
        Ok(site)
    }
}

/// The body of a change message: `changes` (what the edge of this node applies) in wire form.
pub fn changes_body(
    base: &BaseConfig,
    conn: &Connection,
    changes: &[SiteChange],
) -> Result<Vec<u8>, ChangeError> {
    let mut wire = Vec::with_capacity(changes.len());
    for change in changes {
        wire.push(match change {
            SiteChange::Added(site) | SiteChange::Changed(site) => {
                match wire_site(base, conn, &site.name)? {
                    Some(site) => WireChange::Site(site),
                    None => WireChange::Removed {
                        name: site.name.clone(),
                    },
                }
            }
            SiteChange::Removed(name) => WireChange::Removed { name: name.clone() },
            SiteChange::State {
                name,
                state,
                suspension,
            } => WireChange::State {
                name: name.clone(),
                state: *state,
                suspended_legal: suspension.map(|s| s.legal),
            },
        });
    }
    serde_json::to_vec(&wire).map_err(|e| StoreError::Corrupt(e.to_string()).into())
}

/// Reads a change message back into the changes the edge applies.
pub fn decode_changes(body: &[u8]) -> Result<Vec<SiteChange>, DecodeError> {
    let wire: Vec<WireChange> = serde_json::from_slice(body)?;
    wire.into_iter()
        .map(|change| {
            Ok(match change {
                // An edge that has the site already treats it as changed (`Snapshot::apply`
                // accepts either for a site it holds or lacks).
                WireChange::Site(site) => SiteChange::Changed(site.to_site()?),
                WireChange::State {
                    name,
                    state,
                    suspended_legal,
                } => SiteChange::State {
                    name,
                    state,
                    suspension: suspended_legal.map(|legal| Suspension { legal }),
                },
                WireChange::Removed { name } => SiteChange::Removed(name),
            })
        })
        .collect()
}

/// Every site as it runs now and the version that is, read in one transaction (so the
/// version and the sites agree).
pub fn snapshot(base: &BaseConfig, conn: &mut Connection) -> Result<Snapshot, ChangeError> {
    let tx = conn.transaction().map_err(StoreError::from)?;
    let version = outbox::latest(&tx)?;
    let config = crate::plane::compose(base, &tx)?;
    let mut stored: std::collections::HashMap<String, Map<String, Value>> =
        store::sites::list(&tx)?
            .into_iter()
            .map(|s| (s.name, s.document))
            .collect();
    let mut sites = Vec::with_capacity(config.sites.len());
    for site in &config.sites {
        let document = match base.document(&site.name) {
            Some(document) => document.clone(),
            None => match stored.remove(&site.name) {
                Some(document) => document,
                None => continue,
            },
        };
        sites.push(WireSite::of(document, site));
    }
    let purged = outbox::purges(&tx)?;
    Ok(Snapshot {
        version,
        sites,
        purged,
    })
}

/// Reads a snapshot message back into its version and sites.
pub fn decode_snapshot(body: &[u8]) -> Result<(u64, Vec<Site>), DecodeError> {
    let snapshot: Snapshot = serde_json::from_slice(body)?;
    let sites = snapshot
        .sites
        .iter()
        .map(WireSite::to_site)
        .collect::<Result<_, _>>()?;
    Ok((snapshot.version, sites))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;
    use serde_json::json;

    fn base() -> BaseConfig {
        let text = r#"
            [[site]]
            name = "blog"
            hosts = ["blog.example"]
            origins = ["http://127.0.0.1:3000"]
            state = "under_attack"
        "#;
        let config = model::Config::from_toml_str("palisade.toml", text).unwrap();
        BaseConfig::from_file(config, text, "palisade.toml".into())
    }

    #[test]
    fn a_snapshot_and_a_change_make_the_same_sites_the_control_node_runs() {
        let (_dir, store) = test_store();
        let base = base();
        store.with(|conn| {
            let tx = conn.transaction().unwrap();
            let doc = json!({"name": "shop", "hosts": ["shop.example"], "origins": ["http://127.0.0.1:3001"], "state": "paused"});
            store::sites::insert(&tx, "shop", doc.as_object().unwrap(), 1).unwrap();
            tx.commit().unwrap();
            let composed = crate::plane::compose(&base, conn).unwrap();
            let snapshot = snapshot(&base, conn).unwrap();
            let body = serde_json::to_vec(&snapshot).unwrap();
            let (version, sites) = decode_snapshot(&body).unwrap();
            assert_eq!(version, 0);
            assert_eq!(sites, composed.sites, "what an edge builds is what runs here");

            let changes = vec![
                SiteChange::Changed(composed.sites[1].clone()),
                SiteChange::State {
                    name: "blog".into(),
                    state: SiteState::Suspended,
                    suspension: Some(Suspension { legal: true }),
                },
                SiteChange::Removed("gone".into()),
            ];
            let body = changes_body(&base, conn, &changes).unwrap();
            assert_eq!(decode_changes(&body).unwrap(), changes);
        });
    }

    #[test]
    fn a_site_that_does_not_check_is_refused_with_its_name() {
        let body = serde_json::to_vec(&vec![WireChange::Site(WireSite {
            document: json!({"name": "bad", "hosts": [], "origins": ["http://127.0.0.1:1"]})
                .as_object()
                .unwrap()
                .clone(),
            state: SiteState::Active,
            suspended_legal: None,
        })])
        .unwrap();
        let error = decode_changes(&body).unwrap_err();
        assert!(error.to_string().contains("\"bad\""), "{error}");
        assert!(decode_changes(b"{not json").is_err());
    }
}
