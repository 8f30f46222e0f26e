//! Site documents: a site as JSON, with exactly the fields of its `[[site]]` table in TOML, so
//! a file and the API describe sites the same way. A document is checked by the very code that
//! checks the file (it becomes one `[[site]]` table and is parsed as one), so the two can never
//! disagree on what is valid.

use model::Site;
use serde_json::{Map, Value};
use std::fmt;

/// Keys the API adds to a site it shows, which are not part of the document: they are dropped
/// from what a client sends, so a document read, edited and sent back round-trips.
pub const READ_ONLY_KEYS: [&str; 5] = [
    "source",
    "operator_state",
    "suspension",
    "created_at",
    "updated_at",
];

/// A document that is not a valid site, naming the field (`origins[1]`, `cache.ttl`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// The field's path in the document (`origins[1]`, `cache.ttl`); empty for the whole.
    pub field: String,
    /// What is wrong with it; `error` in JSON.
    #[serde(rename = "error")]
    pub message: String,
}

impl FieldError {
    /// A refusal of `field` saying `message`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Checks a document and returns the site it describes.
pub fn parse_site(document: &Map<String, Value>) -> Result<Site, FieldError> {
    if let Some(field) = find_null(&Value::Object(document.clone()), String::new()) {
        return Err(FieldError::new(
            field,
            "null is not a value here: leave the key out for its default",
        ));
    }
    let table = toml::Value::try_from(Value::Object(document.clone()))
        .map_err(|e| FieldError::new("", format!("not a site document: {e}")))?;
    let mut root = toml::Table::new();
    root.insert("site".into(), toml::Value::Array(vec![table]));
    let text = toml::to_string(&root)
        .map_err(|e| FieldError::new("", format!("not a site document: {e}")))?;
    let mut config = model::Config::from_toml_str("site", &text).map_err(|e| {
        let field = e
            .key
            .strip_prefix("site[0]")
            .map(|rest| rest.trim_start_matches('.'))
            .unwrap_or(&e.key);
        FieldError::new(field, clean_message(&e.message))
    })?;
    match config.sites.pop() {
        Some(mut site) if config.sites.is_empty() => {
            // Lines of the TOML made above, which the client never saw.
            site.shield.lists.allow_files_line = None;
            site.shield.lists.deny_files_line = None;
            Ok(site)
        }
        _ => Err(FieldError::new("", "a document describes exactly one site")),
    }
}

/// The file's messages speak of TOML tables; a JSON client reads them the same way once the
/// `site[0].` that only the wrapping added is gone.
fn clean_message(message: &str) -> String {
    message.replace("site[0].", "").replace("in `site`", "")
}

/// Where the first `null` sits (TOML has none), as a field path.
fn find_null(value: &Value, path: String) -> Option<String> {
    match value {
        Value::Null => Some(path),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| find_null(item, format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(key, item)| {
            let path = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            find_null(item, path)
        }),
        _ => None,
    }
}

/// Why a TOML text's `[[site]]` tables cannot be read as documents.
#[derive(Debug, thiserror::Error)]
pub enum DocumentsError {
    /// The text is not TOML.
    #[error(transparent)]
    Toml(#[from] toml::de::Error),
    /// `site` is there but is not an array of tables.
    #[error("`site` must be an array of tables: [[site]]")]
    NotArray,
    /// An entry of the `site` array is not a table.
    #[error("every [[site]] must be a table")]
    NotTable,
    /// A site holds a value JSON cannot (a TOML date, say).
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// The `[[site]]` tables of a TOML text, as documents (a file's sites, `palisade apply`).
pub fn documents_from_toml(text: &str) -> Result<Vec<Map<String, Value>>, DocumentsError> {
    let root: toml::Table = toml::from_str(text)?;
    let Some(sites) = root.get("site") else {
        return Ok(Vec::new());
    };
    let toml::Value::Array(sites) = sites else {
        return Err(DocumentsError::NotArray);
    };
    sites
        .iter()
        .map(|site| match serde_json::to_value(site)? {
            Value::Object(map) => Ok(map),
            _ => Err(DocumentsError::NotTable),
        })
        .collect()
}

/// RFC 7396 JSON merge patch: `null` removes a key, objects merge, anything else replaces.
pub fn merge_patch(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(inner) => {
                let slot = target
                    .entry(key.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                if let Value::Object(slot) = slot {
                    merge_patch(slot, inner);
                }
            }
            other => {
                target.insert(key.clone(), other.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn a_document_is_checked_like_a_site_table() {
        let site = parse_site(&doc(json!({
            "name": "blog",
            "hosts": ["blog.example"],
            "origins": ["http://127.0.0.1:3000"],
            "state": "paused",
            "cache": {"ttl": "5m"},
            "rule": [{"id": "no-admin", "expr": "http.request.uri.path starts_with \"/admin\"", "action": "block"}],
            "rate_limit": [{"id": "api", "expr": "http.request.uri.path starts_with \"/api\"", "requests": 10, "period": "1m"}]
        })))
        .unwrap();
        assert_eq!(site.name, "blog");
        assert_eq!(site.state, model::SiteState::Paused);
        assert_eq!(site.cache.ttl, Some(std::time::Duration::from_secs(300)));
        assert_eq!(site.rules.len(), 1);
        assert_eq!(site.rate_limits.len(), 1);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                json!({"name": "Bad Name", "hosts": ["a.example"], "origins": ["http://127.0.0.1:1"]}),
                "name",
            ),
            (
                json!({"name": "a", "hosts": [], "origins": ["http://127.0.0.1:1"]}),
                "hosts",
            ),
            (
                json!({"name": "a", "hosts": ["a.example"], "origins": ["ftp://x"]}),
                "origins",
            ),
            (
                json!({"name": "a", "hosts": ["a.example"], "origins": ["http://127.0.0.1:1"], "cache": {"ttl": "soon"}}),
                "cache.ttl",
            ),
            (
                json!({"name": "a", "hosts": ["a.example"], "origins": ["http://127.0.0.1:1"], "cache": {"ttl": null}}),
                "cache.ttl",
            ),
            (
                json!({"name": "a", "hosts": ["a.example"], "origins": ["http://127.0.0.1:1"], "state": "suspended"}),
                "state",
            ),
        ];
        for (document, field) in cases {
            let error = parse_site(&doc(document.clone())).unwrap_err();
            assert!(
                error.field.starts_with(field) || error.message.contains(field),
                "{document}: {error:?} should name {field}"
            );
        }
        let unknown = parse_site(&doc(json!({"name": "a", "hosts": ["a.example"], "origins": ["http://127.0.0.1:1"], "colour": "red"}))).unwrap_err();
        assert!(unknown.to_string().contains("colour"), "{unknown}");
    }

    #[test]
    fn toml_tables_become_the_same_documents() {
        let docs = documents_from_toml(
            r#"
            [server]
            listen = ["127.0.0.1:8080"]
            [[site]]
            name = "blog"
            hosts = ["blog.example"]
            origins = ["http://127.0.0.1:3000"]
            [site.cache]
            ttl = "5m"
            "#,
        )
        .unwrap();
        assert_eq!(
            Value::Object(docs[0].clone()),
            json!({"name": "blog", "hosts": ["blog.example"], "origins": ["http://127.0.0.1:3000"], "cache": {"ttl": "5m"}})
        );
        assert_eq!(parse_site(&docs[0]).unwrap().name, "blog");
    }

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut target = doc(json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1]}));
        merge_patch(
            &mut target,
            &doc(json!({"a": null, "b": {"c": 9}, "e": [2], "f": "new"})),
        );
        assert_eq!(
            Value::Object(target),
            json!({"b": {"c": 9, "d": 3}, "e": [2], "f": "new"})
        );
    }
}
