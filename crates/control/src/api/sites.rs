//! `/api/sites`: create, read, change and delete sites; suspend and reinstate; purge;
//! analytics.

use super::{ApiError, ApiResult, Caller, Query, Shared, read_body, read_json, reply};
use crate::claims::{self, ClaimError};
use crate::documents::{self, FieldError, READ_ONLY_KEYS};
use crate::plane::{BaseConfig, ChangeContext, ChangeError, ControlPlane, SiteView, SitesPage};
use crate::store::audit::Change;
use crate::store::sites::Suspension;
use crate::store::tokens::Token;
use crate::store::{self, StoreError};
use axum::extract::{Extension, Path, Request, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::path::PathBuf;
use std::sync::Arc;

/// `GET /api/sites`: every site the token reaches.
/// Sites per page of `GET /api/sites` when `limit` is not given, and the most a page holds.
pub const SITES_PAGE: usize = 1_000;
/// The most `limit` may ask for.
pub const MAX_SITES_PAGE: usize = 10_000;

/// `GET /api/sites?limit=N&after=NAME`: the sites the token reaches, a page at a time (the
/// file's first, in its order, then the API's by name). `next`, when present, is the `after`
/// of the next page.
pub async fn list(
    State(plane): Shared,
    Extension(caller): Extension<Caller>,
    Extension(query): Extension<Query>,
) -> ApiResult {
    let after = query.get("after").map(str::to_string);
    let limit = query.limit(SITES_PAGE, MAX_SITES_PAGE)?;
    let only = caller.sites();
    let inner = Arc::clone(&plane);
    let (views, next) = crate::api::read(&plane, move |conn| {
        inner.sites_page(
            conn,
            &SitesPage {
                after: after.as_deref(),
                limit,
                only: only.as_deref(),
            },
        )
    })
    .await?;
    let sites: Vec<Value> = views.iter().map(SiteView::to_json).collect();
    let mut answer = json!({ "sites": sites });
    if let Some(next) = next {
        answer["next"] = Value::from(next);
    }
    reply(StatusCode::OK, answer)
}

pub(super) async fn view(plane: &Arc<ControlPlane>, name: &str) -> Result<SiteView, ApiError> {
    let inner = Arc::clone(plane);
    let wanted = name.to_string();
    crate::api::read(plane, move |conn| inner.site(conn, &wanted))
        .await?
        .ok_or_else(|| no_site(name))
}

fn no_site(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no site named {}", model::shown(name)),
    )
}

/// `GET /api/sites/{site}`.
pub async fn show(
    State(plane): Shared,
    Extension(caller): Extension<Caller>,
    Path(site): Path<String>,
) -> ApiResult {
    caller.reach(&site)?;
    reply(StatusCode::OK, view(&plane, &site).await?.to_json())
}

/// A document as a client sent it: an object, without the read-only keys the API adds.
fn client_document(value: Value) -> Result<Map<String, Value>, ApiError> {
    let Value::Object(mut document) = value else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "a site is a JSON object",
        ));
    };
    for key in READ_ONLY_KEYS {
        document.remove(key);
    }
    Ok(document)
}

fn document_name(document: &Map<String, Value>) -> Result<String, ApiError> {
    match document.get("name") {
        Some(Value::String(name)) => Ok(name.clone()),
        Some(_) => Err(ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "name",
            "must be a string",
        )),
        None => Err(ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "name",
            "a site needs a name",
        )),
    }
}

/// `POST /api/sites`: 201 with the new site.
pub async fn create(
    State(plane): Shared,
    Extension(caller): Extension<Caller>,
    request: Request,
) -> ApiResult {
    let document = client_document(read_json(request.into_body()).await?)?;
    // A token limited to sites may create one of them: decided once the name is read.
    let name = document_name(&document)?;
    caller.reach(&name)?;
    let certificates = Certificates::take(&plane, &name, document)?;
    let document = certificates.document.clone();
    let site = documents::parse_site(&document).map_err(ApiError::invalid)?;
    let actor = caller.actor().to_string();
    let token = caller.token.clone();
    let stored = document.clone();
    let result = plane
        .change(move |ctx| {
            if ctx.base.has_site(&site.name) {
                return Err(file_site(&site.name, ctx.base));
            }
            check_claims(ctx, &token, &site)?;
            if !store::sites::insert(ctx.tx, &site.name, &stored, ctx.now)? {
                return Err(ChangeError::Conflict(format!(
                    "site {} already exists",
                    model::shown(&site.name)
                )));
            }
            ctx.audit(Change {
                actor: &actor,
                action: "site.create",
                target: format!("site:{}", site.name),
                before: None,
                after: Some(Value::Object(stored)),
                reason: None,
            })
        })
        .await;
    certificates.settle(result.is_ok());
    result?;
    tracing::info!(site = %name, "site created");
    reply(StatusCode::CREATED, view(&plane, &name).await?.to_json())
}

/// A file site is changed in its file; a flag's site, by describing it in a file. Its state
/// is switched here either way. The file is named by its base name: its directory is the
/// server's business, not an API client's.
fn file_site(name: &str, base: &BaseConfig) -> ChangeError {
    let shown = model::shown(name);
    let whence = if base.is_from_flags() {
        format!(
            "comes from the {} flag: to configure it, describe it as a [[site]] in a file and \
             serve --config that file",
            base.source
        )
    } else {
        let file = std::path::Path::new(&base.source)
            .file_name()
            .map_or_else(|| base.source.clone(), |f| f.to_string_lossy().into_owned());
        format!(
            "is defined in {file}: change it there (to manage it through the API instead, \
             remove it from that file, then create it here)"
        )
    };
    ChangeError::Conflict(format!(
        "site {shown} {whence}; its state is switched with PUT /api/sites/{name}/state \
         (`palisade site state {name} under_attack`)"
    ))
}

/// Refuses host names `token` may not give `site` (see [`claims`]), judged against the
/// configuration as it is before this change, inside the change's transaction.
fn check_claims(
    ctx: &ChangeContext<'_>,
    token: &Token,
    site: &model::Site,
) -> Result<(), ChangeError> {
    if token.sites.is_none() {
        return Ok(());
    }
    let current = ctx.running();
    claims::check(token, &site.name, &site.hosts, &*current).map_err(|e| match e {
        ClaimError::NotUnder(_) => ChangeError::Forbidden(FieldError::new("hosts", e.to_string())),
        ClaimError::Taken(_) => ChangeError::Conflict(e.to_string()),
    })
}

/// `PATCH /api/sites/{site}`: a JSON merge patch (RFC 7396) over the stored document.
pub async fn patch(
    State(plane): Shared,
    Extension(caller): Extension<Caller>,
    Path(site): Path<String>,
    request: Request,
) -> ApiResult {
    caller.reach(&site)?;
    let patch = client_document(read_json(request.into_body()).await?)?;
    update(&plane, site, caller.token, Update::Patch(patch)).await
}

/// `PUT /api/sites/{site}`: the whole document, replaced (what `palisade apply` sends).
pub async fn replace(
    State(plane): Shared,
    Extension(caller): Extension<Caller>,
    Path(site): Path<String>,
    request: Request,
) -> ApiResult {
    caller.reach(&site)?;
    let document = client_document(read_json(request.into_body()).await?)?;
    update(&plane, site, caller.token, Update::Replace(document)).await
}

enum Update {
    Patch(Map<String, Value>),
    Replace(Map<String, Value>),
    /// One more `rule` at the end of the document's list (a pinned mitigation).
    AppendRule(Value),
}

/// Appends `rule` (`{"id", "expr", "action"}`) to the API site `site`'s rules, as an update
/// by `token` (audited as `site.update`). A file's site is refused with the reason.
pub(super) async fn append_rule(
    plane: &Arc<ControlPlane>,
    site: String,
    token: Token,
    rule: Value,
) -> ApiResult {
    update(plane, site, token, Update::AppendRule(rule)).await
}

async fn update(
    plane: &Arc<ControlPlane>,
    site: String,
    token: Token,
    update: Update,
) -> ApiResult {
    if plane.base().has_site(&site) {
        return Err(file_site(&site, &plane.base()).into());
    }
    // The stored document, read for the patch; re-read and compared inside the change so
    // that two clients patching at once cannot lose one's edit.
    let (current, suspended) = {
        let name = site.clone();
        crate::api::read(plane, move |conn| {
            Ok((
                store::sites::get(conn, &name)?,
                store::sites::suspension(conn, &name)?.is_some(),
            ))
        })
        .await?
    };
    let current = current.ok_or_else(|| no_site(&site))?;
    let mut document = match update {
        Update::Patch(patch) => {
            let mut document = current.document.clone();
            documents::merge_patch(&mut document, &patch);
            document
        }
        Update::Replace(document) => document,
        Update::AppendRule(rule) => {
            let mut document = current.document.clone();
            match document.get_mut("rule") {
                Some(Value::Array(rules)) => rules.push(rule),
                _ => {
                    document.insert("rule".into(), Value::Array(vec![rule]));
                }
            }
            document
        }
    };
    if !document.contains_key("name") {
        document.insert("name".into(), Value::from(site.clone()));
    }
    // A suspended site is shown with `"state": "suspended"`; sent back as shown, that means
    // "keep the state it resumes with" (suspension itself is not a field to set).
    if suspended && document.get("state").and_then(Value::as_str) == Some("suspended") {
        match current.document.get("state") {
            Some(state) => document.insert("state".into(), state.clone()),
            None => document.remove("state"),
        };
    }
    if document_name(&document)? != site {
        return Err(ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "name",
            "a site's name cannot change: create a site with the new name and delete this one",
        ));
    }
    let certificates = Certificates::take(plane, &site, document)?;
    let document = certificates.document.clone();
    let parsed = documents::parse_site(&document).map_err(ApiError::invalid)?;
    let name = site.clone();
    let result = plane
        .change(move |ctx| {
            let before = store::sites::get(ctx.tx, &name)?.ok_or_else(|| no_site_change(&name))?;
            if before.updated_at != current.updated_at || before.document != current.document {
                return Err(ChangeError::Conflict(format!(
                    "site {} changed while this change was made: read it again and retry",
                    model::shown(&name)
                )));
            }
            check_claims(ctx, &token, &parsed)?;
            store::sites::replace(ctx.tx, &name, &document, ctx.now)?;
            ctx.audit(Change {
                actor: &token.id,
                action: "site.update",
                target: format!("site:{name}"),
                before: Some(Value::Object(before.document)),
                after: Some(Value::Object(document)),
                reason: None,
            })
        })
        .await;
    certificates.settle(result.is_ok());
    result?;
    tracing::info!(%site, "site updated");
    reply(StatusCode::OK, view(plane, &site).await?.to_json())
}

fn no_site_change(name: &str) -> ChangeError {
    ChangeError::NotFound(format!("no site named {}", model::shown(name)))
}

/// `DELETE /api/sites/{site}`. A suspension outlives the site: created again under the same
/// name, it is still suspended.
pub async fn delete(
    State(plane): Shared,
    Extension(caller): Extension<Caller>,
    Path(site): Path<String>,
) -> ApiResult {
    caller.reach(&site)?;
    let actor = caller.actor().to_string();
    let name = site.clone();
    plane
        .change(move |ctx| {
            if ctx.base.has_site(&name) {
                return Err(file_site(&name, ctx.base));
            }
            let before =
                store::sites::delete(ctx.tx, &name)?.ok_or_else(|| no_site_change(&name))?;
            ctx.audit(Change {
                actor: &actor,
                action: "site.delete",
                target: format!("site:{name}"),
                before: Some(Value::Object(before.document)),
                after: None,
                reason: None,
            })
        })
        .await?;
    Certificates::remove_site(&plane, &site);
    tracing::info!(%site, "site deleted");
    reply(StatusCode::OK, json!({ "deleted": site }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SuspendBody {
    reason: String,
    #[serde(default)]
    legal: bool,
    #[serde(default)]
    reports: Vec<i64>,
}

/// Longest reason a suspension keeps.
const MAX_REASON_CHARS: usize = 4000;

/// `POST /api/sites/{site}/suspend` `{"reason": "...", "legal": false, "reports": [ids]}`:
/// the site's hosts get the notice (451 when `legal`, else 403) from the next request on.
/// Cited reports become `actioned`; each must be one the token reaches (a report of one of
/// its sites, or, for a token for every site, any report).
pub async fn suspend(
    State(plane): Shared,
    Extension(caller): Extension<Caller>,
    Path(site): Path<String>,
    request: Request,
) -> ApiResult {
    caller.reach(&site)?;
    let body: SuspendBody = read_json(request.into_body()).await?;
    let reason = body.reason.trim().to_string();
    if reason.is_empty() {
        return Err(ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "reason",
            "a suspension needs a reason",
        ));
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "reason",
            format!("at most {MAX_REASON_CHARS} characters"),
        ));
    }
    let actor = caller.actor().to_string();
    let token = caller.token;
    let name = site.clone();
    let suspension = plane
        .change(move |ctx| {
            site_exists(ctx, &name)?;
            // A report the token does not reach reads as one that does not exist: the answer
            // must not tell another site's report ids from unused ones.
            let mut unknown = Vec::new();
            for id in &body.reports {
                let cited = store::reports::get(ctx.tx, *id)?;
                if !cited.is_some_and(|r| token.covers(r.site.as_deref())) {
                    unknown.push(*id);
                }
            }
            if !unknown.is_empty() {
                return Err(ChangeError::Invalid(FieldError::new(
                    "reports",
                    format!("no report with id {unknown:?}"),
                )));
            }
            let before = store::sites::suspension(ctx.tx, &name)?;
            let suspension = Suspension {
                site: name.clone(),
                reason: reason.clone(),
                legal: body.legal,
                reports: body.reports.clone(),
                actor: actor.clone(),
                at: ctx.now,
            };
            store::sites::suspend(ctx.tx, &suspension)?;
            ctx.audit(Change {
                actor: &actor,
                action: "site.suspend",
                target: format!("site:{name}"),
                before: before.map(|b| json!({ "suspension": b })),
                after: Some(json!({ "suspension": &suspension })),
                reason: Some(reason.clone()),
            })?;
            for id in &body.reports {
                let cited = store::reports::get(ctx.tx, *id)?;
                if cited.is_some_and(|r| {
                    matches!(
                        r.status,
                        model::ReportStatus::New | model::ReportStatus::Reviewing
                    )
                }) && let Some((before, after)) = store::reports::update(
                    ctx.tx,
                    *id,
                    Some(model::ReportStatus::Actioned),
                    None,
                    ctx.now,
                )? {
                    ctx.audit(Change {
                        actor: &actor,
                        action: "report.update",
                        target: format!("report:{id}"),
                        before: Some(json!({ "status": before.status })),
                        after: Some(json!({ "status": after.status, "suspended": name })),
                        reason: Some(format!("cited by the suspension of site {name:?}")),
                    })?;
                }
            }
            Ok(suspension)
        })
        .await?;
    tracing::warn!(%site, legal = suspension.legal, reports = ?suspension.reports, "site suspended");
    reply(StatusCode::OK, view(&plane, &site).await?.to_json())
}

fn site_exists(ctx: &ChangeContext<'_>, name: &str) -> Result<(), ChangeError> {
    if ctx.base.has_site(name) || store::sites::get(ctx.tx, name)?.is_some() {
        Ok(())
    } else {
        Err(no_site_change(name))
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReinstateBody {
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /api/sites/{site}/reinstate` (optional `{"reason": "..."}`): service as before.
pub async fn reinstate(
    State(plane): Shared,
    Extension(caller): Extension<Caller>,
    Path(site): Path<String>,
    request: Request,
) -> ApiResult {
    caller.reach(&site)?;
    let bytes = read_body(request.into_body()).await?;
    let body: ReinstateBody = if bytes.is_empty() {
        ReinstateBody::default()
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("bad JSON: {e}")))?
    };
    let actor = caller.actor().to_string();
    let name = site.clone();
    plane
        .change(move |ctx| {
            let Some(before) = store::sites::reinstate(ctx.tx, &name)? else {
                return Err(ChangeError::Conflict(format!(
                    "site {} is not suspended",
                    model::shown(&name)
                )));
            };
            ctx.audit(Change {
                actor: &actor,
                action: "site.reinstate",
                target: format!("site:{name}"),
                before: Some(json!({ "suspension": before })),
                after: None,
                reason: body
                    .reason
                    .map(|r| r.trim().to_string())
                    .filter(|r| !r.is_empty()),
            })
        })
        .await?;
    tracing::warn!(%site, "site reinstated");
    match view(&plane, &site).await {
        Ok(view) => reply(StatusCode::OK, view.to_json()),
        // Reinstating a deleted site's suspension is fine: nothing to show.
        Err(_) => reply(StatusCode::OK, json!({ "name": site, "reinstated": true })),
    }
}

/// `POST /api/sites/{site}/purge`: the edge purges the site the route names (one parse of
/// the path, the same name for the decision and the work); the audit log records it.
pub async fn purge(
    State(plane): Shared,
    Extension(caller): Extension<Caller>,
    Path(site): Path<String>,
    request: Request,
) -> ApiResult {
    caller.reach(&site)?;
    let bytes = read_body(request.into_body()).await?;
    if bytes.len() > edge::MAX_PURGE_BODY_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "a purge body is at most {} bytes",
                edge::MAX_PURGE_BODY_BYTES
            ),
        ));
    }
    let purged = plane.edge.purge(&site, &bytes).map_err(|e| match e {
        edge::PurgeError::NoSuchSite(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
        edge::PurgeError::Invalid(_) => ApiError::new(StatusCode::BAD_REQUEST, e.to_string()),
    })?;
    let selector: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let actor = caller.actor().to_string();
    let name = site.clone();
    // On a cluster's control node every edge purges too: the purge goes out with its audit
    // entry.
    let replicate = plane
        .outbox()
        .is_some()
        .then(|| crate::replica::purge_body(&site, &bytes));
    let audited = plane
        .store
        .run(move |conn| -> Result<Option<u64>, StoreError> {
            let tx = conn.transaction()?;
            crate::store::audit::append(
                &tx,
                Change {
                    actor: &actor,
                    action: "site.purge",
                    target: format!("site:{name}"),
                    before: None,
                    after: Some(selector),
                    reason: None,
                },
                store::now_ms(),
            )?;
            let version = match &replicate {
                Some(body) => {
                    let version = crate::store::outbox::append(
                        &tx,
                        crate::replica::KIND_PURGE,
                        body,
                        store::now_ms(),
                    )?;
                    crate::store::outbox::note_purge(&tx, &name, version)?;
                    Some(version)
                }
                None => None,
            };
            tx.commit()?;
            Ok(version)
        })
        .await;
    match audited {
        Ok(Some(version)) => plane.wrote_version(version),
        Ok(None) => {}
        Err(e) => {
            tracing::error!(error = %e, %site, "purge done but not audited (nor sent to the cluster's edges)")
        }
    }
    reply(
        StatusCode::OK,
        serde_json::to_value(purged).unwrap_or(Value::Null),
    )
}

/// Certificates uploaded with a document (`"tls": {"cert_pem": "...", "key_pem": "..."}`),
/// written under `<data_dir>/certs/<site>/` and replaced in the document by their paths (the
/// `tls` table of a file). A document may name paths only there: the API never reads files
/// elsewhere on the machine.
struct Certificates {
    document: Map<String, Value>,
    written: Vec<PathBuf>,
    dir: PathBuf,
}

impl Certificates {
    fn dir(plane: &ControlPlane, site: &str) -> PathBuf {
        plane.edge.data_dir().join("certs").join(site)
    }

    fn take(
        plane: &ControlPlane,
        site: &str,
        mut document: Map<String, Value>,
    ) -> Result<Certificates, ApiError> {
        let dir = Certificates::dir(plane, site);
        let mut written = Vec::new();
        let invalid = |field: &str, message: &str| {
            ApiError::field(StatusCode::UNPROCESSABLE_ENTITY, field, message)
        };
        if let Some(tls) = document.get_mut("tls") {
            let Value::Object(tls) = tls else {
                return Err(invalid("tls", "must be an object"));
            };
            let uploaded = (tls.get("cert_pem"), tls.get("key_pem"));
            match uploaded {
                (Some(Value::String(cert)), Some(Value::String(key))) => {
                    if !cert.contains("-----BEGIN") || !key.contains("-----BEGIN") {
                        return Err(invalid("tls", "cert_pem and key_pem must be PEM text"));
                    }
                    let stamp = store::now_ms();
                    std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
                    let cert_path = dir.join(format!("{stamp}-cert.pem"));
                    let key_path = dir.join(format!("{stamp}-key.pem"));
                    write_private(&cert_path, cert.as_bytes(), 0o644)?;
                    written.push(cert_path.clone());
                    if let Err(e) = write_private(&key_path, key.as_bytes(), 0o600) {
                        let _ = std::fs::remove_file(&cert_path);
                        return Err(e);
                    }
                    written.push(key_path.clone());
                    tls.clear();
                    tls.insert("cert".into(), Value::from(cert_path.display().to_string()));
                    tls.insert("key".into(), Value::from(key_path.display().to_string()));
                }
                (None, None) => {
                    for field in ["cert", "key"] {
                        let inside = tls
                            .get(field)
                            .and_then(Value::as_str)
                            .is_some_and(|p| PathBuf::from(p).parent() == Some(dir.as_path()));
                        if !inside {
                            return Err(invalid(
                                &format!("tls.{field}"),
                                "upload the certificate and key as cert_pem and key_pem",
                            ));
                        }
                    }
                }
                _ => return Err(invalid("tls", "send both cert_pem and key_pem")),
            }
        }
        Ok(Certificates {
            document,
            written,
            dir,
        })
    }

    /// After the change: on success, files the site no longer names go; on refusal, the new
    /// ones do.
    fn settle(&self, committed: bool) {
        if !committed {
            for path in &self.written {
                let _ = std::fs::remove_file(path);
            }
            return;
        }
        let named: Vec<String> = ["cert", "key"]
            .iter()
            .filter_map(|f| {
                self.document
                    .get("tls")?
                    .get(f)?
                    .as_str()
                    .map(str::to_string)
            })
            .collect();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let path = entry.path().display().to_string();
                if !named.contains(&path) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }

    fn remove_site(plane: &ControlPlane, site: &str) {
        let _ = std::fs::remove_dir_all(Certificates::dir(plane, site));
    }
}

/// The path goes to the log, not to the client: it is inside the server's data directory.
fn io_error(path: &std::path::Path, e: std::io::Error) -> ApiError {
    tracing::error!(path = %path.display(), error = %e, "cannot write a certificate file");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the certificate could not be written; the server's log says why",
    )
}

fn write_private(path: &std::path::Path, bytes: &[u8], mode: u32) -> Result<(), ApiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| io_error(path, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error(path, e))
}

/// `GET /api/sites/{site}/analytics?since=...`.
pub async fn analytics(
    State(plane): Shared,
    Extension(caller): Extension<Caller>,
    Extension(query): Extension<Query>,
    Path(site): Path<String>,
) -> ApiResult {
    caller.reach(&site)?;
    crate::analytics::serve(&plane, &site, query.get("since")).await
}
