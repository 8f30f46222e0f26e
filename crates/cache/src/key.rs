//! Cache keys: which stored responses a request can be answered with.
//!
//! The primary key is the site and the target URI (RFC 9111 §2: "the cache key consists of at
//! least the request method and target URI"; only GET is stored, so the method is implied),
//! shaped by the site's key options. The secondary key (§4.1) comes from the fields a stored
//! response's `Vary` nominates, see [`crate::vary`].

use http::HeaderMap;
use http::header::COOKIE;
use model::{QueryKey, SiteCache};
use xxhash_rust::xxh3::{xxh3_64, xxh3_128_with_seed};

/// Whether `name` (lowercase) is a request field that origins and their frameworks commonly
/// reflect into a response (a redirect's scheme, host or port, an absolute link, a rewritten
/// path, another method) while it is not part of the cache key: a client that sends one can
/// get a poisoned response stored for everyone (unkeyed-input cache poisoning). The edge sets
/// its own forwarding fields (X-Forwarded-For, -Proto, -Host, Forwarded) itself, so those are
/// not here; these are the others.
pub fn is_reflected_unkeyed_input(name: &str) -> bool {
    matches!(
        name,
        "x-forwarded-scheme"
            | "x-forwarded-port"
            | "x-forwarded-server"
            | "x-forwarded-ssl"
            | "x-forwarded-prefix"
            | "x-forwarded-path"
            | "x-host"
            | "x-original-host"
            | "x-original-url"
            | "x-rewrite-url"
            | "x-original-method"
            | "x-http-method-override"
            | "x-http-method"
            | "x-method-override"
    )
}

/// Identifies one stored response (a primary key, or a primary key with a Vary variant).
pub type ObjectId = u128;

/// A request's primary cache key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    /// `https://host/path?query` as keyed: what purges by URL, prefix and host compare with.
    pub url: String,
    /// The hash of the site, the url and any keyed fields.
    pub id: ObjectId,
}

impl CacheKey {
    /// Builds the key for `site`'s request. `scheme` is the client's (`http` or `https`), `host`
    /// the routed host (lowercase, no port), `path_and_query` the request target.
    pub fn new(
        site: &str,
        settings: &SiteCache,
        scheme: &str,
        host: &str,
        path_and_query: &str,
        headers: &HeaderMap,
    ) -> CacheKey {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        let mut url = String::with_capacity(scheme.len() + host.len() + path_and_query.len() + 4);
        url.push_str(scheme);
        url.push_str("://");
        url.push_str(host);
        url.push_str(path);
        match (settings.query, query) {
            (_, None) | (QueryKey::Ignore, _) => {}
            (QueryKey::Keep, Some(q)) => {
                url.push('?');
                url.push_str(q);
            }
            (QueryKey::Sort, Some(q)) => {
                let mut pairs: Vec<&str> = q.split('&').filter(|p| !p.is_empty()).collect();
                pairs.sort_unstable();
                if !pairs.is_empty() {
                    url.push('?');
                    url.push_str(&pairs.join("&"));
                }
            }
        }
        // The url hashed with the site as the seed, so two sites never share an object; keyed
        // headers and cookies, when the site has any, are appended to a copy, separated by bytes
        // that cannot occur in them (NUL, and LF which field values cannot hold). Without them
        // (the usual case) hashing allocates nothing.
        let seed = xxh3_64(site.as_bytes());
        if settings.key_headers.is_empty() && settings.key_cookies.is_empty() {
            return CacheKey {
                id: xxh3_128_with_seed(url.as_bytes(), seed),
                url,
            };
        }
        let mut hashed = Vec::with_capacity(url.len() + 64);
        hashed.extend_from_slice(url.as_bytes());
        for name in &settings.key_headers {
            hashed.push(b'\n');
            hashed.extend_from_slice(name.as_bytes());
            for value in headers.get_all(name.as_str()) {
                hashed.push(0);
                hashed.extend_from_slice(value.as_bytes());
            }
        }
        for name in &settings.key_cookies {
            hashed.push(b'\n');
            hashed.push(b'=');
            hashed.extend_from_slice(name.as_bytes());
            if let Some(value) = cookie(headers, name) {
                hashed.push(0);
                hashed.extend_from_slice(value);
            }
        }
        CacheKey {
            id: xxh3_128_with_seed(&hashed, seed),
            url,
        }
    }

    /// The host part of the keyed url, for purges by host.
    pub fn host(&self) -> &str {
        host_of(&self.url)
    }
}

/// The host of a keyed url (`scheme://host/...`).
pub fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or("")
}

/// The value of cookie `name` in the request's Cookie lines (RFC 6265 §5.4 syntax).
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers.get_all(COOKIE).iter().find_map(|line| {
        line.as_bytes().split(|b| *b == b';').find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|b| *b == b'=')?;
            (pair[..eq].trim_ascii() == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn key(settings: &SiteCache, target: &str, headers: &HeaderMap) -> CacheKey {
        CacheKey::new("blog", settings, "https", "blog.example", target, headers)
    }

    #[test]
    fn s2_the_key_is_the_target_uri_per_site() {
        let s = SiteCache::default();
        let none = HeaderMap::new();
        let a = key(&s, "/a?x=1", &none);
        assert_eq!(a.url, "https://blog.example/a?x=1");
        assert_ne!(a.id, key(&s, "/a?x=2", &none).id);
        let other_site = CacheKey::new("shop", &s, "https", "blog.example", "/a?x=1", &none);
        assert_ne!(a.id, other_site.id, "two sites never share objects");
        assert_eq!(a.host(), "blog.example");
    }

    #[test]
    fn query_can_be_ignored_or_sorted() {
        let none = HeaderMap::new();
        let ignore = SiteCache {
            query: QueryKey::Ignore,
            ..SiteCache::default()
        };
        assert_eq!(
            key(&ignore, "/a?x=1", &none).id,
            key(&ignore, "/a?y=2", &none).id
        );
        let sort = SiteCache {
            query: QueryKey::Sort,
            ..SiteCache::default()
        };
        let ab = key(&sort, "/a?b=1&a=2", &none);
        assert_eq!(ab.id, key(&sort, "/a?a=2&b=1", &none).id);
        assert_eq!(ab.url, "https://blog.example/a?a=2&b=1");
    }

    #[test]
    fn named_headers_and_cookies_enter_the_key() {
        let settings = SiteCache {
            key_headers: vec!["x-device".into()],
            key_cookies: vec!["lang".into()],
            ..SiteCache::default()
        };
        let mut mobile = HeaderMap::new();
        mobile.insert("x-device", HeaderValue::from_static("mobile"));
        mobile.insert("cookie", HeaderValue::from_static("sid=1; lang=de"));
        let mut desktop = mobile.clone();
        desktop.insert("x-device", HeaderValue::from_static("desktop"));
        let mut english = mobile.clone();
        english.insert("cookie", HeaderValue::from_static("lang=en; sid=1"));
        let mut other_session = mobile.clone();
        other_session.insert("cookie", HeaderValue::from_static("lang=de; sid=2"));
        let id = |h: &HeaderMap| key(&settings, "/", h).id;
        assert_ne!(id(&mobile), id(&desktop));
        assert_ne!(id(&mobile), id(&english));
        assert_eq!(
            id(&mobile),
            id(&other_session),
            "only the named cookie counts"
        );
    }
}
