//! `/api/reports`: the abuse desk's queue (urgent first) and its triage.
//!
//! A token limited to sites reaches the reports of its sites; a report of another site, or of
//! none (taken on the operator's host name), reads to it exactly as one that does not exist
//! (404, to `GET` and `PATCH` alike). A 403 for "exists, not yours" would let it walk the ids
//! and learn how many reports other customers get, and when.

use super::{ApiError, ApiResult, Caller, Query, Shared, read_json, reply};
use crate::plane::{ChangeError, ControlPlane};
use crate::store::audit::Change;
use crate::store::reports::{self, Report};
use axum::extract::{Extension, Path, Request, State};
use axum::http::StatusCode;
use model::ReportStatus;
use serde::Deserialize;
use serde_json::json;

/// `GET /api/reports?status=new&site=blog&limit=N`.
pub async fn list(
    State(plane): Shared,
    Extension(caller): Extension<Caller>,
    Extension(query): Extension<Query>,
) -> ApiResult {
    let site = query.get("site").map(str::to_string);
    if let Some(site) = &site {
        caller.reach(site)?;
    }
    let status = query
        .get("status")
        .map(str::parse::<ReportStatus>)
        .transpose()
        .map_err(|e| ApiError::field(StatusCode::BAD_REQUEST, "status", e.to_string()))?;
    let query = reports::Query {
        status,
        site,
        // A token limited to sites sees those sites' reports.
        sites: caller.sites(),
        limit: query.limit(100, 10_000)?,
    };
    let found = crate::api::read(&plane, move |conn| reports::list(conn, &query)).await?;
    reply(StatusCode::OK, json!({ "reports": found }))
}

/// `GET /api/reports/{id}`.
pub async fn show(
    State(plane): Shared,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult {
    let report = reachable(&plane, &caller, &id).await?;
    reply(
        StatusCode::OK,
        serde_json::to_value(report).unwrap_or_default(),
    )
}

/// The report `text` names, if it exists and the caller reaches it; otherwise 404, the same
/// answer whichever it is.
async fn reachable(plane: &ControlPlane, caller: &Caller, text: &str) -> Result<Report, ApiError> {
    let id = report_id(text)?;
    let report = crate::api::read(plane, move |conn| reports::get(conn, id)).await?;
    report
        .filter(|r| caller.reaches(r.site.as_deref()))
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, no_report(text)))
}

fn report_id(text: &str) -> Result<i64, ApiError> {
    text.parse()
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, no_report(text)))
}

fn no_report(text: &str) -> String {
    format!("no report {}", model::shown(text))
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
pub async fn patch(
    State(plane): Shared,
    Extension(caller): Extension<Caller>,
    Path(text): Path<String>,
    request: Request,
) -> ApiResult {
    // Out of reach is 404 before the body is read, as for GET.
    let id = reachable(&plane, &caller, &text).await?.id;
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
    let token = caller.token;
    let updated = plane
        .change(move |ctx| {
            let reached =
                reports::get(ctx.tx, id)?.is_some_and(|r| token.covers(r.site.as_deref()));
            if !reached {
                return Err(ChangeError::NotFound(no_report(&text)));
            }
            let (before, after) =
                reports::update(ctx.tx, id, status, body.notes.as_deref(), ctx.now)?
                    .ok_or_else(|| ChangeError::NotFound(no_report(&text)))?;
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
