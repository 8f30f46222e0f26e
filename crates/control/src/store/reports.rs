//! Abuse reports: what the edge's intake took, and the operator's triage of them.

use super::StoreError;
use model::{NewReport, ReportCategory, ReportStatus};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;

/// A report as stored and as `GET /api/reports` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The report's number, from 1.
    pub id: i64,
    /// When the intake took it, in Unix milliseconds.
    pub received_at: i64,
    /// The site whose host it came in on; `None` on the operator's own hostname.
    pub site: Option<String>,
    /// The host it came in on.
    pub host: String,
    /// What it is about.
    pub category: ReportCategory,
    /// Violent threats, doxxing and CSAM: listed first.
    pub urgent: bool,
    /// The URLs it names.
    pub urls: Vec<String>,
    /// What the reporter wrote.
    pub description: String,
    /// How to reach the reporter, if they said.
    pub contact: Option<String>,
    /// The reporter's address as the edge saw it.
    pub reporter_ip: String,
    /// The reporter's `User-Agent`, when sent.
    pub user_agent: Option<String>,
    /// Where the operator's triage stands.
    pub status: ReportStatus,
    /// The operator's notes; empty until written.
    pub notes: String,
    /// When the status or notes last changed (or it was received), in Unix milliseconds.
    pub updated_at: i64,
}

/// Stores a report taken by the intake and returns its id.
pub fn insert(tx: &Transaction<'_>, report: &NewReport, at: i64) -> Result<i64, StoreError> {
    let urls =
        serde_json::to_string(&report.urls).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    tx.execute(
        "INSERT INTO reports (received_at, site, host, category, urgent, urls, description,
                              contact, reporter_ip, user_agent, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?1)",
        params![
            at,
            report.site,
            report.host,
            report.category.as_str(),
            report.category.urgent() as i64,
            urls,
            report.description,
            report.contact,
            report.reporter_ip,
            report.user_agent,
        ],
    )?;
    Ok(tx.last_insert_rowid())
}

/// Stores a report an edge of the cluster took under `receipt`, once: a receipt stored already
/// answers with that report's id.
pub fn insert_received(
    tx: &Transaction<'_>,
    report: &NewReport,
    receipt: &str,
    at: i64,
) -> Result<i64, StoreError> {
    let known: Option<i64> = tx
        .query_row(
            "SELECT id FROM reports WHERE receipt = ?1",
            [receipt],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(id) = known {
        return Ok(id);
    }
    let id = insert(tx, report, at)?;
    tx.execute(
        "UPDATE reports SET receipt = ?1 WHERE id = ?2",
        params![receipt, id],
    )?;
    Ok(id)
}

const COLUMNS: &str = "id, received_at, site, host, category, urgent, urls, description, contact, \
                       reporter_ip, user_agent, status, notes, updated_at";

fn read(row: &rusqlite::Row<'_>) -> Result<Report, StoreError> {
    let corrupt = |what: String| StoreError::Corrupt(format!("report: {what}"));
    let category: String = row.get(4)?;
    let status: String = row.get(11)?;
    let urls: String = row.get(6)?;
    Ok(Report {
        id: row.get(0)?,
        received_at: row.get(1)?,
        site: row.get(2)?,
        host: row.get(3)?,
        category: category
            .parse()
            .map_err(|e: model::UnknownName| corrupt(e.to_string()))?,
        urgent: row.get::<_, i64>(5)? != 0,
        urls: serde_json::from_str(&urls).map_err(|e| corrupt(e.to_string()))?,
        description: row.get(7)?,
        contact: row.get(8)?,
        reporter_ip: row.get(9)?,
        user_agent: row.get(10)?,
        status: status
            .parse()
            .map_err(|e: model::UnknownName| corrupt(e.to_string()))?,
        notes: row.get(12)?,
        updated_at: row.get(13)?,
    })
}

/// The report numbered `id`, if there is one.
pub fn get(conn: &Connection, id: i64) -> Result<Option<Report>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM reports WHERE id = ?1");
    conn.query_row(&sql, params![id], |row| Ok(read(row)))
        .optional()?
        .transpose()
}

/// What `GET /api/reports` asks for.
#[derive(Debug, Default)]
pub struct Query {
    /// Only reports in this status.
    pub status: Option<ReportStatus>,
    /// Only reports about this site.
    pub site: Option<String>,
    /// Only reports about these sites (a token limited to sites).
    pub sites: Option<Vec<String>>,
    /// At most this many reports.
    pub limit: usize,
}

/// The queue: urgent reports first, then newest first.
pub fn list(conn: &Connection, query: &Query) -> Result<Vec<Report>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM reports
         WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR site = ?2)
         ORDER BY urgent DESC, received_at DESC, id DESC"
    );
    let mut statement = conn.prepare(&sql)?;
    let mut rows = statement.query(params![query.status.map(ReportStatus::as_str), query.site])?;
    let mut found = Vec::new();
    while let Some(row) = rows.next()? {
        let report = read(row)?;
        if let Some(sites) = &query.sites
            && !report.site.as_ref().is_some_and(|s| sites.contains(s))
        {
            continue;
        }
        found.push(report);
        if found.len() >= query.limit {
            break;
        }
    }
    Ok(found)
}

/// The operator's triage: a new status, notes, or both. Returns the report before and after.
pub fn update(
    tx: &Transaction<'_>,
    id: i64,
    status: Option<ReportStatus>,
    notes: Option<&str>,
    at: i64,
) -> Result<Option<(Report, Report)>, StoreError> {
    let Some(before) = get(tx, id)? else {
        return Ok(None);
    };
    tx.execute(
        "UPDATE reports SET status = coalesce(?2, status), notes = coalesce(?3, notes),
                            updated_at = ?4 WHERE id = ?1",
        params![id, status.map(ReportStatus::as_str), notes, at],
    )?;
    let after = get(tx, id)?.ok_or_else(|| StoreError::Corrupt("report vanished".into()))?;
    Ok(Some((before, after)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;

    fn report(category: ReportCategory) -> NewReport {
        NewReport {
            site: Some("blog".into()),
            host: "blog.example".into(),
            category,
            urls: vec!["https://blog.example/post".into()],
            description: "see the post".into(),
            contact: None,
            reporter_ip: "192.0.2.1".into(),
            user_agent: Some("test".into()),
        }
    }

    #[test]
    fn a_report_delivered_twice_under_one_receipt_is_stored_once() {
        let (_dir, store) = test_store();
        store.with(|conn| {
            let tx = conn.transaction().unwrap();
            let report = report(ReportCategory::Phishing);
            let first = insert_received(&tx, &report, "edge-1-00ab", 1).unwrap();
            let again = insert_received(&tx, &report, "edge-1-00ab", 2).unwrap();
            let other = insert_received(&tx, &report, "edge-2-00ab", 3).unwrap();
            tx.commit().unwrap();
            assert_eq!(first, again);
            assert_ne!(first, other);
            let count: i64 = conn
                .query_row("SELECT count(*) FROM reports", [], |r| r.get(0))
                .unwrap();
            assert_eq!(count, 2);
        });
    }

    #[test]
    fn urgent_reports_are_listed_first_whatever_their_age() {
        let (_dir, store) = test_store();
        store.with(|conn| {
            let tx = conn.transaction().unwrap();
            let threat = insert(&tx, &report(ReportCategory::ViolentThreat), 1).unwrap();
            let spam = insert(&tx, &report(ReportCategory::Phishing), 2).unwrap();
            let doxx = insert(&tx, &report(ReportCategory::PersonalInformation), 3).unwrap();
            let other = insert(&tx, &report(ReportCategory::Other), 4).unwrap();
            tx.commit().unwrap();
            let queue = list(
                conn,
                &Query {
                    limit: 10,
                    ..Default::default()
                },
            )
            .unwrap();
            let order: Vec<i64> = queue.iter().map(|r| r.id).collect();
            assert_eq!(order, vec![doxx, threat, other, spam]);
            assert!(queue[0].urgent && queue[1].urgent && !queue[2].urgent);
        });
    }

    #[test]
    fn triage_changes_status_and_notes_and_keeps_the_rest() {
        let (_dir, store) = test_store();
        store.with(|conn| {
            let tx = conn.transaction().unwrap();
            let id = insert(&tx, &report(ReportCategory::Harassment), 1).unwrap();
            let (before, after) =
                update(&tx, id, Some(ReportStatus::Reviewing), Some("looking"), 5)
                    .unwrap()
                    .unwrap();
            tx.commit().unwrap();
            assert_eq!(before.status, ReportStatus::New);
            assert_eq!(after.status, ReportStatus::Reviewing);
            assert_eq!(after.notes, "looking");
            assert_eq!(after.description, before.description);
            let reviewing = list(
                conn,
                &Query {
                    status: Some(ReportStatus::Reviewing),
                    limit: 10,
                    ..Default::default()
                },
            )
            .unwrap();
            assert_eq!(reviewing.len(), 1);
            assert!(get(conn, id + 1).unwrap().is_none());
        });
    }
}
