//! Constructing responses from caches (RFC 9111 §4): may a stored response answer this
//! request as it is, while it is refreshed, or only after validation?
//!
//! The target URI and the Vary-nominated fields (§4.1) already matched: that is how the stored
//! response was found. What is left is freshness, the directives on both sides, and the stale
//! allowances of §4.2.4 and RFC 5861.

use super::directives::{Qualified, RequestDirectives, ResponseDirectives};
use super::freshness::Timing;

/// What to do with a stored response that matched a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// Answer from the cache: fresh, or stale within what the client said it accepts
    /// (`max-stale`, §5.2.1.2).
    Hit {
        /// The response is stale, within the client's `max-stale`.
        stale: bool,
    },
    /// Stale within `stale-while-revalidate` (RFC 5861 §3): answer from the cache now and
    /// refresh it once in the background.
    StaleWhileRevalidate,
    /// Validate with the origin first (§4.3). `serve_stale_on_error`: if the origin cannot be
    /// reached or answers 500, 502, 503 or 504, the stored response may be served instead
    /// (RFC 5861 §4, or the site's always-online switch).
    Revalidate {
        /// The stored response may stand in for an origin that fails.
        serve_stale_on_error: bool,
    },
}

/// The site's settings reuse depends on.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReuseSettings {
    /// Ignore a client's `no-cache` / `max-age` (the operator's choice under attack: a flood of
    /// `Cache-Control: no-cache` requests must not all reach the origin).
    pub ignore_client_no_cache: bool,
    /// Serve stale content when the origin fails, as if every response said stale-if-error
    /// without a limit. An origin's must-revalidate, proxy-revalidate, s-maxage or no-cache
    /// still win: they forbid serving stale content (§4.2.4).
    pub always_online: bool,
}

/// Decides how a matching stored response may be used at `now`.
///
/// `soft_purged`: the operator marked it stale (a soft purge): it is treated as stale from now on,
/// but the stale allowances still apply.
pub fn reuse(
    request: &RequestDirectives,
    stored: &ResponseDirectives,
    timing: &Timing,
    now: u64,
    soft_purged: bool,
    settings: ReuseSettings,
) -> Reuse {
    let age = timing.current_age(now);
    let fresh = !soft_purged && timing.is_fresh(now);
    let staleness = timing.staleness(now);
    // §4.2.4: "A cache MUST NOT generate a stale response if it is prohibited by an explicit
    // in-protocol directive": must-revalidate (§5.2.2.2), proxy-revalidate (§5.2.2.8) and
    // s-maxage (§5.2.2.10) for a shared cache, and no-cache (§5.2.2.4).
    let stale_forbidden = stored.must_revalidate
        || stored.proxy_revalidate
        || stored.s_maxage.is_some()
        || stored.no_cache == Qualified::All;
    let serve_stale_on_error = !stale_forbidden && {
        let window = [stored.stale_if_error, request.stale_if_error]
            .into_iter()
            .flatten()
            .filter_map(|d| d.seconds())
            .max();
        settings.always_online || window.is_some_and(|w| staleness <= w)
    };
    let revalidate = Reuse::Revalidate {
        serve_stale_on_error,
    };

    // §5.2.2.4: unqualified no-cache: never used without successful validation.
    if stored.no_cache == Qualified::All {
        return revalidate;
    }
    if !settings.ignore_client_no_cache {
        // §5.2.1.4: the client asks for validation.
        if request.no_cache {
            return revalidate;
        }
        // §5.2.1.1: not older than max-age.
        if request
            .max_age
            .is_some_and(|d| d.seconds().is_none_or(|max| age > max))
        {
            return revalidate;
        }
        // §5.2.1.3: fresh for at least min-fresh more seconds.
        if fresh
            && request
                .min_fresh
                .is_some_and(|d| d.seconds().is_none_or(|min| timing.remaining(now) < min))
        {
            return revalidate;
        }
    }
    if fresh {
        return Reuse::Hit { stale: false };
    }
    if stale_forbidden {
        return revalidate;
    }
    // §5.2.1.2: the client accepts a response stale by at most max-stale seconds (any, without
    // a value).
    let client_accepts = match request.max_stale {
        Some(None) => true,
        Some(Some(d)) => d.seconds().is_some_and(|max| staleness <= max),
        None => false,
    };
    if client_accepts && !settings.ignore_client_no_cache {
        return Reuse::Hit { stale: true };
    }
    if stored
        .stale_while_revalidate
        .and_then(|d| d.seconds())
        .is_some_and(|window| staleness <= window)
    {
        return Reuse::StaleWhileRevalidate;
    }
    revalidate
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};

    const NOW: u64 = 1_700_000_000;

    fn directives(value: &'static str) -> ResponseDirectives {
        let mut h = HeaderMap::new();
        h.insert("cache-control", HeaderValue::from_static(value));
        ResponseDirectives::parse(&h)
    }

    fn request(value: &'static str) -> RequestDirectives {
        let mut h = HeaderMap::new();
        if !value.is_empty() {
            h.insert("cache-control", HeaderValue::from_static(value));
        }
        RequestDirectives::parse(&h)
    }

    /// A response stored `age` seconds ago with a lifetime of `lifetime` seconds.
    fn timing(lifetime: u64, age: u64) -> Timing {
        Timing {
            initial_age: 0,
            response_time: NOW - age,
            lifetime,
            heuristic: false,
        }
    }

    fn decide(req: &'static str, stored: &'static str, lifetime: u64, age: u64) -> Reuse {
        reuse(
            &request(req),
            &directives(stored),
            &timing(lifetime, age),
            NOW,
            false,
            ReuseSettings::default(),
        )
    }

    const REVALIDATE: Reuse = Reuse::Revalidate {
        serve_stale_on_error: false,
    };

    #[test]
    fn s4_2_fresh_is_a_hit_and_stale_is_revalidated() {
        assert_eq!(
            decide("", "max-age=60", 60, 10),
            Reuse::Hit { stale: false }
        );
        assert_eq!(decide("", "max-age=60", 60, 60), REVALIDATE);
    }

    #[test]
    fn s5_2_2_4_no_cache_response_is_always_revalidated() {
        assert_eq!(decide("", "max-age=60, no-cache", 60, 1), REVALIDATE);
        // The qualified form does not force validation (the named fields are dropped instead).
        assert_eq!(
            decide("", "max-age=60, no-cache=\"set-cookie\"", 60, 1),
            Reuse::Hit { stale: false }
        );
    }

    #[test]
    fn s5_2_1_4_client_no_cache_revalidates_unless_the_site_ignores_it() {
        assert_eq!(decide("no-cache", "max-age=60", 60, 1), REVALIDATE);
        let ignored = reuse(
            &request("no-cache"),
            &directives("max-age=60"),
            &timing(60, 1),
            NOW,
            false,
            ReuseSettings {
                ignore_client_no_cache: true,
                ..Default::default()
            },
        );
        assert_eq!(ignored, Reuse::Hit { stale: false });
    }

    #[test]
    fn s5_2_1_1_client_max_age_limits_the_age() {
        assert_eq!(decide("max-age=5", "max-age=60", 60, 10), REVALIDATE);
        assert_eq!(
            decide("max-age=0", "max-age=60", 60, 0),
            Reuse::Hit { stale: false }
        );
        assert_eq!(decide("max-age=0", "max-age=60", 60, 1), REVALIDATE);
        assert_eq!(
            decide("max-age=20", "max-age=60", 60, 10),
            Reuse::Hit { stale: false }
        );
    }

    #[test]
    fn s5_2_1_3_min_fresh_needs_remaining_freshness() {
        assert_eq!(decide("min-fresh=30", "max-age=60", 60, 40), REVALIDATE);
        assert_eq!(
            decide("min-fresh=30", "max-age=60", 60, 10),
            Reuse::Hit { stale: false }
        );
    }

    #[test]
    fn s5_2_1_2_max_stale_accepts_bounded_staleness() {
        assert_eq!(
            decide("max-stale=30", "max-age=60", 60, 80),
            Reuse::Hit { stale: true }
        );
        assert_eq!(decide("max-stale=10", "max-age=60", 60, 80), REVALIDATE);
        assert_eq!(
            decide("max-stale", "max-age=60", 60, 10_000),
            Reuse::Hit { stale: true }
        );
    }

    #[test]
    fn s4_2_4_must_revalidate_proxy_revalidate_and_s_maxage_forbid_stale() {
        for stored in [
            "max-age=60, must-revalidate, stale-while-revalidate=100, stale-if-error=100",
            "max-age=60, proxy-revalidate, stale-while-revalidate=100, stale-if-error=100",
            "s-maxage=60, stale-while-revalidate=100, stale-if-error=100",
        ] {
            assert_eq!(decide("max-stale", stored, 60, 80), REVALIDATE, "{stored}");
        }
    }

    #[test]
    fn rfc5861_3_stale_while_revalidate_within_its_window() {
        let stored = "max-age=60, stale-while-revalidate=30";
        assert_eq!(decide("", stored, 60, 80), Reuse::StaleWhileRevalidate);
        assert_eq!(decide("", stored, 60, 91), REVALIDATE);
    }

    #[test]
    fn rfc5861_4_stale_if_error_within_its_window() {
        let stored = "max-age=60, stale-if-error=100";
        let allowed = Reuse::Revalidate {
            serve_stale_on_error: true,
        };
        assert_eq!(decide("", stored, 60, 150), allowed);
        assert_eq!(decide("", stored, 60, 161), REVALIDATE);
        // The request can grant it too (RFC 5861 §4 applies to requests as well).
        assert_eq!(
            decide("stale-if-error=1000", "max-age=60", 60, 500),
            allowed
        );
    }

    #[test]
    fn always_online_serves_stale_on_error_unless_the_origin_forbids_stale() {
        let settings = ReuseSettings {
            always_online: true,
            ..Default::default()
        };
        let online = |stored| {
            reuse(
                &request(""),
                &directives(stored),
                &timing(60, 10_000),
                NOW,
                false,
                settings,
            )
        };
        assert_eq!(
            online("max-age=60"),
            Reuse::Revalidate {
                serve_stale_on_error: true
            }
        );
        assert_eq!(online("max-age=60, must-revalidate"), REVALIDATE);
    }

    #[test]
    fn soft_purge_makes_a_fresh_response_stale_but_keeps_stale_allowances() {
        let stored = directives("max-age=600, stale-while-revalidate=60");
        let settings = ReuseSettings::default();
        let soft = reuse(&request(""), &stored, &timing(600, 5), NOW, true, settings);
        assert_eq!(soft, Reuse::StaleWhileRevalidate);
        let plain = directives("max-age=600");
        let soft = reuse(&request(""), &plain, &timing(600, 5), NOW, true, settings);
        assert_eq!(soft, REVALIDATE);
    }
}
