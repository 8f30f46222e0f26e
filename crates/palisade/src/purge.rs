//! `palisade purge`: asks a running edge's admin listener to purge (`POST
//! /api/sites/{site}/purge`), and prints its answer.

use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long the CLI waits for the admin listener, to connect and to answer.
const TIMEOUT: Duration = Duration::from_secs(10);

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
pub fn body(selector: &Selector, soft: bool) -> String {
    let mut fields = serde_json_fields(selector);
    if soft {
        fields.push(("soft".into(), "true".into()));
    }
    let inner: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("\"{k}\": {v}"))
        .collect();
    format!("{{{}}}", inner.join(", "))
}

fn serde_json_fields(selector: &Selector) -> Vec<(String, String)> {
    let quoted = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let mut fields = Vec::new();
    for (name, value) in [
        ("url", &selector.url),
        ("prefix", &selector.prefix),
        ("host", &selector.host),
        ("tag", &selector.tag),
    ] {
        if let Some(value) = value {
            fields.push((name.to_string(), quoted(value)));
        }
    }
    if selector.everything {
        fields.push(("everything".into(), "true".into()));
    }
    fields
}

/// Sends the purge and returns the admin listener's answer body; an error for anything but
/// 200, with the server's message.
pub fn send(admin: SocketAddr, site: &str, body: &str) -> Result<String> {
    if site.is_empty()
        || !site
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        bail!("site name {site:?} is not a site name");
    }
    let mut stream = TcpStream::connect_timeout(&admin, TIMEOUT)
        .with_context(|| format!("cannot reach the admin listener at {admin}"))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let request = format!(
        "POST /api/sites/{site}/purge HTTP/1.1\r\nHost: {admin}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    stream
        .take(1 << 20)
        .read_to_end(&mut response)
        .context("reading the admin listener's answer")?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .context("the admin listener's answer is not HTTP")?;
    if status != 200 {
        bail!("purge refused ({status}): {}", body.trim());
    }
    Ok(body.trim().to_string())
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
            body(&s(Some("https://a.example/x\"y"), false), false),
            r#"{"url": "https://a.example/x\"y"}"#
        );
        assert_eq!(
            body(&s(None, true), true),
            r#"{"everything": true, "soft": true}"#
        );
    }
}
