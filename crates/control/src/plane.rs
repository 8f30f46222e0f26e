//! The control plane's core: the configuration the edge runs is composed of the base (the
//! `--config` file or `--origin` flag: server settings, global lists and the file's sites) and
//! the store (sites the API manages, the states an operator switched the file's sites to, and
//! suspensions of any site). Every change is one
//! transaction, checked by building the snapshot it would make before it commits, and then
//! swapped into the edge: it takes effect as the API answers.

use crate::documents::{self, FieldError};
use crate::store::audit::{self, Change};
use crate::store::sites::{OperatorState, StoredSite, Suspension};
use crate::store::{self, Store, StoreError};
use model::{Config, SiteState};
use rusqlite::Transaction;
use serde_json::{Map, Value, json};
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

/// What the operator wrote outside the store.
#[derive(Debug, Clone)]
pub struct BaseConfig {
    /// The base's configuration: server settings, `[shield]` lists and the file's sites.
    pub config: Config,
    /// The base's sites as documents, in the order of `config.sites`.
    pub documents: Vec<Map<String, Value>>,
    /// Where it comes from: the file's path, or `--origin`.
    pub source: String,
    /// Where each site is in `config.sites` (and `documents`), by name.
    index: std::collections::HashMap<String, usize>,
}

impl BaseConfig {
    fn new(config: Config, documents: Vec<Map<String, Value>>, source: String) -> BaseConfig {
        let index = config
            .sites
            .iter()
            .enumerate()
            .map(|(i, site)| (site.name.clone(), i))
            .collect();
        BaseConfig {
            config,
            documents,
            source,
            index,
        }
    }

    /// A base read from a configuration file's text (already parsed into `config`).
    pub fn from_file(config: Config, text: &str, source: String) -> BaseConfig {
        let documents = documents::documents_from_toml(text).unwrap_or_default();
        BaseConfig::new(config, documents, source)
    }

    /// A base built by flags: its sites' documents are made from what the flags said.
    pub fn from_flags(config: Config, source: String) -> BaseConfig {
        let documents = config
            .sites
            .iter()
            .map(|site| {
                let mut doc = Map::new();
                doc.insert("name".into(), Value::from(site.name.clone()));
                let hosts: Vec<Value> = site
                    .hosts
                    .iter()
                    .map(|h| Value::from(h.to_string()))
                    .collect();
                doc.insert("hosts".into(), Value::Array(hosts));
                let origins: Vec<Value> = site
                    .origins
                    .iter()
                    .map(|o| Value::from(o.url.to_string()))
                    .collect();
                doc.insert("origins".into(), Value::Array(origins));
                doc
            })
            .collect();
        BaseConfig::new(config, documents, source)
    }

    /// Whether the base defines a site of that name (such a site is changed in the file, not
    /// through the API).
    pub fn has_site(&self, name: &str) -> bool {
        self.site(name).is_some()
    }

    /// The base's site of that name.
    pub fn site(&self, name: &str) -> Option<&model::Site> {
        self.index.get(name).map(|i| &self.config.sites[*i])
    }

    /// The base's site of that name as a document (its `[[site]]` table).
    pub fn document(&self, name: &str) -> Option<&Map<String, Value>> {
        self.index.get(name).and_then(|i| self.documents.get(*i))
    }

    /// True when the base comes from command-line flags (`--origin`), not a file.
    pub fn is_from_flags(&self) -> bool {
        self.source.starts_with("--")
    }
}

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The change would make a configuration the edge cannot run (422).
    #[error("{0}")]
    Invalid(FieldError),
    /// It conflicts with what exists (409).
    #[error("{0}")]
    Conflict(String),
    /// What it names does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The caller's token may not make this change (403), e.g. claim that host name.
    #[error("{0}")]
    Forbidden(FieldError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for ChangeError {
    fn from(e: rusqlite::Error) -> ChangeError {
        ChangeError::Store(StoreError::Sql(e))
    }
}

/// Why a new base was not swapped in. The running configuration stays as it was.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new base and the store's sites do not compose (a name or host both claim), or the
    /// store could not be read.
    #[error(transparent)]
    Compose(#[from] ChangeError),
    /// The edge cannot run the composed configuration.
    #[error(transparent)]
    Edge(#[from] edge::ReloadError),
}

/// Where a site a client sees is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SiteSource {
    /// The `--config` file (or the `--origin` flag): changed there, not through the API.
    File,
    /// The store: the API (and `palisade apply`) manage it.
    Api,
}

/// A site as the API shows it: its document, where it is defined, the state an operator
/// switched it to, and its suspension.
#[derive(Debug, Clone)]
pub struct SiteView {
    /// The site's name.
    pub name: String,
    /// The site as a document: the fields of its `[[site]]` table.
    pub document: Map<String, Value>,
    /// Where it is defined.
    pub source: SiteSource,
    /// For a file site: the state an operator switched it to, over the file's.
    pub operator_state: Option<OperatorState>,
    /// Its suspension, when it is suspended.
    pub suspension: Option<Suspension>,
    /// When a stored site was created and last changed, in Unix milliseconds; `None` for the
    /// base's sites.
    pub times: Option<(i64, i64)>,
}

impl SiteView {
    /// The JSON the API answers with: the document's fields, `state` as the edge runs it, and
    /// the read-only `source`, `operator_state`, `suspension`, `created_at`, `updated_at`.
    pub fn to_json(&self) -> Value {
        let mut out = self.document.clone();
        let configured = self
            .document
            .get("state")
            .cloned()
            .unwrap_or_else(|| Value::from(SiteState::Active.as_str()));
        // The state the site runs when not suspended, which reinstating brings back.
        let resumes_as = match &self.operator_state {
            Some(switched) => Value::from(switched.state.as_str()),
            None => configured.clone(),
        };
        if self.suspension.is_some() {
            out.insert("state".into(), Value::from(SiteState::Suspended.as_str()));
        } else {
            out.insert("state".into(), resumes_as.clone());
        }
        out.insert(
            "source".into(),
            serde_json::to_value(self.source).unwrap_or(Value::Null),
        );
        if let Some(switched) = &self.operator_state {
            out.insert(
                "operator_state".into(),
                json!({
                    "state": switched.state,
                    "actor": switched.actor,
                    "at": switched.at,
                    "configured": configured,
                }),
            );
        }
        if let Some(suspension) = &self.suspension {
            let mut shown = serde_json::to_value(suspension).unwrap_or(Value::Null);
            shown["resumes_as"] = resumes_as;
            out.insert("suspension".into(), shown);
        }
        if let Some((created, updated)) = self.times {
            out.insert("created_at".into(), Value::from(created));
            out.insert("updated_at".into(), Value::from(updated));
        }
        Value::Object(out)
    }
}

/// The control plane: the store, the edge it drives, and the base configuration.
pub struct ControlPlane {
    /// Stored sites, suspensions, tokens, reports, the audit log and analytics.
    pub store: Store,
    /// The edge every change is swapped into.
    pub edge: Arc<edge::Edge>,
    base: Mutex<Arc<BaseConfig>>,
    /// One change at a time: compose, check, commit and swap happen as one step.
    writes: tokio::sync::Mutex<()>,
    /// On a cluster's control node: woken after each change written to the outbox (the
    /// publisher waits on it). `None` on a node alone, which writes no outbox.
    outbox: Option<Arc<tokio::sync::Notify>>,
    /// The newest version written to the outbox (what `?wait=applied` waits for).
    outbox_version: std::sync::atomic::AtomicU64,
    /// The cluster, on its control node (set once the cluster starts).
    cluster: std::sync::OnceLock<Arc<dyn crate::cluster_view::ClusterView>>,
    /// On a cluster's control node, what seals the private keys its edges are sent.
    sealer: Option<crate::replica::Sealer>,
}

/// What a change sees inside its transaction.
pub struct ChangeContext<'a> {
    /// The change's transaction: commits only if the configuration it leaves builds.
    pub tx: &'a Transaction<'a>,
    /// The base the change composes with.
    pub base: &'a BaseConfig,
    /// The change's time, in Unix milliseconds.
    pub now: i64,
    edge: &'a edge::Edge,
    /// The sites the change touched: those its audit entries name.
    touched: RefCell<BTreeSet<String>>,
}

impl ChangeContext<'_> {
    /// Records `change` in the audit log, in the change's transaction, at its time. A change
    /// to a site (`site:NAME`) is what makes the edge look at that site again: every change
    /// to a site is audited, so none is missed.
    pub fn audit(&self, change: Change<'_>) -> Result<(), ChangeError> {
        if let Some(site) = change.target.strip_prefix("site:") {
            self.touched.borrow_mut().insert(site.to_string());
        }
        audit::append(self.tx, change, self.now)?;
        Ok(())
    }

    /// The sites as the edge runs them, before this change.
    pub fn running(&self) -> Arc<edge::Snapshot> {
        self.edge.snapshot()
    }
}

impl ControlPlane {
    /// The control plane over an edge started with [`compose`]'s configuration.
    pub fn new(
        store: Store,
        edge: Arc<edge::Edge>,
        base: BaseConfig,
        sealer: Option<crate::replica::Sealer>,
    ) -> Arc<ControlPlane> {
        let control_node = base
            .config
            .cluster
            .as_ref()
            .is_some_and(|c| c.role == model::ClusterRole::Control);
        Arc::new(ControlPlane {
            store,
            edge,
            base: Mutex::new(Arc::new(base)),
            writes: tokio::sync::Mutex::new(()),
            outbox: control_node.then(Arc::default),
            outbox_version: std::sync::atomic::AtomicU64::new(0),
            cluster: std::sync::OnceLock::new(),
            sealer,
        })
    }

    /// On a cluster's control node, tells the edges to load a new snapshot (the base changed,
    /// or this node started on a base that may have changed while it was down). Nothing on a
    /// node alone.
    pub async fn resync_edges(&self) -> Result<(), ChangeError> {
        let Some(outbox) = &self.outbox else {
            return Ok(());
        };
        let _ = outbox;
        let version = self
            .store
            .run(|conn| -> Result<u64, ChangeError> {
                let tx = conn.transaction().map_err(StoreError::from)?;
                let kind = crate::replica::KIND_RESYNC;
                let version = store::outbox::append(&tx, kind, b"", store::now_ms())?;
                tx.commit().map_err(StoreError::from)?;
                Ok(version)
            })
            .await?;
        self.wrote_version(version);
        Ok(())
    }

    /// Installs the cluster's view (once, when the cluster starts on the control node).
    pub fn set_cluster(&self, view: Arc<dyn crate::cluster_view::ClusterView>) {
        let _ = self.cluster.set(view);
    }

    /// The cluster, on its control node.
    pub fn cluster(&self) -> Option<&Arc<dyn crate::cluster_view::ClusterView>> {
        self.cluster.get()
    }

    /// The newest version this node wrote to its outbox (0 on a node alone).
    pub fn outbox_version(&self) -> u64 {
        self.outbox_version
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Records a version written to the outbox (a change committed it).
    pub fn wrote_version(&self, version: u64) {
        self.outbox_version
            .fetch_max(version, std::sync::atomic::Ordering::AcqRel);
        if let Some(outbox) = &self.outbox {
            outbox.notify_one();
        }
    }

    /// On a cluster's control node, what seals the private keys its edges are sent.
    pub fn sealer(&self) -> Option<&crate::replica::Sealer> {
        self.sealer.as_ref()
    }

    /// On a cluster's control node, what is woken when a change enters the outbox.
    pub fn outbox(&self) -> Option<&Arc<tokio::sync::Notify>> {
        self.outbox.as_ref()
    }

    /// Holds changes off while it lives (the publisher composes a snapshot under it, so the
    /// snapshot's version and its sites agree with the base).
    pub async fn hold_changes(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writes.lock().await
    }

    /// The base the edge runs now.
    pub fn base(&self) -> Arc<BaseConfig> {
        Arc::clone(&self.base.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// A new base (the file changed, or SIGHUP): composed with the store and swapped in.
    /// On error nothing changes.
    pub async fn reload_base(self: &Arc<Self>, base: BaseConfig) -> Result<u64, ReloadError> {
        let _one_at_a_time = self.writes.lock().await;
        let plane = Arc::clone(self);
        let base = Arc::new(base);
        let composed = {
            let base = Arc::clone(&base);
            plane
                .store
                .run(move |conn| {
                    let tx = conn.transaction()?;
                    compose(&base, &tx)
                })
                .await
        };
        let config = composed?;
        let generation = self.edge.reload(&config)?;
        *self.base.lock().unwrap_or_else(|p| p.into_inner()) = base;
        // A base's change may touch every site.
        self.resync_edges().await?;
        Ok(generation)
    }

    /// Runs `change` in one transaction; commits it only if the configuration it leaves is
    /// one the edge can run, then swaps that configuration in. Only the sites the change
    /// touched are composed and built again (see [`edge::Edge::prepare`]): a change costs
    /// the same at 10 sites and at 100,000.
    pub async fn change<T, F>(self: &Arc<Self>, change: F) -> Result<T, ChangeError>
    where
        T: Send + 'static,
        F: FnOnce(&ChangeContext<'_>) -> Result<T, ChangeError> + Send + 'static,
    {
        let _one_at_a_time = self.writes.lock().await;
        let base = self.base();
        let edge = Arc::clone(&self.edge);
        let replicate = self.outbox.is_some();
        let sealer = self.sealer.clone();
        let (output, version) = self
            .store
            .run(move |conn| -> Result<(T, Option<u64>), ChangeError> {
                let tx = conn.transaction().map_err(StoreError::from)?;
                let context = ChangeContext {
                    tx: &tx,
                    base: &base,
                    now: store::now_ms(),
                    edge: &edge,
                    touched: RefCell::default(),
                };
                let output = change(&context)?;
                let running = edge.snapshot();
                let mut changes = Vec::new();
                for name in context.touched.take() {
                    let before = running.sites.by_name(&name).map(|s| &s.config);
                    let after = compose_site(&base, &tx, &name)?;
                    changes.extend(model::SiteChange::between(before, after));
                }
                if changes.is_empty() {
                    tx.commit().map_err(StoreError::from)?;
                    return Ok((output, None));
                }
                // For the edges of a cluster, what the edge here is about to apply.
                let body = match replicate {
                    true => Some(crate::replica::changes_body(
                        &base,
                        &tx,
                        &changes,
                        sealer.as_ref(),
                    )?),
                    false => None,
                };
                let prepared = edge.prepare(changes).map_err(|e| match e {
                    edge::ReloadError::Snapshot(edge::SnapshotError::HostTaken {
                        host,
                        holder,
                        ..
                    }) => ChangeError::Conflict(format!(
                        "{}",
                        FieldError::new(
                            "hosts",
                            format!("host {host} is already claimed by site {holder:?}")
                        )
                    )),
                    e => ChangeError::Invalid(FieldError::new("", e.to_string())),
                })?;
                let version = match body {
                    // In the change's transaction: published if and only if it is accepted.
                    Some(body) => Some(store::outbox::append(
                        &tx,
                        crate::replica::KIND_SITES,
                        &body,
                        context.now,
                    )?),
                    None => None,
                };
                tx.commit().map_err(StoreError::from)?;
                edge.install(prepared);
                Ok((output, version))
            })
            .await?;
        if let Some(version) = version {
            self.wrote_version(version);
        }
        Ok(output)
    }

    /// Every site, the base's first, as the API shows them.
    pub fn sites(&self, conn: &rusqlite::Connection) -> Result<Vec<SiteView>, StoreError> {
        Ok(self.sites_page(conn, &SitesPage::everything())?.0)
    }

    /// One page of [`ControlPlane::sites`]: the sites after `page.after` in that order (the
    /// base's in file order, then the store's by name), of `page.only` when it is given, at
    /// most `page.limit`; and the name to ask for the next page after, when there is more.
    /// A page costs its own sites, whatever the number of sites.
    pub fn sites_page(
        &self,
        conn: &rusqlite::Connection,
        page: &SitesPage<'_>,
    ) -> Result<(Vec<SiteView>, Option<String>), StoreError> {
        let base = self.base();
        // Where a name stands in the order: the base's by position, then the store's by name.
        let position = |name: &str| {
            (
                base.index.get(name).copied().unwrap_or(usize::MAX),
                name.to_string(),
            )
        };
        let after = page.after.map(position);
        let mut views = Vec::new();
        let mut more = false;
        if let Some(only) = page.only {
            // A token limited to sites: its sites, not a walk through everyone's.
            let mut names: Vec<(usize, String)> = only.iter().map(|n| position(n)).collect();
            names.sort();
            names.dedup();
            for (_, name) in names
                .into_iter()
                .filter(|n| after.as_ref().is_none_or(|a| n > a))
            {
                let Some(view) = self.view_of(conn, &base, &name)? else {
                    continue;
                };
                if views.len() == page.limit {
                    more = true;
                    break;
                }
                views.push(view);
            }
        } else {
            let base_from = after.as_ref().map_or(0, |(i, _)| i.saturating_add(1));
            for i in base_from..base.config.sites.len() {
                if views.len() == page.limit {
                    more = true;
                    break;
                }
                views.push(self.base_view(conn, &base, i)?);
            }
            // The store's sites resume after `after` only when it is one of them.
            let stored_after = page.after.filter(|a| !base.index.contains_key(*a));
            let room = page.limit - views.len();
            if !more && room > 0 {
                let mut stored =
                    store::sites::list_after(conn, stored_after, room.saturating_add(1))?;
                more = stored.len() > room;
                stored.truncate(room);
                for site in stored {
                    views.push(stored_view(conn, site)?);
                }
            } else if !more {
                more = !store::sites::list_after(conn, stored_after, 1)?.is_empty();
            }
        }
        let next = more
            .then(|| views.last().map(|v: &SiteView| v.name.clone()))
            .flatten();
        Ok((views, next))
    }

    /// The site of that name as the API shows it; `None` when there is none.
    pub fn site(
        &self,
        conn: &rusqlite::Connection,
        name: &str,
    ) -> Result<Option<SiteView>, StoreError> {
        self.view_of(conn, &self.base(), name)
    }

    fn view_of(
        &self,
        conn: &rusqlite::Connection,
        base: &BaseConfig,
        name: &str,
    ) -> Result<Option<SiteView>, StoreError> {
        if let Some(&i) = base.index.get(name) {
            return Ok(Some(self.base_view(conn, base, i)?));
        }
        store::sites::get(conn, name)?
            .map(|stored| stored_view(conn, stored))
            .transpose()
    }

    fn base_view(
        &self,
        conn: &rusqlite::Connection,
        base: &BaseConfig,
        i: usize,
    ) -> Result<SiteView, StoreError> {
        let name = &base.config.sites[i].name;
        Ok(SiteView {
            name: name.clone(),
            document: base.documents.get(i).cloned().unwrap_or_default(),
            source: SiteSource::File,
            operator_state: store::sites::operator_state(conn, name)?,
            suspension: store::sites::suspension(conn, name)?,
            times: None,
        })
    }
}

fn stored_view(conn: &rusqlite::Connection, stored: StoredSite) -> Result<SiteView, StoreError> {
    Ok(SiteView {
        suspension: store::sites::suspension(conn, &stored.name)?,
        name: stored.name,
        document: stored.document,
        source: SiteSource::Api,
        operator_state: None,
        times: Some((stored.created_at, stored.updated_at)),
    })
}

/// Which sites [`ControlPlane::sites_page`] answers with.
pub struct SitesPage<'a> {
    /// The name the page starts after; `None`: from the first.
    pub after: Option<&'a str>,
    /// At most this many.
    pub limit: usize,
    /// Only these sites (a token's reach); `None`: every site.
    pub only: Option<&'a [String]>,
}

impl SitesPage<'_> {
    /// Every site, in one page.
    pub fn everything() -> SitesPage<'static> {
        SitesPage {
            after: None,
            limit: usize::MAX,
            only: None,
        }
    }
}

/// The configuration the edge runs: the base with the states an operator switched its sites
/// to, the store's sites, and every suspension.
pub fn compose(base: &BaseConfig, conn: &rusqlite::Connection) -> Result<Config, ChangeError> {
    let mut config = base.config.clone();
    // Only the base's sites: an API site's state is its document's. A row whose site has left
    // the file waits, by name, as a suspension does.
    let mut switched: std::collections::HashMap<String, SiteState> =
        store::sites::operator_states(conn)?
            .into_iter()
            .map(|s| (s.site, s.state))
            .collect();
    for site in &mut config.sites {
        if let Some(state) = switched.remove(&site.name) {
            site.state = state;
        }
    }
    let mut sites = Vec::new();
    for StoredSite { name, document, .. } in store::sites::list(conn)? {
        sites.push(parse_stored(&name, &document)?);
    }
    config.add_sites(sites, "the store").map_err(|e| {
        let field = e.key.rsplit('.').next().unwrap_or("").to_string();
        ChangeError::Conflict(format!("{}", FieldError::new(field, e.message)))
    })?;
    let mut suspensions: std::collections::HashMap<String, bool> = store::sites::suspensions(conn)?
        .into_iter()
        .map(|s| (s.site, s.legal))
        .collect();
    for site in &mut config.sites {
        if let Some(legal) = suspensions.remove(&site.name) {
            suspend(site, legal);
        }
    }
    Ok(config)
}

/// One site of [`compose`]'s configuration, read alone: the base's site of that name with the
/// state an operator switched it to, or the store's; suspended if it is. `None`: no such site.
pub fn compose_site(
    base: &BaseConfig,
    conn: &rusqlite::Connection,
    name: &str,
) -> Result<Option<model::Site>, ChangeError> {
    let mut site = match base.site(name) {
        Some(site) => {
            let mut site = site.clone();
            if let Some(switched) = store::sites::operator_state(conn, name)? {
                site.state = switched.state;
            }
            site
        }
        None => match store::sites::get(conn, name)? {
            Some(stored) => parse_stored(name, &stored.document)?,
            None => return Ok(None),
        },
    };
    if let Some(suspension) = store::sites::suspension(conn, name)? {
        suspend(&mut site, suspension.legal);
    }
    Ok(Some(site))
}

fn parse_stored(name: &str, document: &Map<String, Value>) -> Result<model::Site, ChangeError> {
    documents::parse_site(document).map_err(|e| {
        ChangeError::Invalid(FieldError::new(
            format!("{name}.{}", e.field),
            format!("stored site {name:?} is no longer valid: {}", e.message),
        ))
    })
}

fn suspend(site: &mut model::Site, legal: bool) {
    site.state = SiteState::Suspended;
    site.suspension = Some(model::Suspension { legal });
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
        "#;
        let config = Config::from_toml_str("palisade.toml", text).unwrap();
        BaseConfig::from_file(config, text, "palisade.toml".into())
    }

    fn store_site(conn: &mut rusqlite::Connection, doc: Value) {
        let tx = conn.transaction().unwrap();
        let name = doc["name"].as_str().unwrap().to_string();
        store::sites::insert(&tx, &name, doc.as_object().unwrap(), 1).unwrap();
        tx.commit().unwrap();
    }

    #[test]
    fn the_file_and_the_store_compose_and_suspensions_apply_to_either() {
        let (_dir, store) = test_store();
        store.with(|conn| {
            store_site(
                conn,
                json!({"name": "shop", "hosts": ["shop.example"], "origins": ["http://127.0.0.1:3001"], "state": "paused"}),
            );
            let tx = conn.transaction().unwrap();
            store::sites::suspend(
                &tx,
                &Suspension {
                    site: "blog".into(),
                    reason: "threats".into(),
                    legal: true,
                    reports: vec![],
                    actor: "tok_x".into(),
                    at: 1,
                },
            )
            .unwrap();
            let config = compose(&base(), &tx).unwrap();
            let names: Vec<&str> = config.sites.iter().map(|s| s.name.as_str()).collect();
            assert_eq!(names, vec!["blog", "shop"]);
            assert_eq!(config.sites[0].state, SiteState::Suspended);
            assert_eq!(config.sites[0].suspension, Some(model::Suspension { legal: true }));
            assert_eq!(config.sites[1].state, SiteState::Paused);
            assert_eq!(config.sites[1].suspension, None);
        });
    }

    #[test]
    fn a_store_site_claiming_a_file_host_does_not_compose() {
        let (_dir, store) = test_store();
        store.with(|conn| {
            store_site(
                conn,
                json!({"name": "copy", "hosts": ["blog.example"], "origins": ["http://127.0.0.1:3001"]}),
            );
            let tx = conn.transaction().unwrap();
            let error = compose(&base(), &tx).unwrap_err();
            assert!(matches!(error, ChangeError::Conflict(_)), "{error}");
            assert!(error.to_string().contains("blog.example"), "{error}");
        });
    }

    #[test]
    fn file_sites_show_their_table_as_written() {
        let base = base();
        assert_eq!(
            Value::Object(base.documents[0].clone()),
            json!({"name": "blog", "hosts": ["blog.example"], "origins": ["http://127.0.0.1:3000"]})
        );
        assert!(base.has_site("blog") && !base.has_site("shop"));
    }
}
