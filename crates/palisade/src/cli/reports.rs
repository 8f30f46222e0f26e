//! `palisade reports`: the abuse desk's queue (`/api/reports`), urgent reports first, and
//! its triage.

use super::{ApiArgs, cell, clean_line, clean_text, print_json, time_cell, truncate};
use crate::admin_client::{query, segment};
use crate::table::Table;
use anyhow::Result;
use clap::Subcommand;
use serde_json::{Map, Value};

#[derive(Subcommand, Debug)]
pub enum Action {
    /// The queue: urgent reports (violent threats, doxxing, CSAM) first, then newest first.
    List {
        /// Only reports in this status: new, reviewing, actioned, dismissed.
        #[arg(long)]
        status: Option<String>,
        /// Only reports about this site.
        #[arg(long)]
        site: Option<String>,
        /// At most this many [default: the API's, 100].
        #[arg(long)]
        limit: Option<usize>,
    },
    /// One report in full.
    Show {
        /// The report's id (`reports list` shows them).
        id: String,
    },
    /// Triage a report: a new status, notes, or both.
    #[command(group(clap::ArgGroup::new("change").required(true).multiple(true).args(["status", "notes"])))]
    Update {
        /// The report's id.
        id: String,
        /// new, reviewing, actioned or dismissed.
        #[arg(long)]
        status: Option<String>,
        /// The operator's notes (replace the previous ones).
        #[arg(long)]
        notes: Option<String>,
    },
}

pub fn run(api: &ApiArgs, action: Action) -> Result<()> {
    let client = api.client()?;
    let answer = match action {
        Action::List {
            status,
            site,
            limit,
        } => {
            let path = format!(
                "/api/reports{}",
                query(&[
                    ("status", status),
                    ("site", site),
                    ("limit", limit.map(|n| n.to_string())),
                ])
            );
            let answer = client.get(&path)?;
            if !api.json {
                print!("{}", reports_table(&answer));
            }
            answer
        }
        Action::Show { id } => {
            let answer = client.get(&format!("/api/reports/{}", segment(&id)))?;
            if !api.json {
                print!("{}", show(&answer));
            }
            answer
        }
        Action::Update { id, status, notes } => {
            let mut body = Map::new();
            if let Some(status) = status {
                body.insert("status".into(), Value::from(status));
            }
            if let Some(notes) = notes {
                body.insert("notes".into(), Value::from(notes));
            }
            let answer = client.patch(
                &format!("/api/reports/{}", segment(&id)),
                &Value::Object(body),
            )?;
            if !api.json {
                println!("report {id} is {}", cell(answer.get("status")));
            }
            answer
        }
    };
    if api.json {
        print_json(&answer);
    }
    Ok(())
}

fn reports_table(answer: &Value) -> Table {
    let mut table = Table::new(&[
        "ID", "URGENT", "RECEIVED", "SITE", "CATEGORY", "STATUS", "URL",
    ]);
    for report in answer["reports"].as_array().into_iter().flatten() {
        let urls = report["urls"].as_array().map_or(&[][..], Vec::as_slice);
        let url = match urls {
            [] => "-".to_string(),
            [one] => truncate(&cell(Some(one)), 60),
            [first, rest @ ..] => format!("{} (+{})", truncate(&cell(Some(first)), 60), rest.len()),
        };
        table.row([
            cell(report.get("id")),
            if report["urgent"] == Value::Bool(true) {
                "URGENT"
            } else {
                ""
            }
            .to_string(),
            time_cell(report.get("received_at")),
            cell(report.get("site")),
            cell(report.get("category")),
            cell(report.get("status")),
            url,
        ]);
    }
    table
}

/// One report, field by field; what the reporter wrote is shown as text, never interpreted.
fn show(report: &Value) -> String {
    let mut out = String::new();
    let mut line =
        |name: &str, value: String| out.push_str(&format!("{name:<12} {}\n", clean_line(&value)));
    line("id", cell(report.get("id")));
    line(
        "urgent",
        if report["urgent"] == Value::Bool(true) {
            "yes".into()
        } else {
            "no".into()
        },
    );
    line("category", cell(report.get("category")));
    line("status", cell(report.get("status")));
    line("received", time_cell(report.get("received_at")));
    line("updated", time_cell(report.get("updated_at")));
    line("site", cell(report.get("site")));
    line("host", cell(report.get("host")));
    line("reporter", cell(report.get("reporter_ip")));
    line("user agent", cell(report.get("user_agent")));
    line("contact", cell(report.get("contact")));
    for url in report["urls"].as_array().into_iter().flatten() {
        line("url", cell(Some(url)));
    }
    for (title, key) in [("description", "description"), ("notes", "notes")] {
        let text = report.get(key).and_then(Value::as_str).unwrap_or("");
        if !text.is_empty() {
            out.push_str(&format!("\n{title}:\n"));
            for text_line in clean_text(text).lines() {
                out.push_str(&format!("  {text_line}\n"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn urgent_reports_are_marked_and_extra_urls_counted() {
        let text = reports_table(&json!({"reports": [
            {"id": 7, "urgent": true, "received_at": 0, "site": "blog", "category": "violent_threat", "status": "new", "urls": ["http://blog.example/x", "http://blog.example/y"]},
            {"id": 3, "urgent": false, "received_at": 0, "site": null, "category": "phishing", "status": "reviewing", "urls": []},
        ]}))
        .to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with("7   URGENT  "), "{text}");
        assert!(lines[1].ends_with("http://blog.example/x (+1)"), "{text}");
        assert!(lines[2].starts_with("3           "), "{text}");
    }

    #[test]
    fn a_reporters_text_is_shown_inert() {
        let text = show(
            &json!({"id": 1, "urgent": false, "urls": ["http://a.example/\x1b[2J"],
            "description": "line one\nline two\x1b]0;owned\x07", "notes": ""}),
        );
        assert!(
            text.contains("url          http://a.example/?[2J\n"),
            "{text}"
        );
        assert!(
            text.contains("\ndescription:\n  line one\n  line two?]0;owned?\n"),
            "{text}"
        );
        assert!(!text.contains("notes:"));
    }
}
