//! `GET /api/audit?after=SEQ&target=site:blog&limit=N`: the audit log, newest first (oldest
//! first when paging forward with `after`). Read-only: no route changes or removes an entry.
//!
//! A token limited to sites sees the entries about its sites (`site:NAME` targets) only, and
//! asking for another site's (`target=site:other`) is 403, as `site=` is on reports and events.

use super::{ApiResult, Caller, Query, Shared, reply};
use crate::store::audit;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use serde_json::json;

pub async fn list(
    State(plane): Shared,
    Extension(caller): Extension<Caller>,
    Extension(query): Extension<Query>,
) -> ApiResult {
    let target = query.get("target").map(str::to_string);
    if let Some(site) = target.as_deref().and_then(|t| t.strip_prefix("site:")) {
        caller.reach(site)?;
    }
    let query = audit::Query {
        after: query.parsed::<i64>("after", "a sequence number")?,
        target,
        sites: caller.sites(),
        limit: query.limit(100, 10_000)?,
    };
    let entries = crate::api::read(&plane, move |conn| audit::list(conn, &query)).await?;
    reply(StatusCode::OK, json!({ "entries": entries }))
}
