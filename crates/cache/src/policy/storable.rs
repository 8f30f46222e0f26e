//! Storing responses in caches (RFC 9111 §3), for a shared cache.

use super::directives::{Qualified, RequestDirectives, ResponseDirectives};
use super::{heuristically_cacheable, understood_status};
use http::header::{AUTHORIZATION, ETAG, EXPIRES, HeaderName, LAST_MODIFIED, SET_COOKIE, VARY};
use http::{HeaderMap, Method, StatusCode};

/// Why a response is not stored; shown in `Cache-Status` as the `detail` of a `fwd=bypass`
/// or `fwd=miss` without `stored`, and in logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStored {
    /// Only GET responses are stored (HEAD is answered from a stored GET).
    Method,
    /// Not final, partial (206), 304, or must-understand with a status this cache does not
    /// implement (§3, §5.2.2.3).
    Status,
    /// `no-store` in the response (§5.2.2.5).
    NoStore,
    /// `no-store` in the request (§5.2.1.5).
    RequestNoStore,
    /// Unqualified `private` (§5.2.2.7).
    Private,
    /// The request carried Authorization and the response did not allow sharing (§3.5).
    Authorization,
    /// Nothing in the response allows storing it (§3's last condition), or it could never be
    /// used: no freshness at all and no validator to revalidate it with.
    NotCacheable,
    /// `Vary: *` always fails to match (§4.1), so a stored copy could never be used.
    VaryAny,
    /// The response sets a cookie: never handed to another client unless the site allows it.
    SetCookie,
    /// It names no lifetime, and the deception armour withholds the cache's own judgement
    /// (`policy::deception`).
    Deception,
}

impl NotStored {
    /// The reason as the `Cache-Status` field's `detail` writes it (RFC 9211 §2.8):
    /// `no-store`, `set-cookie`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            NotStored::Method => "method",
            NotStored::Status => "status",
            NotStored::NoStore => "no-store",
            NotStored::RequestNoStore => "request-no-store",
            NotStored::Private => "private",
            NotStored::Authorization => "authorization",
            NotStored::NotCacheable => "not-cacheable",
            NotStored::VaryAny => "vary-star",
            NotStored::SetCookie => "set-cookie",
            NotStored::Deception => "deception-armour",
        }
    }
}

/// The part of a site's settings storing depends on.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreSettings {
    /// The operator's edge TTL: makes a response with no freshness of its own storable.
    pub has_edge_ttl: bool,
    /// Store responses that set cookies and hand them to every client. Off by default: a
    /// session cookie served to the next visitor is a security hole.
    pub share_set_cookie: bool,
    /// The deception armour's verdict on this request and response
    /// (`policy::deception::withheld`), when the site has the armour on.
    pub deception: Option<super::deception::Deception>,
}

/// May this response be stored? `Ok(strip)` lists fields to leave out of the stored copy
/// (qualified `private`, §5.2.2.7).
pub fn storable(
    method: &Method,
    request_headers: &HeaderMap,
    request: &RequestDirectives,
    status: StatusCode,
    headers: &HeaderMap,
    response: &ResponseDirectives,
    settings: StoreSettings,
) -> Result<Vec<HeaderName>, NotStored> {
    // "the request method is understood by the cache": GET is the one this cache stores.
    if method != Method::GET {
        return Err(NotStored::Method);
    }
    // "the response status code is final"; "if the response status code is 206 or 304, or the
    // must-understand cache directive is present: the cache understands the response status code"
    if status.is_informational()
        || status == StatusCode::PARTIAL_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || (response.must_understand && !understood_status(status))
    {
        return Err(NotStored::Status);
    }
    // "the no-store cache directive is not present in the response"; §5.2.2.3: a cache that
    // understands the status code ignores no-store when must-understand is present.
    if response.no_store && !response.must_understand {
        return Err(NotStored::NoStore);
    }
    if request.no_store {
        return Err(NotStored::RequestNoStore);
    }
    // "the private response directive is either not present or allows a shared cache to store a
    // modified response"
    let strip = match &response.private {
        Qualified::Absent => Vec::new(),
        Qualified::All => return Err(NotStored::Private),
        Qualified::Fields(fields) => fields.clone(),
    };
    // §3.5: with Authorization, only public, must-revalidate or s-maxage allow a shared cache
    // to store and reuse.
    if request_headers.contains_key(AUTHORIZATION)
        && !(response.public || response.must_revalidate || response.s_maxage.is_some())
    {
        return Err(NotStored::Authorization);
    }
    // "the response contains at least one of" public, Expires, max-age, s-maxage, an extension
    // allowing it (the operator's edge TTL), or a heuristically cacheable status. Expires does
    // not count when a targeted field gave the directives (RFC 9213 §2.2).
    let explicit = response.public
        || (response.targeted.is_none() && headers.contains_key(EXPIRES))
        || response.max_age.is_some()
        || response.s_maxage.is_some()
        || settings.has_edge_ttl;
    if !explicit && !heuristically_cacheable(status) {
        return Err(NotStored::NotCacheable);
    }
    // A response that is stale on arrival and has no validator can never be used (§4: served
    // only fresh, allowed stale, or validated); storing it would only evict useful objects.
    let has_validator = headers.contains_key(ETAG) || headers.contains_key(LAST_MODIFIED);
    let any_freshness = explicit || headers.contains_key(LAST_MODIFIED);
    if !any_freshness && !has_validator {
        return Err(NotStored::NotCacheable);
    }
    // Deception armour: a response that names no lifetime (neither the origin nor the
    // operator's ttl) is stored only on this cache's own judgement, withheld when the request
    // carried credentials or the type belies the path.
    let lifetime_given = response.max_age.is_some()
        || response.s_maxage.is_some()
        || (response.targeted.is_none() && headers.contains_key(EXPIRES))
        || settings.has_edge_ttl;
    if settings.deception.is_some() && !lifetime_given {
        return Err(NotStored::Deception);
    }
    if vary_has_star(headers) {
        return Err(NotStored::VaryAny);
    }
    if headers.contains_key(SET_COOKIE)
        && !settings.share_set_cookie
        && !strip.contains(&SET_COOKIE)
        && !names_field(&response.no_cache, &SET_COOKIE)
    {
        return Err(NotStored::SetCookie);
    }
    Ok(strip)
}

/// `Vary: *` anywhere in the field's lines.
pub fn vary_has_star(headers: &HeaderMap) -> bool {
    headers.get_all(VARY).iter().any(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .any(|member| member.trim_ascii() == b"*")
    })
}

fn names_field(q: &Qualified, name: &HeaderName) -> bool {
    match q {
        Qualified::Fields(fields) => fields.contains(name),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    struct Case {
        method: Method,
        request: HeaderMap,
        status: u16,
        response: HeaderMap,
        settings: StoreSettings,
    }

    impl Case {
        fn get(status: u16, response: &[(&'static str, &'static str)]) -> Case {
            let mut map = HeaderMap::new();
            for (n, v) in response {
                map.append(*n, HeaderValue::from_static(v));
            }
            Case {
                method: Method::GET,
                request: HeaderMap::new(),
                status,
                response: map,
                settings: StoreSettings::default(),
            }
        }

        fn request(mut self, name: &'static str, value: &'static str) -> Case {
            self.request.append(name, HeaderValue::from_static(value));
            self
        }

        fn decide(&self) -> Result<Vec<HeaderName>, NotStored> {
            storable(
                &self.method,
                &self.request,
                &RequestDirectives::parse(&self.request),
                StatusCode::from_u16(self.status).unwrap(),
                &self.response,
                &ResponseDirectives::parse(&self.response),
                self.settings,
            )
        }
    }

    #[test]
    fn s3_stores_a_get_with_explicit_freshness() {
        assert_eq!(
            Case::get(200, &[("cache-control", "max-age=60")]).decide(),
            Ok(vec![])
        );
        assert_eq!(
            Case::get(200, &[("expires", "Thu, 01 Jan 2099 00:00:00 GMT")]).decide(),
            Ok(vec![])
        );
    }

    #[test]
    fn s3_only_get_is_stored() {
        for method in [Method::POST, Method::HEAD, Method::PUT, Method::DELETE] {
            let mut case = Case::get(200, &[("cache-control", "max-age=60")]);
            case.method = method.clone();
            assert_eq!(case.decide(), Err(NotStored::Method), "{method}");
        }
    }

    #[test]
    fn s3_partial_not_modified_and_interim_responses_are_not_stored() {
        for status in [100, 206, 304] {
            let case = Case::get(status, &[("cache-control", "max-age=60")]);
            assert_eq!(case.decide(), Err(NotStored::Status), "{status}");
        }
    }

    #[test]
    fn s5_2_2_5_no_store_is_not_stored() {
        let case = Case::get(200, &[("cache-control", "max-age=60, no-store")]);
        assert_eq!(case.decide(), Err(NotStored::NoStore));
    }

    #[test]
    fn s5_2_2_3_must_understand_overrides_no_store_for_understood_status_only() {
        let understood = Case::get(
            200,
            &[("cache-control", "max-age=60, no-store, must-understand")],
        );
        assert_eq!(understood.decide(), Ok(vec![]));
        let unknown = Case::get(
            299,
            &[("cache-control", "max-age=60, no-store, must-understand")],
        );
        assert_eq!(unknown.decide(), Err(NotStored::Status));
    }

    #[test]
    fn s5_2_1_5_request_no_store_prevents_storing() {
        let case =
            Case::get(200, &[("cache-control", "max-age=60")]).request("cache-control", "no-store");
        assert_eq!(case.decide(), Err(NotStored::RequestNoStore));
    }

    #[test]
    fn s5_2_2_7_private_is_not_stored_and_qualified_private_strips_fields() {
        let all = Case::get(200, &[("cache-control", "max-age=60, private")]);
        assert_eq!(all.decide(), Err(NotStored::Private));
        let some = Case::get(200, &[("cache-control", "max-age=60, private=\"x-user\"")]);
        assert_eq!(some.decide(), Ok(vec![HeaderName::from_static("x-user")]));
    }

    #[test]
    fn s3_5_authorization_needs_public_must_revalidate_or_s_maxage() {
        let plain =
            Case::get(200, &[("cache-control", "max-age=60")]).request("authorization", "Bearer x");
        assert_eq!(plain.decide(), Err(NotStored::Authorization));
        for allowing in [
            "max-age=60, public",
            "max-age=60, must-revalidate",
            "s-maxage=60",
        ] {
            let mut case = Case::get(200, &[]).request("authorization", "Bearer x");
            case.response
                .insert("cache-control", HeaderValue::from_static(allowing));
            assert_eq!(case.decide(), Ok(vec![]), "{allowing}");
        }
    }

    #[test]
    fn s3_heuristically_cacheable_status_with_a_validator_is_stored() {
        let case = Case::get(200, &[("last-modified", "Thu, 01 Jan 2015 00:00:00 GMT")]);
        assert_eq!(case.decide(), Ok(vec![]));
        let etag_only = Case::get(404, &[("etag", "\"v1\"")]);
        assert_eq!(etag_only.decide(), Ok(vec![]));
    }

    #[test]
    fn s3_other_status_without_explicit_freshness_is_not_stored() {
        let case = Case::get(302, &[("last-modified", "Thu, 01 Jan 2015 00:00:00 GMT")]);
        assert_eq!(case.decide(), Err(NotStored::NotCacheable));
        let explicit = Case::get(302, &[("cache-control", "max-age=60")]);
        assert_eq!(explicit.decide(), Ok(vec![]));
    }

    #[test]
    fn no_freshness_and_no_validator_is_not_stored() {
        assert_eq!(Case::get(200, &[]).decide(), Err(NotStored::NotCacheable));
    }

    #[test]
    fn s4_1_vary_star_is_not_stored() {
        let case = Case::get(
            200,
            &[("cache-control", "max-age=60"), ("vary", "accept, *")],
        );
        assert_eq!(case.decide(), Err(NotStored::VaryAny));
    }

    #[test]
    fn set_cookie_is_not_shared_unless_the_site_or_origin_says_so() {
        let case = Case::get(
            200,
            &[("cache-control", "max-age=60"), ("set-cookie", "s=1")],
        );
        assert_eq!(case.decide(), Err(NotStored::SetCookie));
        let mut allowed = Case::get(
            200,
            &[("cache-control", "max-age=60"), ("set-cookie", "s=1")],
        );
        allowed.settings.share_set_cookie = true;
        assert_eq!(allowed.decide(), Ok(vec![]));
        let qualified = Case::get(
            200,
            &[
                ("cache-control", "max-age=60, private=\"set-cookie\""),
                ("set-cookie", "s=1"),
            ],
        );
        assert_eq!(qualified.decide(), Ok(vec![SET_COOKIE]));
        let revalidated = Case::get(
            200,
            &[
                ("cache-control", "max-age=60, no-cache=\"set-cookie\""),
                ("set-cookie", "s=1"),
            ],
        );
        assert_eq!(revalidated.decide(), Ok(vec![]));
    }

    #[test]
    fn deception_armour_stores_only_what_names_a_lifetime() {
        use super::super::deception::Deception;
        let armoured = |response: &[(&'static str, &'static str)]| {
            let mut case = Case::get(200, response);
            case.settings.deception = Some(Deception::Credentials);
            case.decide()
        };
        let heuristic = [("last-modified", "Thu, 01 Jan 2015 00:00:00 GMT")];
        assert_eq!(armoured(&heuristic), Err(NotStored::Deception));
        assert_eq!(armoured(&[("etag", "\"v1\"")]), Err(NotStored::Deception));
        // public says it may be shared, not for how long: the lifetime would still be a guess.
        assert_eq!(
            armoured(&[("cache-control", "public"), heuristic[0]]),
            Err(NotStored::Deception)
        );
        for lifetime in [
            ("cache-control", "max-age=60"),
            ("cache-control", "s-maxage=60"),
            ("expires", "Thu, 01 Jan 2099 00:00:00 GMT"),
        ] {
            assert_eq!(armoured(&[lifetime]), Ok(vec![]), "{lifetime:?}");
        }
        let mut ttl = Case::get(200, &heuristic);
        ttl.settings.deception = Some(Deception::TypeBeliesExtension);
        ttl.settings.has_edge_ttl = true;
        assert_eq!(ttl.decide(), Ok(vec![]), "the operator's ttl is a lifetime");
        // Without a verdict (armour off, or nothing to fear), the heuristic stands.
        assert_eq!(Case::get(200, &heuristic).decide(), Ok(vec![]));
    }

    #[test]
    fn edge_ttl_makes_a_response_without_freshness_storable() {
        let mut case = Case::get(302, &[]);
        case.settings.has_edge_ttl = true;
        assert_eq!(case.decide(), Ok(vec![]));
    }
}
