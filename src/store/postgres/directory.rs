//! [`DirectoryBackend`] on PostgreSQL, shared by every node and by the `user`/`group` command
//! line pointed at the same database.
//!
//! The tables mirror the embedded database's (experimenters, groups, memberships with their
//! position and owner flag, light-admin restrictions, one meta row with the id counters and
//! the version). A commit locks the meta row, checks the version it was computed from, writes
//! the changed rows, bumps the version and NOTIFYs [`CHANGED_CHANNEL`] with it, all in one
//! transaction.
//!
//! The trait is synchronous, the driver async: the backend runs its pool and listener on a
//! current-thread runtime of its own thread and waits for each answer with a bound, so it can be
//! called from any thread and fails fast with [`BackendError::Unavailable`]. [`version`]
//! answers from memory while the listener is connected and has re-read the version since it
//! last (re)connected; otherwise it asks the database.
//!
//! [`version`]: DirectoryBackend::version

use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::oneshot;
use tokio_postgres::{IsolationLevel, Transaction};

use crate::store::directory::{
    BackendError, Commit, DirectoryBackend, DirectoryChanges, DirectoryData, ExperimenterRecord,
    GroupRecord, Versioned,
};

use super::listen::{PgEvent, PgListener};
use super::{PgDatabase, PgError, PgSettings};

/// Component name of these tables in `schema_versions`.
pub const COMPONENT: &str = "directory";
/// Channel NOTIFYed with the new version after every commit.
pub const CHANGED_CHANNEL: &str = "omero_sessiond_directory_changed";

/// Migrations of this component, applied in order; never edit one that shipped.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE directory_meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL,
    next_experimenter_id BIGINT NOT NULL,
    next_group_id BIGINT NOT NULL
);
INSERT INTO directory_meta (id, version, next_experimenter_id, next_group_id) VALUES (1, 0, 0, 0);
CREATE TABLE experimenter_groups (
    id BIGINT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    permissions TEXT NOT NULL
);
CREATE TABLE experimenters (
    id BIGINT PRIMARY KEY,
    ome_name TEXT NOT NULL UNIQUE,
    first_name TEXT NOT NULL,
    last_name TEXT NOT NULL,
    email TEXT,
    password_hash TEXT
);
CREATE TABLE group_memberships (
    experimenter_id BIGINT NOT NULL REFERENCES experimenters (id) ON DELETE CASCADE,
    group_id BIGINT NOT NULL REFERENCES experimenter_groups (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    owner BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (experimenter_id, group_id)
);
CREATE INDEX group_memberships_by_group ON group_memberships (group_id);
CREATE TABLE admin_restrictions (
    experimenter_id BIGINT NOT NULL REFERENCES experimenters (id) ON DELETE CASCADE,
    privilege TEXT NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (experimenter_id, privilege)
);
"#];

/// What the listener taught us about the stored version.
#[derive(Debug, Default)]
struct VersionCache {
    version: AtomicI64,
    /// The listener generation at which `version` was last read from the database; the cache
    /// is current only while the listener still has that generation.
    synced: AtomicU64,
}

/// The directory in PostgreSQL.
#[derive(Debug)]
pub struct PgDirectory {
    db: PgDatabase,
    runtime: Handle,
    listener: Arc<PgListener>,
    cache: Arc<VersionCache>,
    /// Dropping it ends the runtime thread (and with it the pool and the listener).
    _stop: oneshot::Sender<()>,
    bound: Duration,
}

impl PgDirectory {
    /// Connects to `url`, creates or migrates the directory tables, and starts listening for
    /// other writers' commits. Fails fast when the database cannot be reached.
    pub fn open(url: &str) -> Result<Self, BackendError> {
        Self::open_with(PgSettings::new(url))
    }

    pub fn open_with(settings: PgSettings) -> Result<Self, BackendError> {
        let location = super::redacted_target(&settings.url);
        let unavailable = |reason: String| BackendError::Unavailable {
            location: location.clone(),
            reason,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| unavailable(format!("cannot start its runtime: {e}")))?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("directory-postgres".to_string())
            .spawn(move || {
                // Err when the sender is dropped: that is the request to stop, too.
                let _ = runtime.block_on(stopped);
            })
            .map_err(|e| unavailable(format!("cannot start its thread: {e}")))?;
        let bound = settings.statement_timeout + settings.pool_wait + settings.connect_timeout;
        let db = PgDatabase::new(settings).map_err(|e| backend_error(&location, e))?;
        let listener = {
            let _entered = handle.enter();
            Arc::new(PgListener::spawn(&db, &[CHANGED_CHANNEL]))
        };
        let backend = PgDirectory {
            db,
            runtime: handle,
            cache: Arc::new(VersionCache::default()),
            listener,
            _stop: stop,
            bound,
        };
        let db = backend.db.clone();
        backend.call(async move { db.migrate(COMPONENT, MIGRATIONS).await })?;
        backend.watch_versions();
        Ok(backend)
    }

    /// Runs `work` on the backend's runtime and waits for it, at most `bound`.
    fn call<T, F>(&self, work: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, PgError>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime.spawn(async move {
            // The caller may have stopped waiting; nobody to tell then.
            let _ = tx.send(work.await);
        });
        match rx.recv_timeout(self.bound) {
            Ok(result) => result.map_err(|e| backend_error(&self.location(), e)),
            Err(_) => Err(BackendError::Unavailable {
                location: self.location(),
                reason: format!("no answer within {} ms", self.bound.as_millis()),
            }),
        }
    }

    /// Keeps [`VersionCache`] up to date from notifications, re-reading after each reconnect.
    fn watch_versions(&self) {
        let mut events = self.listener.subscribe();
        let (db, cache, listener) = (
            self.db.clone(),
            self.cache.clone(),
            Arc::downgrade(&self.listener),
        );
        self.runtime.spawn(async move {
            loop {
                let resync = match events.recv().await {
                    Ok(PgEvent::Notified { payload, .. }) => {
                        match payload.parse::<i64>() {
                            Ok(v) => {
                                cache.version.fetch_max(v, Ordering::SeqCst);
                                false
                            }
                            // Not ours to interpret: re-read.
                            Err(_) => true,
                        }
                    }
                    Ok(PgEvent::Resync) | Err(RecvError::Lagged(_)) => true,
                    Err(RecvError::Closed) => return,
                };
                if !resync {
                    continue;
                }
                let Some(generation) = listener.upgrade().map(|l| l.generation()) else {
                    return;
                };
                match read_version(&db).await {
                    Ok(v) => {
                        cache.version.fetch_max(v, Ordering::SeqCst);
                        cache.synced.store(generation, Ordering::SeqCst);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not re-read the directory version")
                    }
                }
            }
        });
    }
}

impl DirectoryBackend for PgDirectory {
    fn location(&self) -> String {
        self.db.target().to_string()
    }

    fn load(&self) -> Result<Versioned, BackendError> {
        let db = self.db.clone();
        let loaded = self.call(async move {
            db.with_client("load the directory", |mut c| async move {
                let tx = c
                    .build_transaction()
                    .isolation_level(IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()
                    .await?;
                let loaded = read_all(&tx).await?;
                tx.commit().await?;
                Ok(loaded)
            })
            .await
        })?;
        let loaded = loaded.map_err(|detail| BackendError::Invalid {
            location: self.location(),
            detail,
        })?;
        self.cache
            .version
            .fetch_max(loaded.version, Ordering::SeqCst);
        Ok(loaded)
    }

    fn version(&self) -> Result<i64, BackendError> {
        let generation = self.listener.generation();
        if generation != 0 && self.cache.synced.load(Ordering::SeqCst) == generation {
            return Ok(self.cache.version.load(Ordering::SeqCst));
        }
        let db = self.db.clone();
        let version = self.call(async move { read_version(&db).await })?;
        self.cache.version.fetch_max(version, Ordering::SeqCst);
        Ok(version)
    }

    fn commit(&self, base: i64, changes: &DirectoryChanges) -> Result<Commit, BackendError> {
        let db = self.db.clone();
        let changes = changes.clone();
        let outcome = self.call(async move {
            db.with_client("commit a directory change", move |mut c| async move {
                let tx = c.transaction().await?;
                let stored: i64 = tx
                    .query_one(
                        "SELECT version FROM directory_meta WHERE id = 1 FOR UPDATE",
                        &[],
                    )
                    .await?
                    .get(0);
                if stored != base {
                    return Ok(Commit::Stale);
                }
                write_changes(&tx, &changes).await?;
                let next = base + 1;
                tx.execute(
                    "UPDATE directory_meta SET version = $1, next_experimenter_id = $2, \
                     next_group_id = $3 WHERE id = 1",
                    &[&next, &changes.next_experimenter_id, &changes.next_group_id],
                )
                .await?;
                tx.execute(
                    "SELECT pg_notify($1, $2)",
                    &[&CHANGED_CHANNEL, &next.to_string()],
                )
                .await?;
                tx.commit().await?;
                Ok(Commit::Done(next))
            })
            .await
        })?;
        if let Commit::Done(v) = outcome {
            self.cache.version.fetch_max(v, Ordering::SeqCst);
        }
        Ok(outcome)
    }
}

fn backend_error(location: &str, e: PgError) -> BackendError {
    match e {
        PgError::Unavailable { reason, .. } => BackendError::Unavailable {
            location: location.to_string(),
            reason,
        },
        other => BackendError::database(location, other),
    }
}

async fn read_version(db: &PgDatabase) -> Result<i64, PgError> {
    db.with_client("read the directory version", |c| async move {
        c.query_one("SELECT version FROM directory_meta WHERE id = 1", &[])
            .await
            .map(|r| r.get(0))
    })
    .await
}

async fn write_changes(
    tx: &Transaction<'_>,
    changes: &DirectoryChanges,
) -> Result<(), tokio_postgres::Error> {
    for id in &changes.groups_removed {
        tx.execute("DELETE FROM group_memberships WHERE group_id = $1", &[id])
            .await?;
        tx.execute("DELETE FROM experimenter_groups WHERE id = $1", &[id])
            .await?;
    }
    for id in &changes.experimenters_removed {
        // Memberships and restrictions go with it (ON DELETE CASCADE).
        tx.execute("DELETE FROM experimenters WHERE id = $1", &[id])
            .await?;
    }
    for g in &changes.groups_upserted {
        tx.execute(
            "INSERT INTO experimenter_groups (id, name, permissions) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, \
             permissions = EXCLUDED.permissions",
            &[&g.id, &g.name, &g.permissions],
        )
        .await?;
    }
    for e in &changes.experimenters_upserted {
        write_experimenter(tx, e).await?;
    }
    Ok(())
}

async fn write_experimenter(
    tx: &Transaction<'_>,
    e: &ExperimenterRecord,
) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "INSERT INTO experimenters (id, ome_name, first_name, last_name, email, password_hash) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (id) DO UPDATE SET ome_name = EXCLUDED.ome_name, \
         first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name, \
         email = EXCLUDED.email, password_hash = EXCLUDED.password_hash",
        &[
            &e.id,
            &e.ome_name,
            &e.first_name,
            &e.last_name,
            &e.email,
            &e.password_hash,
        ],
    )
    .await?;
    tx.execute(
        "DELETE FROM group_memberships WHERE experimenter_id = $1",
        &[&e.id],
    )
    .await?;
    for (position, gid) in e.member_of.iter().enumerate() {
        let position = i32::try_from(position).unwrap_or(i32::MAX);
        let owner = e.leader_of.contains(gid);
        tx.execute(
            "INSERT INTO group_memberships (experimenter_id, group_id, position, owner) \
             VALUES ($1, $2, $3, $4)",
            &[&e.id, gid, &position, &owner],
        )
        .await?;
    }
    tx.execute(
        "DELETE FROM admin_restrictions WHERE experimenter_id = $1",
        &[&e.id],
    )
    .await?;
    for (position, privilege) in e.admin_restrictions.iter().enumerate() {
        let position = i32::try_from(position).unwrap_or(i32::MAX);
        tx.execute(
            "INSERT INTO admin_restrictions (experimenter_id, privilege, position) \
             VALUES ($1, $2, $3)",
            &[&e.id, privilege, &position],
        )
        .await?;
    }
    Ok(())
}

// Outer error: the database failed; inner: rows that break the model.
async fn read_all(
    tx: &Transaction<'_>,
) -> Result<Result<Versioned, String>, tokio_postgres::Error> {
    let meta = tx
        .query_one(
            "SELECT version, next_experimenter_id, next_group_id FROM directory_meta \
             WHERE id = 1",
            &[],
        )
        .await?;
    let groups = tx
        .query(
            "SELECT id, name, permissions FROM experimenter_groups ORDER BY id",
            &[],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(GroupRecord {
                id: r.try_get(0)?,
                name: r.try_get(1)?,
                permissions: r.try_get(2)?,
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
    let mut experimenters = tx
        .query(
            "SELECT id, ome_name, first_name, last_name, email, password_hash \
             FROM experimenters ORDER BY id",
            &[],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(ExperimenterRecord {
                id: r.try_get(0)?,
                ome_name: r.try_get(1)?,
                first_name: r.try_get(2)?,
                last_name: r.try_get(3)?,
                email: r.try_get(4)?,
                password_hash: r.try_get(5)?,
                member_of: Vec::new(),
                leader_of: Vec::new(),
                admin_restrictions: Vec::new(),
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
    let memberships = tx
        .query(
            "SELECT experimenter_id, group_id, owner FROM group_memberships \
             ORDER BY experimenter_id, position",
            &[],
        )
        .await?;
    for r in &memberships {
        let (user, group, owner): (i64, i64, bool) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
        let Some(record) = experimenters.iter_mut().find(|e| e.id == user) else {
            return Ok(Err(format!("membership of unknown experimenter {user}")));
        };
        record.member_of.push(group);
        if owner {
            record.leader_of.push(group);
        }
    }
    let restrictions = tx
        .query(
            "SELECT experimenter_id, privilege FROM admin_restrictions \
             ORDER BY experimenter_id, position",
            &[],
        )
        .await?;
    for r in &restrictions {
        let (user, privilege): (i64, String) = (r.try_get(0)?, r.try_get(1)?);
        let Some(record) = experimenters.iter_mut().find(|e| e.id == user) else {
            return Ok(Err(format!(
                "admin restriction of unknown experimenter {user}"
            )));
        };
        record.admin_restrictions.push(privilege);
    }
    Ok(Ok(Versioned {
        version: meta.try_get(0)?,
        data: DirectoryData {
            next_experimenter_id: meta.try_get(1)?,
            next_group_id: meta.try_get(2)?,
            groups,
            experimenters,
            ..DirectoryData::empty()
        },
    }))
}
