//! The directory in the embedded SQLite database `<data>/omero-sessiond.db`.
//!
//! Proper tables (experimenters, groups, memberships with an owner flag and the position that
//! makes the first one the default group, the light-admin privileges a member of `system` does
//! not hold) and one meta row holding the id counters and the
//! version that optimistic commits check. A commit runs in a `BEGIN IMMEDIATE` transaction, so
//! the version check and the writes are one step for every process on the file (WAL lets
//! readers go on meanwhile); another process's commit shows as a new version on the next
//! one-row read.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{params, Connection, Transaction, TransactionBehavior};

use crate::store::{sqlite, StoreError};

use super::{
    BackendError, Commit, DirectoryBackend, DirectoryChanges, DirectoryData, ExperimenterRecord,
    GroupRecord, Versioned,
};

/// Migrations of this component, applied in order; never edit one that shipped.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE directory_meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL,
    next_experimenter_id INTEGER NOT NULL,
    next_group_id INTEGER NOT NULL
);
INSERT INTO directory_meta (id, version, next_experimenter_id, next_group_id) VALUES (1, 0, 0, 0);
CREATE TABLE experimenter_groups (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    permissions TEXT NOT NULL
);
CREATE TABLE experimenters (
    id INTEGER PRIMARY KEY,
    ome_name TEXT NOT NULL UNIQUE,
    first_name TEXT NOT NULL,
    last_name TEXT NOT NULL,
    email TEXT,
    password_hash TEXT
);
CREATE TABLE group_memberships (
    experimenter_id INTEGER NOT NULL REFERENCES experimenters (id) ON DELETE CASCADE,
    group_id INTEGER NOT NULL REFERENCES experimenter_groups (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    owner INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (experimenter_id, group_id)
);
CREATE INDEX group_memberships_by_group ON group_memberships (group_id);
CREATE TABLE admin_restrictions (
    experimenter_id INTEGER NOT NULL REFERENCES experimenters (id) ON DELETE CASCADE,
    privilege TEXT NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (experimenter_id, privilege)
);
"#];

/// Component name of these tables in the migrations bookkeeping.
pub const COMPONENT: &str = "directory";

/// Processes opening a brand-new file together (a server and a command line at first start)
/// race to switch it to WAL; SQLite answers the loser "busy" at once, without waiting on its
/// busy timeout, so opening tries again a bounded number of times.
const OPEN_BUSY_TRIES: u32 = 50;
const OPEN_BUSY_PAUSE: Duration = Duration::from_millis(100);

fn is_busy(e: &BackendError) -> bool {
    let source = match e {
        BackendError::Store(StoreError::Sqlite { source, .. }) => source,
        _ => return false,
    };
    matches!(
        source.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// One connection on the database file; each handle is like another process.
#[derive(Debug)]
pub struct SqliteDirectory {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl SqliteDirectory {
    /// Opens (creating when missing) the database file and brings the directory tables up to
    /// date. A file that is not a database, or that cannot be read, is an error naming it.
    pub fn open(path: &Path) -> Result<Self, BackendError> {
        let mut tries = 0;
        loop {
            match Self::open_once(path) {
                Err(e) if is_busy(&e) && tries < OPEN_BUSY_TRIES => {
                    tries += 1;
                    std::thread::sleep(OPEN_BUSY_PAUSE);
                }
                other => return other,
            }
        }
    }

    fn open_once(path: &Path) -> Result<Self, BackendError> {
        let mut conn = sqlite::open(path)?;
        sqlite::migrate(&mut conn, path, COMPONENT, MIGRATIONS)?;
        Ok(SqliteDirectory {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // rusqlite rolls back an open transaction when it is dropped during a panic, so the
        // connection is usable after a poisoned lock.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fail(&self, e: rusqlite::Error) -> BackendError {
        BackendError::database(self.location(), e)
    }
}

impl DirectoryBackend for SqliteDirectory {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn load(&self) -> Result<Versioned, BackendError> {
        let mut conn = self.conn();
        // A deferred transaction reads one consistent snapshot of all tables.
        let tx = conn.transaction().map_err(|e| self.fail(e))?;
        let loaded = read_all(&tx).map_err(|e| self.fail(e))?;
        tx.commit().map_err(|e| self.fail(e))?;
        loaded.map_err(|detail| BackendError::Invalid {
            location: self.location(),
            detail,
        })
    }

    fn version(&self) -> Result<i64, BackendError> {
        self.conn()
            .query_row("SELECT version FROM directory_meta WHERE id = 1", [], |r| {
                r.get(0)
            })
            .map_err(|e| self.fail(e))
    }

    fn commit(&self, base: i64, changes: &DirectoryChanges) -> Result<Commit, BackendError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.fail(e))?;
        let stored: i64 = tx
            .query_row("SELECT version FROM directory_meta WHERE id = 1", [], |r| {
                r.get(0)
            })
            .map_err(|e| self.fail(e))?;
        if stored != base {
            return Ok(Commit::Stale);
        }
        write_changes(&tx, changes).map_err(|e| self.fail(e))?;
        tx.execute(
            "UPDATE directory_meta SET version = ?1, next_experimenter_id = ?2, \
             next_group_id = ?3 WHERE id = 1",
            params![
                base + 1,
                changes.next_experimenter_id,
                changes.next_group_id
            ],
        )
        .map_err(|e| self.fail(e))?;
        tx.commit().map_err(|e| self.fail(e))?;
        Ok(Commit::Done(base + 1))
    }
}

fn write_changes(tx: &Transaction<'_>, changes: &DirectoryChanges) -> rusqlite::Result<()> {
    for id in &changes.groups_removed {
        tx.execute("DELETE FROM group_memberships WHERE group_id = ?1", [id])?;
        tx.execute("DELETE FROM experimenter_groups WHERE id = ?1", [id])?;
    }
    for id in &changes.experimenters_removed {
        tx.execute(
            "DELETE FROM group_memberships WHERE experimenter_id = ?1",
            [id],
        )?;
        tx.execute(
            "DELETE FROM admin_restrictions WHERE experimenter_id = ?1",
            [id],
        )?;
        tx.execute("DELETE FROM experimenters WHERE id = ?1", [id])?;
    }
    for g in &changes.groups_upserted {
        tx.execute(
            "INSERT INTO experimenter_groups (id, name, permissions) VALUES (?1, ?2, ?3) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, \
             permissions = excluded.permissions",
            params![g.id, g.name, g.permissions],
        )?;
    }
    for e in &changes.experimenters_upserted {
        write_experimenter(tx, e)?;
    }
    Ok(())
}

fn write_experimenter(tx: &Transaction<'_>, e: &ExperimenterRecord) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO experimenters (id, ome_name, first_name, last_name, email, password_hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT (id) DO UPDATE SET ome_name = excluded.ome_name, \
         first_name = excluded.first_name, last_name = excluded.last_name, \
         email = excluded.email, password_hash = excluded.password_hash",
        params![
            e.id,
            e.ome_name,
            e.first_name,
            e.last_name,
            e.email,
            e.password_hash
        ],
    )?;
    tx.execute(
        "DELETE FROM group_memberships WHERE experimenter_id = ?1",
        [e.id],
    )?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO group_memberships (experimenter_id, group_id, position, owner) \
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (position, gid) in e.member_of.iter().enumerate() {
        let position = i64::try_from(position).unwrap_or(i64::MAX);
        insert.execute(params![e.id, gid, position, e.leader_of.contains(gid)])?;
    }
    tx.execute(
        "DELETE FROM admin_restrictions WHERE experimenter_id = ?1",
        [e.id],
    )?;
    let mut restrict = tx.prepare_cached(
        "INSERT INTO admin_restrictions (experimenter_id, privilege, position) \
         VALUES (?1, ?2, ?3)",
    )?;
    for (position, privilege) in e.admin_restrictions.iter().enumerate() {
        let position = i64::try_from(position).unwrap_or(i64::MAX);
        restrict.execute(params![e.id, privilege, position])?;
    }
    Ok(())
}

// Outer error: the database failed; inner: rows that break the model.
fn read_all(tx: &Transaction<'_>) -> rusqlite::Result<Result<Versioned, String>> {
    let (version, next_experimenter_id, next_group_id): (i64, i64, i64) = tx.query_row(
        "SELECT version, next_experimenter_id, next_group_id FROM directory_meta WHERE id = 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let mut groups_query =
        tx.prepare("SELECT id, name, permissions FROM experimenter_groups ORDER BY id")?;
    let groups = groups_query
        .query_map([], |r| {
            Ok(GroupRecord {
                id: r.get(0)?,
                name: r.get(1)?,
                permissions: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut users_query = tx.prepare(
        "SELECT id, ome_name, first_name, last_name, email, password_hash \
         FROM experimenters ORDER BY id",
    )?;
    let mut experimenters = users_query
        .query_map([], |r| {
            Ok(ExperimenterRecord {
                id: r.get(0)?,
                ome_name: r.get(1)?,
                first_name: r.get(2)?,
                last_name: r.get(3)?,
                email: r.get(4)?,
                password_hash: r.get(5)?,
                member_of: Vec::new(),
                leader_of: Vec::new(),
                admin_restrictions: Vec::new(),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut members_query = tx.prepare(
        "SELECT experimenter_id, group_id, owner FROM group_memberships \
         ORDER BY experimenter_id, position",
    )?;
    let rows = members_query
        .query_map([], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get(2)?))
        })?
        .collect::<rusqlite::Result<Vec<(i64, i64, bool)>>>()?;
    for (user, group, owner) in rows {
        let Some(record) = experimenters.iter_mut().find(|e| e.id == user) else {
            return Ok(Err(format!("membership of unknown experimenter {user}")));
        };
        if !groups.iter().any(|g| g.id == group) {
            return Ok(Err(format!("membership in unknown group {group}")));
        }
        record.member_of.push(group);
        if owner {
            record.leader_of.push(group);
        }
    }
    let mut restrictions_query = tx.prepare(
        "SELECT experimenter_id, privilege FROM admin_restrictions \
         ORDER BY experimenter_id, position",
    )?;
    let rows = restrictions_query
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for (user, privilege) in rows {
        let Some(record) = experimenters.iter_mut().find(|e| e.id == user) else {
            return Ok(Err(format!(
                "admin restriction of unknown experimenter {user}"
            )));
        };
        record.admin_restrictions.push(privilege);
    }
    Ok(Ok(Versioned {
        version,
        data: DirectoryData {
            next_experimenter_id,
            next_group_id,
            groups,
            experimenters,
            ..DirectoryData::empty()
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_backend_keeps_the_contract() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("omero-sessiond.db");
        super::super::contract::check_backend(&|| Box::new(SqliteDirectory::open(&path).unwrap()));
    }

    // Without the retry, about one round in a hundred lost the race on this machine: enough
    // rounds to catch it in most runs, few enough to stay quick.
    #[test]
    fn handles_opening_a_new_file_together_all_succeed() {
        for _ in 0..60 {
            let tmp = tempfile::tempdir().unwrap();
            let path = tmp.path().join("omero-sessiond.db");
            std::thread::scope(|scope| {
                let opening: Vec<_> = (0..8)
                    .map(|_| scope.spawn(|| SqliteDirectory::open(&path).map(|_| ())))
                    .collect();
                for o in opening {
                    if let Err(e) = o.join().unwrap() {
                        panic!("concurrent open: {e}");
                    }
                }
            });
        }
    }

    #[test]
    fn reopening_keeps_the_schema_and_data() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("omero-sessiond.db");
        let first = SqliteDirectory::open(&path).unwrap();
        let seed =
            DirectoryChanges::between(&DirectoryData::empty(), &DirectoryData::with_builtins());
        assert_eq!(first.commit(0, &seed).unwrap(), Commit::Done(1));
        drop(first);
        let again = SqliteDirectory::open(&path).unwrap();
        assert_eq!(again.load().unwrap().data, DirectoryData::with_builtins());
    }

    #[test]
    fn a_file_that_is_not_a_database_is_named_in_the_error() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("omero-sessiond.db");
        std::fs::write(&path, vec![b'x'; 8192]).unwrap();
        let err = SqliteDirectory::open(&path).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
    }
}
