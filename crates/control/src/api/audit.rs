//! `GET /api/audit?after=SEQ&target=site:blog&limit=N`: the audit log, newest first (oldest
//! first when paging forward with `after`). Read-only: no route changes or removes an entry.

use super::{ApiError, ApiResult, Shared, auth, limit, reply};
use crate::store::audit::{self, Query};
use crate::store::tokens::Scope;
use axum::extract::{Query as QueryString, Request, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    after: Option<i64>,
    target: Option<String>,
    limit: Option<usize>,
}

pub async fn list(
    State(plane): Shared,
    params: Result<QueryString<Params>, axum::extract::rejection::QueryRejection>,
    request: Request,
) -> ApiResult {
    let caller = auth::caller(&plane, request.headers()).await?;
    // A token limited to sites sees those sites' entries.
    caller.require_scope(Scope::Read)?;
    let QueryString(params) =
        params.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let query = Query {
        after: params.after,
        target: params.target,
        sites: caller.sites(),
        limit: limit(params.limit, 100, 10_000)?,
    };
    let entries = crate::api::read(&plane, move |conn| audit::list(conn, &query)).await?;
    reply(StatusCode::OK, json!({ "entries": entries }))
}
