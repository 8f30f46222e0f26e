//! `palisade token`: list, create and revoke API tokens (`/api/tokens`, admin tokens only).

use super::{ApiArgs, cell, print_json, time_cell};
use crate::admin_client::segment;
use crate::table::Table;
use anyhow::Result;
use clap::Subcommand;
use serde_json::{Value, json};

#[derive(Subcommand, Debug)]
pub enum Action {
    /// Every token, live and revoked (never their secrets: only hashes are kept).
    List,
    /// Make a token; its secret is printed once.
    Create {
        /// What it is for, e.g. `ci-deploy`.
        #[arg(long)]
        name: String,
        /// What it may do: read, edit, purge, suspend, admin (repeatable).
        #[arg(long = "scope", value_name = "SCOPE", required = true)]
        scopes: Vec<String>,
        /// Limit it to this site (repeatable) [default: every site].
        #[arg(long = "site", value_name = "SITE")]
        sites: Vec<String>,
    },
    /// Revoke a token by its id (`tok_…`): refused from the next request on.
    Revoke {
        /// The token's id (`tok_…`, as `token list` shows it), not its secret.
        id: String,
    },
}

pub fn run(api: &ApiArgs, action: Action) -> Result<()> {
    let client = api.client()?;
    match action {
        Action::List => {
            let answer = client.get("/api/tokens")?;
            if api.json {
                print_json(&answer);
            } else {
                print!("{}", tokens_table(&answer));
            }
        }
        Action::Create {
            name,
            scopes,
            sites,
        } => {
            let mut body = json!({ "name": name, "scopes": scopes });
            if !sites.is_empty() {
                body["sites"] = json!(sites);
            }
            let answer = client.post("/api/tokens", &body)?;
            if api.json {
                print_json(&answer);
            } else {
                print!("{}", created(&answer));
            }
        }
        Action::Revoke { id } => {
            let answer = client.delete(&format!("/api/tokens/{}", segment(&id)))?;
            if api.json {
                print_json(&answer);
            } else {
                println!(
                    "revoked token {} ({})",
                    cell(answer.get("id")),
                    cell(answer.get("name"))
                );
            }
        }
    }
    Ok(())
}

fn sites_cell(token: &Value) -> String {
    match token.get("sites") {
        None | Some(Value::Null) => "all".to_string(),
        sites => cell(sites),
    }
}

fn tokens_table(answer: &Value) -> Table {
    let mut table = Table::new(&["ID", "NAME", "SCOPES", "SITES", "CREATED", "REVOKED"]);
    for token in answer["tokens"].as_array().into_iter().flatten() {
        table.row([
            cell(token.get("id")),
            cell(token.get("name")),
            cell(token.get("scopes")),
            sites_cell(token),
            time_cell(token.get("created_at")),
            time_cell(token.get("revoked_at")),
        ]);
    }
    table
}

/// The answer to `token create`: the secret on a line of its own, said to be shown once.
fn created(token: &Value) -> String {
    format!(
        "created token {} ({}): scopes {}, sites {}\n\
         \n\
         secret (shown this once; the server keeps only its hash):\n\
         \n\
         {}\n\
         \n\
         use it with --token, or export {}=...\n",
        cell(token.get("id")),
        cell(token.get("name")),
        cell(token.get("scopes")),
        sites_cell(token),
        cell(token.get("secret")),
        crate::admin_client::TOKEN_ENV,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_stands_on_its_own_line() {
        let text = created(
            &json!({"id": "tok_1", "name": "ci", "scopes": ["read", "purge"], "sites": null, "secret": "pal_s3cret"}),
        );
        assert!(text.contains("\npal_s3cret\n"), "{text}");
        assert!(text.starts_with("created token tok_1 (ci): scopes read,purge, sites all\n"));
    }

    #[test]
    fn revoked_tokens_say_when() {
        let table = tokens_table(&json!({"tokens": [
            {"id": "tok_1", "name": "admin", "scopes": ["admin"], "sites": null, "created_at": 0, "revoked_at": null},
            {"id": "tok_2", "name": "blog ci", "scopes": ["edit"], "sites": ["blog"], "created_at": 0, "revoked_at": 60000},
        ]}));
        let text = table.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "ID     NAME     SCOPES  SITES  CREATED               REVOKED"
        );
        assert!(lines[1].ends_with("1970-01-01T00:00:00Z  -"), "{text}");
        assert!(
            lines[2].contains("blog ci") && lines[2].ends_with("1970-01-01T00:01:00Z"),
            "{text}"
        );
    }
}
