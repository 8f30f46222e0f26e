//! HTTP dates (RFC 9110 §5.6.7), as the cache reads them: in `Date`, `Expires`, `Last-Modified`
//! and the conditional request fields.
//!
//! "A recipient that parses a timestamp value in an HTTP field MUST accept all three HTTP-date
//! formats": the IMF-fixdate every sender must now generate, and the two obsolete ones still
//! met in the wild (old servers, frameworks, `Expires` written by hand):
//!
//! ```text
//! Sun, 06 Nov 1994 08:49:37 GMT    IMF-fixdate
//! Sunday, 06-Nov-94 08:49:37 GMT   obsolete RFC 850 format
//! Sun Nov  6 08:49:37 1994         ANSI C's asctime() format
//! ```
//!
//! Recipients "are encouraged to be robust in parsing timestamps", so beyond the grammar this
//! accepts weekday and month names in any case, `GMT` in any case, runs of spaces where one is
//! written, a four-digit year in the RFC 850 form, and a weekday that does not fit the date
//! (the date is what counts). Anything else is not a date: the caller decides what an invalid
//! date means (for `Expires`, "a time in the past", RFC 9111 §5.3).

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch that `text` names, if it is an HTTP-date in any of the three
/// formats. Dates before 1970 are 0.
///
/// ```
/// use cache::policy::date::parse;
/// assert_eq!(parse("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
/// assert_eq!(parse("Sunday, 06-Nov-94 08:49:37 GMT"), Some(784_111_777));
/// assert_eq!(parse("Sun Nov  6 08:49:37 1994"), Some(784_111_777));
/// assert_eq!(parse("0"), None);
/// ```
pub fn parse(text: &str) -> Option<u64> {
    parse_with(text, current_year)
}

/// [`parse`], with the current year (which only a two-digit year needs) from `current_year`.
fn parse_with(text: &str, current_year: impl FnOnce() -> i64) -> Option<u64> {
    let text = text.trim_matches([' ', '\t']);
    if !text.is_ascii() {
        return None;
    }
    match text.split_once(',') {
        Some((day_name, rest)) => {
            weekday(day_name)?;
            let mut parts = rest.split_ascii_whitespace();
            let first = parts.next()?;
            if first.contains('-') {
                // rfc850-date: day-name-l "," SP day "-" month "-" 2DIGIT SP time-of-day SP GMT
                let [time, zone] = rest_of(parts)?;
                let mut date = first.split('-');
                let (day, month, year) = (date.next()?, date.next()?, date.next()?);
                if date.next().is_some() || !zone.eq_ignore_ascii_case("GMT") {
                    return None;
                }
                let year = match year.len() {
                    2 => two_digit_year(digits(year)?, current_year()),
                    4 => digits(year)?,
                    _ => return None,
                };
                timestamp(year, month, day, time)
            } else {
                // IMF-fixdate: day-name "," SP day SP month SP year SP time-of-day SP GMT
                let [month, year, time, zone] = rest_of(parts)?;
                if year.len() != 4 || !zone.eq_ignore_ascii_case("GMT") {
                    return None;
                }
                timestamp(digits(year)?, month, first, time)
            }
        }
        None => {
            // asctime-date: day-name SP month SP ( 2DIGIT / ( SP DIGIT ) ) SP time-of-day SP year
            let mut parts = text.split_ascii_whitespace();
            weekday(parts.next()?)?;
            let [month, day, time, year] = rest_of(parts)?;
            if year.len() != 4 {
                return None;
            }
            timestamp(digits(year)?, month, day, time)
        }
    }
}

/// Exactly `N` more parts, or none of them.
fn rest_of<'a, const N: usize>(mut parts: impl Iterator<Item = &'a str>) -> Option<[&'a str; N]> {
    let mut out = [""; N];
    for slot in &mut out {
        *slot = parts.next()?;
    }
    parts.next().is_none().then_some(out)
}

/// Day names short (IMF-fixdate, asctime) or long (RFC 850), either accepted in either form.
fn weekday(name: &str) -> Option<()> {
    const DAYS: [(&str, &str); 7] = [
        ("Mon", "Monday"),
        ("Tue", "Tuesday"),
        ("Wed", "Wednesday"),
        ("Thu", "Thursday"),
        ("Fri", "Friday"),
        ("Sat", "Saturday"),
        ("Sun", "Sunday"),
    ];
    DAYS.iter()
        .any(|(short, long)| name.eq_ignore_ascii_case(short) || name.eq_ignore_ascii_case(long))
        .then_some(())
}

fn month(name: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let at = MONTHS.iter().position(|m| name.eq_ignore_ascii_case(m))?;
    Some(at as u32 + 1)
}

/// A run of one to four ASCII digits as a number.
fn digits(text: &str) -> Option<i64> {
    if text.is_empty() || text.len() > 4 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// RFC 9110 §5.6.7: a recipient "MUST interpret a timestamp that appears to be more than 50
/// years in the future as representing the most recent year in the past that had the same
/// last two digits".
fn two_digit_year(last_two: i64, current_year: i64) -> i64 {
    let mut year = current_year - current_year.rem_euclid(100) + last_two;
    if year > current_year + 50 {
        year -= 100;
    }
    year
}

/// Seconds since the epoch of `day month year`, `time` (`hh:mm:ss`), in GMT.
fn timestamp(year: i64, month_name: &str, day: &str, time: &str) -> Option<u64> {
    let month = month(month_name)?;
    if day.len() > 2 {
        return None;
    }
    let day = digits(day)?;
    if !(1..=9999).contains(&year) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let mut clock = time.split(':');
    let (h, m, s) = (clock.next()?, clock.next()?, clock.next()?);
    if clock.next().is_some() || [h, m, s].iter().any(|part| part.len() != 2) {
        return None;
    }
    let (h, m, s) = (digits(h)?, digits(m)?, digits(s)?);
    // A leap second (60) is accepted as the second after :59.
    if h > 23 || m > 59 || s > 60 {
        return None;
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s;
    Some(seconds.max(0) as u64)
}

fn days_in_month(year: i64, month: u32) -> i64 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// This year by the system clock: only a two-digit year needs it.
fn current_year() -> i64 {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // 365.2425 days a year is exact enough to tell which year a day falls in for a 50-year
    // window (off by at most a day around New Year).
    1970 + (seconds / 31_556_952) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1994-11-06 08:49:37 GMT, RFC 9110's example.
    const EXAMPLE: u64 = 784_111_777;

    #[test]
    fn rfc9110_5_6_7_all_three_formats_are_accepted() {
        assert_eq!(parse("Sun, 06 Nov 1994 08:49:37 GMT"), Some(EXAMPLE));
        assert_eq!(parse("Sunday, 06-Nov-94 08:49:37 GMT"), Some(EXAMPLE));
        assert_eq!(parse("Sun Nov  6 08:49:37 1994"), Some(EXAMPLE));
        assert_eq!(parse("Sun Nov 06 08:49:37 1994"), Some(EXAMPLE));
    }

    #[test]
    fn rfc9110_5_6_7_weekday_and_month_names_are_case_insensitive() {
        for text in [
            "sun, 06 nov 1994 08:49:37 GMT",
            "SUN, 06 NOV 1994 08:49:37 gmt",
            "sunday, 06-nov-94 08:49:37 GMT",
            "SUNDAY, 06-NOV-94 08:49:37 GMT",
            "sun nov  6 08:49:37 1994",
            "SUN NOV  6 08:49:37 1994",
        ] {
            assert_eq!(parse(text), Some(EXAMPLE), "{text}");
        }
    }

    #[test]
    fn rfc9110_5_6_7_robust_to_spacing_and_the_weekday() {
        // Extra spaces, the long name in the fixdate, a four-digit RFC 850 year (cookie style),
        // a weekday that does not fit the date: the date is still the date.
        for text in [
            "  Sun,  06 Nov 1994   08:49:37 GMT ",
            "Sunday, 06 Nov 1994 08:49:37 GMT",
            "Sun, 06-Nov-1994 08:49:37 GMT",
            "Mon, 06 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse(text), Some(EXAMPLE), "{text:?}");
        }
    }

    #[test]
    fn rfc9110_5_6_7_two_digit_years_more_than_50_years_ahead_are_in_the_past() {
        let parse_in = |text, year| parse_with(text, || year);
        // In 2025, "74" is 2074 (49 years ahead) and "94" is 1994 (2094 would be 69 ahead).
        assert_eq!(
            parse_in("Sunday, 06-Nov-94 08:49:37 GMT", 2025),
            Some(EXAMPLE)
        );
        let in_2074 = parse_in("Tuesday, 06-Nov-74 08:49:37 GMT", 2025).unwrap();
        assert_eq!(
            in_2074,
            parse("Tue, 06 Nov 2074 08:49:37 GMT").unwrap(),
            "49 years ahead is taken as written"
        );
        // In 2060, "94" is 2094 (34 years ahead).
        assert_eq!(
            parse_in("Sunday, 06-Nov-94 08:49:37 GMT", 2060),
            parse("Fri, 06 Nov 2094 08:49:37 GMT")
        );
    }

    #[test]
    fn the_epoch_leap_days_and_dates_before_1970() {
        assert_eq!(parse("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse("Thu, 29 Feb 2024 00:00:00 GMT"), Some(1_709_164_800));
        assert_eq!(parse("Wed, 31 Dec 1969 23:59:59 GMT"), Some(0));
        assert_eq!(
            parse("Fri, 31 Dec 9999 23:59:59 GMT"),
            Some(253_402_300_799)
        );
    }

    #[test]
    fn what_is_not_an_http_date_is_refused() {
        for text in [
            "",
            "0",
            "-1",
            "yesterday",
            "Thu, 99 Foo 2024 00:00:00 GMT",
            "Thu, 01 Jan 2024 00:00:00",
            "Thu, 01 Jan 2024 00:00:00 CET",
            "Thu, 01 Jan 2024 00:00:00 +0000",
            "Thu, 01 Jan 24 00:00:00 GMT",
            "Thu, 30 Feb 2024 00:00:00 GMT",
            "Thu, 29 Feb 2023 00:00:00 GMT",
            "Thu, 01 Jan 2024 24:00:00 GMT",
            "Thu, 01 Jan 2024 0:00:00 GMT",
            "Thu, 001 Jan 2024 00:00:00 GMT",
            "Thu, 01 Jan 2024 00:00:00 GMT extra",
            "Thu, 01-Jan-24-1 00:00:00 GMT",
            "Someday, 01 Jan 2024 00:00:00 GMT",
            "Thu Jan  1 00:00:00 24",
            "Thu Jan  1 00:00:00 2024 GMT",
            "Thu, 01 Jän 2024 00:00:00 GMT",
            "2024-01-01T00:00:00Z",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn what_the_crate_writes_is_read_back() {
        for secs in [0, 1, EXAMPLE, 1_700_000_000, 4_102_444_800] {
            let text = httpdate::fmt_http_date(UNIX_EPOCH + std::time::Duration::from_secs(secs));
            assert_eq!(parse(&text), Some(secs), "{text}");
        }
    }
}
