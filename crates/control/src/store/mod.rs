//! The embedded store: one SQLite file, `<data_dir>/palisade.db`, in WAL mode with foreign keys
//! on. Every change the control plane accepts is one transaction that also appends its audit
//! entry, so a crash (even `kill -9`) leaves either both or neither.
//!
//! SQLite calls block: the API runs them through [`Store::run`], on tokio's blocking threads,
//! never on a request's path (the edge reads only its snapshot).

mod migrations;

pub mod analytics;
pub mod audit;
pub mod outbox;
pub mod reports;
pub mod sites;
pub mod tokens;

use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The database file's name inside the data directory.
pub const DB_FILE: &str = "palisade.db";

/// How long a statement waits for another connection's write lock (a `palisade audit
/// verify` reading while the server writes) before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened or set up.
    #[error("the store {path}: {error}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        error: rusqlite::Error,
    },
    #[error(
        "the store's schema is version {found}, newer than this palisade knows ({known}): upgrade palisade"
    )]
    /// The store was written by a newer Palisade.
    TooNew {
        /// The store's schema version.
        found: i64,
        /// The newest this build knows.
        known: i64,
    },
    /// A statement failed.
    #[error("store: {0}")]
    Sql(#[from] rusqlite::Error),
    /// A stored value cannot be read back (not the JSON or the name it should be), or a value
    /// to store could not be made.
    #[error("store: a stored value is unreadable: {0}")]
    Corrupt(String),
    /// The blocking thread that ran a statement panicked or was cancelled.
    #[error("store: the blocking task failed: {0}")]
    Task(String),
}

/// The store, shared by the API's handlers. One connection: the control plane's writes are
/// few, and one writer is what SQLite serialises to anyway.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) `<data_dir>/palisade.db` and brings its schema up to date.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        Store::open_file(&data_dir.join(DB_FILE))
    }

    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open_file(path: &Path) -> Result<Store, StoreError> {
        let open_error = |error| StoreError::Open {
            path: path.to_path_buf(),
            error,
        };
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_error)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
        // WAL: readers never block the writer. synchronous=FULL: a committed change (and its
        // audit entry) survives power loss, not only a killed process; the control plane
        // writes rarely enough that the fsync does not matter.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_error)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_error)?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(open_error)?;
        migrations::migrate(&mut conn)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_path_buf(),
        })
    }

    /// Opens an existing store for reading only: no file is created, no schema upgraded, no
    /// byte written (`palisade audit verify` on a copy, or beside a running server).
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        let open_error = |error| StoreError::Open {
            path: path.to_path_buf(),
            error,
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_error)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > migrations::LATEST {
            return Err(StoreError::TooNew {
                found: version,
                known: migrations::LATEST,
            });
        }
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_path_buf(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with the connection on the calling thread (tests, the CLI, start-up).
    pub fn with<T>(&self, f: impl FnOnce(&mut Connection) -> T) -> T {
        // A panic while holding the lock leaves SQLite itself consistent (an open transaction
        // rolls back when dropped), so a poisoned lock is safe to take over.
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn)
    }

    /// Runs `f` with the connection on a blocking thread.
    pub async fn run<T, E>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let store = self.clone();
        match tokio::task::spawn_blocking(move || store.with(f)).await {
            Ok(result) => result,
            Err(e) => Err(StoreError::Task(e.to_string()).into()),
        }
    }
}

/// Now, in milliseconds since the Unix epoch: every time the store keeps.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
pub(crate) fn test_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("open store");
    (dir, store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_twice_keeps_the_schema_and_uses_wal_with_foreign_keys() {
        let (dir, store) = test_store();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        store.with(|conn| {
            let mode: String = conn
                .pragma_query_value(None, "journal_mode", |r| r.get(0))
                .unwrap();
            assert_eq!(mode, "wal");
            let fk: i64 = conn
                .pragma_query_value(None, "foreign_keys", |r| r.get(0))
                .unwrap();
            assert_eq!(fk, 1);
            let version: i64 = conn
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .unwrap();
            assert_eq!(version, migrations::LATEST);
        });
    }

    #[test]
    fn a_read_only_open_reads_without_writing() {
        let (dir, store) = test_store();
        store.with(|conn| conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap());
        drop(store);
        let path = dir.path().join(DB_FILE);
        let read_only = Store::open_read_only(&path).unwrap();
        read_only.with(|conn| {
            let n: i64 = conn
                .query_row("SELECT count(*) FROM audit", [], |r| r.get(0))
                .unwrap();
            assert_eq!(n, 0);
            assert!(conn.execute("INSERT INTO t VALUES (1)", []).is_err());
        });
        assert!(Store::open_read_only(&dir.path().join("missing.db")).is_err());
    }

    #[test]
    fn a_schema_newer_than_this_binary_is_refused() {
        let (dir, store) = test_store();
        store.with(|conn| conn.pragma_update(None, "user_version", 999).unwrap());
        drop(store);
        let error = Store::open(dir.path()).err().expect("refused");
        assert!(
            matches!(error, StoreError::TooNew { found: 999, .. }),
            "{error}"
        );
    }
}
