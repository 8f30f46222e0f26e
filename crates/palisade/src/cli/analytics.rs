//! `palisade analytics SITE [--since 1h]`: a site's traffic from the stored per-minute
//! rollups (`/api/sites/{site}/analytics`): totals, status classes, cache outcomes, what the
//! shield blocked and challenged by reason, and the top paths and clients of the last hour.

use super::{ApiArgs, cell, format_time, human_bytes, print_json, truncate};
use crate::admin_client::{query, segment};
use crate::table::Table;
use anyhow::Result;
use serde_json::Value;
use std::fmt::Write;

#[derive(clap::Args, Debug)]
pub struct AnalyticsArgs {
    /// The site, by name.
    pub site: String,
    /// From when: a duration back from now (`90m`, `24h`, `7d`) or unix seconds.
    #[arg(long, default_value = "1h")]
    pub since: String,
}

pub fn run(api: &ApiArgs, args: AnalyticsArgs) -> Result<()> {
    let client = api.client()?;
    let path = format!(
        "/api/sites/{}/analytics{}",
        segment(&args.site),
        query(&[("since", Some(args.since))])
    );
    let answer = client.get(&path)?;
    if api.json {
        print_json(&answer);
    } else {
        print!("{}", render(&answer));
    }
    Ok(())
}

fn count(value: &Value, key: &str) -> u64 {
    value.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// The summary as sections of small tables.
fn render(answer: &Value) -> String {
    let totals = &answer["totals"];
    let listed = answer["minutes"].as_array();
    let minutes = listed.map_or(0, Vec::len);
    let under_way = listed
        .and_then(|m| m.last())
        .is_some_and(|m| m["partial"] == true);
    let since = answer["since"]
        .as_i64()
        .map_or_else(|| "-".to_string(), |s| format_time(s * 1000));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "site {} since {since}: {minutes} minute{} with traffic{}\n",
        cell(answer.get("site")),
        if minutes == 1 { "" } else { "s" },
        if under_way {
            " (the last one still under way: counted so far)"
        } else {
            ""
        }
    );
    let mut summary = Table::new(&["TOTALS", ""]);
    summary.row([
        "requests".to_string(),
        count(totals, "requests").to_string(),
    ]);
    summary.row([
        "bytes in".to_string(),
        human_bytes(count(totals, "bytes_in")),
    ]);
    summary.row([
        "bytes out".to_string(),
        human_bytes(count(totals, "bytes_out")),
    ]);
    let _ = writeln!(out, "{summary}");

    let mut status = Table::new(&["STATUS", "REQUESTS"]);
    for class in ["1xx", "2xx", "3xx", "4xx", "5xx"] {
        status.row([
            class.to_string(),
            count(totals, &format!("status_{class}")).to_string(),
        ]);
    }
    let _ = writeln!(out, "{status}");

    let mut cache = Table::new(&["CACHE", "REQUESTS"]);
    for outcome in ["hit", "miss", "stale", "revalidated", "pass"] {
        cache.row([
            outcome.to_string(),
            count(totals, &format!("cache_{outcome}")).to_string(),
        ]);
    }
    let _ = writeln!(out, "{cache}");

    for (title, key) in [
        ("BLOCKED (reason)", "blocked"),
        ("CHALLENGED (reason)", "challenged"),
    ] {
        let mut table = Table::new(&[title, "REQUESTS"]);
        let reasons = totals[key].as_object().into_iter().flatten();
        for (reason, n) in reasons {
            table.row([reason.clone(), cell(Some(n))]);
        }
        if table.is_empty() {
            table.row(["none", ""]);
        }
        let _ = writeln!(out, "{table}");
    }

    for (title, column, key) in [
        ("TOP PATHS (last hour)", "PATH", "top_paths"),
        ("TOP CLIENTS (last hour)", "CLIENT", "top_clients"),
    ] {
        let _ = writeln!(out, "{title}");
        let mut table = Table::new(&[column, "REQUESTS"]);
        for pair in answer[key].as_array().into_iter().flatten() {
            table.row([truncate(&cell(pair.get(0)), 80), cell(pair.get(1))]);
        }
        if table.is_empty() {
            table.row(["none", ""]);
        }
        let _ = writeln!(out, "{table}");
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_section_is_there_even_with_no_traffic() {
        let text = render(
            &json!({"site": "blog", "since": 0, "totals": {}, "top_paths": [], "top_clients": [], "minutes": []}),
        );
        assert!(
            text.starts_with("site blog since 1970-01-01T00:00:00Z: 0 minutes with traffic\n"),
            "{text}"
        );
        for heading in [
            "TOTALS",
            "STATUS",
            "CACHE",
            "BLOCKED (reason)",
            "CHALLENGED (reason)",
            "TOP PATHS",
            "TOP CLIENTS",
        ] {
            assert!(text.contains(heading), "{heading} missing:\n{text}");
        }
        assert!(text.contains("\nrequests   0\n"), "{text}");
    }

    #[test]
    fn the_minute_under_way_is_said_to_be_partial() {
        let text = render(&json!({
            "site": "default", "since": 0, "totals": {"requests": 2},
            "top_paths": [], "top_clients": [], "minutes": [{"minute": 0, "requests": 2, "partial": true}]
        }));
        assert!(
            text.contains(
                ": 1 minute with traffic (the last one still under way: counted so far)\n"
            ),
            "{text}"
        );
        assert!(text.contains("\nrequests   2\n"), "{text}");
    }

    #[test]
    fn counts_reasons_and_top_lists_are_shown() {
        let text = render(&json!({
            "site": "blog", "since": 0,
            "totals": {"requests": 12, "bytes_out": 4096, "status_2xx": 10, "status_4xx": 2, "cache_hit": 7,
                       "blocked": {"rule": 2}, "challenged": {}},
            "top_paths": [["/a", 8], ["/b", 4]], "top_clients": [["192.0.2.1", 12]], "minutes": [{}, {}]
        }));
        assert!(text.contains("2 minutes with traffic\n"), "{text}");
        assert!(text.contains("bytes out  4.0 KiB"), "{text}");
        assert!(text.contains("\n2xx     10\n"), "{text}");
        assert!(text.contains("\nhit          7\n"), "{text}");
        assert!(text.contains("\nrule              2\n"), "{text}");
        assert!(text.contains("\n/a    8\n"), "{text}");
        assert!(text.contains("\n192.0.2.1  12\n"), "{text}");
    }
}
