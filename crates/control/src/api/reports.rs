//! `/api/reports`: the abuse desk's queue (urgent first) and its triage.

use super::{ApiError, ApiResult, Shared, auth, limit, read_json, reply};
use crate::plane::ChangeError;
use crate::store::audit::Change;
use crate::store::reports::{self, Query};
use crate::store::tokens::Scope;
use axum::extract::{Path, Query as QueryString, Request, State};
use axum::http::StatusCode;
use model::ReportStatus;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    status: Option<String>,
    site: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/reports?status=new&site=blog&limit=N`.
pub async fn list(
    State(plane): Shared,
    params: Result<QueryString<Params>, axum::extract::rejection::QueryRejection>,
    request: Request,
) -> ApiResult {
    let caller = auth::caller(&plane, request.headers()).await?;
    let QueryString(params) =
        params.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    match &params.site {
        Some(site) => caller.require(Scope::Read, Some(site))?,
        // A token limited to sites sees those sites' reports.
        None => caller.require_scope(Scope::Read)?,
    }
    let status = params
        .status
        .map(|s| s.parse::<ReportStatus>())
        .transpose()
        .map_err(|e| ApiError::field(StatusCode::BAD_REQUEST, "status", e.to_string()))?;
    let query = Query {
        status,
        site: params.site,
        sites: caller.sites(),
        limit: limit(params.limit, 100, 10_000)?,
    };
    let found = crate::api::read(&plane, move |conn| reports::list(conn, &query)).await?;
    reply(StatusCode::OK, json!({ "reports": found }))
}

/// `GET /api/reports/{id}`.
pub async fn show(State(plane): Shared, Path(id): Path<String>, request: Request) -> ApiResult {
    let caller = auth::caller(&plane, request.headers()).await?;
    caller.require_scope(Scope::Read)?;
    let id = report_id(&id)?;
    let report = crate::api::read(&plane, move |conn| reports::get(conn, id)).await?;
    let report =
        report.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no report {id}")))?;
    caller.require(Scope::Read, report.site.as_deref())?;
    reply(
        StatusCode::OK,
        serde_json::to_value(report).unwrap_or_default(),
    )
}

fn report_id(text: &str) -> Result<i64, ApiError> {
    text.parse()
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, format!("no report {text:?}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    status: Option<String>,
    notes: Option<String>,
}

/// Longest notes the operator may keep on a report.
const MAX_NOTES_CHARS: usize = 20_000;

/// `PATCH /api/reports/{id}` `{"status": "reviewing", "notes": "..."}`: triage, audited.
/// Needs `suspend`: the abuse desk is the people who suspend.
pub async fn patch(State(plane): Shared, Path(id): Path<String>, request: Request) -> ApiResult {
    let caller = auth::caller(&plane, request.headers()).await?;
    caller.require_scope(Scope::Suspend)?;
    let id = report_id(&id)?;
    let body: PatchBody = read_json(request.into_body()).await?;
    let status = body
        .status
        .as_deref()
        .map(str::parse::<ReportStatus>)
        .transpose()
        .map_err(|e| ApiError::field(StatusCode::UNPROCESSABLE_ENTITY, "status", e.to_string()))?;
    if body
        .notes
        .as_ref()
        .is_some_and(|n| n.chars().count() > MAX_NOTES_CHARS)
    {
        return Err(ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "notes",
            format!("at most {MAX_NOTES_CHARS} characters"),
        ));
    }
    if status.is_none() && body.notes.is_none() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "send a status, notes, or both",
        ));
    }
    let token = caller.token.clone();
    let updated = plane
        .change(move |ctx| {
            let Some(current) = reports::get(ctx.tx, id)? else {
                return Err(ChangeError::NotFound(format!("no report {id}")));
            };
            if !token.allows(Scope::Suspend, current.site.as_deref()) {
                return Err(ChangeError::NotFound(format!("no report {id}")));
            }
            let (before, after) =
                reports::update(ctx.tx, id, status, body.notes.as_deref(), ctx.now)?
                    .ok_or_else(|| ChangeError::NotFound(format!("no report {id}")))?;
            ctx.audit(Change {
                actor: &token.id,
                action: "report.update",
                target: format!("report:{id}"),
                before: Some(json!({ "status": before.status, "notes": before.notes })),
                after: Some(json!({ "status": after.status, "notes": after.notes })),
                reason: None,
            })?;
            Ok(after)
        })
        .await?;
    reply(
        StatusCode::OK,
        serde_json::to_value(updated).unwrap_or_default(),
    )
}
