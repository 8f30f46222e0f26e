//! `palisade audit`: read the audit log through the API (`list`), and check its hash chain
//! offline, straight from the store's file (`verify`).
//!
//! `verify` opens `<data_dir>/palisade.db` itself rather than asking the server: the point is
//! to check the log without trusting the process that writes it. A chain only proves that
//! nothing before its newest entry changed; cutting entries off the end leaves a shorter valid
//! chain. So `verify` prints the head (`SEQ:HASH`) for the operator to keep elsewhere, and
//! `--head SEQ:HASH` later proves that entry is still there, unchanged.

use super::{ApiArgs, cell, print_json, time_cell, truncate};
use crate::admin_client::query;
use crate::table::Table;
use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use control::store::audit::{self, AuditEntry, Verification};
use control::store::{DB_FILE, Store};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

#[derive(Subcommand, Debug)]
pub enum Action {
    /// Entries through the API, newest first (oldest first with --after).
    List {
        /// Only entries about this target: `site:blog`, `token:tok_…`, `report:12`.
        #[arg(long)]
        target: Option<String>,
        /// At most this many [default: the API's, 100].
        #[arg(long)]
        limit: Option<usize>,
        /// Entries after this sequence number, oldest first (to page forward).
        #[arg(long, value_name = "SEQ")]
        after: Option<i64>,
    },
    /// Check the log's hash chain in the store file, without the server (it may be running
    /// or stopped). Exits 1 on any problem, or when --head is not in the chain.
    Verify {
        /// The data directory [default: from --config, else ./palisade-data].
        #[arg(long, conflicts_with = "config")]
        data: Option<PathBuf>,
        /// Read the data directory from this configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// A head printed by an earlier verify: that entry must still be in the chain with
        /// that hash.
        #[arg(long, value_name = "SEQ:HASH")]
        head: Option<String>,
    },
}

pub fn run(api: &ApiArgs, action: Action) -> Result<()> {
    match action {
        Action::List {
            target,
            limit,
            after,
        } => {
            let client = api.client()?;
            let path = format!(
                "/api/audit{}",
                query(&[
                    ("after", after.map(|n| n.to_string())),
                    ("target", target),
                    ("limit", limit.map(|n| n.to_string())),
                ])
            );
            let answer = client.get(&path)?;
            if api.json {
                print_json(&answer);
            } else {
                print!("{}", entries_table(&answer));
            }
            Ok(())
        }
        Action::Verify { data, config, head } => {
            let head = head.as_deref().map(parse_head).transpose()?;
            let data_dir = crate::data_dir(data, config)?;
            verify(&data_dir, head.as_ref(), api.json)
        }
    }
}

fn entries_table(answer: &Value) -> Table {
    let mut table = Table::new(&["SEQ", "TIME", "ACTOR", "ACTION", "TARGET", "WHAT", "REASON"]);
    for entry in answer["entries"].as_array().into_iter().flatten() {
        let reason = match entry.get("reason") {
            Some(Value::String(reason)) => truncate(reason, 60),
            _ => String::new(),
        };
        table.row([
            cell(entry.get("seq")),
            time_cell(entry.get("at")),
            cell(entry.get("actor")),
            cell(entry.get("action")),
            cell(entry.get("target")),
            truncate(&what(entry), 60),
            reason,
        ]);
    }
    table
}

/// What an entry changed, in a few words, for the actions whose target alone does not say:
/// what a purge selected, the states a switch went between, the keys an update changed.
fn what(entry: &Value) -> String {
    let (before, after) = (&entry["before"], &entry["after"]);
    match entry["action"].as_str().unwrap_or("") {
        "site.purge" => {
            let selected = ["url", "prefix", "host", "tag"]
                .iter()
                .find_map(|key| Some(format!("{key} {}", after.get(key)?.as_str()?)))
                .or_else(|| (after["everything"] == true).then(|| "everything".to_string()))
                .unwrap_or_default();
            if after["soft"] == true {
                format!("{selected} (soft)")
            } else {
                selected
            }
        }
        "site.state" => format!(
            "{} -> {}",
            cell(before.get("state")),
            cell(after.get("state"))
        ),
        "site.update" => {
            let (Some(before), Some(after)) = (before.as_object(), after.as_object()) else {
                return String::new();
            };
            let mut changed: Vec<&str> = before
                .keys()
                .chain(after.keys())
                .filter(|key| before.get(*key) != after.get(*key))
                .map(String::as_str)
                .collect();
            changed.sort_unstable();
            changed.dedup();
            format!("changed {}", changed.join(", "))
        }
        _ => String::new(),
    }
}

/// A head as `verify` prints it: `SEQ:HASH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub seq: i64,
    pub hash: String,
}

pub fn parse_head(text: &str) -> Result<Head> {
    let bad = || anyhow!("--head {text:?}: write SEQ:HASH as `palisade audit verify` printed it");
    let (seq, hash) = text.trim().split_once(':').ok_or_else(bad)?;
    let seq = seq
        .parse::<i64>()
        .ok()
        .filter(|s| *s >= 1)
        .ok_or_else(bad)?;
    let hash = hash.to_ascii_lowercase();
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    Ok(Head { seq, hash })
}

/// Walks the chain in `<data_dir>/palisade.db`; an error (exit 1) on any problem.
fn verify(data_dir: &Path, head: Option<&Head>, json: bool) -> Result<()> {
    let db = data_dir.join(DB_FILE);
    // Said plainly rather than as SQLite's "unable to open database file".
    if !db.is_file() {
        bail!(
            "no store at {}: --data (or --config's data_dir) must be the server's data directory",
            db.display()
        );
    }
    let store = Store::open_read_only(&db).with_context(|| format!("opening {}", db.display()))?;
    let (report, at_head) = store.with(|conn| -> Result<_> {
        let report = audit::verify(conn)?;
        let at_head = match head {
            Some(head) => audit::list(
                conn,
                &audit::Query {
                    after: Some(head.seq - 1),
                    limit: 1,
                    ..Default::default()
                },
            )?
            .pop(),
            None => None,
        };
        Ok((report, at_head))
    })?;
    let kept = head.and_then(|head| head_problem(head, at_head.as_ref(), &report));
    let mut problems = report.problems.clone();
    problems.extend(kept.clone());
    if json {
        print_json(&json!({
            "store": db.display().to_string(),
            "entries": report.entries,
            "head": report.head.as_ref().map(|(seq, hash)| format!("{seq}:{hash}")),
            "checked_head": head.map(|h| format!("{}:{}", h.seq, h.hash)),
            "problems": problems,
            "intact": problems.is_empty(),
        }));
    } else {
        println!("store: {}", db.display());
        println!("entries checked: {}", report.entries);
        match &report.head {
            Some((seq, hash)) => println!(
                "head: {seq}:{hash}\n  (keep it elsewhere: `palisade audit verify --head \
                 {seq}:{hash}` later proves no entry up to it was changed or cut off)"
            ),
            None => println!("head: none (the log is empty)"),
        }
        if let (Some(head), None) = (head, &kept) {
            println!(
                "--head {}:{}: found in the chain, unchanged",
                head.seq, head.hash
            );
        }
        for problem in &problems {
            println!("PROBLEM {problem}");
        }
        if problems.is_empty() {
            println!("ok: the chain is intact");
        }
    }
    if !problems.is_empty() {
        bail!(
            "the audit log is NOT intact: {} problem{}",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

/// Whether the kept head is still in the chain: `None` when it is, else the problem.
/// `found` is the first entry from `head.seq` on.
fn head_problem(head: &Head, found: Option<&AuditEntry>, report: &Verification) -> Option<String> {
    let last = report.head.as_ref().map_or(0, |(seq, _)| *seq);
    match found {
        Some(entry) if entry.seq == head.seq && entry.hash == head.hash => None,
        Some(entry) if entry.seq == head.seq => Some(format!(
            "--head: entry {} now has hash {}, not the kept {}: the chain was rewritten",
            head.seq, entry.hash, head.hash
        )),
        _ => Some(format!(
            "--head: entry {} is not in the chain (it ends at {last}): entries were cut off",
            head.seq
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_says_what_purges_state_switches_and_updates_changed() {
        let answer = json!({"entries": [
            {"seq": 4, "at": 0, "actor": "tok_a", "action": "site.purge", "target": "site:blog",
             "after": {"prefix": "https://blog.example/posts/", "soft": true}},
            {"seq": 3, "at": 0, "actor": "tok_a", "action": "site.purge", "target": "site:blog",
             "after": {"everything": true}},
            {"seq": 2, "at": 0, "actor": "tok_a", "action": "site.state", "target": "site:default",
             "before": {"state": "active"}, "after": {"state": "under_attack"}, "reason": "flood"},
            {"seq": 1, "at": 0, "actor": "tok_a", "action": "site.update", "target": "site:shop",
             "before": {"name": "shop", "state": "paused", "cache": {"ttl": "5m"}},
             "after": {"name": "shop", "cache": {"ttl": "10m"}}},
        ]});
        let text = entries_table(&answer).to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].contains("WHAT") && lines[0].contains("REASON"),
            "{text}"
        );
        assert!(
            lines[1].contains("prefix https://blog.example/posts/ (soft)"),
            "{text}"
        );
        assert!(lines[2].contains("everything"), "{text}");
        assert!(
            lines[3].contains("active -> under_attack") && lines[3].ends_with("flood"),
            "{text}"
        );
        assert!(lines[4].contains("changed cache, state"), "{text}");
    }

    #[test]
    fn heads_parse_as_verify_prints_them() {
        let hash = "ab".repeat(32);
        assert_eq!(
            parse_head(&format!("12:{}", hash.to_uppercase())).unwrap(),
            Head {
                seq: 12,
                hash: hash.clone()
            }
        );
        for bad in [
            "12",
            "x:ab",
            &format!("0:{hash}"),
            "3:abc",
            &format!("3:{}", "zz".repeat(32)),
        ] {
            assert!(parse_head(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn a_kept_head_must_be_found_unchanged() {
        let entry = |seq: i64, hash: &str| AuditEntry {
            seq,
            at: 0,
            actor: "tok_x".into(),
            action: "site.create".into(),
            target: "site:blog".into(),
            before: None,
            after: None,
            reason: None,
            prev_hash: audit::GENESIS.into(),
            hash: hash.into(),
        };
        let kept = Head {
            seq: 2,
            hash: "ab".repeat(32),
        };
        let report = Verification {
            entries: 3,
            head: Some((3, "cd".repeat(32))),
            problems: vec![],
        };
        assert_eq!(
            head_problem(&kept, Some(&entry(2, &"ab".repeat(32))), &report),
            None
        );
        let rewritten = head_problem(&kept, Some(&entry(2, &"ef".repeat(32))), &report).unwrap();
        assert!(rewritten.contains("rewritten"), "{rewritten}");
        let cut = head_problem(&kept, None, &report).unwrap();
        assert!(
            cut.contains("cut off") && cut.contains("ends at 3"),
            "{cut}"
        );
        let gap = head_problem(&kept, Some(&entry(3, &"ab".repeat(32))), &report).unwrap();
        assert!(gap.contains("not in the chain"), "{gap}");
    }

    #[test]
    fn a_missing_store_is_not_an_empty_intact_log() {
        let dir = tempfile::tempdir().unwrap();
        let error = verify(dir.path(), None, false).unwrap_err().to_string();
        assert!(error.contains("no store at"), "{error}");
        assert!(!dir.path().join(DB_FILE).exists(), "verify created a store");
    }
}
