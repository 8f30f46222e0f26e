//! The commands that talk to a running `palisade serve` through its admin API, one module
//! per noun (as the API's routes are), and what they share: the connection flags and the
//! output helpers.
//!
//! Every command prints a table (or a short sentence) by default and the API's JSON with
//! `--json`; a refusal prints the server's `error` (and `field`) on stderr and exits 1.

pub mod analytics;
pub mod audit;
pub mod edges;
pub mod reports;
pub mod site;
pub mod suspension;
pub mod token;

use crate::admin_client::{ADMIN_URL_ENV, AdminUrl, Client, DEFAULT_ADMIN_URL, TOKEN_ENV};
use anyhow::{Result, anyhow, bail};
use serde_json::Value;

/// Flags every API command takes (anywhere after its noun: `palisade site list --json`).
#[derive(clap::Args, Debug, Clone)]
pub struct ApiArgs {
    /// The admin API: http://HOST:PORT of `palisade serve`'s admin listener.
    #[arg(long, global = true, value_name = "URL", env = ADMIN_URL_ENV, default_value = DEFAULT_ADMIN_URL)]
    pub admin_url: String,
    /// An API token (the admin token `palisade serve` printed at its first start, or one made
    /// with `palisade token create`).
    #[arg(long, global = true, value_name = "TOKEN", env = TOKEN_ENV, hide_env_values = true)]
    pub token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

impl ApiArgs {
    /// A client for `--admin-url` with `--token`.
    pub fn client(&self) -> Result<Client> {
        let url = AdminUrl::parse(&self.admin_url).map_err(|e| anyhow!("--admin-url {e}"))?;
        self.client_at(url)
    }

    /// A client for `url` with `--token`; a clear error when there is no token.
    pub fn client_at(&self, url: AdminUrl) -> Result<Client> {
        match self.token.as_deref().map(str::trim) {
            Some(token) if !token.is_empty() => Client::new(url, token),
            _ => bail!(
                "no API token: pass --token TOKEN or set {TOKEN_ENV}=TOKEN (the admin token \
                 `palisade serve` printed at its first start, or one from `palisade token create`)"
            ),
        }
    }
}

/// Prints `value` as indented JSON (what `--json` prints).
pub fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// `text` as one line of printable text: line breaks and tabs become spaces, other control
/// characters and bidirectional overrides become `?`. What the API returns may hold what a
/// stranger typed (abuse reports), and an escape sequence must not reach the terminal.
pub fn clean_line(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\n' | '\r' | '\t' => ' ',
            c if is_unsafe(c) => '?',
            c => c,
        })
        .collect()
}

/// [`clean_line`] that keeps line breaks, for a multi-line field shown on its own.
pub fn clean_text(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\n' => '\n',
            '\t' => ' ',
            c if is_unsafe(c) => '?',
            c => c,
        })
        .collect()
}

fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// At most `max` characters of `text`, ending in `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// A JSON value as a table cell: strings bare, arrays comma-separated, absent as `-`.
pub fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| cell(Some(v)))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    }
}

/// The API's times (milliseconds since the Unix epoch) as RFC 3339 UTC, to the second.
pub fn format_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// A time field of an API object, formatted; `-` when absent.
pub fn time_cell(value: Option<&Value>) -> String {
    value
        .and_then(Value::as_i64)
        .map_or_else(|| "-".to_string(), format_time)
}

/// Days since 1970-01-01 to a (year, month, day) of the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A byte count for people: `512 B`, `3.4 KiB`, `1.2 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn times_are_rfc_3339_utc() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(1_700_000_000_123), "2023-11-14T22:13:20Z");
        assert_eq!(format_time(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(format_time(-1000), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn cells_flatten_json() {
        assert_eq!(
            cell(Some(&json!(["a.example", "b.example"]))),
            "a.example,b.example"
        );
        assert_eq!(cell(Some(&json!(null))), "-");
        assert_eq!(cell(None), "-");
        assert_eq!(cell(Some(&json!(12))), "12");
    }

    #[test]
    fn text_from_strangers_cannot_drive_the_terminal() {
        assert_eq!(clean_line("a\x1b[31mb\u{202e}c\nd"), "a?[31mb?c d");
        assert_eq!(clean_text("one\ntwo\x07"), "one\ntwo?");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
    }

    #[test]
    fn bytes_read_as_people_say_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3482), "3.4 KiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
    }
}
