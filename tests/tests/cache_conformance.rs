//! The cache's conformance edges through the real binary: how it reads `Age` and dates, what it
//! does with a 304 about another representation, empty responses, `CDN-Cache-Control` and a
//! site's own targeted field (RFC 9213), and web cache deception armour.
//!
//! Each origin is a [`ScriptedOrigin`] numbering its answers (`v0`, `v1`, ...), so a test can
//! tell a stored copy from a fresh one and count what reached the origin.

use std::time::Duration;

use palisade_blackbox::client::{self, h1_request};
use palisade_blackbox::scripted_origin::Reply;
use palisade_blackbox::{Palisade, ScriptedOrigin, SiteConfig};

fn proxy_for(origin: &ScriptedOrigin) -> Palisade {
    Palisade::start(&SiteConfig::blog(origin.url()).to_toml())
}

fn proxy_with(origin: &ScriptedOrigin, cache_table: &str) -> Palisade {
    Palisade::start(&SiteConfig::blog(origin.url()).cache(cache_table).to_toml())
}

async fn get_with(
    proxy: &Palisade,
    path: &str,
    fields: &[(&'static str, &'static str)],
) -> client::Reply {
    client::get_with(proxy.http_addr(), "blog.example", path, fields).await
}

async fn get(proxy: &Palisade, path: &str) -> client::Reply {
    client::get(proxy.http_addr(), "blog.example", path).await
}

/// Long enough for a response stored with `max-age=1` to be stale: ages are whole seconds.
const PAST_ONE_SECOND: Duration = Duration::from_millis(2100);

/// A Last-Modified long enough ago that the heuristic lifetime is its cap, a day.
const LONG_AGO: &str = "Thu, 01 Jan 2015 00:00:00 GMT";

#[tokio::test]
async fn s5_1_a_list_valued_age_counts_by_its_first_member() {
    // Two hours old by its first Age member, fresh for one: stale on arrival, so the next
    // request goes to the origin. Read as Age 0 (the old behaviour), it would be a hit.
    let origin = ScriptedOrigin::numbered("Cache-Control: max-age=3600\r\nAge: 7200, 0\r\n");
    let proxy = proxy_for(&origin);

    get(&proxy, "/aged").await;
    let second = get(&proxy, "/aged").await;

    assert_eq!(second.text(), "v1", "{:?}", second.header("cache-status"));
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn s5_1_an_invalid_age_makes_the_response_stale_not_new() {
    let origin = ScriptedOrigin::numbered("Cache-Control: max-age=3600\r\nAge: soon\r\n");
    let proxy = proxy_for(&origin);

    get(&proxy, "/unknown-age").await;
    let second = get(&proxy, "/unknown-age").await;

    assert_eq!(second.text(), "v1", "{:?}", second.header("cache-status"));
}

#[tokio::test]
async fn rfc9110_5_6_7_expires_is_read_in_all_three_date_formats() {
    // Far in the future, each with its right weekday; lowercase names are accepted too.
    let dates = [
        "Sat, 06 Nov 2094 08:49:37 GMT",
        "sat, 06 nov 2094 08:49:37 GMT",
        "Saturday, 06-Nov-49 08:49:37 GMT",
        "SATURDAY, 06-NOV-49 08:49:37 GMT",
        "Sat Nov  6 08:49:37 2094",
        "sat nov  6 08:49:37 2094",
    ];
    let origin = ScriptedOrigin::start(move |n| {
        let body = format!("v{n}");
        Reply::keep_open(format!(
            "HTTP/1.1 200 OK\r\nExpires: {}\r\nContent-Length: {}\r\n\r\n{body}",
            dates[n % dates.len()],
            body.len()
        ))
    });
    let proxy = proxy_for(&origin);

    for (i, date) in dates.iter().enumerate() {
        let path = format!("/expires/{i}");
        let first = get(&proxy, &path).await;
        let second = get(&proxy, &path).await;
        assert_eq!(first.text(), format!("v{i}"));
        assert_eq!(
            second.text(),
            format!("v{i}"),
            "Expires: {date} gave no freshness: {:?}",
            second.header("cache-status")
        );
    }
    assert_eq!(origin.requests(), dates.len());
}

#[tokio::test]
async fn s4_3_4_a_304_naming_another_representation_is_refetched_unconditionally() {
    let origin = ScriptedOrigin::start(|n| {
        Reply::keep_open(match n {
            0 => "HTTP/1.1 200 OK\r\nCache-Control: max-age=1\r\nETag: \"a\"\r\nContent-Length: 2\r\n\r\nv0".to_string(),
            // The origin's answer to If-None-Match: "a" names a representation the cache
            // does not hold.
            1 => "HTTP/1.1 304 Not Modified\r\nCache-Control: max-age=60\r\nETag: \"b\"\r\n\r\n".to_string(),
            n => format!("HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nETag: \"b\"\r\nContent-Length: 2\r\n\r\nv{n}"),
        })
    });
    let proxy = proxy_for(&origin);
    get(&proxy, "/r").await;
    tokio::time::sleep(PAST_ONE_SECOND).await;

    let revalidated = get(&proxy, "/r").await;
    let after = get(&proxy, "/r").await;

    assert_eq!(
        revalidated.status, 200,
        "a client that sent no condition never gets a 304"
    );
    assert_eq!(revalidated.text(), "v2");
    assert_eq!(revalidated.header("etag"), Some("\"b\""));
    let heads = origin.heads();
    assert_eq!(heads.len(), 3, "{heads:#?}");
    assert!(
        heads[1]
            .to_ascii_lowercase()
            .contains("if-none-match: \"a\""),
        "{}",
        heads[1]
    );
    assert!(
        !heads[2].to_ascii_lowercase().contains("if-none-match"),
        "§4.3.4: the request is made again without the validators: {}",
        heads[2]
    );
    assert_eq!(
        after.text(),
        "v2",
        "what the unconditional request brought is stored"
    );
    assert_eq!(origin.requests(), 3);
}

#[tokio::test]
async fn s4_3_4_a_background_refresh_answered_304_for_another_representation_fetches_it() {
    let origin = ScriptedOrigin::start(|n| {
        Reply::keep_open(match n {
            0 => "HTTP/1.1 200 OK\r\nCache-Control: max-age=1, stale-while-revalidate=60\r\nETag: \"a\"\r\nContent-Length: 2\r\n\r\nv0".to_string(),
            1 => "HTTP/1.1 304 Not Modified\r\nETag: \"b\"\r\n\r\n".to_string(),
            n => format!("HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nETag: \"b\"\r\nContent-Length: 2\r\n\r\nv{n}"),
        })
    });
    let proxy = proxy_for(&origin);
    get(&proxy, "/swr").await;
    tokio::time::sleep(PAST_ONE_SECOND).await;

    let stale = get(&proxy, "/swr").await;
    let mut refreshed = None;
    for _ in 0..100 {
        let reply = get(&proxy, "/swr").await;
        if reply.text() != "v0" {
            refreshed = Some(reply);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    assert_eq!(stale.text(), "v0", "served stale at once");
    let refreshed = refreshed.expect("the other representation is stored within 5 s");
    assert_eq!(refreshed.text(), "v2");
    let status = refreshed.header("cache-status").unwrap_or_default();
    assert!(
        status.starts_with("palisade; hit"),
        "the refresh stored it, no client had to fetch it: {status}"
    );
    assert!(
        !origin.heads()[2]
            .to_ascii_lowercase()
            .contains("if-none-match"),
        "{}",
        origin.heads()[2]
    );
    assert_eq!(origin.requests(), 3);
}

#[tokio::test]
async fn s4_3_4_a_304_to_a_request_that_cannot_have_earned_one_is_not_passed_to_the_client() {
    // An origin that answers 304 even to the cache's unconditional request.
    let origin = ScriptedOrigin::start(|n| {
        Reply::keep_open(match n {
            0 => {
                "HTTP/1.1 200 OK\r\nCache-Control: max-age=1\r\nETag: \"a\"\r\nContent-Length: 2\r\n\r\nv0"
            }
            _ => "HTTP/1.1 304 Not Modified\r\nETag: \"b\"\r\n\r\n",
        })
    });
    let proxy = proxy_for(&origin);
    get(&proxy, "/broken").await;
    tokio::time::sleep(PAST_ONE_SECOND).await;

    let reply = get(&proxy, "/broken").await;

    assert_ne!(reply.status, 304, "the client sent no condition");
    assert_eq!(reply.status, 502);
}

#[tokio::test]
async fn rfc9110_15_3_5_a_stored_204_is_reused() {
    let origin = ScriptedOrigin::start(|_| {
        Reply::keep_open(&b"HTTP/1.1 204 No Content\r\nCache-Control: max-age=60\r\n\r\n"[..])
    });
    let proxy = proxy_for(&origin);

    let first = get(&proxy, "/beacon").await;
    let second = get(&proxy, "/beacon").await;

    assert_eq!(first.status, 204);
    assert!(
        first
            .header("cache-status")
            .unwrap_or_default()
            .contains("stored")
    );
    assert_eq!(second.status, 204);
    let status = second.header("cache-status").unwrap_or_default();
    assert!(status.starts_with("palisade; hit"), "{status}");
    let head = client::try_send(
        proxy.http_addr(),
        h1_request("HEAD", "blog.example", "/beacon", client::empty()),
    )
    .await
    .expect("HEAD through the proxy");
    assert_eq!(head.status, 204);
    assert_eq!(
        head.header("content-length"),
        None,
        "RFC 9110 §8.6: never in a 204"
    );
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn an_empty_200_said_to_be_stored_is_reused() {
    let origin = ScriptedOrigin::start(|_| {
        Reply::keep_open(
            &b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 0\r\n\r\n"[..],
        )
    });
    let proxy = proxy_for(&origin);

    get(&proxy, "/empty").await;
    let second = get(&proxy, "/empty").await;

    assert_eq!(second.status, 200);
    let status = second.header("cache-status").unwrap_or_default();
    assert!(status.starts_with("palisade; hit"), "{status}");
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn rfc9213_cdn_cache_control_overrides_cache_control_for_the_edge() {
    let origin = ScriptedOrigin::start(|n| {
        let fields = if n % 2 == 0 {
            // Browsers must not store it; the edge may, for a minute.
            "Cache-Control: no-store\r\nCDN-Cache-Control: max-age=60\r\n"
        } else {
            "Cache-Control: max-age=60\r\nCDN-Cache-Control: no-store\r\n"
        };
        let body = format!("v{n}");
        Reply::keep_open(format!(
            "HTTP/1.1 200 OK\r\n{fields}Content-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    });
    let proxy = proxy_for(&origin);

    let edge_only = get(&proxy, "/edge-only").await;
    let edge_only_again = get(&proxy, "/edge-only").await;
    let browser_only = get(&proxy, "/browser-only").await;
    let browser_only_again = get(&proxy, "/browser-only").await;

    assert_eq!(edge_only.text(), "v0");
    assert_eq!(
        edge_only_again.text(),
        "v0",
        "{:?}",
        edge_only_again.header("cache-status")
    );
    assert_eq!(
        edge_only_again.header("cache-control"),
        Some("no-store"),
        "Cache-Control still reaches the client as the origin wrote it"
    );
    assert_eq!(browser_only.text(), "v1");
    assert_eq!(
        browser_only_again.text(),
        "v2",
        "CDN-Cache-Control: no-store"
    );
    assert_eq!(origin.requests(), 3);
}

#[tokio::test]
async fn rfc9213_a_targeted_field_that_does_not_parse_is_ignored() {
    // Not a structured-field dictionary (uppercase key): Cache-Control decides.
    let origin =
        ScriptedOrigin::numbered("Cache-Control: max-age=60\r\nCDN-Cache-Control: No-Store\r\n");
    let proxy = proxy_for(&origin);

    get(&proxy, "/sf").await;
    let second = get(&proxy, "/sf").await;

    assert_eq!(second.text(), "v0");
}

#[tokio::test]
async fn rfc9213_cdn_cache_control_is_not_forwarded_to_clients() {
    let origin =
        ScriptedOrigin::numbered("Cache-Control: max-age=5\r\nCDN-Cache-Control: max-age=60\r\n");
    let proxy = proxy_for(&origin);

    let miss = get(&proxy, "/cdn").await;
    let hit = get(&proxy, "/cdn").await;

    for reply in [&miss, &hit] {
        assert_eq!(
            reply.header("cdn-cache-control"),
            None,
            "{:?}",
            reply.headers
        );
        assert_eq!(reply.header("cache-control"), Some("max-age=5"));
    }
    let status = hit.header("cache-status").unwrap_or_default();
    let ttl: i64 = status
        .rsplit_once("ttl=")
        .and_then(|(_, ttl)| ttl.parse().ok())
        .unwrap_or_else(|| panic!("{status}"));
    assert!(
        ttl > 5,
        "the edge's lifetime is CDN-Cache-Control's 60 s, not Cache-Control's 5: {status}"
    );
}

#[tokio::test]
async fn rfc9213_a_304_refreshes_the_targeted_field_like_any_other() {
    let origin = ScriptedOrigin::start(|n| {
        Reply::keep_open(match n {
            0 => "HTTP/1.1 200 OK\r\nCache-Control: no-store\r\nCDN-Cache-Control: max-age=1\r\nETag: \"a\"\r\nContent-Length: 2\r\n\r\nv0".to_string(),
            1 => "HTTP/1.1 304 Not Modified\r\nCDN-Cache-Control: max-age=60\r\nETag: \"a\"\r\n\r\n".to_string(),
            n => format!("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nv{n}"),
        })
    });
    let proxy = proxy_for(&origin);
    get(&proxy, "/refresh").await;
    tokio::time::sleep(PAST_ONE_SECOND).await;

    let revalidated = get(&proxy, "/refresh").await;
    let after = get(&proxy, "/refresh").await;

    assert_eq!(revalidated.text(), "v0");
    assert_eq!(revalidated.header("cdn-cache-control"), None);
    assert_eq!(after.text(), "v0", "{:?}", after.header("cache-status"));
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn purge_tags_never_reach_clients_whether_stored_or_not() {
    let origin = ScriptedOrigin::start(|n| {
        let cache_control = if n == 0 { "max-age=60" } else { "no-store" };
        Reply::keep_open(format!(
            "HTTP/1.1 200 OK\r\nCache-Control: {cache_control}\r\nCache-Tag: shop\r\nSurrogate-Key: shop\r\nContent-Length: 2\r\n\r\nv{n}"
        ))
    });
    let proxy = proxy_for(&origin);

    let miss = get(&proxy, "/tagged").await;
    let hit = get(&proxy, "/tagged").await;
    let not_stored = get(&proxy, "/untagged").await;

    for reply in [&miss, &hit, &not_stored] {
        assert_eq!(reply.header("cache-tag"), None, "{:?}", reply.headers);
        assert_eq!(reply.header("surrogate-key"), None, "{:?}", reply.headers);
    }
}

#[tokio::test]
async fn a_sites_own_targeted_field_comes_before_cdn_cache_control() {
    let fields = "Cache-Control: no-store\r\nCDN-Cache-Control: no-store\r\nPalisade-Cache-Control: max-age=60\r\n";
    let origin = ScriptedOrigin::numbered(fields);
    let proxy = proxy_with(&origin, "targeted_field = \"Palisade-Cache-Control\"");

    let first = get(&proxy, "/own").await;
    let second = get(&proxy, "/own").await;

    assert_eq!(second.text(), "v0", "{:?}", second.header("cache-status"));
    for reply in [&first, &second] {
        assert_eq!(reply.header("palisade-cache-control"), None);
        assert_eq!(reply.header("cdn-cache-control"), None);
    }
}

#[tokio::test]
async fn without_the_setting_a_field_of_that_name_is_an_ordinary_field() {
    let origin = ScriptedOrigin::numbered(
        "Cache-Control: no-store\r\nPalisade-Cache-Control: max-age=60\r\n",
    );
    let proxy = proxy_for(&origin);

    let first = get(&proxy, "/not-targeted").await;
    let second = get(&proxy, "/not-targeted").await;

    assert_eq!(second.text(), "v1", "RFC 9213 §2.2: not on the target list");
    assert_eq!(
        first.header("palisade-cache-control"),
        Some("max-age=60"),
        "and passed through"
    );
}

/// An origin that renders a page whatever the path's extension says: HTML, with an old
/// Last-Modified and no Cache-Control (a heuristic lifetime of a day).
fn dynamic_origin() -> ScriptedOrigin {
    ScriptedOrigin::start(|n| {
        let body = format!("v{n}");
        Reply::keep_open(format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nLast-Modified: {LONG_AGO}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    })
}

#[tokio::test]
async fn deception_armour_gives_no_heuristic_freshness_to_a_response_to_a_cookie() {
    let origin = dynamic_origin();
    let proxy = proxy_for(&origin);

    let victim = get_with(
        &proxy,
        "/account/profile.css",
        &[("cookie", "session=alice")],
    )
    .await;
    let attacker = get(&proxy, "/account/profile.css").await;

    assert_eq!(victim.text(), "v0");
    let status = victim.header("cache-status").unwrap_or_default();
    assert!(
        status.contains("detail=deception-armour") && !status.contains("stored"),
        "{status}"
    );
    assert_eq!(
        attacker.text(),
        "v1",
        "the page fetched with a cookie went to a client without one: {:?}",
        attacker.header("cache-status")
    );
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn deception_armour_gives_no_heuristic_freshness_when_the_type_belies_the_extension() {
    let origin = dynamic_origin();
    let proxy = proxy_for(&origin);

    get(&proxy, "/account/profile.css").await;
    let again = get(&proxy, "/account/profile.css").await;
    // The same response at a path whose extension says HTML is stored as usual.
    get(&proxy, "/account/page.html").await;
    let page_again = get(&proxy, "/account/page.html").await;
    // ... and so is one at a path without an extension.
    get(&proxy, "/account/page").await;
    let plain_again = get(&proxy, "/account/page").await;

    assert_eq!(again.text(), "v1", "{:?}", again.header("cache-status"));
    assert_eq!(page_again.text(), "v2");
    assert_eq!(plain_again.text(), "v3");
}

#[tokio::test]
async fn deception_armour_leaves_explicit_freshness_alone() {
    let origin = ScriptedOrigin::numbered(
        "Content-Type: text/html\r\nCache-Control: public, max-age=60\r\n",
    );
    let proxy = proxy_for(&origin);

    get_with(&proxy, "/styles.css", &[("cookie", "session=alice")]).await;
    let second = get(&proxy, "/styles.css").await;

    assert_eq!(second.text(), "v0", "the origin said it may be shared");
}

#[tokio::test]
async fn a_site_can_turn_deception_armour_off() {
    let origin = dynamic_origin();
    let proxy = proxy_with(&origin, "deception_armour = false");

    get_with(
        &proxy,
        "/account/profile.css",
        &[("cookie", "session=alice")],
    )
    .await;
    let second = get(&proxy, "/account/profile.css").await;

    assert_eq!(second.text(), "v0");
}

/// Unkeyed fields that origins commonly reflect (a redirect's scheme or port, a rewritten
/// path, another method) do not reach the origin on requests the cache may answer, where one
/// client's value would be stored for everyone; a site keeps one by keying on it or by listing
/// it, and requests the cache never answers (a POST) pass them on.
#[tokio::test]
async fn reflected_unkeyed_fields_never_shape_a_response_the_cache_may_store() {
    let origin = ScriptedOrigin::numbered("Cache-Control: max-age=60\r\n");
    let proxy = proxy_with(
        &origin,
        "key_headers = [\"x-forwarded-prefix\"]\nforward_unkeyed_fields = [\"x-forwarded-port\"]",
    );
    let poison: &[(&'static str, &'static str)] = &[
        ("x-forwarded-scheme", "nothttps"),
        ("x-forwarded-port", "1337"),
        ("x-forwarded-server", "evil.example"),
        ("x-host", "evil.example"),
        ("x-original-host", "evil.example"),
        ("x-original-url", "/admin"),
        ("x-rewrite-url", "/admin"),
        ("x-http-method-override", "DELETE"),
        ("x-forwarded-prefix", "/keyed"),
    ];
    get_with(&proxy, "/page", poison).await;
    let head = origin.heads()[0].to_ascii_lowercase();
    for gone in [
        "x-forwarded-scheme",
        "x-forwarded-server",
        "x-host",
        "x-original-host",
        "x-original-url",
        "x-rewrite-url",
        "x-http-method-override",
    ] {
        assert!(
            !head.contains(gone),
            "{gone} reached the origin on a fill:\n{head}"
        );
    }
    assert!(
        head.contains("x-forwarded-port: 1337"),
        "listed, kept:\n{head}"
    );
    assert!(
        head.contains("x-forwarded-prefix: /keyed"),
        "keyed, kept:\n{head}"
    );

    let mut post = h1_request("POST", "blog.example", "/form", client::full("a=1"));
    post.headers_mut()
        .append("x-original-url", "/admin".parse().unwrap());
    client::try_send(proxy.http_addr(), post)
        .await
        .expect("POST");
    let head = origin.heads()[1].to_ascii_lowercase();
    assert!(head.contains("x-original-url: /admin"), "{head}");
}
