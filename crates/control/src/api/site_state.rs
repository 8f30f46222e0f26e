//! `PUT /api/sites/{site}/state`: switch a site between `active`, `under_attack` and
//! `paused`, whatever defines it.
//!
//! Putting a site under attack or pausing it is an operator's action, not configuration: it
//! is taken where the operator is (the API, the CLI), recorded in the store and audited, as a
//! suspension is. For a site the API manages, the state is its document's `state`. For a file's
//! site (or the `--origin` flag's), the file stays the source of its configuration and the
//! store keeps the state it was switched to, which wins over the file's `state` until the
//! operator switches back to what the file says.

use super::{ApiError, ApiResult, Caller, Shared, read_json, reply};
use crate::plane::{ChangeContext, ChangeError};
use crate::store;
use crate::store::audit::Change;
use crate::store::sites::OperatorState;
use axum::extract::{Extension, Path, Request, State};
use axum::http::StatusCode;
use model::SiteState;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateBody {
    state: SiteState,
    #[serde(default)]
    reason: Option<String>,
}

/// Longest reason a state switch keeps (as a suspension's).
const MAX_REASON_CHARS: usize = 4000;

/// `PUT /api/sites/{site}/state` `{"state": "under_attack", "reason": "..."}`: the next
/// request sees the new state. Switching to the state a site already runs changes nothing
/// and records nothing.
pub async fn put(
    State(plane): Shared,
    Extension(caller): Extension<Caller>,
    Path(site): Path<String>,
    request: Request,
) -> ApiResult {
    caller.reach(&site)?;
    let body: StateBody = read_json(request.into_body()).await?;
    if body.state == SiteState::Suspended {
        return Err(ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "state",
            "a site is suspended with POST /api/sites/{site}/suspend (`palisade suspend`), which \
             records a reason",
        ));
    }
    let reason = body
        .reason
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty());
    if reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > MAX_REASON_CHARS)
    {
        return Err(ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "reason",
            format!("at most {MAX_REASON_CHARS} characters"),
        ));
    }
    let actor = caller.actor().to_string();
    let name = site.clone();
    let wanted = body.state;
    let switched = plane
        .change(move |ctx| {
            let before = switch(ctx, &name, wanted, &actor)?;
            if before == wanted {
                return Ok(false);
            }
            ctx.audit(Change {
                actor: &actor,
                action: "site.state",
                target: format!("site:{name}"),
                before: Some(json!({ "state": before })),
                after: Some(json!({ "state": wanted })),
                reason: reason.clone(),
            })?;
            Ok(true)
        })
        .await?;
    if switched {
        tracing::warn!(%site, state = wanted.as_str(), "site state switched");
    }
    reply(
        StatusCode::OK,
        super::sites::view(&plane, &site).await?.to_json(),
    )
}

/// Records `wanted` as `name`'s state inside the change; returns the state it ran before
/// (suspension aside: a suspended site keeps its suspension and resumes in `wanted`).
fn switch(
    ctx: &ChangeContext<'_>,
    name: &str,
    wanted: SiteState,
    actor: &str,
) -> Result<SiteState, ChangeError> {
    if let Some(site) = ctx.base.site(name) {
        let configured = site.state;
        let before = store::sites::operator_state(ctx.tx, name)?.map_or(configured, |s| s.state);
        if wanted == configured {
            // Back to what the file says: the file decides again, edits to it included.
            store::sites::clear_operator_state(ctx.tx, name)?;
        } else if wanted != before {
            store::sites::set_operator_state(
                ctx.tx,
                &OperatorState {
                    site: name.to_string(),
                    state: wanted,
                    actor: actor.to_string(),
                    at: ctx.now,
                },
            )?;
        }
        return Ok(before);
    }
    let Some(stored) = store::sites::get(ctx.tx, name)? else {
        return Err(ChangeError::NotFound(format!(
            "no site named {}",
            model::shown(name)
        )));
    };
    let before = match stored.document.get("state").and_then(Value::as_str) {
        Some("under_attack") => SiteState::UnderAttack,
        Some("paused") => SiteState::Paused,
        _ => SiteState::Active,
    };
    if wanted != before {
        let mut document = stored.document;
        // No `state` is `active`: the document stays as a person would write it.
        if wanted == SiteState::Active {
            document.remove("state");
        } else {
            document.insert("state".into(), Value::from(wanted.as_str()));
        }
        store::sites::replace(ctx.tx, name, &document, ctx.now)?;
    }
    Ok(before)
}
