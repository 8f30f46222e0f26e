//! The audit log: every change the control plane makes, appended in the same transaction as
//! the change. Entries are hash-chained: each `hash` is SHA-256 over the previous entry's hash
//! and this entry's fields, so editing, removing or reordering any entry but the newest breaks
//! the chain at that point; `palisade audit verify` walks it. Removing the newest entries leaves
//! a shorter valid chain: `verify` prints the head (sequence and hash) so an operator can keep
//! it elsewhere and compare (`--head`).

use super::StoreError;
use ring::digest::{Context, SHA256};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;
use serde_json::Value;

/// The hash before the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One entry as stored and as `GET /api/audit` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    /// The entry's place in the chain, from 1.
    pub seq: i64,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    /// The token that made the change (`tok_…`), or `system` / `cli`.
    pub actor: String,
    /// What was done: `site.create`, `site.suspend`, `token.revoke`, …
    pub action: String,
    /// What it was done to: `site:blog`, `token:tok_…`, `report:12`.
    pub target: String,
    /// The target as JSON before the change; `None` when it did not exist.
    pub before: Option<Value>,
    /// The target as JSON after the change; `None` when it no longer exists.
    pub after: Option<Value>,
    /// Why, as the actor said (a suspension's reason, say).
    pub reason: Option<String>,
    /// The previous entry's hash ([`GENESIS`] for the first), hex.
    pub prev_hash: String,
    /// SHA-256 over `prev_hash` and this entry's fields, hex.
    pub hash: String,
}

/// A change to record.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    /// Who makes it: a token id, or `system` / `cli`.
    pub actor: &'a str,
    /// What is done: `site.create`, `site.suspend`, `token.revoke`, …
    pub action: &'a str,
    /// What it is done to: `site:blog`, `token:tok_…`, `report:12`.
    pub target: String,
    /// The target as JSON before; `None` when it did not exist.
    pub before: Option<Value>,
    /// The target as JSON after; `None` when it no longer exists.
    pub after: Option<Value>,
    /// Why, as the actor said.
    pub reason: Option<String>,
}

/// Appends `change` after the newest entry, inside the caller's transaction.
pub fn append(tx: &Transaction<'_>, change: Change<'_>, at: i64) -> Result<AuditEntry, StoreError> {
    let head: Option<(i64, String)> = tx
        .query_row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (prev_seq, prev_hash) = head.unwrap_or((0, GENESIS.to_string()));
    let seq = prev_seq + 1;
    let before = change.before.as_ref().map(Value::to_string);
    let after = change.after.as_ref().map(Value::to_string);
    let fields = Fields {
        seq,
        at,
        actor: change.actor,
        action: change.action,
        target: &change.target,
        before: before.as_deref(),
        after: after.as_deref(),
        reason: change.reason.as_deref(),
    };
    let hash = fields.hash(&prev_hash);
    tx.execute(
        "INSERT INTO audit (seq, at, actor, action, target, before, after, reason, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            seq,
            at,
            change.actor,
            change.action,
            &change.target,
            before,
            after,
            change.reason,
            prev_hash,
            hash
        ],
    )?;
    Ok(AuditEntry {
        seq,
        at,
        actor: change.actor.to_string(),
        action: change.action.to_string(),
        target: change.target,
        before: change.before,
        after: change.after,
        reason: change.reason,
        prev_hash,
        hash,
    })
}

/// The fields an entry's hash covers, as stored (JSON text for `before` and `after`).
struct Fields<'a> {
    seq: i64,
    at: i64,
    actor: &'a str,
    action: &'a str,
    target: &'a str,
    before: Option<&'a str>,
    after: Option<&'a str>,
    reason: Option<&'a str>,
}

impl Fields<'_> {
    /// SHA-256 over the previous hash and every field, each length-prefixed (an absent one
    /// marked apart from an empty one), so no two different entries hash the same bytes.
    fn hash(&self, prev_hash: &str) -> String {
        let mut digest = Context::new(&SHA256);
        let mut field = |value: Option<&[u8]>| match value {
            Some(bytes) => {
                digest.update(&[1]);
                digest.update(&(bytes.len() as u64).to_be_bytes());
                digest.update(bytes);
            }
            None => digest.update(&[0]),
        };
        field(Some(prev_hash.as_bytes()));
        field(Some(&self.seq.to_be_bytes()));
        field(Some(&self.at.to_be_bytes()));
        field(Some(self.actor.as_bytes()));
        field(Some(self.action.as_bytes()));
        field(Some(self.target.as_bytes()));
        field(self.before.map(str::as_bytes));
        field(self.after.map(str::as_bytes));
        field(self.reason.map(str::as_bytes));
        hex(digest.finish().as_ref())
    }
}

/// `bytes` as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What `GET /api/audit` asks for.
#[derive(Debug, Default)]
pub struct Query {
    /// Entries after this sequence number (paging forward).
    pub after: Option<i64>,
    /// Only entries whose target is one of these sites (a token limited to sites).
    pub sites: Option<Vec<String>>,
    /// Only this target, e.g. `site:blog`.
    pub target: Option<String>,
    /// At most this many entries.
    pub limit: usize,
}

/// Entries, newest first unless `after` pages forward (then oldest first).
pub fn list(conn: &Connection, query: &Query) -> Result<Vec<AuditEntry>, StoreError> {
    let (order, after) = match query.after {
        Some(after) => ("ASC", after),
        None => ("DESC", 0),
    };
    let sql = format!(
        "SELECT seq, at, actor, action, target, before, after, reason, prev_hash, hash
         FROM audit WHERE seq > ?1 AND (?2 IS NULL OR target = ?2) ORDER BY seq {order}"
    );
    let mut statement = conn.prepare(&sql)?;
    let mut rows = statement.query(params![after, query.target])?;
    let mut entries = Vec::new();
    while let Some(row) = rows.next()? {
        let entry = read_entry(row)?;
        if let Some(sites) = &query.sites {
            let site = entry.target.strip_prefix("site:");
            if !site.is_some_and(|s| sites.iter().any(|n| n == s)) {
                continue;
            }
        }
        entries.push(entry);
        if entries.len() >= query.limit {
            break;
        }
    }
    Ok(entries)
}

fn read_entry(row: &rusqlite::Row<'_>) -> Result<AuditEntry, StoreError> {
    let json = |text: Option<String>| -> Result<Option<Value>, StoreError> {
        text.map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("audit entry: {e}")))
    };
    Ok(AuditEntry {
        seq: row.get(0)?,
        at: row.get(1)?,
        actor: row.get(2)?,
        action: row.get(3)?,
        target: row.get(4)?,
        before: json(row.get(5)?)?,
        after: json(row.get(6)?)?,
        reason: row.get(7)?,
        prev_hash: row.get(8)?,
        hash: row.get(9)?,
    })
}

/// What walking the chain found.
#[derive(Debug, Default, PartialEq, Serialize)]
pub struct Verification {
    /// Entries walked.
    pub entries: u64,
    /// The newest entry's sequence number and hash.
    pub head: Option<(i64, String)>,
    /// Every place the chain breaks, in order; empty when it holds.
    pub problems: Vec<String>,
}

impl Verification {
    /// True when the chain holds from the first entry to the last.
    pub fn intact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Walks every entry from the first and recomputes the chain.
pub fn verify(conn: &Connection) -> Result<Verification, StoreError> {
    let mut statement = conn.prepare(
        "SELECT seq, at, actor, action, target, before, after, reason, prev_hash, hash
         FROM audit ORDER BY seq ASC",
    )?;
    let mut rows = statement.query([])?;
    let mut report = Verification::default();
    let mut expected_seq = 1;
    let mut prev_hash = GENESIS.to_string();
    while let Some(row) = rows.next()? {
        let seq: i64 = row.get(0)?;
        let before: Option<String> = row.get(5)?;
        let after: Option<String> = row.get(6)?;
        let actor: String = row.get(2)?;
        let action: String = row.get(3)?;
        let target: String = row.get(4)?;
        let reason: Option<String> = row.get(7)?;
        let stored_prev: String = row.get(8)?;
        let stored_hash: String = row.get(9)?;
        if seq != expected_seq {
            report.problems.push(format!(
                "entry {seq}: expected entry {expected_seq} here (entries removed or renumbered)"
            ));
        }
        if stored_prev != prev_hash {
            report.problems.push(format!(
                "entry {seq}: prev_hash does not match the hash of the entry before it"
            ));
        }
        let fields = Fields {
            seq,
            at: row.get(1)?,
            actor: &actor,
            action: &action,
            target: &target,
            before: before.as_deref(),
            after: after.as_deref(),
            reason: reason.as_deref(),
        };
        // Chained from the stored prev_hash, so one edited entry is reported once, not again
        // at every later entry.
        if fields.hash(&stored_prev) != stored_hash {
            report.problems.push(format!(
                "entry {seq}: its content does not match its hash (edited)"
            ));
        }
        report.entries += 1;
        report.head = Some((seq, stored_hash.clone()));
        prev_hash = stored_hash;
        expected_seq = seq + 1;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;
    use serde_json::json;

    fn record(conn: &mut Connection, n: usize) {
        for i in 0..n {
            let tx = conn.transaction().unwrap();
            append(
                &tx,
                Change {
                    actor: "tok_test",
                    action: "site.update",
                    target: format!("site:s{i}"),
                    before: Some(json!({"state": "active"})),
                    after: Some(json!({"state": "paused"})),
                    reason: None,
                },
                1_700_000_000_000 + i as i64,
            )
            .unwrap();
            tx.commit().unwrap();
        }
    }

    /// Tampering goes around the schema's triggers, as someone with the file would.
    fn tamper(conn: &Connection, sql: &str) {
        conn.execute_batch(&format!(
            "DROP TRIGGER audit_entries_never_change; DROP TRIGGER audit_entries_never_go; {sql}"
        ))
        .unwrap();
    }

    #[test]
    fn an_untouched_chain_verifies_and_names_its_head() {
        let (_dir, store) = test_store();
        store.with(|conn| {
            record(conn, 5);
            let report = verify(conn).unwrap();
            assert!(report.intact(), "{:?}", report.problems);
            assert_eq!(report.entries, 5);
            let (seq, hash) = report.head.unwrap();
            assert_eq!(seq, 5);
            assert_eq!(hash.len(), 64);
        });
    }

    #[test]
    fn the_schema_refuses_to_change_or_delete_entries() {
        let (_dir, store) = test_store();
        store.with(|conn| {
            record(conn, 2);
            let update = conn.execute("UPDATE audit SET actor = 'someone' WHERE seq = 1", []);
            assert!(update.unwrap_err().to_string().contains("append-only"));
            let delete = conn.execute("DELETE FROM audit WHERE seq = 1", []);
            assert!(delete.unwrap_err().to_string().contains("append-only"));
        });
    }

    #[test]
    fn an_edited_entry_is_detected_at_that_entry() {
        let (_dir, store) = test_store();
        store.with(|conn| {
            record(conn, 4);
            tamper(
                conn,
                "UPDATE audit SET reason = 'nothing to see' WHERE seq = 2",
            );
            let report = verify(conn).unwrap();
            assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
            assert!(report.problems[0].starts_with("entry 2:"));
        });
    }

    #[test]
    fn a_removed_entry_is_detected() {
        let (_dir, store) = test_store();
        store.with(|conn| {
            record(conn, 4);
            tamper(conn, "DELETE FROM audit WHERE seq = 2");
            let report = verify(conn).unwrap();
            assert!(!report.intact());
            assert!(report.problems.iter().any(|p| p.starts_with("entry 3:")));
        });
    }

    #[test]
    fn an_entry_rewritten_with_a_fresh_hash_breaks_the_next_link() {
        let (_dir, store) = test_store();
        store.with(|conn| {
            record(conn, 3);
            // Re-hash entry 1 after editing it, as a careful forger would: entry 2 still
            // points at the old hash.
            let forged = Fields {
                seq: 1,
                at: 1_700_000_000_000,
                actor: "someone-else",
                action: "site.update",
                target: "site:s0",
                before: Some(r#"{"state":"active"}"#),
                after: Some(r#"{"state":"paused"}"#),
                reason: None,
            }
            .hash(GENESIS);
            tamper(
                conn,
                &format!(
                    "UPDATE audit SET actor = 'someone-else', hash = '{forged}' WHERE seq = 1"
                ),
            );
            let report = verify(conn).unwrap();
            assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
            assert!(report.problems[0].starts_with("entry 2: prev_hash"));
        });
    }

    #[test]
    fn listing_pages_and_filters_by_site() {
        let (_dir, store) = test_store();
        store.with(|conn| {
            record(conn, 5);
            let newest = list(
                conn,
                &Query {
                    limit: 2,
                    ..Default::default()
                },
            )
            .unwrap();
            assert_eq!(newest.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![5, 4]);
            let forward = list(
                conn,
                &Query {
                    after: Some(3),
                    limit: 10,
                    ..Default::default()
                },
            )
            .unwrap();
            assert_eq!(
                forward.iter().map(|e| e.seq).collect::<Vec<_>>(),
                vec![4, 5]
            );
            let mine = list(
                conn,
                &Query {
                    sites: Some(vec!["s1".into()]),
                    limit: 10,
                    ..Default::default()
                },
            )
            .unwrap();
            assert_eq!(mine.len(), 1);
            assert_eq!(mine[0].target, "site:s1");
        });
    }
}
