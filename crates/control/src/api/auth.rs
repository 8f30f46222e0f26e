//! Who is calling: `Authorization: Bearer TOKEN`, looked up by its hash; and what a caller
//! reaches.
//!
//! Refusals never repeat the site a caller asked for: to a token limited to some sites, a
//! name it sent and does not reach is still another customer's name.

use super::ApiError;
use crate::plane::ControlPlane;
use crate::store::tokens::{self, Scope, Token};
use axum::http::{HeaderMap, StatusCode, header};

/// A caller whose token is live.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The caller's token, as stored.
    pub token: Token,
}

impl Caller {
    /// 403 unless the token has `scope`, whatever sites it is limited to (the gate checks
    /// this for every operation, from the scope the OpenAPI document names).
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

    /// 403 unless the token reaches `site`.
    pub fn reach(&self, site: &str) -> Result<(), ApiError> {
        if self.token.covers(Some(site)) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "this token does not reach that site",
            ))
        }
    }

    /// 403 unless the token reaches every site (what shows them all at once: `/metrics`).
    pub fn reach_every_site(&self) -> Result<(), ApiError> {
        if self.token.covers(None) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "this token is limited to some sites; this shows every site",
            ))
        }
    }

    /// Whether the token reaches what belongs to `site`; `None` (a report taken on the
    /// operator's host name, about no site) only a token for every site reaches.
    pub fn reaches(&self, site: Option<&str>) -> bool {
        self.token.covers(site)
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
