//! The embedded session store: tables `sessions` and `session_env` in the data directory's
//! SQLite file (see [`crate::store::sqlite`] for why SQLite and how the file is opened).
//!
//! Group commit: one writer thread owns the writing connection and takes changes from a
//! channel. It takes everything queued, runs it in one transaction (each change in its own
//! savepoint, so one failing change does not undo the others), commits once (one fsync for
//! the lot), and only then answers each caller. Under load a commit carries many sessions;
//! alone, a change waits for its own fsync only. Reads go to a second connection on a blocking
//! thread and never wait for the writer (WAL readers see the last commit).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};
use tokio::sync::oneshot;

use super::rowlog::read_session_log;
use super::store::{ClosedFeed, EncodedEnv, Env, OpenRow, SessionRow, SessionStore, StoredSession};
use crate::store::sqlite::{self as db, sqlite_error, Durability};
use crate::store::StoreError;

/// This component's name in `schema_versions`.
pub const COMPONENT: &str = "sessions";

/// Closed rows kept on disk (for "closed=..." messages); older ones are pruned at open.
pub const CLOSED_ROWS_KEPT_ON_DISK: i64 = 100_000;

/// The session log of earlier versions, imported once and then renamed with [`IMPORTED_SUFFIX`].
pub const LEGACY_LOG_FILE: &str = super::rowlog::SESSION_LOG_FILE;
pub const IMPORTED_SUFFIX: &str = ".imported";

/// Most changes one transaction carries; bounds the time one commit keeps callers waiting.
const MAX_BATCH: usize = 4096;

/// `migrations[i]` brings the session tables from version i to i + 1. Never edit one.
const MIGRATIONS: &[&str] = &["
    CREATE TABLE sessions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        uuid TEXT NOT NULL UNIQUE,
        owner_id INTEGER NOT NULL,
        group_id INTEGER NOT NULL,
        sudoer_id INTEGER,
        group_sudo INTEGER NOT NULL DEFAULT 0,
        started INTEGER NOT NULL,
        closed INTEGER,
        close_seq INTEGER UNIQUE,
        time_to_idle INTEGER NOT NULL,
        time_to_live INTEGER NOT NULL,
        agent TEXT,
        ip TEXT,
        event_type TEXT NOT NULL,
        refcount INTEGER NOT NULL,
        last_access INTEGER NOT NULL
    );
    CREATE INDEX sessions_open ON sessions (id) WHERE closed IS NULL;
    CREATE TABLE session_env (
        session_id INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        env TEXT NOT NULL CHECK (env IN ('input', 'output')),
        key TEXT NOT NULL,
        value BLOB NOT NULL,
        PRIMARY KEY (session_id, env, key)
    ) WITHOUT ROWID;
    CREATE TABLE session_imports (
        file TEXT PRIMARY KEY,
        imported_at INTEGER NOT NULL
    );
"];

const ROW_COLUMNS: &str = "id, uuid, owner_id, group_id, started, closed, time_to_idle, \
    time_to_live, agent, ip, event_type, sudoer_id, group_sudo, refcount, last_access";

/// Called once the transaction that ran a change has committed (or failed to).
type Finish = Box<dyn FnOnce(Result<(), String>) + Send>;
/// A change: runs its statements on the writer's connection (or learns it cannot).
type Job = Box<dyn FnOnce(Result<&Connection, &str>) -> Finish + Send>;

/// Sessions in `<data>/omero-sessiond.db`.
#[derive(Debug)]
pub struct SqliteSessionStore {
    path: Arc<PathBuf>,
    jobs: mpsc::Sender<Job>,
    reader: Arc<Mutex<Connection>>,
}

impl SqliteSessionStore {
    /// Opens the database of `data_dir` (creating or migrating the session tables), imports a
    /// `sessions.jsonl` of an earlier version once, and starts the writer thread.
    pub fn open(data_dir: &Path, now_ms: i64) -> Result<Self, StoreError> {
        Self::open_with(data_dir, now_ms, Durability::Full)
    }

    /// [`Self::open`] with the writer committing at `durability` (the server uses `Full`).
    pub fn open_with(
        data_dir: &Path,
        now_ms: i64,
        durability: Durability,
    ) -> Result<Self, StoreError> {
        let path = db::database_path(data_dir);
        let mut conn = db::open_with(&path, durability)?;
        db::migrate(&mut conn, &path, COMPONENT, MIGRATIONS)?;
        import_session_log(&mut conn, &path, data_dir, now_ms)?;
        prune_closed(&conn, &path)?;
        let reader = db::open_more(&path)?;
        let path = Arc::new(path);
        let (jobs, queue) = mpsc::channel();
        let writer_path = Arc::clone(&path);
        std::thread::Builder::new()
            .name("session-writer".to_string())
            .spawn(move || writer_loop(conn, queue, &writer_path))
            .map_err(|e| StoreError::io(&path, e))?;
        Ok(SqliteSessionStore {
            path,
            jobs,
            reader: Arc::new(Mutex::new(reader)),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues a change for the writer and waits until its transaction has committed.
    async fn write<T, F>(&self, change: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let path = Arc::clone(&self.path);
        let job: Job = Box::new(move |conn| {
            let result = match conn {
                Ok(conn) => in_savepoint(conn, change).map_err(|e| sqlite_error(&path, e)),
                Err(why) => Err(StoreError::Unavailable(why.to_string())),
            };
            Box::new(move |commit| {
                let answer = match commit {
                    Ok(()) => result,
                    Err(why) => Err(StoreError::Unavailable(why)),
                };
                // The caller may have gone (a client hung up); the change stands all the same.
                let _ = reply.send(answer);
            })
        });
        let stopped = || StoreError::Unavailable("the session writer has stopped".to_string());
        self.jobs.send(job).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Runs a query on the read connection on a blocking thread.
    async fn read<T, F>(&self, query: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let reader = Arc::clone(&self.reader);
        let path = Arc::clone(&self.path);
        tokio::task::spawn_blocking(move || {
            // A panic mid-query leaves nothing half-done on a read connection.
            let conn = reader.lock().unwrap_or_else(|e| e.into_inner());
            query(&conn).map_err(|e| sqlite_error(&path, e))
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("session read failed: {e}")))?
    }
}

fn writer_loop(conn: Connection, queue: mpsc::Receiver<Job>, path: &Path) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_batch(&conn, batch, path);
    }
}

fn run_batch(conn: &Connection, batch: Vec<Job>, path: &Path) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let why = format!("cannot write {}: {e}", path.display());
        tracing::error!(path = %path.display(), error = %e, "session transaction not started");
        for job in batch {
            job(Err(&why))(Err(why.clone()));
        }
        return;
    }
    let finishers: Vec<Finish> = batch.into_iter().map(|job| job(Ok(conn))).collect();
    let commit = conn.execute_batch("COMMIT").map_err(|e| {
        tracing::error!(path = %path.display(), error = %e, "session commit failed");
        // Leaves the connection usable for the next batch; its error (if any) adds nothing.
        let _ = conn.execute_batch("ROLLBACK");
        format!("cannot commit to {}: {e}", path.display())
    });
    for finish in finishers {
        finish(commit.clone());
    }
}

fn in_savepoint<T>(
    conn: &Connection,
    change: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached("SAVEPOINT change")?.execute([])?;
    match change(conn) {
        Ok(value) => {
            conn.prepare_cached("RELEASE change")?.execute([])?;
            Ok(value)
        }
        Err(e) => {
            conn.execute_batch("ROLLBACK TO change; RELEASE change")?;
            Err(e)
        }
    }
}

fn row_from(r: &Row<'_>) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        id: r.get(0)?,
        uuid: r.get(1)?,
        owner_id: r.get(2)?,
        group_id: r.get(3)?,
        started: r.get(4)?,
        closed: r.get(5)?,
        time_to_idle: r.get(6)?,
        time_to_live: r.get(7)?,
        agent: r.get(8)?,
        ip: r.get(9)?,
        event_type: r.get(10)?,
        sudoer_id: r.get(11)?,
        group_sudo: r.get(12)?,
    })
}

fn open_row_from(r: &Row<'_>) -> rusqlite::Result<OpenRow> {
    Ok(OpenRow {
        row: row_from(r)?,
        refcount: r.get(13)?,
        last_access: r.get(14)?,
    })
}

fn env_from(name: &str) -> Option<Env> {
    match name {
        "input" => Some(Env::Input),
        "output" => Some(Env::Output),
        _ => None,
    }
}

fn stored(open: OpenRow) -> StoredSession {
    StoredSession {
        row: open.row,
        refcount: open.refcount,
        last_access: open.last_access,
        input: EncodedEnv::new(),
        output: EncodedEnv::new(),
    }
}

fn add_env(session: &mut StoredSession, env: &str, key: String, value: Vec<u8>) {
    match env_from(env) {
        Some(Env::Input) => session.input.insert(key, value),
        Some(Env::Output) => session.output.insert(key, value),
        // The CHECK constraint makes this unreachable short of a hand-edited file.
        None => None,
    };
}

/// An open session with its maps, read on `conn`.
fn load_session(conn: &Connection, uuid: &str) -> rusqlite::Result<Option<StoredSession>> {
    let sql = format!("SELECT {ROW_COLUMNS} FROM sessions WHERE uuid = ?1 AND closed IS NULL");
    let Some(open) = conn
        .prepare_cached(&sql)?
        .query_row([uuid], open_row_from)
        .optional()?
    else {
        return Ok(None);
    };
    let mut session = stored(open);
    let mut stmt =
        conn.prepare_cached("SELECT env, key, value FROM session_env WHERE session_id = ?1")?;
    let mut rows = stmt.query([session.row.id])?;
    while let Some(r) = rows.next()? {
        let env: String = r.get(0)?;
        add_env(&mut session, &env, r.get(1)?, r.get(2)?);
    }
    Ok(Some(session))
}

/// Closes an open row and drops its maps; false when it was not open.
fn close_row(conn: &Connection, uuid: &str, closed_ms: i64) -> rusqlite::Result<bool> {
    let id: Option<i64> = conn
        .prepare_cached(
            "UPDATE sessions SET closed = ?2,
                 close_seq = (SELECT coalesce(max(close_seq), 0) + 1 FROM sessions)
             WHERE uuid = ?1 AND closed IS NULL RETURNING id",
        )?
        .query_row(params![uuid, closed_ms], |r| r.get(0))
        .optional()?;
    let Some(id) = id else {
        return Ok(false);
    };
    conn.prepare_cached("DELETE FROM session_env WHERE session_id = ?1")?
        .execute([id])?;
    Ok(true)
}

#[async_trait]
impl SessionStore for SqliteSessionStore {
    async fn insert(&self, row: SessionRow) -> Result<SessionRow, StoreError> {
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO sessions (uuid, owner_id, group_id, sudoer_id, started, time_to_idle,
                     time_to_live, agent, ip, event_type, group_sudo, refcount, last_access)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 1, ?5)",
            )?
            .execute(params![
                row.uuid,
                row.owner_id,
                row.group_id,
                row.sudoer_id,
                row.started,
                row.time_to_idle,
                row.time_to_live,
                row.agent,
                row.ip,
                row.event_type,
                row.group_sudo,
            ])?;
            Ok(SessionRow {
                id: conn.last_insert_rowid(),
                closed: None,
                ..row
            })
        })
        .await
    }

    async fn join(&self, uuid: &str, now_ms: i64) -> Result<Option<StoredSession>, StoreError> {
        let uuid = uuid.to_string();
        self.write(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE sessions SET refcount = refcount + 1,
                         last_access = max(last_access, ?2)
                     WHERE uuid = ?1 AND closed IS NULL",
                )?
                .execute(params![uuid, now_ms])?;
            if changed == 0 {
                return Ok(None);
            }
            load_session(conn, &uuid)
        })
        .await
    }

    async fn detach(
        &self,
        uuid: &str,
        close_at_zero: Option<i64>,
    ) -> Result<Option<i64>, StoreError> {
        let uuid = uuid.to_string();
        self.write(move |conn| {
            let remaining: Option<i64> = conn
                .prepare_cached(
                    "UPDATE sessions SET refcount = max(refcount - 1, 0)
                     WHERE uuid = ?1 AND closed IS NULL RETURNING refcount",
                )?
                .query_row([&uuid], |r| r.get(0))
                .optional()?;
            if let (Some(0), Some(at)) = (remaining, close_at_zero) {
                close_row(conn, &uuid, at)?;
            }
            Ok(remaining)
        })
        .await
    }

    async fn close(&self, uuid: &str, closed_ms: i64) -> Result<bool, StoreError> {
        let uuid = uuid.to_string();
        self.write(move |conn| close_row(conn, &uuid, closed_ms))
            .await
    }

    async fn set_timeouts(
        &self,
        uuid: &str,
        time_to_live: i64,
        time_to_idle: i64,
    ) -> Result<(), StoreError> {
        let uuid = uuid.to_string();
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE sessions SET time_to_live = ?2, time_to_idle = ?3
                 WHERE uuid = ?1 AND closed IS NULL",
            )?
            .execute(params![uuid, time_to_live, time_to_idle])?;
            Ok(())
        })
        .await
    }

    async fn set_group(&self, uuid: &str, group_id: i64) -> Result<(), StoreError> {
        let uuid = uuid.to_string();
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE sessions SET group_id = ?2 WHERE uuid = ?1 AND closed IS NULL",
            )?
            .execute(params![uuid, group_id])?;
            Ok(())
        })
        .await
    }

    async fn set_env(
        &self,
        uuid: &str,
        env: Env,
        key: &str,
        value: Option<Vec<u8>>,
    ) -> Result<(), StoreError> {
        let (uuid, key) = (uuid.to_string(), key.to_string());
        self.write(move |conn| {
            match value {
                Some(value) => conn
                    .prepare_cached(
                        "INSERT INTO session_env (session_id, env, key, value)
                         SELECT id, ?2, ?3, ?4 FROM sessions WHERE uuid = ?1 AND closed IS NULL
                         ON CONFLICT (session_id, env, key) DO UPDATE SET value = excluded.value",
                    )?
                    .execute(params![uuid, env.name(), key, value])?,
                None => conn
                    .prepare_cached(
                        "DELETE FROM session_env WHERE env = ?2 AND key = ?3 AND session_id =
                             (SELECT id FROM sessions WHERE uuid = ?1 AND closed IS NULL)",
                    )?
                    .execute(params![uuid, env.name(), key])?,
            };
            Ok(())
        })
        .await
    }

    async fn touch_many(&self, accesses: &[(String, i64)]) -> Result<(), StoreError> {
        if accesses.is_empty() {
            return Ok(());
        }
        let accesses = accesses.to_vec();
        self.write(move |conn| {
            let mut stmt = conn.prepare_cached(
                "UPDATE sessions SET last_access = ?2
                 WHERE uuid = ?1 AND closed IS NULL AND last_access < ?2",
            )?;
            for (uuid, at) in &accesses {
                stmt.execute(params![uuid, at])?;
            }
            Ok(())
        })
        .await
    }

    async fn last_access(&self, uuid: &str) -> Result<Option<i64>, StoreError> {
        let uuid = uuid.to_string();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT last_access FROM sessions WHERE uuid = ?1 AND closed IS NULL",
            )?
            .query_row([uuid], |r| r.get(0))
            .optional()
        })
        .await
    }

    async fn find(&self, uuid: &str) -> Result<Option<SessionRow>, StoreError> {
        let uuid = uuid.to_string();
        self.read(move |conn| {
            let sql = format!("SELECT {ROW_COLUMNS} FROM sessions WHERE uuid = ?1");
            conn.prepare_cached(&sql)?
                .query_row([uuid], row_from)
                .optional()
        })
        .await
    }

    async fn list_open(&self) -> Result<Vec<OpenRow>, StoreError> {
        self.read(list_open_rows).await
    }

    async fn load_open(&self) -> Result<Vec<StoredSession>, StoreError> {
        self.read(|conn| {
            // One read transaction so the rows and their maps are of the same commit.
            conn.execute_batch("BEGIN")?;
            let loaded = load_all_open(conn);
            conn.execute_batch("COMMIT")?;
            loaded
        })
        .await
    }

    async fn close_cursor(&self) -> Result<i64, StoreError> {
        self.read(|conn| {
            conn.prepare_cached("SELECT coalesce(max(close_seq), 0) FROM sessions")?
                .query_row([], |r| r.get(0))
        })
        .await
    }

    async fn closed_since(&self, cursor: i64) -> Result<ClosedFeed, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT uuid, close_seq FROM sessions WHERE close_seq > ?1 ORDER BY close_seq",
            )?;
            let mut feed = ClosedFeed {
                uuids: Vec::new(),
                cursor,
            };
            let mut rows = stmt.query([cursor])?;
            while let Some(r) = rows.next()? {
                feed.uuids.push(r.get(0)?);
                feed.cursor = feed.cursor.max(r.get(1)?);
            }
            Ok(feed)
        })
        .await
    }
}

fn list_open_rows(conn: &Connection) -> rusqlite::Result<Vec<OpenRow>> {
    let sql = format!("SELECT {ROW_COLUMNS} FROM sessions WHERE closed IS NULL ORDER BY id");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([], open_row_from)?;
    rows.collect()
}

fn load_all_open(conn: &Connection) -> rusqlite::Result<Vec<StoredSession>> {
    let mut sessions: Vec<StoredSession> = list_open_rows(conn)?.into_iter().map(stored).collect();
    let index: HashMap<i64, usize> = sessions
        .iter()
        .enumerate()
        .map(|(i, s)| (s.row.id, i))
        .collect();
    let mut stmt = conn.prepare_cached(
        "SELECT e.session_id, e.env, e.key, e.value FROM session_env e
         JOIN sessions s ON s.id = e.session_id WHERE s.closed IS NULL",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let env: String = r.get(1)?;
        if let Some(&i) = index.get(&id) {
            add_env(&mut sessions[i], &env, r.get(2)?, r.get(3)?);
        }
    }
    Ok(sessions)
}

fn prune_closed(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let pruned = conn
        .execute(
            "DELETE FROM sessions WHERE close_seq <=
                 (SELECT max(close_seq) FROM sessions) - ?1",
            [CLOSED_ROWS_KEPT_ON_DISK],
        )
        .map_err(|e| sqlite_error(path, e))?;
    if pruned > 0 {
        tracing::info!(path = %path.display(), pruned, "old closed session rows pruned");
    }
    Ok(())
}

/// Imports `sessions.jsonl` of an earlier version once, then renames it. Its open rows were
/// sessions of a process that has ended (that version kept no refcounts or maps), so they are
/// imported closed at `now_ms`, as that version itself would have done at its next start.
fn import_session_log(
    conn: &mut Connection,
    path: &Path,
    data_dir: &Path,
    now_ms: i64,
) -> Result<(), StoreError> {
    let log = data_dir.join(LEGACY_LOG_FILE);
    if !log.exists() {
        return Ok(());
    }
    let fail = |e| sqlite_error(path, e);
    let tx = conn.transaction().map_err(fail)?;
    let done: bool = tx
        .query_row(
            "SELECT count(*) > 0 FROM session_imports WHERE file = ?1",
            [LEGACY_LOG_FILE],
            |r| r.get(0),
        )
        .map_err(fail)?;
    if !done {
        let (next_id, rows) = read_session_log(&log)?;
        let count = rows.len();
        insert_imported(&tx, rows, next_id, now_ms).map_err(fail)?;
        tx.execute(
            "INSERT INTO session_imports (file, imported_at) VALUES (?1, ?2)",
            params![LEGACY_LOG_FILE, now_ms],
        )
        .map_err(fail)?;
        tx.commit().map_err(fail)?;
        tracing::info!(file = %log.display(), rows = count, "session log imported into the database");
    } else {
        drop(tx);
    }
    rename_imported(&log)
}

fn insert_imported(
    tx: &Connection,
    rows: Vec<SessionRow>,
    next_id: i64,
    now_ms: i64,
) -> rusqlite::Result<()> {
    let mut seq: i64 = tx.query_row(
        "SELECT coalesce(max(close_seq), 0) FROM sessions",
        [],
        |r| r.get(0),
    )?;
    let mut stmt = tx.prepare(
        "INSERT OR IGNORE INTO sessions (id, uuid, owner_id, group_id, sudoer_id, started,
             closed, close_seq, time_to_idle, time_to_live, agent, ip, event_type, refcount,
             last_access)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 0, ?6)",
    )?;
    for row in rows {
        seq += 1;
        stmt.execute(params![
            row.id,
            row.uuid,
            row.owner_id,
            row.group_id,
            row.sudoer_id,
            row.started,
            row.closed.unwrap_or(now_ms),
            seq,
            row.time_to_idle,
            row.time_to_live,
            row.agent,
            row.ip,
            row.event_type,
        ])?;
    }
    // Ids handed out by the old log are never reused, pruned rows included.
    let last = next_id.saturating_sub(1);
    let bumped = tx.execute(
        "UPDATE sqlite_sequence SET seq = max(seq, ?1) WHERE name = 'sessions'",
        [last],
    )?;
    if bumped == 0 {
        tx.execute(
            "INSERT INTO sqlite_sequence (name, seq) VALUES ('sessions', ?1)",
            [last],
        )?;
    }
    Ok(())
}

fn rename_imported(log: &Path) -> Result<(), StoreError> {
    let mut target = log.as_os_str().to_owned();
    target.push(IMPORTED_SUFFIX);
    let mut target = PathBuf::from(target);
    if target.exists() {
        // Never overwrite an earlier import's evidence.
        let mut numbered = target.clone().into_os_string();
        numbered.push(format!(".{}", std::process::id()));
        target = PathBuf::from(numbered);
    }
    std::fs::rename(log, &target).map_err(|e| StoreError::io(log, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::store_contract::{check_all, sample_row};

    #[tokio::test]
    async fn sqlite_store_meets_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteSessionStore::open(dir.path(), 0).unwrap();
        check_all(&store).await;
    }

    #[tokio::test]
    async fn everything_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteSessionStore::open(dir.path(), 0).unwrap();
        let a = store.insert(sample_row(1_000)).await.unwrap();
        let b = store.insert(sample_row(1_000)).await.unwrap();
        store.join(&a.uuid, 2_000).await.unwrap();
        store
            .set_env(&a.uuid, Env::Input, "k", Some(vec![7, 8]))
            .await
            .unwrap();
        store.touch_many(&[(a.uuid.clone(), 3_000)]).await.unwrap();
        store.close(&b.uuid, 2_500).await.unwrap();
        drop(store);

        let store = SqliteSessionStore::open(dir.path(), 0).unwrap();
        let open = store.load_open().await.unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!((open[0].refcount, open[0].last_access), (2, 3_000));
        assert_eq!(open[0].input.get("k"), Some(&vec![7, 8]));
        assert_eq!(
            store.find(&b.uuid).await.unwrap().unwrap().closed,
            Some(2_500)
        );
        let c = store.insert(sample_row(1_000)).await.unwrap();
        assert!(c.id > b.id);
    }

    #[tokio::test]
    async fn concurrent_changes_share_commits_and_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteSessionStore::open(dir.path(), 0).unwrap());
        let mut tasks = Vec::new();
        for _ in 0..200 {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                store.insert(sample_row(1_000)).await.unwrap()
            }));
        }
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await.unwrap().id);
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 200);
        assert_eq!(store.list_open().await.unwrap().len(), 200);
    }

    #[tokio::test]
    async fn a_failing_change_does_not_undo_its_batch_neighbours() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteSessionStore::open(dir.path(), 0).unwrap());
        let row = sample_row(1_000);
        let mut tasks = Vec::new();
        for _ in 0..20 {
            // The same uuid twice breaks the UNIQUE constraint for all but one.
            let (same, row) = (Arc::clone(&store), row.clone());
            tasks.push(tokio::spawn(async move { same.insert(row).await.is_ok() }));
            let fresh = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                fresh.insert(sample_row(1_000)).await.is_ok()
            }));
        }
        let mut ok = 0;
        for t in tasks {
            ok += usize::from(t.await.unwrap());
        }
        assert_eq!(ok, 21);
        assert_eq!(store.list_open().await.unwrap().len(), 21);
    }

    #[tokio::test]
    async fn the_old_session_log_is_imported_once_and_renamed() {
        let dir = tempfile::tempdir().unwrap();
        {
            use crate::sessions::rowlog::{JsonlSessionStore, RowLog};
            let log = JsonlSessionStore::open(dir.path(), 0).unwrap();
            let mut open = sample_row(1_000);
            open.uuid = "open-one".to_string();
            let mut closed = sample_row(1_000);
            closed.uuid = "closed-one".to_string();
            log.insert(open).unwrap();
            log.insert(closed).unwrap();
            log.close("closed-one", 1_500).unwrap();
        }
        let store = SqliteSessionStore::open(dir.path(), 9_000).unwrap();
        assert!(!dir.path().join(LEGACY_LOG_FILE).exists());
        assert!(dir.path().join("sessions.jsonl.imported").exists());
        let open = store.find("open-one").await.unwrap().unwrap();
        let closed = store.find("closed-one").await.unwrap().unwrap();
        assert_eq!((open.id, open.closed), (1, Some(9_000)));
        assert_eq!((closed.id, closed.closed), (2, Some(1_500)));
        assert!(store.list_open().await.unwrap().is_empty());
        assert_eq!(store.insert(sample_row(1)).await.unwrap().id, 3);
        drop(store);
        // A second start finds nothing to import and keeps the data.
        let store = SqliteSessionStore::open(dir.path(), 10_000).unwrap();
        assert_eq!(
            store.find("open-one").await.unwrap().unwrap().closed,
            Some(9_000)
        );
    }
}
