//! `GET /api/openapi.json`: the API described in OpenAPI 3.1. Every route the router has is
//! here, and it is more than a description: the gate reads each operation's scope
//! (`x-palisade-scope`) and query parameters from it, so what the document says is what the
//! API enforces, and a route without an entry answers 500 rather than go unchecked. The
//! black-box sweep walks it too (`control_site_boundaries`), so a route added later is swept.

use super::{ApiResult, reply};
use crate::store::tokens::Scope;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::LazyLock;

/// `GET /api/openapi.json`: any live token (the gate has checked it).
pub async fn serve() -> ApiResult {
    reply(StatusCode::OK, document().clone())
}

/// What the gate enforces for one operation, read from the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// The scope it needs; `None`: any live token.
    pub scope: Option<Scope>,
    /// The query parameters it declares; any other is refused.
    pub query: Vec<String>,
}

/// The operation at `path` (the route's template, `/api/sites/{site}`) for `method`. `HEAD`
/// is `GET`'s operation, as the router answers it.
pub fn operation(method: &Method, path: &str) -> Option<&'static Operation> {
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    OPERATIONS.get(&(method.as_str().to_string(), path.to_string()))
}

static OPERATIONS: LazyLock<HashMap<(String, String), Operation>> =
    LazyLock::new(|| operations(document()));

/// Every operation of `document`, keyed by method (upper case) and path template.
fn operations(document: &Value) -> HashMap<(String, String), Operation> {
    let mut found = HashMap::new();
    let paths = document["paths"].as_object().into_iter().flatten();
    for (path, item) in paths {
        let shared = item["parameters"].as_array().cloned().unwrap_or_default();
        for (method, operation) in item.as_object().into_iter().flatten() {
            let Some(scope) = operation["x-palisade-scope"].as_str() else {
                continue; // `parameters`
            };
            let parameters = shared
                .iter()
                .chain(operation["parameters"].as_array().into_iter().flatten());
            let query = parameters
                .filter(|p| p["in"] == "query")
                .filter_map(|p| p["name"].as_str().map(str::to_string))
                .collect();
            found.insert(
                (method.to_uppercase(), path.clone()),
                Operation {
                    // An unknown scope name needs every scope there is: admin.
                    scope: (scope != "any").then(|| scope.parse().unwrap_or(Scope::Admin)),
                    query,
                },
            );
        }
    }
    found
}

/// The document, built once.
pub fn document() -> &'static Value {
    static DOCUMENT: LazyLock<Value> = LazyLock::new(build);
    &DOCUMENT
}

fn op(summary: &str, scope: &str, body: Option<&str>, ok: &str) -> Value {
    let mut operation = json!({
        "summary": summary,
        "x-palisade-scope": scope,
        "security": [{"bearer": []}],
        "responses": {
            ok: {"description": "done", "content": {"application/json": {}}},
            "400": {"$ref": "#/components/responses/BadRequest"},
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

fn with_404(mut operation: Value) -> Value {
    operation["responses"]["404"] = json!({"$ref": "#/components/responses/NotFound"});
    operation
}

fn query_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": "string"}, "description": description})
}

/// A write: `?wait=applied` makes it answer when every connected edge of the cluster has
/// applied it (504 naming those that did not within 5 s).
fn write(operation: Value) -> Value {
    let mut operation = with_query(
        operation,
        &[query_param(
            "wait",
            "`applied`: answer once every connected edge of the cluster runs the change (the answer gains `edges_applied`); 504 naming the edges that did not within 5 s",
        )],
    );
    operation["responses"]["504"] = json!({"description": "edges named in `edges` did not apply the change in time; it is accepted and they will"});
    operation
}

/// `operation` with query `parameters`.
fn with_query(mut operation: Value, parameters: &[Value]) -> Value {
    operation["parameters"] = Value::Array(parameters.to_vec());
    operation
}

fn build() -> Value {
    let limit = query_param("limit", "at most this many (default 100, at most 10,000)");
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Palisade admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Sites, suspensions, tokens, the audit log, abuse reports and analytics. \
                Every route needs `Authorization: Bearer TOKEN`; `x-palisade-scope` names the scope \
                it needs (`admin` has them all). A token limited to sites reaches only those: a route \
                about another site answers 403, a report of another site (or of none) 404, and \
                listings hold its sites only. A query names each declared parameter at most once \
                (percent-encoded names included); anything else is 400. Errors are \
                `{\"error\": \"...\", \"field\": \"...\"}`."
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "BadRequest": {"description": "a bad body, or a query parameter given twice, undeclared or malformed"},
                "Unauthorized": {"description": "no token, or an unknown or revoked one"},
                "Forbidden": {"description": "the token lacks the scope, does not reach the site, or may not claim a host name"},
                "NotFound": {"description": "no such site, token or report; a report the token does not reach reads the same"},
                "Invalid": {"description": "the body is not valid; `field` names what is wrong"}
            },
            "schemas": {
                "Site": {
                    "type": "object",
                    "description": "The fields of a [[site]] table in palisade.toml (see docs/config.md). \
                        `tls` takes `cert_pem` and `key_pem` (PEM text) on upload. Read-only in answers: \
                        `source` (file | api), `operator_state`, `suspension`, `created_at`, `updated_at`.",
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
                "SiteState": {
                    "type": "object",
                    "required": ["state"],
                    "description": "For a file's site the store keeps this state over the file's `state` (shown as \
                        `operator_state`) until it is switched back to what the file says.",
                    "properties": {
                        "state": {"enum": ["active", "under_attack", "paused"]},
                        "reason": {"type": "string", "description": "kept in the audit log"}
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
                "get": with_query(
                    op("The sites the token reaches, a page at a time: `next`, when present, is the next page's `after`", "read", None, "200"),
                    &[
                        query_param("after", "sites after this one (the file's in file order, then the API's by name)"),
                        query_param("limit", "at most this many (default 1,000, at most 10,000)"),
                    ],
                ),
                "post": write(op("Create a site", "edit", Some("Site"), "201"))
            },
            "/api/sites/{site}": {
                "parameters": path_param("site"),
                "get": op("One site", "read", None, "200"),
                "patch": write(op("Change a site (merge patch)", "edit", Some("SitePatch"), "200")),
                "put": write(op("Replace a site's document", "edit", Some("Site"), "200")),
                "delete": write(op("Delete a site", "edit", None, "200"))
            },
            "/api/sites/{site}/state": {
                "parameters": path_param("site"),
                "put": write(with_404(op("Switch the site's state (any site, a file's included); audited", "edit", Some("SiteState"), "200")))
            },
            "/api/sites/{site}/suspend": {
                "parameters": path_param("site"),
                "post": write(op("Suspend: the site's hosts get a notice (451 if legal, else 403)", "suspend", Some("Suspend"), "200"))
            },
            "/api/sites/{site}/reinstate": {
                "parameters": path_param("site"),
                "post": write(op("End a suspension", "suspend", Some("Reinstate"), "200"))
            },
            "/api/sites/{site}/purge": {
                "parameters": path_param("site"),
                "post": write(op("Purge the site's cached responses (on every edge of a cluster)", "purge", Some("Purge"), "200"))
            },
            "/api/sites/{site}/analytics": {
                "parameters": [
                    {"name": "site", "in": "path", "required": true, "schema": {"type": "string"}},
                    {"name": "since", "in": "query", "schema": {"type": "string"},
                     "description": "unix seconds, or a duration back (90m, 24h); default 1h"}
                ],
                "get": op("Per-minute counters, totals, top paths and clients of the last hour", "read", None, "200")
            },
            "/api/sites/{site}/mitigations": {
                "parameters": path_param("site"),
                "get": with_404(op("Mitigations derived from attack signatures in force", "read", None, "200"))
            },
            "/api/sites/{site}/mitigations/{id}/dismiss": {
                "parameters": [
                    {"name": "site", "in": "path", "required": true, "schema": {"type": "string"}},
                    {"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}
                ],
                "post": with_404(op("End a mitigation now; not proposed again during this attack", "edit", None, "200"))
            },
            "/api/sites/{site}/mitigations/{id}/pin": {
                "parameters": [
                    {"name": "site", "in": "path", "required": true, "schema": {"type": "string"}},
                    {"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}
                ],
                "post": with_404(op("Keep a mitigation as a permanent rule of an API site; audited", "edit", None, "200"))
            },
            "/api/edges": {
                "get": op("Every node of the cluster: role, version, the configuration version it runs, lag, last heartbeat, requests per second, connected", "read", None, "200")
            },
            "/api/audit": {
                "get": with_query(
                    op("The audit log, newest first (`after` pages forward)", "read", None, "200"),
                    &[
                        query_param("after", "entries after this sequence number, oldest first"),
                        query_param("target", "only this target, e.g. site:blog"),
                        limit.clone(),
                    ],
                )
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
                "get": with_query(
                    op("Abuse reports, urgent first", "read", None, "200"),
                    &[
                        query_param("status", "new, reviewing, actioned or dismissed"),
                        query_param("site", "only this site's reports"),
                        limit.clone(),
                    ],
                )
            },
            "/api/reports/{id}": {
                "parameters": path_param("id"),
                "get": with_404(op("One abuse report", "read", None, "200")),
                "patch": with_404(op("Triage a report (status, notes)", "suspend", Some("ReportPatch"), "200"))
            },
            "/api/events": {
                "get": with_query(
                    op("Recent security events, newest first", "read", None, "200"),
                    &[
                        query_param("site", "only this site's events"),
                        limit,
                        query_param("after", "only events with a larger id"),
                    ],
                )
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_names_a_known_scope_or_any() {
        let document = document();
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let Some(scope) = operation["x-palisade-scope"].as_str() else {
                    continue;
                };
                assert!(
                    scope == "any" || scope.parse::<Scope>().is_ok(),
                    "{method} {path}: {scope}"
                );
            }
        }
    }

    #[test]
    fn the_gate_reads_scopes_and_query_parameters_from_the_document() {
        let events = operation(&Method::GET, "/api/events").unwrap();
        assert_eq!(events.scope, Some(Scope::Read));
        assert_eq!(events.query, ["site", "limit", "after"]);
        let analytics = operation(&Method::GET, "/api/sites/{site}/analytics").unwrap();
        assert_eq!(analytics.query, ["since"]);
        let tokens = operation(&Method::DELETE, "/api/tokens/{id}").unwrap();
        assert_eq!((tokens.scope, tokens.query.len()), (Some(Scope::Admin), 0));
        assert_eq!(
            operation(&Method::GET, "/api/openapi.json").unwrap().scope,
            None
        );
        assert_eq!(operation(&Method::PUT, "/api/events"), None);
        assert_eq!(
            operation(&Method::HEAD, "/api/events"),
            operation(&Method::GET, "/api/events")
        );
    }
}
