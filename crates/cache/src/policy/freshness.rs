//! Freshness (RFC 9111 §4.2): how long a stored response is fresh, and how old it is now.
//!
//! Times are whole seconds since the Unix epoch, as HTTP dates and `Age` are whole seconds.

use super::directives::{DELTA_SECONDS_MAX, ResponseDirectives};
use http::header::{AGE, DATE, EXPIRES, LAST_MODIFIED};
use http::{HeaderMap, StatusCode};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Upper bound on a heuristic freshness lifetime. §4.2.2 leaves the algorithm to the cache;
/// 10% of the time since Last-Modified (its "typical setting") capped at one day is what Squid
/// and Traffic Server do by default, and keeps a guess from outliving a day.
pub const HEURISTIC_MAX: u64 = 24 * 60 * 60;

/// What §4.2.1 and §4.2.3 need from a response, fixed when it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// `corrected_initial_age` of §4.2.3: the response's age when it arrived.
    pub initial_age: u64,
    /// When the response arrived (`response_time` of §4.2.3).
    pub response_time: u64,
    /// The freshness lifetime (§4.2.1), after any edge TTL override.
    pub lifetime: u64,
    /// The lifetime is a §4.2.2 guess, not the origin's word.
    pub heuristic: bool,
}

impl Timing {
    /// §4.2.3 `current_age`: the initial age plus the time spent in this cache.
    pub fn current_age(&self, now: u64) -> u64 {
        self.initial_age
            .saturating_add(now.saturating_sub(self.response_time))
    }

    /// §4.2: fresh while the freshness lifetime exceeds the current age.
    pub fn is_fresh(&self, now: u64) -> bool {
        self.lifetime > self.current_age(now)
    }

    /// Seconds the response has been stale (0 while fresh).
    pub fn staleness(&self, now: u64) -> u64 {
        self.current_age(now).saturating_sub(self.lifetime)
    }

    /// Seconds of freshness left (0 once stale).
    pub fn remaining(&self, now: u64) -> u64 {
        self.lifetime.saturating_sub(self.current_age(now))
    }
}

/// Works out a response's [`Timing`] as it arrives.
///
/// `request_time` / `response_time`: when the request that produced it was sent and when the
/// response arrived. `edge_ttl`: the operator's override of the freshness lifetime (the origin's
/// no-store, private and no-cache still apply: they are not about freshness).
pub fn timing(
    status: StatusCode,
    headers: &HeaderMap,
    directives: &ResponseDirectives,
    request_time: u64,
    response_time: u64,
    edge_ttl: Option<Duration>,
) -> Timing {
    let date = single_date(headers, DATE);
    let age = age_field(headers);
    let initial_age = initial_age(age, date, request_time, response_time);
    let (lifetime, heuristic) = match edge_ttl {
        Some(ttl) => (ttl.as_secs(), false),
        // §5.1 would have an invalid Age ignored, which reads a response of unknown age as
        // brand new: the least safe guess. §4.2.1's rule for invalid freshness information is
        // the safe one: consider the response stale.
        None if age == AgeField::Invalid => (0, false),
        None => lifetime(status, headers, directives, date, response_time),
    };
    Timing {
        initial_age,
        response_time,
        lifetime,
        heuristic,
    }
}

/// §4.2.3's `corrected_initial_age`.
fn initial_age(age: AgeField, date: DateField, request_time: u64, response_time: u64) -> u64 {
    let age_value = match age {
        AgeField::Valid(seconds) => seconds,
        // Unknown: the apparent age and the round trip still count (and the lifetime is 0).
        AgeField::Absent | AgeField::Invalid => 0,
    };
    let date_value = match date {
        DateField::Valid(d) => d,
        // Without a usable Date the apparent age is unknown; the response's own Age and the
        // round trip still count.
        _ => response_time,
    };
    let apparent_age = response_time.saturating_sub(date_value);
    let response_delay = response_time.saturating_sub(request_time);
    let corrected_age_value = age_value.saturating_add(response_delay);
    apparent_age.max(corrected_age_value)
}

/// The `Age` field (§5.1) as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgeField {
    /// Not sent.
    Absent,
    /// The first member is not delta-seconds.
    Invalid,
    /// The age, in seconds (at most 2^31).
    Valid(u64),
}

/// Reads `Age` (§5.1): "a cache encountering a message with a list-based Age field value
/// SHOULD use the first member of the field value, discarding subsequent ones", over all its
/// lines (RFC 9110 §5.3), skipping empty members (RFC 9110 §5.6.1). A first member that is not
/// delta-seconds makes the field invalid; one too large to represent counts as 2^31 (§1.2.2).
pub fn age_field(headers: &HeaderMap) -> AgeField {
    for line in headers.get_all(AGE) {
        let Some(first) = line
            .as_bytes()
            .split(|b| *b == b',')
            .map(<[u8]>::trim_ascii)
            .find(|member| !member.is_empty())
        else {
            continue;
        };
        if !first.iter().all(u8::is_ascii_digit) {
            return AgeField::Invalid;
        }
        let seconds = std::str::from_utf8(first)
            .ok()
            .and_then(|text| text.parse::<u64>().ok())
            .map_or(DELTA_SECONDS_MAX, |s| s.min(DELTA_SECONDS_MAX));
        return AgeField::Valid(seconds);
    }
    AgeField::Absent
}

/// §4.2.1: the freshness lifetime, in order of precedence, then §4.2.2's heuristic.
fn lifetime(
    status: StatusCode,
    headers: &HeaderMap,
    d: &ResponseDirectives,
    date: DateField,
    response_time: u64,
) -> (u64, bool) {
    // A shared cache takes s-maxage first. An invalid value (`Delta::Invalid`) gives 0: §4.2.1's
    // "consider the response stale".
    if let Some(s_maxage) = d.s_maxage {
        return (s_maxage.seconds().unwrap_or(0), false);
    }
    if let Some(max_age) = d.max_age {
        return (max_age.seconds().unwrap_or(0), false);
    }
    // RFC 9213 §2.2: directives from a targeted field make the cache ignore Expires.
    let expires = match d.targeted {
        Some(_) => DateField::Absent,
        None => single_date(headers, EXPIRES),
    };
    match expires {
        DateField::Absent => {}
        // "A cache recipient MUST interpret invalid date formats, especially the value "0", as
        // representing a time in the past" (§5.3); two different Expires: stale (§4.2.1).
        DateField::Invalid => return (0, false),
        DateField::Valid(expires) => {
            let date = match date {
                DateField::Valid(d) => d,
                _ => response_time,
            };
            return (expires.saturating_sub(date), false);
        }
    }
    (
        heuristic_lifetime(status, headers, d, date, response_time),
        true,
    )
}

/// §4.2.2: only without explicit expiration (checked by the caller), only for heuristically
/// cacheable status codes or a `public` response, and only from Last-Modified: 10% of the time
/// since the last change, at most [`HEURISTIC_MAX`]. Without Last-Modified there is nothing to
/// base a guess on and the lifetime is 0 (the response can still be revalidated).
fn heuristic_lifetime(
    status: StatusCode,
    headers: &HeaderMap,
    d: &ResponseDirectives,
    date: DateField,
    response_time: u64,
) -> u64 {
    if !(super::heuristically_cacheable(status) || d.public) {
        return 0;
    }
    let DateField::Valid(last_modified) = single_date(headers, LAST_MODIFIED) else {
        return 0;
    };
    let now = match date {
        DateField::Valid(d) => d,
        _ => response_time,
    };
    (now.saturating_sub(last_modified) / 10).min(HEURISTIC_MAX)
}

/// A date field read per RFC 9110 §5.6.7.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateField {
    /// Not sent.
    Absent,
    /// Unparsable, or several lines that disagree.
    Invalid,
    /// The date, in Unix seconds.
    Valid(u64),
}

/// Reads a date field that must appear once, in any of the three HTTP-date formats
/// ([`super::date`]); identical repeated lines are tolerated.
pub fn single_date(headers: &HeaderMap, name: http::header::HeaderName) -> DateField {
    let mut found = DateField::Absent;
    for value in headers.get_all(name) {
        let parsed = value.to_str().ok().and_then(super::date::parse);
        found = match (found, parsed) {
            (_, None) | (DateField::Invalid, _) => DateField::Invalid,
            (DateField::Absent, Some(t)) => DateField::Valid(t),
            (DateField::Valid(a), Some(b)) if a == b => DateField::Valid(a),
            (DateField::Valid(_), Some(_)) => DateField::Invalid,
        };
    }
    found
}

/// Seconds since the Unix epoch; times before it are 0.
pub fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const T0: u64 = 1_700_000_000;

    fn date(secs: u64) -> HeaderValue {
        let text = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs));
        HeaderValue::from_str(&text).unwrap()
    }

    fn timing_of(h: &HeaderMap, status: u16) -> Timing {
        let d = ResponseDirectives::parse(h);
        timing(StatusCode::from_u16(status).unwrap(), h, &d, T0, T0, None)
    }

    fn with(lines: &[(&'static str, HeaderValue)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in lines {
            h.append(*name, value.clone());
        }
        h
    }

    #[test]
    fn s4_2_1_s_maxage_wins_over_max_age_and_expires_in_a_shared_cache() {
        let h = with(&[
            (
                "cache-control",
                HeaderValue::from_static("max-age=10, s-maxage=100"),
            ),
            ("date", date(T0)),
            ("expires", date(T0 + 1000)),
        ]);
        assert_eq!(timing_of(&h, 200).lifetime, 100);
    }

    #[test]
    fn s4_2_1_max_age_wins_over_expires() {
        let h = with(&[
            ("cache-control", HeaderValue::from_static("max-age=10")),
            ("date", date(T0)),
            ("expires", date(T0 + 1000)),
        ]);
        assert_eq!(timing_of(&h, 200).lifetime, 10);
    }

    #[test]
    fn s4_2_1_expires_minus_date() {
        let h = with(&[("date", date(T0 - 50)), ("expires", date(T0 + 50))]);
        let t = timing_of(&h, 200);
        assert_eq!(t.lifetime, 100);
        // The response was already 50 s old by its Date: apparent age counts.
        assert_eq!(t.initial_age, 50);
        assert!(t.is_fresh(T0 + 49) && !t.is_fresh(T0 + 50));
    }

    #[test]
    fn s5_3_invalid_expires_means_already_expired() {
        for bad in ["0", "yesterday", "Thu, 99 Foo 2024 00:00:00 GMT"] {
            let h = with(&[("expires", HeaderValue::from_static(bad))]);
            let t = timing_of(&h, 200);
            assert_eq!(t.lifetime, 0, "{bad}");
            assert!(!t.heuristic);
        }
    }

    #[test]
    fn s4_2_1_conflicting_expires_lines_are_stale() {
        let h = with(&[("expires", date(T0 + 10)), ("expires", date(T0 + 20))]);
        assert_eq!(timing_of(&h, 200).lifetime, 0);
    }

    #[test]
    fn s4_2_1_invalid_max_age_is_stale_not_ignored() {
        let h = with(&[
            ("cache-control", HeaderValue::from_static("max-age=abc")),
            ("expires", date(T0 + 1000)),
        ]);
        assert_eq!(timing_of(&h, 200).lifetime, 0);
    }

    #[test]
    fn s4_2_2_heuristic_is_a_tenth_of_the_time_since_last_modified() {
        let h = with(&[("date", date(T0)), ("last-modified", date(T0 - 1000))]);
        let t = timing_of(&h, 200);
        assert_eq!((t.lifetime, t.heuristic), (100, true));
    }

    #[test]
    fn s4_2_2_heuristic_is_capped() {
        let h = with(&[
            ("date", date(T0)),
            ("last-modified", date(T0 - 100 * 86_400)),
        ]);
        assert_eq!(timing_of(&h, 200).lifetime, HEURISTIC_MAX);
    }

    #[test]
    fn s4_2_2_no_heuristic_for_status_codes_not_heuristically_cacheable() {
        let h = with(&[("date", date(T0)), ("last-modified", date(T0 - 1000))]);
        assert_eq!(timing_of(&h, 302).lifetime, 0);
        assert_eq!(timing_of(&h, 500).lifetime, 0);
        // ... unless the response is marked public.
        let mut public = h.clone();
        public.insert("cache-control", HeaderValue::from_static("public"));
        assert_eq!(timing_of(&public, 302).lifetime, 100);
    }

    #[test]
    fn s4_2_2_no_heuristic_without_last_modified() {
        let h = with(&[("date", date(T0))]);
        assert_eq!(timing_of(&h, 200).lifetime, 0);
    }

    #[test]
    fn s4_2_3_age_calculation_takes_the_larger_of_apparent_and_corrected_age() {
        // Sent at T0, arrived at T0+2, origin says Age 10 and Date T0-5.
        let h = with(&[
            ("age", HeaderValue::from_static("10")),
            ("date", date(T0 - 5)),
        ]);
        let d = ResponseDirectives::parse(&h);
        let t = timing(StatusCode::OK, &h, &d, T0, T0 + 2, None);
        // apparent = 7, corrected age value = 10 + 2 = 12.
        assert_eq!(t.initial_age, 12);
        assert_eq!(t.current_age(T0 + 2 + 30), 42);
    }

    #[test]
    fn s4_2_3_date_in_the_future_gives_no_negative_age() {
        let h = with(&[("date", date(T0 + 3600))]);
        assert_eq!(timing_of(&h, 200).initial_age, 0);
    }

    #[test]
    fn s5_1_a_list_valued_age_uses_its_first_member() {
        for (lines, age) in [
            (&["7200, 0"][..], 7200),
            (&["7200", "0"][..], 7200),
            (&[", 30, 5"][..], 30),
            (&["", "40"][..], 40),
            (&["99999999999999999999999"][..], DELTA_SECONDS_MAX),
        ] {
            let mut h = HeaderMap::new();
            for line in lines {
                h.append(AGE, HeaderValue::from_str(line).unwrap());
            }
            assert_eq!(age_field(&h), AgeField::Valid(age), "{lines:?}");
            assert_eq!(timing_of(&h, 200).initial_age, age, "{lines:?}");
        }
        // Two hours old by its first member, fresh for one: stale on arrival.
        let h = with(&[
            ("age", HeaderValue::from_static("7200, 0")),
            ("cache-control", HeaderValue::from_static("max-age=3600")),
        ]);
        assert!(!timing_of(&h, 200).is_fresh(T0));
    }

    #[test]
    fn s5_1_invalid_age_makes_the_response_stale_rather_than_new() {
        for bad in ["-1", "ten", "1.5", "0x10", "ten, 5"] {
            let h = with(&[
                ("age", HeaderValue::from_static(bad)),
                ("cache-control", HeaderValue::from_static("max-age=3600")),
            ]);
            assert_eq!(age_field(&h), AgeField::Invalid, "{bad:?}");
            let t = timing_of(&h, 200);
            assert_eq!((t.lifetime, t.initial_age), (0, 0), "{bad:?}");
            assert!(!t.is_fresh(T0), "{bad:?}");
        }
        // An empty field has no member to read: absent, not invalid.
        let h = with(&[("age", HeaderValue::from_static(""))]);
        assert_eq!(age_field(&h), AgeField::Absent);
        // The operator's edge TTL is the operator's word on the lifetime, as with an invalid
        // max-age.
        let h = with(&[("age", HeaderValue::from_static("ten"))]);
        let d = ResponseDirectives::parse(&h);
        let ttl = Some(Duration::from_secs(600));
        assert_eq!(timing(StatusCode::OK, &h, &d, T0, T0, ttl).lifetime, 600);
    }

    #[test]
    fn rfc9110_5_6_7_obsolete_date_formats_count_in_every_date_field() {
        // Expires in asctime, Date in RFC 850, Last-Modified in lowercase IMF-fixdate.
        let expires = with(&[
            (
                "date",
                HeaderValue::from_static("Sunday, 06-Nov-94 08:49:37 GMT"),
            ),
            (
                "expires",
                HeaderValue::from_static("Sun Nov  6 08:50:37 1994"),
            ),
        ]);
        assert_eq!(timing_of(&expires, 200).lifetime, 60);
        let heuristic = with(&[
            ("date", HeaderValue::from_static("Sun Nov  6 08:49:37 1994")),
            (
                "last-modified",
                HeaderValue::from_static("sun, 06 nov 1994 08:32:57 gmt"),
            ),
        ]);
        assert_eq!(timing_of(&heuristic, 200).lifetime, 100);
    }

    #[test]
    fn rfc9213_2_2_expires_is_ignored_with_a_targeted_field() {
        let h = with(&[
            ("date", date(T0)),
            ("expires", date(T0 + 1000)),
            ("last-modified", date(T0 - 1000)),
            ("cdn-cache-control", HeaderValue::from_static("public")),
        ]);
        let targeted = super::super::targeted::response_directives(&h, &["cdn-cache-control"]);
        let t = timing(StatusCode::OK, &h, &targeted, T0, T0, None);
        assert_eq!((t.lifetime, t.heuristic), (100, true));
        let d = ResponseDirectives::parse(&h);
        assert_eq!(timing(StatusCode::OK, &h, &d, T0, T0, None).lifetime, 1000);
    }

    #[test]
    fn edge_ttl_overrides_the_origins_lifetime() {
        let h = with(&[("cache-control", HeaderValue::from_static("max-age=5"))]);
        let d = ResponseDirectives::parse(&h);
        let t = timing(
            StatusCode::OK,
            &h,
            &d,
            T0,
            T0,
            Some(Duration::from_secs(600)),
        );
        assert_eq!(t.lifetime, 600);
    }

    #[test]
    fn staleness_and_remaining_freshness() {
        let h = with(&[("cache-control", HeaderValue::from_static("max-age=10"))]);
        let t = timing_of(&h, 200);
        assert_eq!((t.remaining(T0 + 4), t.staleness(T0 + 4)), (6, 0));
        assert_eq!((t.remaining(T0 + 15), t.staleness(T0 + 15)), (0, 5));
    }
}
