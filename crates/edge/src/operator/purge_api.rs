//! `POST /api/sites/{site}/purge` on the admin listener, and the background pass that applies
//! purges to what is stored.
//!
//! Bodies (exactly one selector, `"soft": true` optional):
//! `{"url": "https://host/path?q"}`, `{"prefix": "https://host/dir/"}`, `{"host": "host"}`,
//! `{"tag": "name"}`, `{"everything": true}`.
//!
//! A purge takes effect for every request at once (it is a rule the cache checks) and returns
//! without touching stored objects; [`lurker`] then walks them in a blocking thread.

use cache::{Cache, Purge, PurgeScope};
use serde::Deserialize;
use std::sync::Arc;
use tokio::sync::Notify;

/// Largest purge request body read.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A purge the edge took: it applies to every request from now on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Purged {
    /// The site the purge applies to.
    pub site: String,
    /// The purge's sequence number.
    pub purge: u64,
    /// Stored responses are marked stale rather than removed.
    pub soft: bool,
}

/// Why a purge was refused.
#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    /// The running configuration has no such site (a 404).
    #[error("no site named {}", model::shown(.0))]
    NoSuchSite(String),
    /// The body is not one of the selectors above (a 400).
    #[error(transparent)]
    Invalid(#[from] PurgeBodyError),
}

/// What is wrong with a purge request's body.
#[derive(Debug, thiserror::Error)]
pub enum PurgeBodyError {
    /// Not JSON, or a field that is not a selector.
    #[error("invalid purge body: {0}")]
    Json(serde_json::Error),
    /// A `url` or `prefix` without `scheme://host`, or with spaces or control bytes.
    #[error("{0:?} is not an absolute URL (https://host/path)")]
    NotAbsolute(String),
    /// A `url` or `prefix` whose scheme is not http or https.
    #[error("{0:?}: only http and https URLs are cached")]
    NotHttp(String),
    /// A `host` that is empty or holds `/`, `?` or a space.
    #[error("host {0:?} is not a host name")]
    NotAHost(String),
    /// A `tag` of only whitespace.
    #[error("tag is empty")]
    EmptyTag,
    /// `"everything": false`, which would purge nothing.
    #[error("\"everything\" must be true when given")]
    EverythingFalse,
    /// No selector, or more than one.
    #[error("give exactly one of \"url\", \"prefix\", \"host\", \"tag\", \"everything\"")]
    NotOneSelector,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeBody {
    url: Option<String>,
    prefix: Option<String>,
    host: Option<String>,
    tag: Option<String>,
    everything: Option<bool>,
    #[serde(default)]
    soft: bool,
}

/// Reads a purge request body for `site`; the error is the message for a 400.
pub fn parse(site: &Arc<str>, body: &[u8]) -> Result<Purge, PurgeBodyError> {
    let body: PurgeBody = serde_json::from_slice(body).map_err(PurgeBodyError::Json)?;
    let mut scopes = Vec::new();
    if let Some(url) = body.url {
        scopes.push(PurgeScope::Url(absolute_url(&url)?));
    }
    if let Some(prefix) = body.prefix {
        scopes.push(PurgeScope::Prefix(absolute_url(&prefix)?));
    }
    if let Some(host) = body.host {
        let host = host.trim().to_ascii_lowercase();
        if host.is_empty() || host.contains(['/', ' ', '?']) {
            return Err(PurgeBodyError::NotAHost(host));
        }
        scopes.push(PurgeScope::Host(host));
    }
    if let Some(tag) = body.tag {
        if tag.trim().is_empty() {
            return Err(PurgeBodyError::EmptyTag);
        }
        scopes.push(PurgeScope::Tag(tag.trim().to_string()));
    }
    match body.everything {
        Some(true) => scopes.push(PurgeScope::Everything),
        Some(false) => return Err(PurgeBodyError::EverythingFalse),
        None => {}
    }
    if scopes.len() != 1 {
        return Err(PurgeBodyError::NotOneSelector);
    }
    Ok(Purge {
        site: Arc::clone(site),
        scope: scopes.remove(0),
        soft: body.soft,
    })
}

/// `scheme://host/...` with the host lowercased, as cache keys are written.
fn absolute_url(url: &str) -> Result<String, PurgeBodyError> {
    let url = url.trim();
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(PurgeBodyError::NotAbsolute(url.to_string()));
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(PurgeBodyError::NotHttp(url.to_string()));
    }
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (host, path) = rest.split_at(split);
    if host.is_empty() || url.bytes().any(|b| b <= b' ') {
        return Err(PurgeBodyError::NotAbsolute(url.to_string()));
    }
    // Keys hold the host without a port (routing strips it).
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let path = if path.is_empty() { "/" } else { path };
    Ok(format!(
        "{}://{}{}",
        scheme.to_ascii_lowercase(),
        host.to_ascii_lowercase(),
        path
    ))
}

/// Applies pending purges to stored objects whenever `wake` is notified, one pass at a time.
pub async fn lurker(cache: Arc<Cache>, wake: Arc<Notify>) {
    loop {
        wake.notified().await;
        while cache.pending_purges() > 0 {
            let cache = Arc::clone(&cache);
            let started = std::time::Instant::now();
            match tokio::task::spawn_blocking(move || cache.apply_purges()).await {
                Ok(touched) => tracing::debug!(
                    touched,
                    took_ms = started.elapsed().as_millis() as u64,
                    "purge pass done"
                ),
                Err(e) => {
                    tracing::error!(error = %e, "purge pass failed");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> Arc<str> {
        "blog".into()
    }

    #[test]
    fn each_documented_body_parses() {
        let p = parse(&site(), br#"{"url": "https://Blog.Example:8443/a?b=1"}"#).unwrap();
        assert_eq!(
            p.scope,
            PurgeScope::Url("https://blog.example/a?b=1".into())
        );
        assert!(!p.soft);
        let p = parse(
            &site(),
            br#"{"prefix": "https://blog.example/dir/", "soft": true}"#,
        )
        .unwrap();
        assert_eq!(
            p.scope,
            PurgeScope::Prefix("https://blog.example/dir/".into())
        );
        assert!(p.soft);
        let p = parse(&site(), br#"{"host": "Blog.Example"}"#).unwrap();
        assert_eq!(p.scope, PurgeScope::Host("blog.example".into()));
        let p = parse(&site(), br#"{"tag": "product-7"}"#).unwrap();
        assert_eq!(p.scope, PurgeScope::Tag("product-7".into()));
        let p = parse(&site(), br#"{"everything": true}"#).unwrap();
        assert_eq!(p.scope, PurgeScope::Everything);
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        for (body, says) in [
            (&br#"{"url": "/relative"}"#[..], "absolute"),
            (br#"{"url": "ftp://x/y"}"#, "http"),
            (br#"{"tag": "a", "host": "b"}"#, "exactly one"),
            (br#"{}"#, "exactly one"),
            (br#"{"everything": false}"#, "must be true"),
            (br#"{"urll": "x"}"#, "invalid purge body"),
            (b"not json", "invalid purge body"),
        ] {
            let err = parse(&site(), body).unwrap_err().to_string();
            assert!(err.contains(says), "{err}");
        }
    }
}
