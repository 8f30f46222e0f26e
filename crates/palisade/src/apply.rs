//! `palisade apply -f sites.toml [--dry-run]`: the TOML way to manage the store's sites.
//! The file's `[[site]]` tables become the store's sites: missing ones are created, changed
//! ones replaced, and sites the API manages that the file does not name are deleted. The plan
//! is printed as a diff first; `--dry-run` stops there.
//!
//! The plan is a pure function of the file's documents and the server's sites ([`plan`]), so
//! what apply would do is tested without a server. Sites the server's own `--config` file
//! defines are not the store's: naming one in the applied file is an error, and apply never
//! deletes one.
//!
//! Steps run deletes first, then replacements, then creations, so a host moving from a site
//! that goes (or changes) to one that comes is free when it is claimed. The API has no
//! transaction across requests: a step that fails stops apply, and the steps before it stay
//! done (it says which). Running apply again finishes the job.

use crate::cli::{ApiArgs, print_json};
use crate::site_file;
use anyhow::{Context, Result, anyhow};
use control::documents::{READ_ONLY_KEYS, documents_from_toml};
use serde_json::{Map, Value, json};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::Path;

/// The sites a file describes.
#[derive(Debug)]
pub struct SiteFile {
    pub documents: Vec<Map<String, Value>>,
    /// Top-level tables other than `[[site]]` (`server`, `shield`): not the store's business.
    pub ignored: Vec<String>,
}

/// Reads and checks a sites file: it must be a valid configuration file (the edge's own
/// checks, so apply never sends a site the server would refuse for a reason the file shows).
pub fn read_sites(path: &Path) -> Result<SiteFile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    model::Config::from_toml_str(&path.display().to_string(), &text).map_err(|e| anyhow!("{e}"))?;
    let documents = documents_from_toml(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let root: toml::Table =
        toml::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let ignored = root.keys().filter(|k| *k != "site").cloned().collect();
    Ok(SiteFile { documents, ignored })
}

/// One step of the plan, printed as a line of the diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `- name`: the store has it, the file does not.
    Delete { name: String },
    /// `~ name`: both have it and it differs (`changed`: top-level keys), or the file names
    /// certificate files, which are uploaded every time (the server keeps only its copies,
    /// so there is nothing to compare them with).
    Replace {
        name: String,
        changed: Vec<String>,
        tls_upload: bool,
    },
    /// `+ name`: the file has it, the store does not.
    Create { name: String },
    /// `= name`: the same on both sides.
    Keep { name: String },
}

impl Step {
    pub fn name(&self) -> &str {
        match self {
            Step::Delete { name }
            | Step::Replace { name, .. }
            | Step::Create { name }
            | Step::Keep { name } => name,
        }
    }

    fn action(&self) -> &'static str {
        match self {
            Step::Delete { .. } => "delete",
            Step::Replace { .. } => "replace",
            Step::Create { .. } => "create",
            Step::Keep { .. } => "keep",
        }
    }

    fn to_json(&self) -> Value {
        let mut value = json!({ "action": self.action(), "site": self.name() });
        if let Step::Replace {
            changed,
            tls_upload,
            ..
        } = self
        {
            value["changed"] = json!(changed);
            value["tls_upload"] = json!(tls_upload);
        }
        value
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Delete { name } => write!(f, "- {name}"),
            Step::Create { name } => write!(f, "+ {name}"),
            Step::Keep { name } => write!(f, "= {name} (unchanged)"),
            Step::Replace {
                name,
                changed,
                tls_upload,
            } => {
                let mut notes = Vec::new();
                if !changed.is_empty() {
                    notes.push(format!("changed: {}", changed.join(", ")));
                }
                if *tls_upload {
                    notes.push("tls: certificate files uploaded again, as on every apply".into());
                }
                write!(f, "~ {name} ({})", notes.join("; "))
            }
        }
    }
}

/// What syncing the store to `file` takes, given the server's `sites` (as `GET /api/sites`
/// lists them). An error names the file's sites that the server's `--config` file defines.
pub fn plan(file: &[Map<String, Value>], server: &[Value]) -> Result<Vec<Step>, String> {
    let name_of =
        |doc: &Map<String, Value>| doc.get("name").and_then(Value::as_str).map(str::to_string);
    let on_server: HashMap<String, &Value> = server
        .iter()
        .filter_map(|site| Some((site.get("name")?.as_str()?.to_string(), site)))
        .collect();
    let mut in_file = BTreeSet::new();
    let mut from_config = Vec::new();
    let (mut replaces, mut creates, mut keeps) = (Vec::new(), Vec::new(), Vec::new());
    for doc in file {
        let name = name_of(doc).ok_or("every [[site]] needs a name")?;
        in_file.insert(name.clone());
        let Some(site) = on_server.get(&name) else {
            creates.push(Step::Create { name });
            continue;
        };
        if site.get("source").and_then(Value::as_str) != Some("api") {
            from_config.push(name);
            continue;
        }
        match difference(doc, site) {
            (changed, tls_upload) if changed.is_empty() && !tls_upload => {
                keeps.push(Step::Keep { name })
            }
            (changed, tls_upload) => replaces.push(Step::Replace {
                name,
                changed,
                tls_upload,
            }),
        }
    }
    if !from_config.is_empty() {
        return Err(format!(
            "{} defined in the server's --config file, not in its store: apply manages only the \
             store's sites; take {} out of one of the two files",
            match from_config.as_slice() {
                [one] => format!("site {one:?} is"),
                many => format!("sites {many:?} are"),
            },
            if from_config.len() == 1 { "it" } else { "them" }
        ));
    }
    let deletes = server.iter().filter_map(|site| {
        let name = site.get("name")?.as_str()?;
        let managed = site.get("source").and_then(Value::as_str) == Some("api");
        (managed && !in_file.contains(name)).then(|| Step::Delete {
            name: name.to_string(),
        })
    });
    Ok(deletes
        .chain(replaces)
        .chain(creates)
        .chain(keeps)
        .collect())
}

/// The top-level keys in which a file's document and the server's site differ, and whether
/// the file's certificate files are to be uploaded.
fn difference(file: &Map<String, Value>, server: &Value) -> (Vec<String>, bool) {
    let suspended = server.get("suspension").is_some_and(|s| !s.is_null());
    let server = server.as_object().cloned().unwrap_or_default();
    // Uploaded files come back as the server's own paths: equal only when the file says so.
    let tls_upload = file.contains_key("tls") && file.get("tls") != server.get("tls");
    let (file, server) = (comparable(file, suspended), comparable(&server, suspended));
    let keys: BTreeSet<&String> = file.keys().chain(server.keys()).collect();
    let changed = keys
        .into_iter()
        .filter(|key| file.get(*key) != server.get(*key))
        .filter(|key| !(tls_upload && *key == "tls"))
        .cloned()
        .collect();
    (changed, tls_upload)
}

/// A document as compared: without what the API adds, and `state = "active"` (the default,
/// which the API always shows) the same as no state. A suspended site shows `suspended`
/// instead of its own state, so its state cannot be compared and is left out.
fn comparable(document: &Map<String, Value>, suspended: bool) -> Map<String, Value> {
    let mut document = document.clone();
    for key in READ_ONLY_KEYS {
        document.remove(key);
    }
    if suspended || document.get("state").and_then(Value::as_str) == Some("active") {
        document.remove("state");
    }
    document
}

/// `palisade apply`.
pub fn run(api: &ApiArgs, path: &Path, dry_run: bool) -> Result<()> {
    let file = read_sites(path)?;
    for table in &file.ignored {
        eprintln!(
            "note: [{table}] in {} is ignored: apply syncs [[site]] tables only",
            path.display()
        );
    }
    let client = api.client()?;
    let answer = client.all_sites()?;
    let server = answer["sites"].as_array().map_or(&[][..], Vec::as_slice);
    let steps = plan(&file.documents, server).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    // Certificates are read before the first change: a file that cannot be read stops apply
    // while nothing has happened yet.
    let mut bodies = HashMap::new();
    for document in &file.documents {
        let mut document = document.clone();
        site_file::upload_tls(&mut document, site_file::base_dir(path))?;
        let name = document
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        bodies.insert(name, Value::Object(document));
    }
    let count = |action: &str| steps.iter().filter(|s| s.action() == action).count();
    if !api.json {
        for step in &steps {
            println!("{step}");
        }
        println!(
            "plan: {} to create, {} to replace, {} to delete, {} unchanged",
            count("create"),
            count("replace"),
            count("delete"),
            count("keep")
        );
    }
    let mut done = 0;
    if !dry_run {
        for step in &steps {
            let site = format!("/api/sites/{}", crate::admin_client::segment(step.name()));
            let body = || bodies.get(step.name()).cloned().unwrap_or(Value::Null);
            let result = match step {
                Step::Delete { .. } => client.delete(&site),
                Step::Replace { .. } => client.put(&site, &body()),
                Step::Create { .. } => client.post("/api/sites", &body()),
                Step::Keep { .. } => continue,
            };
            result.with_context(|| {
                format!("apply stopped at `{step}`, after {done} change(s) made before it")
            })?;
            done += 1;
        }
    }
    if api.json {
        print_json(&json!({
            "file": path.display().to_string(),
            "dry_run": dry_run,
            "plan": steps.iter().map(Step::to_json).collect::<Vec<_>>(),
            "applied": done,
        }));
    } else if dry_run {
        println!("dry run: nothing changed");
    } else {
        println!("applied: {done} change{}", if done == 1 { "" } else { "s" });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    fn api_site(value: Value) -> Value {
        let mut site = value;
        site["source"] = json!("api");
        site["created_at"] = json!(1);
        site["updated_at"] = json!(2);
        if site.get("state").is_none() {
            site["state"] = json!("active");
        }
        site
    }

    #[test]
    fn the_plan_creates_replaces_deletes_and_keeps() {
        let file = [
            doc(
                json!({"name": "new", "hosts": ["new.example"], "origins": ["http://127.0.0.1:1"]}),
            ),
            doc(
                json!({"name": "same", "hosts": ["same.example"], "origins": ["http://127.0.0.1:1"]}),
            ),
            doc(
                json!({"name": "moved", "hosts": ["moved.example"], "origins": ["http://127.0.0.1:2"], "cache": {"ttl": "5m"}}),
            ),
        ];
        let server = [
            api_site(
                json!({"name": "gone", "hosts": ["gone.example"], "origins": ["http://127.0.0.1:1"]}),
            ),
            api_site(
                json!({"name": "same", "hosts": ["same.example"], "origins": ["http://127.0.0.1:1"]}),
            ),
            api_site(
                json!({"name": "moved", "hosts": ["moved.example"], "origins": ["http://127.0.0.1:1"], "max_body_bytes": 5}),
            ),
            json!({"name": "blog", "source": "file", "hosts": ["blog.example"], "state": "active"}),
        ];
        let steps = plan(&file, &server).unwrap();
        assert_eq!(
            steps,
            vec![
                Step::Delete {
                    name: "gone".into()
                },
                Step::Replace {
                    name: "moved".into(),
                    changed: vec!["cache".into(), "max_body_bytes".into(), "origins".into()],
                    tls_upload: false
                },
                Step::Create { name: "new".into() },
                Step::Keep {
                    name: "same".into()
                },
            ]
        );
        let lines: Vec<String> = steps.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "- gone",
                "~ moved (changed: cache, max_body_bytes, origins)",
                "+ new",
                "= same (unchanged)"
            ]
        );
    }

    #[test]
    fn the_state_the_api_shows_by_default_is_not_a_change() {
        let file = [
            doc(json!({"name": "a", "hosts": ["a.example"]})),
            doc(json!({"name": "b", "hosts": ["b.example"], "state": "active"})),
            doc(json!({"name": "c", "hosts": ["c.example"], "state": "paused"})),
        ];
        let server = [
            api_site(json!({"name": "a", "hosts": ["a.example"]})),
            api_site(json!({"name": "b", "hosts": ["b.example"]})),
            api_site(json!({"name": "c", "hosts": ["c.example"]})),
        ];
        let steps = plan(&file, &server).unwrap();
        assert_eq!(
            steps,
            vec![
                Step::Replace {
                    name: "c".into(),
                    changed: vec!["state".into()],
                    tls_upload: false
                },
                Step::Keep { name: "a".into() },
                Step::Keep { name: "b".into() },
            ]
        );
    }

    #[test]
    fn a_suspended_sites_hidden_state_is_not_compared() {
        let file = [doc(
            json!({"name": "a", "hosts": ["a.example"], "state": "paused"}),
        )];
        let mut suspended =
            api_site(json!({"name": "a", "hosts": ["a.example"], "state": "suspended"}));
        suspended["suspension"] = json!({"reason": "x"});
        assert_eq!(
            plan(&file, &[suspended]).unwrap(),
            vec![Step::Keep { name: "a".into() }]
        );
    }

    #[test]
    fn certificate_files_are_uploaded_every_time_and_said_so() {
        let file = [doc(
            json!({"name": "a", "hosts": ["a.example"], "tls": {"cert": "a.pem", "key": "a.key"}}),
        )];
        let server = [api_site(
            json!({"name": "a", "hosts": ["a.example"], "tls": {"cert": "/d/certs/a/1-cert.pem", "key": "/d/certs/a/1-key.pem"}}),
        )];
        let steps = plan(&file, &server).unwrap();
        assert_eq!(
            steps,
            vec![Step::Replace {
                name: "a".into(),
                changed: vec![],
                tls_upload: true
            }]
        );
        assert_eq!(
            steps[0].to_string(),
            "~ a (tls: certificate files uploaded again, as on every apply)"
        );
        // Dropping tls from the file is a change like any other.
        let plain = [doc(json!({"name": "a", "hosts": ["a.example"]}))];
        assert_eq!(
            plan(&plain, &server).unwrap(),
            vec![Step::Replace {
                name: "a".into(),
                changed: vec!["tls".into()],
                tls_upload: false
            }]
        );
    }

    #[test]
    fn a_site_of_the_servers_config_file_is_an_error_naming_it() {
        let file = [doc(json!({"name": "blog", "hosts": ["blog.example"]}))];
        let server = [json!({"name": "blog", "source": "file", "hosts": ["blog.example"]})];
        let error = plan(&file, &server).unwrap_err();
        assert!(
            error.contains("site \"blog\" is defined in the server's --config file"),
            "{error}"
        );
    }

    #[test]
    fn an_empty_file_deletes_every_api_site_and_no_file_site() {
        let server = [
            api_site(json!({"name": "x"})),
            json!({"name": "blog", "source": "file"}),
        ];
        assert_eq!(
            plan(&[], &server).unwrap(),
            vec![Step::Delete { name: "x".into() }]
        );
    }

    #[test]
    fn a_sites_file_is_checked_like_a_configuration_and_its_other_tables_noted() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("sites.toml");
        std::fs::write(
            &good,
            "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[[site]]\nname = \"a\"\nhosts = [\"a.example\"]\norigins = [\"http://127.0.0.1:1\"]\n",
        )
        .unwrap();
        let file = read_sites(&good).unwrap();
        assert_eq!(file.documents.len(), 1);
        assert_eq!(file.ignored, vec!["server".to_string()]);
        let bad = dir.path().join("bad.toml");
        std::fs::write(
            &bad,
            "[[site]]\nname = \"a\"\nhosts = [\"a.example\"]\norigins = [\"ftp://x\"]\n",
        )
        .unwrap();
        let error = read_sites(&bad).unwrap_err().to_string();
        assert!(
            error.contains("bad.toml") && error.contains("origins"),
            "{error}"
        );
    }
}
