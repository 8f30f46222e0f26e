//! What a control node tells the edges of its cluster about its sites, and how an edge turns
//! that back into sites: each site travels as its document (the fields of its `[[site]]`
//! table, as the API shows it) with the state and suspension it runs in, and an edge checks it
//! with the very code that checks a file's site (`documents::parse_site`).
//!
//! Two message bodies: a **change** (the sites one accepted change touched, in the change's
//! transaction, see [`changes_body`]) and a **snapshot** (every site, see [`snapshot`]). Both
//! are JSON; the cluster signs and carries them, this module only says what is in them.
//!
//! Files a site names on the control node travel as their contents, since an edge has none of
//! them: list files (`allow_files`, `deny_files`) as entries of `allow` and `deny`, and a
//! certificate (`tls`) as its PEM text with the private key sealed under the cluster's key (a
//! [`Sealer`]); an edge writes them to its own data directory ([`Unsealer`]).

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

/// Seals a secret (a private key) for the cluster's edges: base64url text only they can open.
pub type Sealer = std::sync::Arc<dyn Fn(&[u8]) -> String + Send + Sync>;

/// What an edge needs to turn a travelling certificate back into files.
pub struct Unsealer<'a> {
    /// Where the files go: one directory per site beneath it.
    pub dir: &'a std::path::Path,
    /// Opens what a [`Sealer`] sealed; `None` when it was not sealed by this cluster.
    pub open: &'a (dyn Fn(&str) -> Option<Vec<u8>> + Send + Sync),
}

/// The global lists (`[shield]`) as they travel: entries only, files read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WireLists {
    /// `allow`, with every `allow_files` entry.
    pub allow: Vec<String>,
    /// `deny`, with every `deny_files` entry.
    pub deny: Vec<String>,
}

impl WireLists {
    /// The lists of `lists`, their files read.
    pub fn of(lists: &model::IpLists) -> WireLists {
        let (allow, deny) = inline_lists(lists);
        WireLists { allow, deny }
    }

    /// Replaces `lists` with these (the control node's lists are every edge's).
    pub fn apply(&self, lists: &mut model::IpLists) -> Result<(), DecodeError> {
        let parse = |entries: &[String]| -> Result<Vec<ipnet::IpNet>, DecodeError> {
            entries
                .iter()
                .map(|e| {
                    model::parse_net(e).map_err(|error| DecodeError::Site {
                        site: "[shield]".into(),
                        error: documents::FieldError::new("allow", error.to_string()),
                    })
                })
                .collect()
        };
        *lists = model::IpLists {
            allow: parse(&self.allow)?,
            deny: parse(&self.deny)?,
            ..model::IpLists::default()
        };
        Ok(())
    }
}

/// `lists`' entries as text, those of its files after those written (read now; a file that
/// cannot be read is left out, with a warning: the control node's own edge read it at its
/// last load).
fn inline_lists(lists: &model::IpLists) -> (Vec<String>, Vec<String>) {
    let read = |files: &[std::path::PathBuf], written: &[ipnet::IpNet]| {
        let mut out: Vec<String> = written.iter().map(ToString::to_string).collect();
        for path in files {
            let entries = std::fs::read_to_string(path)
                .map_err(|e| e.to_string())
                .and_then(|text| shield::iplist::parse_list(&text).map_err(|e| e.to_string()));
            match entries {
                Ok(nets) => out.extend(nets.iter().map(ToString::to_string)),
                Err(error) => tracing::warn!(
                    file = %path.display(),
                    %error,
                    "cluster: a list file cannot be read; the edges get the list without it"
                ),
            }
        }
        out
    };
    (
        read(&lists.allow_files, &lists.allow),
        read(&lists.deny_files, &lists.deny),
    )
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
    /// The control node's `[shield]` lists: every edge's global lists.
    #[serde(default)]
    pub global: WireLists,
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
/// when there is no such site. `seal`: for a certificate's private key (without it the site
/// travels without its certificate).
pub fn wire_site(
    base: &BaseConfig,
    conn: &Connection,
    name: &str,
    seal: Option<&Sealer>,
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
    Ok(Some(WireSite::of(document, &site, seal)))
}

impl WireSite {
    fn of(mut document: Map<String, Value>, site: &Site, seal: Option<&Sealer>) -> WireSite {
        document.remove("state");
        inline_files(&mut document, site, seal);
        WireSite {
            document,
            state: site.state,
            suspended_legal: site.suspension.map(|s| s.legal),
        }
    }

    fn name(&self) -> String {
        self.document
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    }

    /// The site it describes, checked as a file's site is. A certificate that travelled is
    /// written beneath `unsealer`'s directory first (without one, the site is read without it).
    pub fn to_site(&self, unsealer: Option<&Unsealer<'_>>) -> Result<Site, DecodeError> {
        let mut document = self.document.clone();
        let travelled = document
            .get("tls")
            .and_then(Value::as_object)
            .is_some_and(|tls| tls.contains_key("cert_pem"));
        if travelled {
            let tls = document.remove("tls").unwrap_or_default();
            if let Some(unsealer) = unsealer {
                let paths = write_certificate(&self.name(), &tls, unsealer)?;
                document.insert("tls".into(), paths);
            }
        }
        let mut site = documents::parse_site(&document).map_err(|error| DecodeError::Site {
            site: self.name(),
            error,
        })?;
        site.state = self.state;
        site.suspension = self.suspended_legal.map(|legal| Suspension { legal });
        Ok(site)
    }
}

/// Replaces what `document` says of files on this node with their contents (see the module's
/// documentation). `site` is the composed site, its paths resolved.
fn inline_files(document: &mut Map<String, Value>, site: &Site, seal: Option<&Sealer>) {
    let lists = &site.shield.lists;
    if !lists.allow_files.is_empty() || !lists.deny_files.is_empty() {
        let (allow, deny) = inline_lists(lists);
        let shield = document
            .entry("shield")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(shield) = shield.as_object_mut() {
            shield.remove("allow_files");
            shield.remove("deny_files");
            shield.insert("allow".into(), Value::from(allow));
            shield.insert("deny".into(), Value::from(deny));
        }
    }
    let Some(tls) = &site.tls else { return };
    document.remove("tls");
    let files = std::fs::read_to_string(&tls.cert)
        .and_then(|cert| std::fs::read(&tls.key).map(|key| (cert, key)));
    match (files, seal) {
        (Ok((cert, key)), Some(seal)) => {
            let mut travelling = Map::new();
            travelling.insert("cert_pem".into(), Value::from(cert));
            travelling.insert("key_sealed".into(), Value::from(seal(&key)));
            document.insert("tls".into(), Value::Object(travelling));
        }
        (Err(error), _) => tracing::warn!(
            site = %site.name,
            %error,
            "cluster: the site's certificate cannot be read; the edges get the site without it"
        ),
        (Ok(_), None) => tracing::warn!(
            site = %site.name,
            "cluster: no key to seal the site's certificate with; the edges get the site without it"
        ),
    }
}

/// Writes a travelling certificate under `unsealer.dir/<site>/` (the key owner-only) and
/// answers the `tls` table naming the files.
fn write_certificate(
    site: &str,
    tls: &Value,
    unsealer: &Unsealer<'_>,
) -> Result<Value, DecodeError> {
    let refuse = |message: &str| DecodeError::Site {
        site: site.to_string(),
        error: documents::FieldError::new("tls", message),
    };
    let cert = tls["cert_pem"]
        .as_str()
        .ok_or_else(|| refuse("cert_pem is not text"))?;
    let key = tls["key_sealed"]
        .as_str()
        .and_then(|sealed| (unsealer.open)(sealed))
        .ok_or_else(|| refuse("the private key was not sealed by this cluster"))?;
    // Site names are 1 to 63 of a-z, 0-9, '-' and '_' (checked by the control node and again
    // when the document is read): a directory name, never a path.
    if site.is_empty()
        || !site
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(refuse("not a site name"));
    }
    let dir = unsealer.dir.join(site);
    let write = || -> std::io::Result<(std::path::PathBuf, std::path::PathBuf)> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::create_dir_all(&dir)?;
        let cert_path = dir.join("cert.pem");
        let key_path = dir.join("key.pem");
        std::fs::write(&cert_path, cert)?;
        let aside = dir.join("key.pem.new");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&aside)?;
        file.write_all(&key)?;
        file.sync_all()?;
        std::fs::rename(&aside, &key_path)?;
        Ok((cert_path, key_path))
    };
    let (cert_path, key_path) = write().map_err(|e| refuse(&format!("cannot write it: {e}")))?;
    let mut paths = Map::new();
    paths.insert("cert".into(), Value::from(cert_path.display().to_string()));
    paths.insert("key".into(), Value::from(key_path.display().to_string()));
    Ok(Value::Object(paths))
}

/// The body of a change message: `changes` (what the edge of this node applies) in wire form.
pub fn changes_body(
    base: &BaseConfig,
    conn: &Connection,
    changes: &[SiteChange],
    seal: Option<&Sealer>,
) -> Result<Vec<u8>, ChangeError> {
    let mut wire = Vec::with_capacity(changes.len());
    for change in changes {
        wire.push(match change {
            SiteChange::Added(site) | SiteChange::Changed(site) => {
                match wire_site(base, conn, &site.name, seal)? {
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
pub fn decode_changes(
    body: &[u8],
    unsealer: Option<&Unsealer<'_>>,
) -> Result<Vec<SiteChange>, DecodeError> {
    let wire: Vec<WireChange> = serde_json::from_slice(body)?;
    wire.into_iter()
        .map(|change| {
            Ok(match change {
                // An edge that has the site already treats it as changed (`Snapshot::apply`
                // accepts either for a site it holds or lacks).
                WireChange::Site(site) => SiteChange::Changed(site.to_site(unsealer)?),
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
/// version and the sites agree), with the base's global lists.
pub fn snapshot(
    base: &BaseConfig,
    conn: &mut Connection,
    seal: Option<&Sealer>,
) -> Result<Snapshot, ChangeError> {
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
        sites.push(WireSite::of(document, site, seal));
    }
    let purged = outbox::purges(&tx)?;
    Ok(Snapshot {
        version,
        sites,
        purged,
        global: WireLists::of(&config.shield.lists),
    })
}

/// Reads a snapshot message back into its version and sites (certificates left out).
pub fn decode_snapshot(body: &[u8]) -> Result<(u64, Vec<Site>), DecodeError> {
    let snapshot: Snapshot = serde_json::from_slice(body)?;
    let sites = snapshot
        .sites
        .iter()
        .map(|site| site.to_site(None))
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
            let snapshot = snapshot(&base, conn, None).unwrap();
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
            let body = changes_body(&base, conn, &changes, None).unwrap();
            assert_eq!(decode_changes(&body, None).unwrap(), changes);
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
        let error = decode_changes(&body, None).unwrap_err();
        assert!(error.to_string().contains("\"bad\""), "{error}");
        assert!(decode_changes(b"{not json", None).is_err());
    }
}
