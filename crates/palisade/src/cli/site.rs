//! `palisade site`: list, show, create, update (replace), patch, delete, and switch a site's
//! state, through `/api/sites`.

use super::{ApiArgs, cell, clean_line, print_json, time_cell};
use crate::admin_client::segment;
use crate::site_file;
use crate::table::Table;
use anyhow::{Result, anyhow, bail};
use clap::Subcommand;
use serde_json::{Map, Value, json};
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum Action {
    /// Every site the token reaches: name, state, where it is defined, hosts, origins.
    List,
    /// One site, as the `[[site]]` table that would define it (`--json`: the API's object).
    Show {
        /// The site, by name.
        name: String,
    },
    /// Create a site from a file: JSON (one object) or TOML (one [[site]] table, or its keys);
    /// `-` reads standard input.
    Create {
        /// The file with the site: JSON or TOML, `-` for standard input.
        #[arg(short, long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Replace a site with the one in a file (what it does not say goes back to defaults).
    Update {
        /// The site, by name.
        name: String,
        /// The file with the whole site: JSON or TOML, `-` for standard input.
        #[arg(short, long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Change some fields: `--set cache.ttl=5m --set state=paused` (a value is read as JSON
    /// when it is JSON, else as a string; `null` removes the key), or an RFC 7396 merge patch
    /// with `--json-patch '{"cache": {"ttl": "5m"}}'`.
    Patch {
        /// The site, by name.
        name: String,
        /// A field to set: dotted keys reach into tables (`cache.ttl=5m`); repeatable.
        #[arg(
            long = "set",
            value_name = "KEY=VALUE",
            required_unless_present = "json_patch"
        )]
        sets: Vec<String>,
        /// An RFC 7396 merge patch as a JSON object, instead of --set.
        #[arg(long, value_name = "JSON", conflicts_with = "sets")]
        json_patch: Option<String>,
    },
    /// Delete a site the API manages (a file's site is changed in its file).
    Delete {
        /// The site, by name.
        name: String,
    },
    /// Switch a site between active, under_attack (challenge every visitor) and paused
    /// (plain proxy): any site, a file's or the --origin flag's included (the store keeps
    /// the state over the file's until it is switched back). Suspension is `palisade suspend`.
    State {
        /// The site, by name (`palisade site list`; the --origin site is `default`).
        name: String,
        /// The state to switch to.
        state: SiteState,
        /// Why, for the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
}

/// The states an operator switches a site to (`suspended` has its own commands).
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
#[value(rename_all = "snake_case")]
pub enum SiteState {
    Active,
    UnderAttack,
    Paused,
}

impl SiteState {
    fn as_str(self) -> &'static str {
        match self {
            SiteState::Active => "active",
            SiteState::UnderAttack => "under_attack",
            SiteState::Paused => "paused",
        }
    }
}

pub fn run(api: &ApiArgs, action: Action) -> Result<()> {
    let client = api.client()?;
    let path = |name: &str| format!("/api/sites/{}", segment(name));
    let (answer, said) = match action {
        Action::List => {
            let answer = client.all_sites()?;
            if !api.json {
                print!("{}", sites_table(&answer));
            }
            (answer, None)
        }
        Action::Show { name } => {
            let answer = client.get(&path(&name))?;
            if !api.json {
                print!("{}", show(&answer)?);
            }
            (answer, None)
        }
        Action::Create { file } => {
            let document = site_file::read(&file)?;
            let answer = client.post("/api/sites", &Value::Object(document))?;
            let name = cell(answer.get("name"));
            (answer, Some(format!("created site {name}")))
        }
        Action::Update { name, file } => {
            let mut document = site_file::read(&file)?;
            document
                .entry("name")
                .or_insert_with(|| Value::from(name.clone()));
            let answer = client.put(&path(&name), &Value::Object(document))?;
            (answer, Some(format!("replaced site {name}")))
        }
        Action::Patch {
            name,
            sets,
            json_patch,
        } => {
            let patch = match json_patch {
                Some(text) => match serde_json::from_str(&text) {
                    Ok(Value::Object(patch)) => patch,
                    Ok(_) => bail!("--json-patch takes a JSON object"),
                    Err(e) => bail!("--json-patch is not JSON: {e}"),
                },
                None => patch_from_sets(&sets).map_err(|e| anyhow!(e))?,
            };
            let answer = client.patch(&path(&name), &Value::Object(patch))?;
            (answer, Some(format!("updated site {name}")))
        }
        Action::Delete { name } => {
            let answer = client.delete(&path(&name))?;
            (answer, Some(format!("deleted site {name}")))
        }
        Action::State {
            name,
            state,
            reason,
        } => {
            let mut body = json!({ "state": state.as_str() });
            if let Some(reason) = reason {
                body["reason"] = Value::from(reason);
            }
            let answer = client.put(&format!("{}/state", path(&name)), &body)?;
            let now = cell(answer.get("state"));
            (answer, Some(format!("site {name} is {now}")))
        }
    };
    if api.json {
        print_json(&answer);
    } else if let Some(said) = said {
        println!("{said}");
    }
    Ok(())
}

/// `site list`'s table.
fn sites_table(answer: &Value) -> Table {
    let mut table = Table::new(&["NAME", "STATE", "SOURCE", "HOSTS", "ORIGINS", "UPDATED"]);
    for site in answer["sites"].as_array().into_iter().flatten() {
        table.row([
            cell(site.get("name")),
            cell(site.get("state")),
            cell(site.get("source")),
            cell(site.get("hosts")),
            origins(site.get("origins")),
            time_cell(site.get("updated_at")),
        ]);
    }
    table
}

/// Origins are URLs, or tables with a `url` and a `weight`.
fn origins(value: Option<&Value>) -> String {
    let list = value.and_then(Value::as_array).into_iter().flatten();
    list.map(|origin| match origin {
        Value::Object(o) => match o.get("weight") {
            Some(weight) => format!("{} (weight {weight})", cell(o.get("url"))),
            None => cell(o.get("url")),
        },
        other => cell(Some(other)),
    })
    .collect::<Vec<_>>()
    .join(",")
}

/// `site show`: the read-only facts as comments, then the site as the `[[site]]` table that
/// would define it in a file.
fn show(site: &Value) -> Result<String> {
    let mut out = format!(
        "# site {} (source: {}, created {}, updated {})\n",
        cell(site.get("name")),
        cell(site.get("source")),
        time_cell(site.get("created_at")),
        time_cell(site.get("updated_at")),
    );
    if let Some(switched) = site.get("operator_state").filter(|s| !s.is_null()) {
        out.push_str(&format!(
            "# STATE {} since {} by {} (configured: {}; `site state` switches back)\n",
            cell(switched.get("state")),
            time_cell(switched.get("at")),
            cell(switched.get("actor")),
            cell(switched.get("configured")),
        ));
    }
    if let Some(suspension) = site.get("suspension").filter(|s| !s.is_null()) {
        out.push_str(&format!(
            "# SUSPENDED {} by {}{}: {}\n",
            time_cell(suspension.get("at")),
            cell(suspension.get("actor")),
            if suspension["legal"] == Value::Bool(true) {
                " (legal demand: 451)"
            } else {
                ""
            },
            clean_line(&cell(suspension.get("reason"))),
        ));
        if let Some(reports) = suspension
            .get("reports")
            .filter(|r| r.as_array().is_some_and(|a| !a.is_empty()))
        {
            out.push_str(&format!("# evidence: reports {}\n", cell(Some(reports))));
        }
    }
    let mut document = site.as_object().cloned().unwrap_or_default();
    site_file::without_view_keys(&mut document);
    let as_toml = |value: Value| {
        toml::Value::try_from(value)
            .map_err(|e| anyhow!("the site cannot be shown as TOML ({e}): use --json"))
    };
    // The keys that say what a site is come first, as a person writes them; the rest follow
    // in the serializer's order.
    let mut text = String::from("[[site]]\n");
    for key in ["name", "hosts", "origins"] {
        if let Some(value) = document.remove(key) {
            text.push_str(&format!("{key} = {}\n", as_toml(value)?));
        }
    }
    let mut root = toml::Table::new();
    root.insert(
        "site".into(),
        toml::Value::Array(vec![as_toml(Value::Object(document))?]),
    );
    let rest = toml::to_string(&root)
        .map_err(|e| anyhow!("the site cannot be shown as TOML ({e}): use --json"))?;
    text.push_str(rest.strip_prefix("[[site]]\n").unwrap_or(&rest));
    out.push_str(&super::clean_text(&text));
    Ok(out)
}

/// A merge patch from `--set KEY=VALUE` flags: dotted keys reach into tables
/// (`cache.ttl=5m` is `{"cache": {"ttl": "5m"}}`); a value is JSON when it parses as JSON
/// (`1024`, `true`, `null`, `["a", "b"]`, `"quoted"`) and a string otherwise (`5m`, `paused`).
pub fn patch_from_sets(sets: &[String]) -> Result<Map<String, Value>, String> {
    let mut patch = Map::new();
    for set in sets {
        let Some((key, text)) = set.split_once('=') else {
            return Err(format!("--set {set:?}: write KEY=VALUE"));
        };
        let key = key.trim();
        if key.is_empty() || key.split('.').any(|part| part.trim().is_empty()) {
            return Err(format!("--set {set:?}: the key is empty"));
        }
        if key.contains(['[', ']']) {
            return Err(format!(
                "--set {key}: a merge patch replaces a list whole; set the list \
                 (--set 'rule=[...]') or use --json-patch"
            ));
        }
        let value = serde_json::from_str::<Value>(text).unwrap_or_else(|_| Value::from(text));
        let mut parts: Vec<&str> = key.split('.').map(str::trim).collect();
        let last = parts.pop().unwrap_or_default();
        let mut table = &mut patch;
        for part in parts {
            let slot = table
                .entry(part)
                .or_insert_with(|| Value::Object(Map::new()));
            table = match slot {
                Value::Object(inner) => inner,
                _ => return Err(format!("--set {key}: {part} is set to a value already")),
            };
        }
        if table.contains_key(last) {
            return Err(format!("--set {key}: set twice"));
        }
        table.insert(last.to_string(), value);
    }
    Ok(patch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sets(flags: &[&str]) -> Result<Value, String> {
        let flags: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
        patch_from_sets(&flags).map(Value::Object)
    }

    #[test]
    fn set_flags_make_a_merge_patch() {
        assert_eq!(
            sets(&[
                "cache.ttl=5m",
                "state=paused",
                "max_body_bytes=1024",
                "cache.enabled=false",
                r#"hosts=["a.example","b.example"]"#,
                "tls=null",
                r#"name="123""#,
                "shield.lists.allow=",
            ])
            .unwrap(),
            json!({
                "cache": {"ttl": "5m", "enabled": false},
                "state": "paused",
                "max_body_bytes": 1024,
                "hosts": ["a.example", "b.example"],
                "tls": null,
                "name": "123",
                "shield": {"lists": {"allow": ""}},
            })
        );
    }

    #[test]
    fn a_value_may_hold_an_equals_sign() {
        assert_eq!(
            sets(&["rule_expr=a == b"]).unwrap(),
            json!({"rule_expr": "a == b"})
        );
    }

    #[test]
    fn unclear_set_flags_are_refused() {
        for bad in [
            &["ttl"][..],
            &["=x"],
            &["cache..ttl=1"],
            &["rule[0].action=block"],
            &["cache=1", "cache.ttl=5m"],
            &["state=paused", "state=active"],
        ] {
            assert!(sets(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_list_shows_one_row_per_site() {
        let answer = json!({"sites": [
            {"name": "blog", "state": "active", "source": "file", "hosts": ["blog.example"], "origins": ["http://127.0.0.1:1"]},
            {"name": "shop", "state": "suspended", "source": "api", "hosts": ["shop.example", "www.shop.example"],
             "origins": [{"url": "http://127.0.0.1:2", "weight": 3}], "updated_at": 0},
        ]});
        assert_eq!(
            sites_table(&answer).to_string(),
            "NAME  STATE      SOURCE  HOSTS                          ORIGINS                        UPDATED\n\
             blog  active     file    blog.example                   http://127.0.0.1:1             -\n\
             shop  suspended  api     shop.example,www.shop.example  http://127.0.0.1:2 (weight 3)  1970-01-01T00:00:00Z\n"
        );
    }

    #[test]
    fn show_says_a_switched_state_and_prints_the_files_own() {
        let site = json!({"name": "default", "hosts": ["*"], "origins": ["http://127.0.0.1:1"],
            "state": "under_attack", "source": "file",
            "operator_state": {"state": "under_attack", "actor": "tok_x", "at": 0, "configured": "active"}});
        let text = show(&site).unwrap();
        assert!(
            text.contains(
                "# STATE under_attack since 1970-01-01T00:00:00Z by tok_x (configured: active;"
            ),
            "{text}"
        );
        assert!(text.contains("state = \"active\""), "{text}");
        assert!(!text.contains("state = \"under_attack\""), "{text}");
    }

    #[test]
    fn show_prints_a_table_a_file_could_hold() {
        let site = json!({"name": "shop", "hosts": ["shop.example"], "origins": ["http://127.0.0.1:1"],
            "state": "suspended", "source": "api", "created_at": 0, "updated_at": 0,
            "suspension": {"reason": "phishing\x1b[2J", "legal": true, "reports": [4], "actor": "tok_x", "at": 0}});
        let text = show(&site).unwrap();
        assert!(
            text.starts_with("# site shop (source: api, created 1970-01-01T00:00:00Z"),
            "{text}"
        );
        assert!(
            text.contains(
                "# SUSPENDED 1970-01-01T00:00:00Z by tok_x (legal demand: 451): phishing?[2J\n"
            ),
            "{text}"
        );
        assert!(text.contains("# evidence: reports 4\n"), "{text}");
        assert!(
            text.contains("[[site]]\nname = \"shop\"\nhosts = [\"shop.example\"]\norigins = "),
            "{text}"
        );
        let toml_part: String = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        let document = site_file::parse(&toml_part, site_file::Format::Toml).unwrap();
        assert_eq!(
            Value::Object(document),
            json!({"name": "shop", "hosts": ["shop.example"], "origins": ["http://127.0.0.1:1"]})
        );
    }
}
