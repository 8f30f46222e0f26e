//! The `time` field: RFC 3339 in UTC with milliseconds (`2026-11-25T15:38:31.638Z`), the bytes
//! `humantime::format_rfc3339_millis` has always written there, without the formatting
//! machinery. A buffer sees many lines within one second, so the date and time of day are worked
//! out once per second and copied after that.

use std::time::{SystemTime, UNIX_EPOCH};

/// The last second written, as text; one per buffer, so no lock guards it beyond the buffer's.
pub(super) struct SecondStamp {
    second: u64,
    text: [u8; 19],
}

/// The last second RFC 3339's four-digit year can show (9999-12-31T23:59:59Z). A clock beyond it
/// is a broken clock; its lines say so by showing that second rather than wrapping around.
const LAST_SECOND: u64 = 253_402_300_799;

impl SecondStamp {
    pub(super) fn new() -> SecondStamp {
        SecondStamp {
            second: u64::MAX,
            text: *b"0000-00-00T00:00:00",
        }
    }

    /// Appends `time` as `YYYY-MM-DDTHH:MM:SS.mmmZ`. A clock set before 1970 shows the epoch.
    pub(super) fn write(&mut self, time: SystemTime, out: &mut Vec<u8>) {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let (second, millis) = match since.as_secs() {
            s if s > LAST_SECOND => (LAST_SECOND, 999),
            s => (s, since.subsec_millis()),
        };
        if second != self.second {
            self.text = date_and_time(second);
            self.second = second;
        }
        let millis = millis as u16;
        out.extend_from_slice(&self.text);
        out.extend_from_slice(&[
            b'.',
            b'0' + (millis / 100) as u8,
            b'0' + (millis / 10 % 10) as u8,
            b'0' + (millis % 10) as u8,
            b'Z',
        ]);
    }
}

/// `YYYY-MM-DDTHH:MM:SS` of a second since the epoch (at most [`LAST_SECOND`]).
fn date_and_time(second: u64) -> [u8; 19] {
    let (year, month, day) = civil_from_days(second / 86_400);
    let of_day = second % 86_400;
    let (hour, minute, sec) = (of_day / 3600, of_day / 60 % 60, of_day % 60);
    let digit = |n: u64| b'0' + (n % 10) as u8;
    [
        digit(year / 1000),
        digit(year / 100),
        digit(year / 10),
        digit(year),
        b'-',
        digit(month / 10),
        digit(month),
        b'-',
        digit(day / 10),
        digit(day),
        b'T',
        digit(hour / 10),
        digit(hour),
        b':',
        digit(minute / 10),
        digit(minute),
        b':',
        digit(sec / 10),
        digit(sec),
    ]
}

/// Year, month (1-12) and day (1-31) of a day counted from 1970-01-01, in the proleptic
/// Gregorian calendar: Howard Hinnant's `civil_from_days`, which counts in 400-year eras that
/// start on March 1st so that the leap day ends each year.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // days from 0000-03-01
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn stamped(stamp: &mut SecondStamp, time: SystemTime) -> String {
        let mut out = Vec::new();
        stamp.write(time, &mut out);
        String::from_utf8(out).unwrap()
    }

    /// The field's bytes are an interface: they must stay those humantime wrote.
    #[test]
    fn the_same_text_as_humantime_millis_across_leap_days_centuries_and_year_ends() {
        let mut stamp = SecondStamp::new();
        let mut seconds: Vec<u64> = vec![0, 59, 86_399, 86_400, LAST_SECOND];
        // 1970 to 9999 in uneven steps, so that every month and time of day comes up.
        seconds.extend((0..LAST_SECOND).step_by(86_400 * 31 + 3_607));
        for day in [
            "1972-02-29",
            "2000-02-29",
            "2000-03-01",
            "2100-02-28",
            "2100-03-01",
            "2400-02-29",
            "2026-12-31",
            "2027-01-01",
        ] {
            let time = humantime::parse_rfc3339(&format!("{day}T23:59:59Z")).unwrap();
            seconds.push(time.duration_since(UNIX_EPOCH).unwrap().as_secs());
        }
        for second in seconds {
            for millis in [0, 7, 38, 999] {
                let time = UNIX_EPOCH
                    + Duration::from_secs(second)
                    + Duration::from_micros(millis * 1000 + 999);
                assert_eq!(
                    stamped(&mut stamp, time),
                    humantime::format_rfc3339_millis(time).to_string(),
                    "second {second}, millis {millis}"
                );
            }
        }
    }

    #[test]
    fn a_clock_before_1970_or_after_9999_shows_the_nearest_time_it_can() {
        let mut stamp = SecondStamp::new();
        let before = UNIX_EPOCH - Duration::from_secs(3600);
        assert_eq!(stamped(&mut stamp, before), "1970-01-01T00:00:00.000Z");
        let after = UNIX_EPOCH + Duration::from_secs(LAST_SECOND + 86_400 * 400);
        assert_eq!(stamped(&mut stamp, after), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn a_new_second_is_not_shown_with_the_previous_seconds_date() {
        let mut stamp = SecondStamp::new();
        let midnight = humantime::parse_rfc3339("2026-12-31T23:59:59Z").unwrap();
        assert_eq!(
            stamped(&mut stamp, midnight + Duration::from_millis(999)),
            "2026-12-31T23:59:59.999Z"
        );
        assert_eq!(
            stamped(&mut stamp, midnight + Duration::from_millis(1000)),
            "2027-01-01T00:00:00.000Z"
        );
    }
}
