//! `/api/sites/{site}/mitigations`: the temporary rules the edge derived from an attack's
//! signature (docs/shield.md, "Automatic attack mitigation"): list them, dismiss one, or pin
//! one as a permanent rule.

use super::{ApiError, ApiResult, Caller, Shared, reply};
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use serde_json::json;

/// `GET /api/sites/{site}/mitigations`: the mitigations in force, oldest first.
pub async fn list(
    State(plane): Shared,
    Extension(caller): Extension<Caller>,
    Path(site): Path<String>,
) -> ApiResult {
    caller.reach(&site)?;
    let mitigations = plane
        .edge
        .mitigations(&site)
        .ok_or_else(|| no_site(&site))?;
    reply(StatusCode::OK, json!({ "mitigations": mitigations }))
}

/// `POST /api/sites/{site}/mitigations/{id}/dismiss`: ends the mitigation now; it is not
/// proposed again while this attack lasts. 404 when it is not in force (the attack ended).
pub async fn dismiss(
    State(plane): Shared,
    Extension(caller): Extension<Caller>,
    Path((site, id)): Path<(String, String)>,
) -> ApiResult {
    caller.reach(&site)?;
    plane
        .edge
        .mitigations(&site)
        .ok_or_else(|| no_site(&site))?;
    let mitigation = plane
        .edge
        .dismiss_mitigation(&site, &id)
        .ok_or_else(|| no_mitigation(&id))?;
    tracing::warn!(%site, %id, actor = caller.actor(), "mitigation dismissed");
    reply(StatusCode::OK, json!({ "dismissed": mitigation }))
}

/// `POST /api/sites/{site}/mitigations/{id}/pin`: keeps the mitigation's rule as a permanent
/// `rule` of the site (id `pinned-<id>-<unix seconds>`, the same action), then ends the
/// temporary one. Only for a site the API manages: a file's site answers 409 with the rule to
/// add to the file.
pub async fn pin(
    State(plane): Shared,
    Extension(caller): Extension<Caller>,
    Path((site, id)): Path<(String, String)>,
) -> ApiResult {
    caller.reach(&site)?;
    let mitigations = plane
        .edge
        .mitigations(&site)
        .ok_or_else(|| no_site(&site))?;
    let mitigation = mitigations
        .iter()
        .find(|m| *m.id == *id)
        .ok_or_else(|| no_mitigation(&id))?;
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let rule = json!({
        "id": format!("pinned-{id}-{seconds}"),
        "expr": mitigation.rule.source(),
        "action": mitigation.action.as_str(),
    });
    if plane.base().has_site(&site) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "site {} is defined by the configuration file: add this rule to it:\n\
                 [[site.rule]]\nid = {}\nexpr = '''{}'''\naction = \"{}\"",
                model::shown(&site),
                rule["id"],
                mitigation.rule.source(),
                mitigation.action.as_str(),
            ),
        ));
    }
    let response =
        super::sites::append_rule(&plane, site.clone(), caller.token.clone(), rule).await?;
    plane.edge.dismiss_mitigation(&site, &id);
    tracing::warn!(%site, %id, actor = caller.actor(), "mitigation pinned as a rule");
    Ok(response)
}

fn no_site(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no site named {} runs on this edge", model::shown(name)),
    )
}

fn no_mitigation(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no mitigation {} is in force (it ends with the attack)",
            model::shown(id)
        ),
    )
}
