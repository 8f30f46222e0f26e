//! Site files: what `palisade site create|update --file` reads. One site, as JSON (an object,
//! e.g. what `palisade site show --json` printed) or TOML (one `[[site]]` table as in
//! palisade.toml, or the table's keys bare). Either way it becomes the API's site document:
//! the fields of a `[[site]]` table.
//!
//! Certificates: `tls = { cert = "...", key = "..." }` names files on the machine the CLI runs
//! on, while the API never reads files a client names (the server may be elsewhere, and a
//! token must not be a way to read the server's disk). So the files are read here and sent as
//! `tls.cert_pem` / `tls.key_pem`, which the server stores in its data directory.

use anyhow::{Context, Result, anyhow};
use control::documents::{READ_ONLY_KEYS, documents_from_toml};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// How a site file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Toml,
}

impl Format {
    /// By the file's extension; without a known one, JSON if it starts with `{`.
    pub fn of(path: &Path, text: &str) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("json") => Format::Json,
            Some(ext) if ext.eq_ignore_ascii_case("toml") => Format::Toml,
            _ if text.trim_start().starts_with('{') => Format::Json,
            _ => Format::Toml,
        }
    }
}

/// Reads one site from `path` (`-`: standard input), its certificate files (if it names any)
/// read for upload.
pub fn read(path: &Path) -> Result<Map<String, Value>> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("cannot read standard input")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?
    };
    let mut document =
        parse(&text, Format::of(path, &text)).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    upload_tls(&mut document, base_dir(path))?;
    Ok(document)
}

/// The directory a file's relative paths start from, as in a configuration file.
pub fn base_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// One site document from a site file's text.
pub fn parse(text: &str, format: Format) -> Result<Map<String, Value>, String> {
    let mut document = match format {
        Format::Json => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(document)) => document,
            Ok(_) => return Err("a JSON site file holds one object: the site".into()),
            Err(e) => return Err(format!("not JSON: {e}")),
        },
        Format::Toml => {
            let mut tables = documents_from_toml(text).map_err(|e| e.to_string())?;
            match tables.len() {
                1 => tables.remove(0),
                0 => bare_table(text)?,
                n => {
                    return Err(format!(
                        "{n} [[site]] tables: this command takes one site (`palisade apply -f` \
                         syncs many)"
                    ));
                }
            }
        }
    };
    without_view_keys(&mut document);
    Ok(document)
}

/// A TOML text that is a site's keys without the `[[site]]` header.
fn bare_table(text: &str) -> Result<Map<String, Value>, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    if table.is_empty() || table.contains_key("server") || table.contains_key("shield") {
        return Err("no [[site]] table in the file".into());
    }
    match serde_json::to_value(&table) {
        Ok(Value::Object(document)) => Ok(document),
        Ok(_) => Err("no [[site]] table in the file".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Drops what the API adds when it shows a site (`source`, `operator_state`, `suspension`,
/// times), so the output of `site show --json` can be edited and sent back. A suspended site
/// is shown with `state = "suspended"`, which hides its own state and is not a state a client
/// may set: dropped too. A file site an operator switched shows the state it runs; its
/// document says what its file says.
pub fn without_view_keys(document: &mut Map<String, Value>) {
    let suspended = document.get("suspension").is_some_and(|s| !s.is_null());
    let configured = document
        .get("operator_state")
        .and_then(|switched| switched.get("configured"))
        .cloned();
    for key in READ_ONLY_KEYS {
        document.remove(key);
    }
    if let Some(configured) = configured {
        document.insert("state".into(), configured);
    }
    if suspended && document.get("state").and_then(Value::as_str) == Some("suspended") {
        document.remove("state");
    }
}

/// Replaces `tls = { cert, key }` file paths by the files' PEM text (`cert_pem`, `key_pem`),
/// relative paths taken from `base`. Paths the server itself stored (absolute, under
/// `certs/<site>/` in its data directory, as `site show` prints them) are sent back as they
/// are: the server keeps the certificate it has. Returns whether files were read.
pub fn upload_tls(document: &mut Map<String, Value>, base: &Path) -> Result<bool> {
    let name = document
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let Some(Value::Object(tls)) = document.get_mut("tls") else {
        // Absent, or not a table: the server says what is wrong with it.
        return Ok(false);
    };
    if tls.contains_key("cert_pem") || tls.contains_key("key_pem") {
        return Ok(false);
    }
    let path = |field: &str| tls.get(field).and_then(Value::as_str).map(PathBuf::from);
    let (Some(cert), Some(key)) = (path("cert"), path("key")) else {
        return Ok(false);
    };
    if stored_by_server(&cert, &name) && stored_by_server(&key, &name) {
        return Ok(false);
    }
    let read = |field: &str, path: &Path| -> Result<String> {
        let path = base.join(path);
        std::fs::read_to_string(&path)
            .with_context(|| format!("tls.{field}: cannot read {}", path.display()))
    };
    let cert_pem = read("cert", &cert)?;
    let key_pem = read("key", &key)?;
    tls.clear();
    tls.insert("cert_pem".into(), Value::from(cert_pem));
    tls.insert("key_pem".into(), Value::from(key_pem));
    Ok(true)
}

/// Whether `path` has the shape of a certificate the server stored for `site`:
/// `<data_dir>/certs/<site>/<file>`.
fn stored_by_server(path: &Path, site: &str) -> bool {
    let mut dirs = path.parent().into_iter().flat_map(Path::components).rev();
    path.is_absolute()
        && !site.is_empty()
        && dirs.next().is_some_and(|c| c.as_os_str() == site)
        && dirs.next().is_some_and(|c| c.as_os_str() == "certs")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn value(document: Map<String, Value>) -> Value {
        Value::Object(document)
    }

    #[test]
    fn a_site_table_and_a_bare_table_and_json_read_the_same() {
        let expected = json!({"name": "shop", "hosts": ["shop.example"], "origins": ["http://127.0.0.1:3000"], "cache": {"ttl": "5m"}});
        let table = "[server]\nlisten = []\n[[site]]\nname = \"shop\"\nhosts = [\"shop.example\"]\norigins = [\"http://127.0.0.1:3000\"]\n[site.cache]\nttl = \"5m\"\n";
        let bare = "name = \"shop\"\nhosts = [\"shop.example\"]\norigins = [\"http://127.0.0.1:3000\"]\ncache = { ttl = \"5m\" }\n";
        assert_eq!(value(parse(table, Format::Toml).unwrap()), expected);
        assert_eq!(value(parse(bare, Format::Toml).unwrap()), expected);
        assert_eq!(
            value(parse(&expected.to_string(), Format::Json).unwrap()),
            expected
        );
    }

    #[test]
    fn what_site_show_adds_is_dropped() {
        let shown = json!({
            "name": "shop", "hosts": ["shop.example"], "origins": ["http://127.0.0.1:3000"],
            "state": "suspended", "source": "api", "created_at": 1, "updated_at": 2,
            "suspension": {"reason": "phishing", "legal": false}
        });
        assert_eq!(
            value(parse(&shown.to_string(), Format::Json).unwrap()),
            json!({"name": "shop", "hosts": ["shop.example"], "origins": ["http://127.0.0.1:3000"]})
        );
        let paused = json!({"name": "a", "state": "paused", "source": "api"});
        assert_eq!(
            value(parse(&paused.to_string(), Format::Json).unwrap()),
            json!({"name": "a", "state": "paused"})
        );
    }

    #[test]
    fn files_that_are_not_one_site_are_refused() {
        let two = "[[site]]\nname = \"a\"\n[[site]]\nname = \"b\"\n";
        assert!(parse(two, Format::Toml).unwrap_err().contains("2 [[site]]"));
        assert!(parse("[server]\nlisten = []\n", Format::Toml).is_err());
        assert!(parse("", Format::Toml).is_err());
        assert!(parse("[1, 2]", Format::Json).is_err());
        assert!(
            parse("{", Format::Json)
                .unwrap_err()
                .starts_with("not JSON")
        );
    }

    #[test]
    fn the_format_follows_the_extension_then_the_text() {
        assert_eq!(Format::of(Path::new("a.json"), "name = 1"), Format::Json);
        assert_eq!(Format::of(Path::new("a.TOML"), "{}"), Format::Toml);
        assert_eq!(Format::of(Path::new("-"), "  {\"name\": 1}"), Format::Json);
        assert_eq!(Format::of(Path::new("site"), "name = \"a\""), Format::Toml);
    }

    #[test]
    fn certificate_files_are_read_for_upload_relative_to_the_site_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("certs")).unwrap();
        std::fs::write(
            dir.path().join("certs/shop.pem"),
            "-----BEGIN CERTIFICATE-----",
        )
        .unwrap();
        std::fs::write(dir.path().join("shop.key"), "-----BEGIN PRIVATE KEY-----").unwrap();
        let file = dir.path().join("shop.toml");
        std::fs::write(
            &file,
            "name = \"shop\"\nhosts = [\"shop.example\"]\norigins = [\"http://127.0.0.1:1\"]\ntls = { cert = \"certs/shop.pem\", key = \"shop.key\" }\n",
        )
        .unwrap();
        let document = read(&file).unwrap();
        assert_eq!(
            document["tls"],
            json!({"cert_pem": "-----BEGIN CERTIFICATE-----", "key_pem": "-----BEGIN PRIVATE KEY-----"})
        );

        let mut missing = parse(
            "name = \"shop\"\ntls = { cert = \"nope.pem\", key = \"shop.key\" }",
            Format::Toml,
        )
        .unwrap();
        let error = upload_tls(&mut missing, dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("tls.cert") && error.contains("nope.pem"),
            "{error}"
        );
    }

    #[test]
    fn certificates_the_server_stored_are_sent_back_as_they_are() {
        let shown = json!({"name": "shop", "tls": {"cert": "/var/lib/palisade/certs/shop/1-cert.pem", "key": "/var/lib/palisade/certs/shop/1-key.pem"}});
        let mut document = parse(&shown.to_string(), Format::Json).unwrap();
        assert!(!upload_tls(&mut document, Path::new("/nowhere")).unwrap());
        assert_eq!(document["tls"], shown["tls"]);
        let uploaded = json!({"name": "shop", "tls": {"cert_pem": "x", "key_pem": "y"}});
        let mut document = parse(&uploaded.to_string(), Format::Json).unwrap();
        assert!(!upload_tls(&mut document, Path::new("/nowhere")).unwrap());
        assert!(stored_by_server(Path::new("/d/certs/shop/c.pem"), "shop"));
        assert!(!stored_by_server(Path::new("/d/certs/blog/c.pem"), "shop"));
        assert!(!stored_by_server(Path::new("certs/shop/c.pem"), "shop"));
    }
}
