//! `GET /api/openapi.json`: the API described in OpenAPI 3.1. Every route the router has is
//! here, and the black-box auth test walks this document, so a route added without an entry
//! (or without a token check) fails it.

use super::{ApiResult, Shared, auth, reply};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

pub async fn serve(State(plane): Shared, request: Request) -> ApiResult {
    auth::caller(&plane, request.headers()).await?;
    reply(StatusCode::OK, document())
}

fn op(summary: &str, scope: &str, body: Option<&str>, ok: &str) -> Value {
    let mut operation = json!({
        "summary": summary,
        "x-palisade-scope": scope,
        "security": [{"bearer": []}],
        "responses": {
            ok: {"description": "done", "content": {"application/json": {}}},
            "401": {"$ref": "#/components/responses/Unauthorized"},
            "403": {"$ref": "#/components/responses/Forbidden"},
        }
    });
    if let Some(schema) = body {
        operation["requestBody"] = json!({
            "required": true,
            "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}
        });
        operation["responses"]["422"] = json!({"$ref": "#/components/responses/Invalid"});
    }
    operation
}

fn path_param(name: &str) -> Value {
    json!([{"name": name, "in": "path", "required": true, "schema": {"type": "string"}}])
}

/// The document.
pub fn document() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Palisade admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Sites, suspensions, tokens, the audit log, abuse reports and analytics. \
                Every route needs `Authorization: Bearer TOKEN`; `x-palisade-scope` names the scope \
                it needs (`admin` has them all). Errors are `{\"error\": \"...\", \"field\": \"...\"}`."
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "Unauthorized": {"description": "no token, or an unknown or revoked one"},
                "Forbidden": {"description": "the token lacks the scope, or does not reach the site"},
                "Invalid": {"description": "the body is not valid; `field` names what is wrong"}
            },
            "schemas": {
                "Site": {
                    "type": "object",
                    "description": "The fields of a [[site]] table in palisade.toml (see docs/config.md). \
                        `tls` takes `cert_pem` and `key_pem` (PEM text) on upload. Read-only in answers: \
                        `source` (file | api), `suspension`, `created_at`, `updated_at`.",
                    "required": ["name", "hosts", "origins"],
                    "properties": {
                        "name": {"type": "string", "pattern": "^[a-z0-9_-]{1,63}$"},
                        "hosts": {"type": "array", "items": {"type": "string"}},
                        "origins": {"type": "array", "items": {}},
                        "tls": {"type": "object"},
                        "state": {"enum": ["active", "under_attack", "paused", "suspended"]},
                        "cache": {"type": "object"},
                        "shield": {"type": "object"},
                        "rule": {"type": "array", "items": {"type": "object"}},
                        "rate_limit": {"type": "array", "items": {"type": "object"}},
                        "challenge": {"type": "object"}
                    }
                },
                "SitePatch": {"type": "object", "description": "RFC 7396 merge patch over a Site; null removes a key."},
                "Suspend": {
                    "type": "object",
                    "required": ["reason"],
                    "properties": {
                        "reason": {"type": "string"},
                        "legal": {"type": "boolean", "default": false, "description": "451 instead of 403"},
                        "reports": {"type": "array", "items": {"type": "integer"}}
                    }
                },
                "Reinstate": {"type": "object", "properties": {"reason": {"type": "string"}}},
                "Purge": {
                    "type": "object",
                    "description": "Exactly one of url, prefix, host, tag, everything; `soft` marks stale.",
                    "properties": {
                        "url": {"type": "string"}, "prefix": {"type": "string"}, "host": {"type": "string"},
                        "tag": {"type": "string"}, "everything": {"type": "boolean"}, "soft": {"type": "boolean"}
                    }
                },
                "NewToken": {
                    "type": "object",
                    "required": ["name", "scopes"],
                    "properties": {
                        "name": {"type": "string"},
                        "scopes": {"type": "array", "items": {"enum": ["read", "edit", "purge", "suspend", "admin"]}},
                        "sites": {"type": "array", "items": {"type": "string"}}
                    }
                },
                "ReportPatch": {
                    "type": "object",
                    "properties": {
                        "status": {"enum": ["new", "reviewing", "actioned", "dismissed"]},
                        "notes": {"type": "string"}
                    }
                }
            }
        },
        "paths": {
            "/api/openapi.json": {"get": op("This document", "any", None, "200")},
            "/api/sites": {
                "get": op("Every site the token reaches", "read", None, "200"),
                "post": op("Create a site", "edit", Some("Site"), "201")
            },
            "/api/sites/{site}": {
                "parameters": path_param("site"),
                "get": op("One site", "read", None, "200"),
                "patch": op("Change a site (merge patch)", "edit", Some("SitePatch"), "200"),
                "put": op("Replace a site's document", "edit", Some("Site"), "200"),
                "delete": op("Delete a site", "edit", None, "200")
            },
            "/api/sites/{site}/suspend": {
                "parameters": path_param("site"),
                "post": op("Suspend: the site's hosts get a notice (451 if legal, else 403)", "suspend", Some("Suspend"), "200")
            },
            "/api/sites/{site}/reinstate": {
                "parameters": path_param("site"),
                "post": op("End a suspension", "suspend", Some("Reinstate"), "200")
            },
            "/api/sites/{site}/purge": {
                "parameters": path_param("site"),
                "post": op("Purge the site's cached responses", "purge", Some("Purge"), "200")
            },
            "/api/sites/{site}/analytics": {
                "parameters": [
                    {"name": "site", "in": "path", "required": true, "schema": {"type": "string"}},
                    {"name": "since", "in": "query", "schema": {"type": "string"},
                     "description": "unix seconds, or a duration back (90m, 24h); default 1h"}
                ],
                "get": op("Per-minute counters, totals, top paths and clients of the last hour", "read", None, "200")
            },
            "/api/audit": {
                "get": op("The audit log, newest first (`after` pages forward)", "read", None, "200")
            },
            "/api/tokens": {
                "get": op("Every token (never secrets)", "admin", None, "200"),
                "post": op("Create a token; the answer holds its secret, once", "admin", Some("NewToken"), "201")
            },
            "/api/tokens/{id}": {
                "parameters": path_param("id"),
                "delete": op("Revoke a token", "admin", None, "200")
            },
            "/api/reports": {
                "get": op("Abuse reports, urgent first", "read", None, "200")
            },
            "/api/reports/{id}": {
                "parameters": path_param("id"),
                "get": op("One abuse report", "read", None, "200"),
                "patch": op("Triage a report (status, notes)", "suspend", Some("ReportPatch"), "200")
            },
            "/api/events": {
                "get": op("Recent security events (site, limit, after)", "read", None, "200")
            }
        }
    })
}
