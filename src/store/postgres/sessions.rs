//! [`SessionStore`] on PostgreSQL, shared by every node.
//!
//! Each change is one autocommitted statement or one short transaction, so it is durable
//! (`synchronous_commit` is PostgreSQL's default) before the future resolves. Reference counts
//! and last access are changed in place by `UPDATE ... RETURNING`, which is atomic across
//! nodes, and a join returns the row and both maps in the same round trip.
//!
//! Closes are numbered by one counter row that each close locks until it commits, so close
//! numbers become visible in increasing order and a reader of [`SessionStore::closed_since`]
//! never skips a close committed late with a smaller number. Every close also NOTIFYs
//! [`CLOSED_CHANNEL`]; [`PgSessionStore::wait_closed`] wakes on it so a node refuses a session
//! closed elsewhere within moments instead of at its next poll.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::sessions::store::{
    ClosedFeed, EncodedEnv, Env, OpenRow, SessionRow, SessionStore, StoredSession, CLOSED_ROWS_KEPT,
};
use crate::store::StoreError;

use super::listen::{PgEvent, PgListener};
use super::{PgDatabase, PgError};

/// Component name of these tables in `schema_versions`.
pub const COMPONENT: &str = "sessions";
/// Channel NOTIFYed with the uuid of every closed session.
pub const CLOSED_CHANNEL: &str = "omero_sessiond_session_closed";
/// Closed rows kept for "closed=..." messages; older ones are deleted now and then.
const CLOSED_ROWS_RETAINED: i64 = (CLOSED_ROWS_KEPT as i64) * 10;
/// Every this many closes, the close that reaches the multiple deletes the oldest rows.
const PRUNE_EVERY: i64 = 1000;

/// Migrations of this component, applied in order; never edit one that shipped.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE sessions (
    id BIGSERIAL PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    owner_id BIGINT NOT NULL,
    group_id BIGINT NOT NULL,
    sudoer_id BIGINT,
    started BIGINT NOT NULL,
    closed BIGINT,
    time_to_idle BIGINT NOT NULL,
    time_to_live BIGINT NOT NULL,
    agent TEXT,
    ip TEXT,
    event_type TEXT NOT NULL,
    group_sudo BOOLEAN NOT NULL DEFAULT FALSE,
    refcount BIGINT NOT NULL DEFAULT 1,
    last_access BIGINT NOT NULL,
    close_seq BIGINT
);
CREATE INDEX sessions_open ON sessions (id) WHERE closed IS NULL;
CREATE INDEX sessions_by_close_seq ON sessions (close_seq) WHERE close_seq IS NOT NULL;
CREATE TABLE session_env (
    session_id BIGINT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    env SMALLINT NOT NULL,
    key TEXT NOT NULL,
    value BYTEA NOT NULL,
    PRIMARY KEY (session_id, env, key)
);
CREATE TABLE session_close_counter (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL
);
INSERT INTO session_close_counter (id, seq) VALUES (1, 0);
"#];

const ROW_COLUMNS: &str = "id, uuid, owner_id, group_id, started, closed, time_to_idle, \
     time_to_live, agent, ip, event_type, sudoer_id, group_sudo";

/// Sessions in PostgreSQL, with a listener for closes made by other nodes.
#[derive(Debug)]
pub struct PgSessionStore {
    db: PgDatabase,
    listener: PgListener,
    /// One subscription kept for [`SessionStore::wait_closed`], so a close notified while
    /// the caller was reading the feed is still queued for its next wait.
    closes: tokio::sync::Mutex<broadcast::Receiver<PgEvent>>,
}

impl PgSessionStore {
    /// Creates or migrates the session tables and starts listening for closes. Fails (fast)
    /// when the database cannot be reached: a server does not start without its sessions.
    pub async fn open(db: PgDatabase) -> Result<Self, StoreError> {
        db.migrate(COMPONENT, MIGRATIONS).await?;
        let listener = PgListener::spawn(&db, &[CLOSED_CHANNEL]);
        let closes = tokio::sync::Mutex::new(listener.subscribe());
        Ok(PgSessionStore {
            db,
            listener,
            closes,
        })
    }

    pub fn database(&self) -> &PgDatabase {
        &self.db
    }

    /// Whether the close listener is connected (tests and health reports).
    pub fn is_listening(&self) -> bool {
        self.listener.is_listening()
    }
}

#[async_trait]
impl SessionStore for PgSessionStore {
    /// Wakes on a close notification, or when the listener reconnected and may have missed
    /// some.
    async fn wait_closed(&self, poll: Duration) {
        let woken = async {
            let mut events = self.closes.lock().await;
            loop {
                match events.recv().await {
                    Ok(PgEvent::Notified { channel, .. }) if channel == CLOSED_CHANNEL => break,
                    Ok(PgEvent::Notified { .. }) => continue,
                    Ok(PgEvent::Resync) | Err(RecvError::Lagged(_)) => break,
                    // The listener is gone: fall back to polling.
                    Err(RecvError::Closed) => std::future::pending::<()>().await,
                }
            }
            // One read of the feed covers every close already queued.
            while events.try_recv().is_ok() {}
        };
        let _ = tokio::time::timeout(poll, woken).await;
    }

    async fn insert(&self, row: SessionRow) -> Result<SessionRow, StoreError> {
        let r = row.clone();
        let id: i64 = self
            .db
            .with_client("create session", move |c| async move {
                let params: [&(dyn ToSql + Sync); 12] = [
                    &r.uuid,
                    &r.owner_id,
                    &r.group_id,
                    &r.sudoer_id,
                    &r.started,
                    &r.time_to_idle,
                    &r.time_to_live,
                    &r.agent,
                    &r.ip,
                    &r.event_type,
                    &r.started,
                    &r.group_sudo,
                ];
                let stmt = c
                    .prepare_cached(
                        "INSERT INTO sessions (uuid, owner_id, group_id, sudoer_id, started, \
                         time_to_idle, time_to_live, agent, ip, event_type, last_access, group_sudo) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                         RETURNING id",
                    )
                    .await?;
                c.query_one(&stmt, &params).await.map(|r| r.get(0))
            })
            .await?;
        Ok(SessionRow {
            id,
            closed: None,
            ..row
        })
    }

    async fn join(&self, uuid: &str, now_ms: i64) -> Result<Option<StoredSession>, StoreError> {
        let uuid = uuid.to_string();
        let rows = self
            .db
            .with_client("join session", move |c| async move {
                // One round trip: the counted row, then one line per map entry.
                let stmt = c
                    .prepare_cached(&format!(
                        "WITH j AS (UPDATE sessions SET refcount = refcount + 1, \
                         last_access = GREATEST(last_access, $2) \
                         WHERE uuid = $1 AND closed IS NULL \
                         RETURNING {ROW_COLUMNS}, refcount, last_access) \
                         SELECT j.*, e.env, e.key, e.value FROM j \
                         LEFT JOIN session_env e ON e.session_id = j.id"
                    ))
                    .await?;
                c.query(&stmt, &[&uuid, &now_ms]).await
            })
            .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let mut session = stored_session(first)?;
        for row in &rows {
            add_env_entry(&mut session, row, 15)?;
        }
        Ok(Some(session))
    }

    async fn detach(
        &self,
        uuid: &str,
        close_at_zero: Option<i64>,
    ) -> Result<Option<i64>, StoreError> {
        let uuid = uuid.to_string();
        let remaining = self
            .db
            .with_client("detach session", move |mut c| async move {
                let tx = c.transaction().await?;
                let row = tx
                    .query_opt(
                        "UPDATE sessions SET refcount = GREATEST(refcount - 1, 0) \
                         WHERE uuid = $1 AND closed IS NULL RETURNING id, refcount",
                        &[&uuid],
                    )
                    .await?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let (id, remaining): (i64, i64) = (row.get(0), row.get(1));
                if let (0, Some(at)) = (remaining, close_at_zero) {
                    close_locked_row(&tx, id, &uuid, at).await?;
                }
                tx.commit().await?;
                Ok(Some(remaining))
            })
            .await?;
        Ok(remaining)
    }

    async fn close(&self, uuid: &str, closed_ms: i64) -> Result<bool, StoreError> {
        let uuid = uuid.to_string();
        let closed = self
            .db
            .with_client("close session", move |mut c| async move {
                let tx = c.transaction().await?;
                // Locks the row first, as detach does, so the two never wait on each other in
                // opposite orders.
                let row = tx
                    .query_opt(
                        "SELECT id FROM sessions WHERE uuid = $1 AND closed IS NULL FOR UPDATE",
                        &[&uuid],
                    )
                    .await?;
                let Some(row) = row else {
                    return Ok(false);
                };
                close_locked_row(&tx, row.get(0), &uuid, closed_ms).await?;
                tx.commit().await?;
                Ok(true)
            })
            .await?;
        Ok(closed)
    }

    async fn set_timeouts(
        &self,
        uuid: &str,
        time_to_live: i64,
        time_to_idle: i64,
    ) -> Result<(), StoreError> {
        let uuid = uuid.to_string();
        self.db
            .with_client("set session timeouts", move |c| async move {
                c.execute(
                    "UPDATE sessions SET time_to_live = $2, time_to_idle = $3 \
                     WHERE uuid = $1 AND closed IS NULL",
                    &[&uuid, &time_to_live, &time_to_idle],
                )
                .await
                .map(drop)
            })
            .await?;
        Ok(())
    }

    async fn set_group(&self, uuid: &str, group_id: i64) -> Result<(), StoreError> {
        let uuid = uuid.to_string();
        self.db
            .with_client("set session group", move |c| async move {
                c.execute(
                    "UPDATE sessions SET group_id = $2 WHERE uuid = $1 AND closed IS NULL",
                    &[&uuid, &group_id],
                )
                .await
                .map(drop)
            })
            .await?;
        Ok(())
    }

    async fn set_env(
        &self,
        uuid: &str,
        env: Env,
        key: &str,
        value: Option<Vec<u8>>,
    ) -> Result<(), StoreError> {
        let (uuid, key, env) = (uuid.to_string(), key.to_string(), env_code(env));
        self.db
            .with_client("set session map entry", move |c| async move {
                match value {
                    Some(value) => {
                        let stmt = c
                            .prepare_cached(
                                "INSERT INTO session_env (session_id, env, key, value) \
                                 SELECT id, $2, $3, $4 FROM sessions \
                                 WHERE uuid = $1 AND closed IS NULL \
                                 ON CONFLICT (session_id, env, key) \
                                 DO UPDATE SET value = EXCLUDED.value",
                            )
                            .await?;
                        c.execute(&stmt, &[&uuid, &env, &key, &value]).await
                    }
                    None => {
                        c.execute(
                            "DELETE FROM session_env e USING sessions s \
                             WHERE e.session_id = s.id AND s.uuid = $1 AND s.closed IS NULL \
                             AND e.env = $2 AND e.key = $3",
                            &[&uuid, &env, &key],
                        )
                        .await
                    }
                }
                .map(drop)
            })
            .await?;
        Ok(())
    }

    async fn touch_many(&self, accesses: &[(String, i64)]) -> Result<(), StoreError> {
        if accesses.is_empty() {
            return Ok(());
        }
        // One entry per uuid (the latest), sorted: rows are then locked in one order by every
        // node, so two nodes' batches cannot deadlock.
        let mut latest: BTreeMap<&str, i64> = BTreeMap::new();
        for (uuid, at) in accesses {
            let slot = latest.entry(uuid.as_str()).or_insert(*at);
            *slot = (*slot).max(*at);
        }
        let uuids: Vec<String> = latest.keys().map(|u| u.to_string()).collect();
        let times: Vec<i64> = latest.values().copied().collect();
        self.db
            .with_client("write last access", move |c| async move {
                let stmt = c
                    .prepare_cached(
                        "WITH t AS (SELECT * FROM unnest($1::text[], $2::bigint[]) AS t(uuid, at)), \
                         locked AS (SELECT s.id, t.at FROM sessions s JOIN t ON s.uuid = t.uuid \
                           WHERE s.closed IS NULL ORDER BY s.uuid FOR UPDATE OF s) \
                         UPDATE sessions s SET last_access = GREATEST(s.last_access, locked.at) \
                         FROM locked WHERE s.id = locked.id AND locked.at > s.last_access",
                    )
                    .await?;
                c.execute(&stmt, &[&uuids, &times]).await.map(drop)
            })
            .await?;
        Ok(())
    }

    async fn refcount(&self, uuid: &str) -> Result<Option<i64>, StoreError> {
        let uuid = uuid.to_string();
        let row = self
            .db
            .with_client("read reference count", move |c| async move {
                c.query_opt(
                    "SELECT refcount FROM sessions WHERE uuid = $1 AND closed IS NULL",
                    &[&uuid],
                )
                .await
            })
            .await?;
        row.map(|r| r.try_get(0).map_err(bad_data)).transpose()
    }

    async fn last_access(&self, uuid: &str) -> Result<Option<i64>, StoreError> {
        let uuid = uuid.to_string();
        let row = self
            .db
            .with_client("read last access", move |c| async move {
                c.query_opt(
                    "SELECT last_access FROM sessions WHERE uuid = $1 AND closed IS NULL",
                    &[&uuid],
                )
                .await
            })
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn find(&self, uuid: &str) -> Result<Option<SessionRow>, StoreError> {
        let uuid = uuid.to_string();
        let row = self
            .db
            .with_client("find session", move |c| async move {
                let stmt = c
                    .prepare_cached(&format!(
                        "SELECT {ROW_COLUMNS} FROM sessions WHERE uuid = $1"
                    ))
                    .await?;
                c.query_opt(&stmt, &[&uuid]).await
            })
            .await?;
        row.as_ref().map(session_row).transpose()
    }

    async fn list_open(&self) -> Result<Vec<OpenRow>, StoreError> {
        let rows = self
            .db
            .with_client("list open sessions", |c| async move {
                c.query(
                    &format!(
                        "SELECT {ROW_COLUMNS}, refcount, last_access FROM sessions \
                         WHERE closed IS NULL ORDER BY id"
                    ),
                    &[],
                )
                .await
            })
            .await?;
        rows.iter()
            .map(|r| {
                Ok(OpenRow {
                    row: session_row(r)?,
                    refcount: r.try_get(13).map_err(bad_data)?,
                    last_access: r.try_get(14).map_err(bad_data)?,
                })
            })
            .collect()
    }

    async fn load_open(&self) -> Result<Vec<StoredSession>, StoreError> {
        let (rows, entries) = self
            .db
            .with_client("load open sessions", |mut c| async move {
                // One snapshot for both reads: no map entry of a session closed in between.
                let tx = c
                    .build_transaction()
                    .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()
                    .await?;
                let rows = tx
                    .query(
                        &format!(
                            "SELECT {ROW_COLUMNS}, refcount, last_access FROM sessions \
                             WHERE closed IS NULL ORDER BY id"
                        ),
                        &[],
                    )
                    .await?;
                let entries = tx
                    .query(
                        "SELECT e.session_id, e.env, e.key, e.value FROM session_env e \
                         JOIN sessions s ON s.id = e.session_id WHERE s.closed IS NULL",
                        &[],
                    )
                    .await?;
                tx.commit().await?;
                Ok((rows, entries))
            })
            .await?;
        let mut sessions = rows
            .iter()
            .map(stored_session)
            .collect::<Result<Vec<_>, _>>()?;
        let index: std::collections::HashMap<i64, usize> = sessions
            .iter()
            .enumerate()
            .map(|(i, s)| (s.row.id, i))
            .collect();
        for entry in &entries {
            let id: i64 = entry.try_get(0).map_err(bad_data)?;
            if let Some(&i) = index.get(&id) {
                add_env_entry(&mut sessions[i], entry, 1)?;
            }
        }
        Ok(sessions)
    }

    async fn close_cursor(&self) -> Result<i64, StoreError> {
        let row = self
            .db
            .with_client("read close cursor", |c| async move {
                c.query_one("SELECT seq FROM session_close_counter WHERE id = 1", &[])
                    .await
            })
            .await?;
        row.try_get(0).map_err(bad_data)
    }

    async fn closed_since(&self, cursor: i64) -> Result<ClosedFeed, StoreError> {
        let rows = self
            .db
            .with_client("read closed sessions", move |c| async move {
                let stmt = c
                    .prepare_cached(
                        "SELECT uuid, close_seq FROM sessions WHERE close_seq > $1 \
                         ORDER BY close_seq",
                    )
                    .await?;
                c.query(&stmt, &[&cursor]).await
            })
            .await?;
        let mut feed = ClosedFeed {
            uuids: Vec::with_capacity(rows.len()),
            cursor,
        };
        for row in &rows {
            feed.uuids.push(row.try_get(0).map_err(bad_data)?);
            feed.cursor = feed.cursor.max(row.try_get(1).map_err(bad_data)?);
        }
        Ok(feed)
    }
}

/// Marks a row this transaction has locked as closed, numbers the close, drops the maps and
/// tells the other nodes (the notification is delivered at commit).
async fn close_locked_row(
    tx: &tokio_postgres::Transaction<'_>,
    id: i64,
    uuid: &str,
    closed_ms: i64,
) -> Result<(), tokio_postgres::Error> {
    let seq: i64 = tx
        .query_one(
            "UPDATE session_close_counter SET seq = seq + 1 WHERE id = 1 RETURNING seq",
            &[],
        )
        .await?
        .get(0);
    tx.execute(
        "UPDATE sessions SET closed = $2, close_seq = $3 WHERE id = $1",
        &[&id, &closed_ms, &seq],
    )
    .await?;
    tx.execute("DELETE FROM session_env WHERE session_id = $1", &[&id])
        .await?;
    tx.execute("SELECT pg_notify($1, $2)", &[&CLOSED_CHANNEL, &uuid])
        .await?;
    if seq % PRUNE_EVERY == 0 {
        // Only rows closed long ago (by count) go; their maps went when they closed.
        tx.execute(
            "DELETE FROM sessions WHERE close_seq IS NOT NULL AND close_seq <= $1",
            &[&(seq - CLOSED_ROWS_RETAINED)],
        )
        .await?;
    }
    Ok(())
}

fn env_code(env: Env) -> i16 {
    match env {
        Env::Input => 0,
        Env::Output => 1,
    }
}

fn bad_data(e: tokio_postgres::Error) -> StoreError {
    StoreError::Postgres(PgError::Data {
        target: "sessions table".to_string(),
        reason: e.to_string(),
    })
}

fn session_row(r: &Row) -> Result<SessionRow, StoreError> {
    Ok(SessionRow {
        id: r.try_get(0).map_err(bad_data)?,
        uuid: r.try_get(1).map_err(bad_data)?,
        owner_id: r.try_get(2).map_err(bad_data)?,
        group_id: r.try_get(3).map_err(bad_data)?,
        started: r.try_get(4).map_err(bad_data)?,
        closed: r.try_get(5).map_err(bad_data)?,
        time_to_idle: r.try_get(6).map_err(bad_data)?,
        time_to_live: r.try_get(7).map_err(bad_data)?,
        agent: r.try_get(8).map_err(bad_data)?,
        ip: r.try_get(9).map_err(bad_data)?,
        event_type: r.try_get(10).map_err(bad_data)?,
        sudoer_id: r.try_get(11).map_err(bad_data)?,
        group_sudo: r.try_get(12).map_err(bad_data)?,
    })
}

/// A row of `{ROW_COLUMNS}, refcount, last_access`, with empty maps.
fn stored_session(r: &Row) -> Result<StoredSession, StoreError> {
    Ok(StoredSession {
        row: session_row(r)?,
        refcount: r.try_get(13).map_err(bad_data)?,
        last_access: r.try_get(14).map_err(bad_data)?,
        input: EncodedEnv::new(),
        output: EncodedEnv::new(),
    })
}

/// Adds the map entry held in columns `at..at + 3` (env, key, value) of `r`, if any (a
/// LEFT JOIN gives NULLs for a session without entries).
fn add_env_entry(session: &mut StoredSession, r: &Row, at: usize) -> Result<(), StoreError> {
    let env: Option<i16> = r.try_get(at).map_err(bad_data)?;
    let Some(env) = env else {
        return Ok(());
    };
    let key: String = r.try_get(at + 1).map_err(bad_data)?;
    let value: Vec<u8> = r.try_get(at + 2).map_err(bad_data)?;
    match env {
        0 => session.input.insert(key, value),
        1 => session.output.insert(key, value),
        other => {
            return Err(StoreError::Postgres(PgError::Data {
                target: "session_env table".to_string(),
                reason: format!("unknown map {other}"),
            }))
        }
    };
    Ok(())
}
