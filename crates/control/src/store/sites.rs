//! Sites the API manages, stored as their JSON documents (the fields of a `[[site]]` table);
//! suspensions, which apply by name to any site, the file's included; and the states an
//! operator switched a file's sites to.

use super::StoreError;
use model::SiteState;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;
use serde_json::{Map, Value};

/// A site document as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSite {
    /// The site's name.
    pub name: String,
    /// The site as a document: the fields of its `[[site]]` table.
    pub document: Map<String, Value>,
    /// When it was stored, in Unix milliseconds.
    pub created_at: i64,
    /// When its document last changed, in Unix milliseconds.
    pub updated_at: i64,
}

fn read_site(row: &rusqlite::Row<'_>) -> Result<StoredSite, StoreError> {
    let name: String = row.get(0)?;
    let text: String = row.get(1)?;
    let document = match serde_json::from_str(&text) {
        Ok(Value::Object(map)) => map,
        _ => {
            return Err(StoreError::Corrupt(format!(
                "site {name:?}: its document is not a JSON object"
            )));
        }
    };
    Ok(StoredSite {
        name,
        document,
        created_at: row.get(2)?,
        updated_at: row.get(3)?,
    })
}

/// Every stored site, by name.
pub fn list(conn: &Connection) -> Result<Vec<StoredSite>, StoreError> {
    let mut statement =
        conn.prepare("SELECT name, document, created_at, updated_at FROM sites ORDER BY name")?;
    let mut rows = statement.query([])?;
    let mut sites = Vec::new();
    while let Some(row) = rows.next()? {
        sites.push(read_site(row)?);
    }
    Ok(sites)
}

/// At most `limit` stored sites after `after` by name (from the first when `None`).
pub fn list_after(
    conn: &Connection,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<StoredSite>, StoreError> {
    // Two statements rather than `?1 IS NULL OR name > ?1`, which SQLite cannot answer from
    // the name's index: a page must cost its rows, not the table.
    let mut statement = conn.prepare_cached(if after.is_some() {
        "SELECT name, document, created_at, updated_at FROM sites \
         WHERE name > ?1 ORDER BY name LIMIT ?2"
    } else {
        "SELECT name, document, created_at, updated_at FROM sites \
         WHERE ?1 IS NULL ORDER BY name LIMIT ?2"
    })?;
    let mut rows = statement.query(params![after, limit as i64])?;
    let mut sites = Vec::new();
    while let Some(row) = rows.next()? {
        sites.push(read_site(row)?);
    }
    Ok(sites)
}

/// The stored site named `name`, if there is one (a site of the base is not stored).
pub fn get(conn: &Connection, name: &str) -> Result<Option<StoredSite>, StoreError> {
    conn.query_row(
        "SELECT name, document, created_at, updated_at FROM sites WHERE name = ?1",
        params![name],
        |row| Ok(read_site(row)),
    )
    .optional()?
    .transpose()
}

/// Adds a site; `false` when one of that name is already stored.
pub fn insert(
    tx: &Transaction<'_>,
    name: &str,
    document: &Map<String, Value>,
    at: i64,
) -> Result<bool, StoreError> {
    let text = Value::Object(document.clone()).to_string();
    let added = tx.execute(
        "INSERT INTO sites (name, document, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)
         ON CONFLICT (name) DO NOTHING",
        params![name, text, at],
    )?;
    Ok(added == 1)
}

/// Replaces a stored site's document; `false` when there is no such site.
pub fn replace(
    tx: &Transaction<'_>,
    name: &str,
    document: &Map<String, Value>,
    at: i64,
) -> Result<bool, StoreError> {
    let text = Value::Object(document.clone()).to_string();
    let changed = tx.execute(
        "UPDATE sites SET document = ?2, updated_at = ?3 WHERE name = ?1",
        params![name, text, at],
    )?;
    Ok(changed == 1)
}

/// Removes a site and returns what it was.
pub fn delete(tx: &Transaction<'_>, name: &str) -> Result<Option<StoredSite>, StoreError> {
    let before = get(tx, name)?;
    if before.is_some() {
        tx.execute("DELETE FROM sites WHERE name = ?1", params![name])?;
    }
    Ok(before)
}

/// Service terminated for a site.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Suspension {
    /// The suspended site's name.
    pub site: String,
    /// Why, as the operator wrote it; required.
    pub reason: String,
    /// Answered with 451 (a legal demand) rather than 403.
    pub legal: bool,
    /// The abuse reports it cites.
    pub reports: Vec<i64>,
    /// The token that suspended it.
    pub actor: String,
    /// When, in Unix milliseconds.
    pub at: i64,
}

/// Every suspension, by site name.
pub fn suspensions(conn: &Connection) -> Result<Vec<Suspension>, StoreError> {
    let mut statement =
        conn.prepare("SELECT site, reason, legal, actor, at FROM suspensions ORDER BY site")?;
    let mut rows = statement.query([])?;
    let mut found = Vec::new();
    while let Some(row) = rows.next()? {
        found.push(Suspension {
            site: row.get(0)?,
            reason: row.get(1)?,
            legal: row.get::<_, i64>(2)? != 0,
            reports: Vec::new(),
            actor: row.get(3)?,
            at: row.get(4)?,
        });
    }
    drop(rows);
    for suspension in &mut found {
        suspension.reports = cited_reports(conn, &suspension.site)?;
    }
    Ok(found)
}

fn cited_reports(conn: &Connection, site: &str) -> Result<Vec<i64>, StoreError> {
    let mut statement = conn
        .prepare_cached("SELECT report FROM suspension_reports WHERE site = ?1 ORDER BY report")?;
    let ids = statement
        .query_map(params![site], |r| r.get(0))?
        .collect::<Result<Vec<i64>, _>>()?;
    Ok(ids)
}

/// The suspension of `site`, if it is suspended.
pub fn suspension(conn: &Connection, site: &str) -> Result<Option<Suspension>, StoreError> {
    let found = conn
        .query_row(
            "SELECT site, reason, legal, actor, at FROM suspensions WHERE site = ?1",
            params![site],
            |row| {
                Ok(Suspension {
                    site: row.get(0)?,
                    reason: row.get(1)?,
                    legal: row.get::<_, i64>(2)? != 0,
                    reports: Vec::new(),
                    actor: row.get(3)?,
                    at: row.get(4)?,
                })
            },
        )
        .optional()?;
    match found {
        Some(mut suspension) => {
            suspension.reports = cited_reports(conn, site)?;
            Ok(Some(suspension))
        }
        None => Ok(None),
    }
}

/// Records a suspension (replacing an earlier one of the same site). A cited report that does
/// not exist fails the foreign key, and the caller's transaction with it.
pub fn suspend(tx: &Transaction<'_>, suspension: &Suspension) -> Result<(), StoreError> {
    tx.execute(
        "DELETE FROM suspensions WHERE site = ?1",
        params![suspension.site],
    )?;
    tx.execute(
        "INSERT INTO suspensions (site, reason, legal, actor, at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            suspension.site,
            suspension.reason,
            suspension.legal as i64,
            suspension.actor,
            suspension.at
        ],
    )?;
    for report in &suspension.reports {
        tx.execute(
            "INSERT OR IGNORE INTO suspension_reports (site, report) VALUES (?1, ?2)",
            params![suspension.site, report],
        )?;
    }
    Ok(())
}

/// Ends a suspension and returns it; `None` when the site was not suspended.
pub fn reinstate(tx: &Transaction<'_>, site: &str) -> Result<Option<Suspension>, StoreError> {
    let before = suspension(tx, site)?;
    if before.is_some() {
        tx.execute("DELETE FROM suspensions WHERE site = ?1", params![site])?;
    }
    Ok(before)
}

/// A file site's state as an operator switched it through the API, over the file's `state`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OperatorState {
    /// The site's name.
    pub site: String,
    /// The state it was switched to (`active`, `under_attack` or `paused`).
    pub state: SiteState,
    /// The token that switched it.
    pub actor: String,
    /// When, in Unix milliseconds.
    pub at: i64,
}

fn read_operator_state(row: &rusqlite::Row<'_>) -> Result<OperatorState, StoreError> {
    let site: String = row.get(0)?;
    let text: String = row.get(1)?;
    let state = match text.as_str() {
        "active" => SiteState::Active,
        "under_attack" => SiteState::UnderAttack,
        "paused" => SiteState::Paused,
        _ => {
            return Err(StoreError::Corrupt(format!(
                "site {site:?}: operator state {text:?} is not one"
            )));
        }
    };
    Ok(OperatorState {
        site,
        state,
        actor: row.get(2)?,
        at: row.get(3)?,
    })
}

/// Every operator state, by site name.
pub fn operator_states(conn: &Connection) -> Result<Vec<OperatorState>, StoreError> {
    let mut statement =
        conn.prepare("SELECT site, state, actor, at FROM operator_states ORDER BY site")?;
    let mut rows = statement.query([])?;
    let mut found = Vec::new();
    while let Some(row) = rows.next()? {
        found.push(read_operator_state(row)?);
    }
    Ok(found)
}

/// The state an operator switched the file site `site` to, if any.
pub fn operator_state(conn: &Connection, site: &str) -> Result<Option<OperatorState>, StoreError> {
    conn.query_row(
        "SELECT site, state, actor, at FROM operator_states WHERE site = ?1",
        params![site],
        |row| Ok(read_operator_state(row)),
    )
    .optional()?
    .transpose()
}

/// Records an operator state (replacing the site's earlier one). `suspended` is not one
/// (the schema refuses it): suspension has its own record, with a reason.
pub fn set_operator_state(tx: &Transaction<'_>, state: &OperatorState) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO operator_states (site, state, actor, at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (site) DO UPDATE SET state = ?2, actor = ?3, at = ?4",
        params![state.site, state.state.as_str(), state.actor, state.at],
    )?;
    Ok(())
}

/// Removes a site's operator state (its file decides again) and returns what it was.
pub fn clear_operator_state(
    tx: &Transaction<'_>,
    site: &str,
) -> Result<Option<OperatorState>, StoreError> {
    let before = operator_state(tx, site)?;
    if before.is_some() {
        tx.execute("DELETE FROM operator_states WHERE site = ?1", params![site])?;
    }
    Ok(before)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;
    use serde_json::json;

    #[test]
    fn documents_round_trip_and_names_are_unique() {
        let (_dir, store) = test_store();
        store.with(|conn| {
            let doc = json!({"name": "blog", "hosts": ["blog.example"]});
            let doc = doc.as_object().unwrap();
            let tx = conn.transaction().unwrap();
            assert!(insert(&tx, "blog", doc, 1).unwrap());
            assert!(!insert(&tx, "blog", doc, 2).unwrap());
            tx.commit().unwrap();
            let stored = get(conn, "blog").unwrap().unwrap();
            assert_eq!(&stored.document, doc);
            assert_eq!((stored.created_at, stored.updated_at), (1, 1));
            let tx = conn.transaction().unwrap();
            assert!(delete(&tx, "blog").unwrap().is_some());
            assert!(!replace(&tx, "blog", doc, 3).unwrap());
            tx.commit().unwrap();
            assert!(list(conn).unwrap().is_empty());
        });
    }

    #[test]
    fn an_operator_state_is_kept_by_name_replaced_and_cleared() {
        let (_dir, store) = test_store();
        store.with(|conn| {
            let switched = |state, at| OperatorState {
                site: "default".into(),
                state,
                actor: "tok_x".into(),
                at,
            };
            let tx = conn.transaction().unwrap();
            set_operator_state(&tx, &switched(SiteState::UnderAttack, 1)).unwrap();
            set_operator_state(&tx, &switched(SiteState::Paused, 2)).unwrap();
            assert!(set_operator_state(&tx, &switched(SiteState::Suspended, 3)).is_err());
            tx.commit().unwrap();
            assert_eq!(
                operator_states(conn).unwrap(),
                [switched(SiteState::Paused, 2)]
            );
            let tx = conn.transaction().unwrap();
            assert_eq!(
                clear_operator_state(&tx, "default").unwrap(),
                Some(switched(SiteState::Paused, 2))
            );
            assert_eq!(clear_operator_state(&tx, "default").unwrap(), None);
            tx.commit().unwrap();
            assert_eq!(operator_state(conn, "default").unwrap(), None);
        });
    }

    #[test]
    fn a_suspension_citing_a_missing_report_is_refused() {
        let (_dir, store) = test_store();
        store.with(|conn| {
            let tx = conn.transaction().unwrap();
            let result = suspend(
                &tx,
                &Suspension {
                    site: "blog".into(),
                    reason: "threats".into(),
                    legal: false,
                    reports: vec![42],
                    actor: "tok_x".into(),
                    at: 1,
                },
            );
            assert!(result.is_err(), "foreign key holds");
        });
    }
}
