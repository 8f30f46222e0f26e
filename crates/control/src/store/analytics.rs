//! Analytics rollups: one row per site per minute, the edge's counters as JSON. Kept for the
//! retention the server sets, then pruned.

use super::StoreError;
use rusqlite::{Connection, Transaction, params};

/// Stores (or replaces) one site's minute.
pub fn put(tx: &Transaction<'_>, site: &str, minute: i64, data: &str) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO analytics_minutes (site, minute, data) VALUES (?1, ?2, ?3)
         ON CONFLICT (site, minute) DO UPDATE SET data = excluded.data",
        params![site, minute, data],
    )?;
    Ok(())
}

/// A site's minutes from `since` (unix seconds) on, oldest first, at most `limit`.
pub fn since(
    conn: &Connection,
    site: &str,
    since: i64,
    limit: usize,
) -> Result<Vec<(i64, String)>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT minute, data FROM analytics_minutes WHERE site = ?1 AND minute >= ?2
         ORDER BY minute LIMIT ?3",
    )?;
    let rows = statement
        .query_map(params![site, since, limit as i64], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<Result<Vec<(i64, String)>, _>>()?;
    Ok(rows)
}

/// Drops minutes older than `before` (unix seconds), this node's and the other edges'; returns
/// how many went.
pub fn prune(conn: &Connection, before: i64) -> Result<usize, StoreError> {
    let own = conn.execute(
        "DELETE FROM analytics_minutes WHERE minute < ?1",
        params![before],
    )?;
    let nodes = conn.execute(
        "DELETE FROM analytics_node_minutes WHERE minute < ?1",
        params![before],
    )?;
    Ok(own + nodes)
}

/// Stores (or replaces) one site's minute as another edge of the cluster counted it.
pub fn put_node(
    tx: &Transaction<'_>,
    node: &str,
    site: &str,
    minute: i64,
    data: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO analytics_node_minutes (node, site, minute, data) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (site, minute, node) DO UPDATE SET data = excluded.data",
        params![node, site, minute, data],
    )?;
    Ok(())
}

/// The other edges' minutes of a site from `since` on: (node, minute, data), oldest first, at
/// most `limit`.
pub fn node_since(
    conn: &Connection,
    site: &str,
    since: i64,
    limit: usize,
) -> Result<Vec<(String, i64, String)>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT node, minute, data FROM analytics_node_minutes WHERE site = ?1 AND minute >= ?2
         ORDER BY minute LIMIT ?3",
    )?;
    let rows = statement
        .query_map(params![site, since, limit as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;

    #[test]
    fn minutes_are_kept_per_site_replaced_and_pruned() {
        let (_dir, store) = test_store();
        store.with(|conn| {
            let tx = conn.transaction().unwrap();
            put(&tx, "blog", 60, "{\"requests\":1}").unwrap();
            put(&tx, "blog", 120, "{\"requests\":2}").unwrap();
            put(&tx, "blog", 120, "{\"requests\":3}").unwrap();
            put(&tx, "shop", 120, "{\"requests\":9}").unwrap();
            tx.commit().unwrap();
            let rows = since(conn, "blog", 0, 100).unwrap();
            assert_eq!(
                rows,
                vec![
                    (60, "{\"requests\":1}".into()),
                    (120, "{\"requests\":3}".into())
                ]
            );
            assert_eq!(prune(conn, 120).unwrap(), 1);
            assert_eq!(since(conn, "blog", 0, 100).unwrap().len(), 1);
        });
    }
}
