//! The shared SQLite file of a data directory: opening it safely and migrating its schema.
//!
//! Why SQLite (through `rusqlite`, with the library compiled in): it gives crash-safe
//! transactions with a write-ahead log, several processes may open the same file (the server and
//! the `user`, `group` and `sessions` command lines), every machine can inspect it with the
//! `sqlite3` shell, and its file format is stable and documented for decades. `redb` would
//! have been pure Rust but allows one process at a time and has no shell to look inside. In WAL
//! mode with `synchronous=FULL` a commit is durable when it returns, and one commit (one fsync)
//! can carry many changes, which the session store uses for group commit.
//!
//! Every component (sessions, the user directory, ...) keeps its own list of migrations and its
//! own row in `schema_versions`, so components evolve independently in one file. A file that is
//! not a database, fails its integrity check, or was written by a newer program is an error
//! naming the file: the server refuses to start rather than silently starting empty.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::StoreError;

/// File name of the database inside the data directory.
pub const DATABASE_FILE: &str = "omero-sessiond.db";

/// How long a statement waits for another connection's write lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The database path of a data directory.
pub fn database_path(data_dir: &Path) -> PathBuf {
    data_dir.join(DATABASE_FILE)
}

/// Wraps a SQLite failure on the file at `path`.
pub fn sqlite_error(path: &Path, source: rusqlite::Error) -> StoreError {
    StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

/// When a commit is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=FULL`: a commit survives a crash of the process, the OS or the power
    /// when it returns. What the server uses.
    #[default]
    Full,
    /// `synchronous=NORMAL`: a commit survives a crash of the process (kill -9), but the
    /// last ones may be lost with the OS or the power. Saves one fsync per commit; for
    /// measurements and throw-away servers.
    Normal,
}

/// Opens (creating when missing) the database at `path` with the settings every connection
/// needs, after checking its integrity. Use [`open_more`] for further connections of the same
/// process, which need not repeat the check.
pub fn open(path: &Path) -> Result<Connection, StoreError> {
    let conn = open_more(path)?;
    quick_check(&conn, path)?;
    ensure_versions_table(&conn, path)?;
    Ok(conn)
}

/// [`open`] with another durability than [`Durability::Full`].
pub fn open_with(path: &Path, durability: Durability) -> Result<Connection, StoreError> {
    let conn = open(path)?;
    if durability == Durability::Normal {
        conn.execute_batch("PRAGMA synchronous=NORMAL")
            .map_err(|e| sqlite_error(path, e))?;
    }
    Ok(conn)
}

/// Opens another connection to a database already opened with [`open`].
pub fn open_more(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| sqlite_error(path, e))?;
    configure(&conn, path)?;
    restrict_permissions(path)?;
    Ok(conn)
}

fn configure(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let fail = |e| sqlite_error(path, e);
    conn.busy_timeout(BUSY_TIMEOUT).map_err(fail)?;
    // The first statement that reads the file: a file that is not a database fails here.
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(fail)?;
    if !mode.eq_ignore_ascii_case("wal") {
        let why = format!("cannot switch the journal to WAL mode (it stays {mode})");
        return Err(StoreError::io(path, std::io::Error::other(why)));
    }
    // FULL: in WAL mode a commit is on disk when it returns (NORMAL may lose the last ones).
    conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
        .map_err(fail)
}

fn restrict_permissions(path: &Path) -> Result<(), StoreError> {
    // Sessions uuids are bearer tokens and the directory holds password hashes.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let private = std::fs::Permissions::from_mode(0o600);
        std::fs::set_permissions(path, private).map_err(|e| StoreError::io(path, e))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

fn quick_check(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let mut stmt = conn
        .prepare("PRAGMA quick_check")
        .map_err(|e| sqlite_error(path, e))?;
    let problems: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| sqlite_error(path, e))?;
    if problems.len() == 1 && problems[0] == "ok" {
        return Ok(());
    }
    Err(StoreError::Corrupt {
        path: path.to_path_buf(),
        detail: problems.join("; "),
    })
}

fn ensure_versions_table(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_versions (
             component TEXT PRIMARY KEY,
             version INTEGER NOT NULL
         )",
    )
    .map_err(|e| sqlite_error(path, e))
}

/// The schema version of `component` (0 when it has no tables yet).
pub fn schema_version(conn: &Connection, path: &Path, component: &str) -> Result<i64, StoreError> {
    conn.query_row(
        "SELECT version FROM schema_versions WHERE component = ?1",
        [component],
        |r| r.get(0),
    )
    .optional()
    .map(|v| v.unwrap_or(0))
    .map_err(|e| sqlite_error(path, e))
}

/// Brings `component`'s tables up to date. `migrations[i]` takes the schema from version `i` to
/// `i + 1`; each runs in its own transaction with the version update, so a crash leaves the
/// file at one version or the next. Never edit a released migration: append a new one.
pub fn migrate(
    conn: &mut Connection,
    path: &Path,
    component: &str,
    migrations: &[&str],
) -> Result<(), StoreError> {
    let known = i64::try_from(migrations.len()).unwrap_or(i64::MAX);
    // Checking and upgrading in one immediate transaction keeps two processes starting together
    // from running the same migration twice.
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| sqlite_error(path, e))?;
    let found = schema_version(&tx, path, component)?;
    if found > known {
        return Err(StoreError::SchemaTooNew {
            path: path.to_path_buf(),
            component: component.to_string(),
            found,
            known,
        });
    }
    for (index, sql) in migrations.iter().enumerate().skip(found.max(0) as usize) {
        let version = index as i64 + 1;
        tx.execute_batch(sql).map_err(|e| sqlite_error(path, e))?;
        tx.execute(
            "INSERT INTO schema_versions (component, version) VALUES (?1, ?2)
             ON CONFLICT(component) DO UPDATE SET version = excluded.version",
            rusqlite::params![component, version],
        )
        .map_err(|e| sqlite_error(path, e))?;
        tracing::info!(path = %path.display(), component, version, "database schema migrated");
    }
    tx.commit().map_err(|e| sqlite_error(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const M1: &str = "CREATE TABLE widgets (id INTEGER PRIMARY KEY, name TEXT NOT NULL);";
    const M2: &str = "ALTER TABLE widgets ADD COLUMN colour TEXT;";

    #[test]
    fn opens_in_wal_mode_with_full_sync_and_foreign_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = database_path(dir.path());
        let conn = open(&path).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        let fk: i64 = conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!((mode.as_str(), sync, fk), ("wal", 2, 1));
    }

    #[test]
    fn migrations_run_once_per_component_and_resume() {
        let dir = tempfile::tempdir().unwrap();
        let path = database_path(dir.path());
        let mut conn = open(&path).unwrap();
        migrate(&mut conn, &path, "widgets", &[M1]).unwrap();
        migrate(&mut conn, &path, "widgets", &[M1]).unwrap();
        conn.execute("INSERT INTO widgets (name) VALUES ('a')", [])
            .unwrap();
        drop(conn);
        let mut conn = open(&path).unwrap();
        migrate(&mut conn, &path, "widgets", &[M1, M2]).unwrap();
        migrate(&mut conn, &path, "other", &[]).unwrap();
        assert_eq!(schema_version(&conn, &path, "widgets").unwrap(), 2);
        assert_eq!(schema_version(&conn, &path, "other").unwrap(), 0);
        let rows: i64 = conn
            .query_row(
                "SELECT count(*) FROM widgets WHERE colour IS NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(rows, 1);
    }

    #[test]
    fn a_newer_schema_is_refused_with_the_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = database_path(dir.path());
        let mut conn = open(&path).unwrap();
        migrate(&mut conn, &path, "widgets", &[M1, M2]).unwrap();
        let err = migrate(&mut conn, &path, "widgets", &[M1]).unwrap_err();
        assert!(matches!(
            err,
            StoreError::SchemaTooNew {
                found: 2,
                known: 1,
                ..
            }
        ));
        assert!(err.to_string().contains(DATABASE_FILE), "{err}");
    }

    #[test]
    fn a_file_that_is_not_a_database_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = database_path(dir.path());
        std::fs::write(&path, vec![b'x'; 8192]).unwrap();
        let err = open(&path).unwrap_err();
        assert!(err.to_string().contains(DATABASE_FILE), "{err}");
        // Nothing was reset: the bytes are still there.
        assert_eq!(std::fs::read(&path).unwrap(), vec![b'x'; 8192]);
    }

    #[test]
    fn a_damaged_page_fails_the_integrity_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = database_path(dir.path());
        {
            let mut conn = open(&path).unwrap();
            migrate(&mut conn, &path, "widgets", &[M1]).unwrap();
            let tx = conn.transaction().unwrap();
            for i in 0..2000 {
                tx.execute(
                    "INSERT INTO widgets (name) VALUES (?1)",
                    [format!("w{i:05}")],
                )
                .unwrap();
            }
            tx.commit().unwrap();
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .unwrap();
        }
        // Overwrite the middle of the file (table pages), keeping the header intact.
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        for b in &mut bytes[middle..middle + 4096] {
            *b = 0xA5;
        }
        std::fs::write(&path, &bytes).unwrap();
        let err = open(&path).unwrap_err();
        assert!(err.to_string().contains(DATABASE_FILE), "{err}");
    }
}
