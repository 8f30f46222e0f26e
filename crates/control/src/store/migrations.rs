//! The schema, as numbered steps. `PRAGMA user_version` records the last step applied; each
//! step runs in its own transaction, so a crash mid-upgrade leaves the previous version.
//! Never edit a step that has shipped: add the next one.

use super::StoreError;
use rusqlite::Connection;

const STEPS: &[&str] = &[
    // 1: sites, suspensions, tokens, the audit log, abuse reports, analytics.
    r#"
    -- A site the API manages: its table as JSON, the same fields as a [[site]] in TOML.
    CREATE TABLE sites (
        name        TEXT PRIMARY KEY,
        document    TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
    ) STRICT;

    -- Abuse reports taken by the edge's intake.
    CREATE TABLE reports (
        id           INTEGER PRIMARY KEY,
        received_at  INTEGER NOT NULL,
        site         TEXT,
        host         TEXT NOT NULL,
        category     TEXT NOT NULL,
        urgent       INTEGER NOT NULL,
        urls         TEXT NOT NULL,
        description  TEXT NOT NULL,
        contact      TEXT,
        reporter_ip  TEXT NOT NULL,
        user_agent   TEXT,
        status       TEXT NOT NULL DEFAULT 'new'
                     CHECK (status IN ('new', 'reviewing', 'actioned', 'dismissed')),
        notes        TEXT NOT NULL DEFAULT '',
        updated_at   INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX reports_queue ON reports (urgent DESC, received_at DESC);
    CREATE INDEX reports_by_site ON reports (site, received_at DESC);

    -- Service terminated for a site, by name: a file's site can be suspended too, and a site
    -- deleted and created again under its name stays suspended until reinstated.
    CREATE TABLE suspensions (
        site        TEXT PRIMARY KEY,
        reason      TEXT NOT NULL,
        legal       INTEGER NOT NULL,
        actor       TEXT NOT NULL,
        at          INTEGER NOT NULL
    ) STRICT;
    -- The evidence a suspension cites.
    CREATE TABLE suspension_reports (
        site        TEXT NOT NULL REFERENCES suspensions (site) ON DELETE CASCADE,
        report      INTEGER NOT NULL REFERENCES reports (id),
        PRIMARY KEY (site, report)
    ) STRICT;

    -- API tokens: only a SHA-256 of the secret is kept.
    CREATE TABLE tokens (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        hash        BLOB NOT NULL UNIQUE,
        scopes      TEXT NOT NULL,
        sites       TEXT,
        created_at  INTEGER NOT NULL,
        created_by  TEXT REFERENCES tokens (id),
        revoked_at  INTEGER
    ) STRICT;

    -- Every change, hash-chained: `hash` = SHA-256 over `prev_hash` and the entry.
    CREATE TABLE audit (
        seq         INTEGER PRIMARY KEY,
        at          INTEGER NOT NULL,
        actor       TEXT NOT NULL,
        action      TEXT NOT NULL,
        target      TEXT NOT NULL,
        before      TEXT,
        after       TEXT,
        reason      TEXT,
        prev_hash   TEXT NOT NULL,
        hash        TEXT NOT NULL
    ) STRICT;
    -- Append-only: the API has no way to change or remove an entry, and neither has SQL that
    -- goes through this schema (tampering must bypass it, and `audit verify` then sees it).
    CREATE TRIGGER audit_entries_never_change BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_entries_never_go BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

    -- Per-site, per-minute counters from the edge (a JSON rollup), kept `analytics_retention`.
    CREATE TABLE analytics_minutes (
        site        TEXT NOT NULL,
        minute      INTEGER NOT NULL,
        data        TEXT NOT NULL,
        PRIMARY KEY (site, minute)
    ) STRICT, WITHOUT ROWID;
    "#,
    // 2: a site's state as the operator switches it, for file sites too.
    r#"
    -- The state (active, under_attack, paused) an operator switched a file's site to through
    -- the API, by name as suspensions are: operational state is an action, not configuration,
    -- so the file stays the source of the site's configuration and this row wins over its
    -- `state` key until the operator switches back to what the file says.
    CREATE TABLE operator_states (
        site        TEXT PRIMARY KEY,
        state       TEXT NOT NULL CHECK (state IN ('active', 'under_attack', 'paused')),
        actor       TEXT NOT NULL,
        at          INTEGER NOT NULL
    ) STRICT;
    "#,
    // 3: the cluster's outbox.
    r#"
    -- Every change a control node accepted, in order, for the edges of its cluster: written in
    -- the change's own transaction, published to Redis when it is reachable (the outbox), so
    -- nothing accepted is lost to an outage. `version` is the configuration's version.
    CREATE TABLE cluster_outbox (
        version     INTEGER PRIMARY KEY AUTOINCREMENT,
        at          INTEGER NOT NULL,
        kind        TEXT NOT NULL,
        body        BLOB NOT NULL,
        published   INTEGER NOT NULL DEFAULT 0
    ) STRICT;

    -- Each site's newest purge, by the version that carried it: an edge that loads a snapshot
    -- after missing changes drops what it caches of the sites purged meanwhile (a per-site
    -- cache generation), so nothing purged is served again.
    CREATE TABLE cluster_purges (
        site        TEXT PRIMARY KEY,
        version     INTEGER NOT NULL
    ) STRICT;

    -- A report taken at an edge of a cluster carries the receipt that edge gave it: one
    -- delivered twice (the edge's spool sent it again after a lost answer) is stored once.
    ALTER TABLE reports ADD COLUMN receipt TEXT;
    CREATE UNIQUE INDEX reports_by_receipt ON reports (receipt) WHERE receipt IS NOT NULL;

    -- The other edges' per-site minutes, as they send them (this node's own are in
    -- analytics_minutes): the API adds them up for the cluster and shows each edge's.
    CREATE TABLE analytics_node_minutes (
        node        TEXT NOT NULL,
        site        TEXT NOT NULL,
        minute      INTEGER NOT NULL,
        data        TEXT NOT NULL,
        PRIMARY KEY (site, minute, node)
    ) STRICT, WITHOUT ROWID;
    "#,
];

/// The schema version this binary writes.
pub const LATEST: i64 = STEPS.len() as i64;

pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current > LATEST {
        return Err(StoreError::TooNew {
            found: current,
            known: LATEST,
        });
    }
    for (i, step) in STEPS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "store schema upgraded");
    }
    Ok(())
}
