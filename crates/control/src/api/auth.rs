//! Who is calling: `Authorization: Bearer TOKEN`, looked up by its hash.

use super::ApiError;
use crate::plane::ControlPlane;
use crate::store::tokens::{self, Scope, Token};
use axum::http::{HeaderMap, StatusCode, header};

/// A caller whose token is live.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token: Token,
}

impl Caller {
    /// 403 unless the token has `scope` (and reaches `site`, when the route names one).
    pub fn require(&self, scope: Scope, site: Option<&str>) -> Result<(), ApiError> {
        if self.token.allows(scope, site) {
            return Ok(());
        }
        self.require_scope(scope)?;
        let message = match site {
            Some(site) => format!("this token does not reach site {site:?}"),
            None => "this token is limited to some sites; name one".to_string(),
        };
        Err(ApiError::new(StatusCode::FORBIDDEN, message))
    }

    /// 403 unless the token has `scope`, whatever sites it is limited to (listings filter
    /// by site afterwards).
    pub fn require_scope(&self, scope: Scope) -> Result<(), ApiError> {
        let scopes = &self.token.scopes;
        if scopes.contains(&Scope::Admin) || scopes.contains(&scope) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("this token lacks the `{scope}` scope"),
            ))
        }
    }

    /// The token's id, as the audit log names the actor.
    pub fn actor(&self) -> &str {
        &self.token.id
    }

    /// The sites a listing may show: `None` for every site.
    pub fn sites(&self) -> Option<Vec<String>> {
        self.token.sites.clone()
    }
}

/// The caller, or 401.
pub async fn caller(plane: &ControlPlane, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "send a token: Authorization: Bearer TOKEN",
        ));
    };
    let secret = value
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "the Authorization field must be `Bearer TOKEN`",
            )
        })?
        .to_string();
    let token = crate::api::read(plane, move |conn| tokens::authenticate(conn, &secret)).await?;
    match token {
        Some(token) => Ok(Caller { token }),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this token is unknown or revoked",
        )),
    }
}

/// The caller, if its token has `scope` and reaches `site`.
pub async fn authorize(
    plane: &ControlPlane,
    headers: &HeaderMap,
    scope: Scope,
    site: Option<&str>,
) -> Result<Caller, ApiError> {
    let caller = caller(plane, headers).await?;
    caller.require(scope, site)?;
    Ok(caller)
}
