//! The cluster's outbox: each accepted change's message for the edges, numbered by the
//! configuration version it makes, kept until it is published and a snapshot covers it.

use super::StoreError;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

/// One change waiting for (or past) publication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The configuration version it makes.
    pub version: u64,
    /// What it is (`replica::Kind`'s name).
    pub kind: String,
    /// Its message body.
    pub body: Vec<u8>,
}

/// Appends a change in the change's transaction; returns its version.
pub fn append(tx: &Transaction<'_>, kind: &str, body: &[u8], now: i64) -> Result<u64, StoreError> {
    tx.execute(
        "INSERT INTO cluster_outbox (at, kind, body) VALUES (?1, ?2, ?3)",
        params![now, kind, body],
    )?;
    Ok(tx.last_insert_rowid() as u64)
}

/// The newest version written (0: none yet).
pub fn latest(conn: &Connection) -> Result<u64, StoreError> {
    // AUTOINCREMENT keeps versions rising even after pruning: sqlite_sequence remembers.
    let seq: Option<i64> = conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'cluster_outbox'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok(seq.unwrap_or(0).max(0) as u64)
}

/// Up to `limit` unpublished changes, oldest first.
pub fn unpublished(conn: &Connection, limit: usize) -> Result<Vec<Entry>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT version, kind, body FROM cluster_outbox WHERE published = 0
         ORDER BY version LIMIT ?1",
    )?;
    let rows = statement.query_map([limit as i64], |r| {
        Ok(Entry {
            version: r.get::<_, i64>(0)? as u64,
            kind: r.get(1)?,
            body: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Marks every change through `version` published.
pub fn mark_published(conn: &Connection, version: u64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE cluster_outbox SET published = 1 WHERE version <= ?1 AND published = 0",
        [version as i64],
    )?;
    Ok(())
}

/// Drops published changes older than `version` (a published snapshot covers them).
pub fn prune(conn: &Connection, version: u64) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "DELETE FROM cluster_outbox WHERE published = 1 AND version < ?1",
        [version as i64],
    )?)
}

/// Records that `site` was purged by `version` (in the purge's transaction).
pub fn note_purge(tx: &Transaction<'_>, site: &str, version: u64) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO cluster_purges (site, version) VALUES (?1, ?2)
         ON CONFLICT (site) DO UPDATE SET version = excluded.version",
        params![site, version as i64],
    )?;
    Ok(())
}

/// Each site's newest purge version.
pub fn purges(conn: &Connection) -> Result<Vec<(String, u64)>, StoreError> {
    let mut statement = conn.prepare_cached("SELECT site, version FROM cluster_purges")?;
    let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Changes not yet published.
pub fn backlog(conn: &Connection) -> Result<u64, StoreError> {
    let n: i64 = conn.query_row(
        "SELECT count(*) FROM cluster_outbox WHERE published = 0",
        [],
        |r| r.get(0),
    )?;
    Ok(n as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;

    #[test]
    fn versions_rise_across_pruning_and_only_unpublished_changes_are_listed() {
        let (_dir, store) = test_store();
        store.with(|conn| {
            assert_eq!(latest(conn).unwrap(), 0);
            let tx = conn.transaction().unwrap();
            let first = append(&tx, "sites", b"a", 1).unwrap();
            let second = append(&tx, "sites", b"b", 2).unwrap();
            tx.commit().unwrap();
            assert_eq!((first, second), (1, 2));
            mark_published(conn, 1).unwrap();
            let waiting = unpublished(conn, 10).unwrap();
            assert_eq!(waiting.len(), 1);
            assert_eq!(waiting[0].body, b"b");
            mark_published(conn, 2).unwrap();
            assert_eq!(prune(conn, 3).unwrap(), 2);
            let tx = conn.transaction().unwrap();
            assert_eq!(append(&tx, "sites", b"c", 3).unwrap(), 3, "never reused");
            tx.commit().unwrap();
            assert_eq!(latest(conn).unwrap(), 3);
            assert_eq!(backlog(conn).unwrap(), 1);
        });
    }

    #[test]
    fn a_change_rolled_back_leaves_no_message() {
        let (_dir, store) = test_store();
        store.with(|conn| {
            let tx = conn.transaction().unwrap();
            append(&tx, "sites", b"a", 1).unwrap();
            drop(tx);
            assert!(unpublished(conn, 10).unwrap().is_empty());
        });
    }
}
