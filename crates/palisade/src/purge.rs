//! `palisade purge`: asks a running edge's admin API to purge a site's cached responses
//! (`POST /api/sites/{site}/purge`, a token with the `purge` scope).

use crate::admin_client::{AdminUrl, segment};
use crate::cli::{ApiArgs, cell, print_json};
use anyhow::{Result, anyhow};
use model::Config;
use serde_json::{Map, Value};
use std::net::SocketAddr;
use std::path::PathBuf;

/// What to purge: exactly one (clap's group enforces it).
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
pub struct Selector {
    /// One URL: https://host/path?query.
    #[arg(long)]
    pub url: Option<String>,
    /// Every URL starting with this: https://host/dir/.
    #[arg(long)]
    pub prefix: Option<String>,
    /// Every URL on this host.
    #[arg(long)]
    pub host: Option<String>,
    /// Every response the origin tagged with this (Cache-Tag / Surrogate-Key).
    #[arg(long)]
    pub tag: Option<String>,
    /// Everything the site has stored.
    #[arg(long)]
    pub everything: bool,
}

/// The JSON body for a selector.
pub fn body(selector: &Selector, soft: bool) -> Value {
    let mut fields = Map::new();
    for (name, value) in [
        ("url", &selector.url),
        ("prefix", &selector.prefix),
        ("host", &selector.host),
        ("tag", &selector.tag),
    ] {
        if let Some(value) = value {
            fields.insert(name.into(), Value::from(value.as_str()));
        }
    }
    if selector.everything {
        fields.insert("everything".into(), Value::Bool(true));
    }
    if soft {
        fields.insert("soft".into(), Value::Bool(true));
    }
    Value::Object(fields)
}

/// `palisade purge`: the admin API is `--admin ADDR`, else `--config`'s `admin`, else
/// `--admin-url` (or its environment variable, or the default).
pub fn run(
    api: &ApiArgs,
    site: &str,
    selector: &Selector,
    soft: bool,
    admin: Option<SocketAddr>,
    config: Option<PathBuf>,
) -> Result<()> {
    let url = match (admin, config) {
        (Some(admin), _) => format!("http://{admin}"),
        (None, Some(path)) => format!("http://{}", Config::load(&path)?.server.admin),
        (None, None) => api.admin_url.clone(),
    };
    let url = AdminUrl::parse(&url).map_err(|e| anyhow!("admin URL {e}"))?;
    let client = api.client_at(url)?;
    let answer = client.post(
        &format!("/api/sites/{}/purge", segment(site)),
        &body(selector, soft),
    )?;
    if api.json {
        print_json(&answer);
    } else {
        println!(
            "purged {} of site {site} ({}; purge #{})",
            what(selector),
            if soft { "marked stale" } else { "deleted" },
            cell(answer.get("purge"))
        );
    }
    Ok(())
}

fn what(selector: &Selector) -> String {
    match selector {
        Selector { url: Some(url), .. } => format!("url {url}"),
        Selector {
            prefix: Some(prefix),
            ..
        } => format!("urls under {prefix}"),
        Selector {
            host: Some(host), ..
        } => format!("host {host}"),
        Selector { tag: Some(tag), .. } => format!("tag {tag}"),
        _ => "everything".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_match_the_api() {
        let s = |url: Option<&str>, everything| Selector {
            url: url.map(str::to_string),
            prefix: None,
            host: None,
            tag: None,
            everything,
        };
        assert_eq!(
            body(&s(Some("https://a.example/x\"y\u{1}"), false), false).to_string(),
            r#"{"url":"https://a.example/x\"y\u0001"}"#
        );
        assert_eq!(
            body(&s(None, true), true).to_string(),
            r#"{"everything":true,"soft":true}"#
        );
    }
}
