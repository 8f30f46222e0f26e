//! `/api/tokens`: list, create (the secret is in the answer, once) and revoke. `admin` only.

use super::{ApiError, ApiResult, Caller, Shared, read_json, reply};
use crate::plane::ChangeError;
use crate::store::audit::Change;
use crate::store::tokens::{self, NewToken, Scope, UnknownScope};
use axum::extract::{Extension, Path, Request, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

pub async fn list(State(plane): Shared) -> ApiResult {
    let all = crate::api::read(&plane, tokens::list).await?;
    reply(StatusCode::OK, json!({ "tokens": all }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    scopes: Vec<String>,
    #[serde(default)]
    sites: Option<Vec<String>>,
}

/// Checks what a new token asks for; errors name the field.
pub fn new_token(
    name: &str,
    scopes: &[String],
    sites: Option<Vec<String>>,
) -> Result<NewToken, ApiError> {
    let invalid = |field: &str, message: String| {
        ApiError::field(StatusCode::UNPROCESSABLE_ENTITY, field, message)
    };
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(invalid("name", "1 to 100 characters".into()));
    }
    if scopes.is_empty() {
        return Err(invalid(
            "scopes",
            "name at least one: read, edit, purge, suspend, admin".into(),
        ));
    }
    let mut parsed = Vec::new();
    for scope in scopes {
        let scope: Scope = scope
            .parse()
            .map_err(|e: UnknownScope| invalid("scopes", e.to_string()))?;
        if !parsed.contains(&scope) {
            parsed.push(scope);
        }
    }
    parsed.sort();
    if let Some(sites) = &sites {
        if sites.is_empty() {
            return Err(invalid(
                "sites",
                "leave it out for every site, or name at least one".into(),
            ));
        }
        if parsed.contains(&Scope::Admin) {
            return Err(invalid("sites", "an admin token reaches every site".into()));
        }
    }
    Ok(NewToken {
        name: name.to_string(),
        scopes: parsed,
        sites,
    })
}

/// `POST /api/tokens` `{"name": "...", "scopes": ["read"], "sites": ["blog"]}`: 201 with the
/// token and its `secret`, which is never shown again.
pub async fn create(
    State(plane): Shared,
    Extension(caller): Extension<Caller>,
    request: Request,
) -> ApiResult {
    let body: CreateBody = read_json(request.into_body()).await?;
    let new = new_token(&body.name, &body.scopes, body.sites)?;
    let secret = tokens::new_secret()?;
    let actor = caller.actor().to_string();
    let stored_secret = secret.clone();
    let token = plane
        .change(move |ctx| {
            let token = tokens::insert(ctx.tx, &new, &stored_secret, Some(&actor), ctx.now)?;
            ctx.audit(Change {
                actor: &actor,
                action: "token.create",
                target: format!("token:{}", token.id),
                before: None,
                after: Some(serde_json::to_value(&token).unwrap_or(Value::Null)),
                reason: None,
            })?;
            Ok(token)
        })
        .await?;
    let mut body = serde_json::to_value(&token).unwrap_or(Value::Null);
    body["secret"] = Value::from(secret);
    reply(StatusCode::CREATED, body)
}

/// `DELETE /api/tokens/{id}`: revoked from the next request on. The last live admin token
/// cannot go (nobody could make another).
pub async fn revoke(
    State(plane): Shared,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult {
    let actor = caller.actor().to_string();
    let target = id.clone();
    let token = plane
        .change(move |ctx| {
            let Some(token) = tokens::revoke(ctx.tx, &target, ctx.now)? else {
                return Err(ChangeError::NotFound(format!(
                    "no live token {}",
                    model::shown(&target)
                )));
            };
            let admins_left = tokens::list(ctx.tx)?
                .iter()
                .filter(|t| t.revoked_at.is_none() && t.scopes.contains(&Scope::Admin))
                .count();
            if admins_left == 0 {
                return Err(ChangeError::Conflict(
                    "that is the last admin token: make another before revoking it".into(),
                ));
            }
            ctx.audit(Change {
                actor: &actor,
                action: "token.revoke",
                target: format!("token:{target}"),
                before: None,
                after: Some(serde_json::to_value(&token).unwrap_or(Value::Null)),
                reason: None,
            })?;
            Ok(token)
        })
        .await?;
    reply(
        StatusCode::OK,
        serde_json::to_value(&token).unwrap_or(Value::Null),
    )
}
