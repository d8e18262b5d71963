//! What the session manager does on its own: loading the cache at start, writing access times
//! behind, following closes made elsewhere, and reaping expired sessions.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::task::JoinHandle;

use super::env::EnvValue;
use super::manager::{lock, CloseReason, SessionManager};
use crate::store::StoreError;

/// How often access times go to the store (the issue asks for at least once a second).
pub const ACCESS_WRITE_INTERVAL: Duration = Duration::from_millis(500);
/// How often the store is asked for closes made elsewhere (another node, the command line).
pub const CLOSE_WATCH_INTERVAL: Duration = Duration::from_millis(250);

impl<V: EnvValue> SessionManager<V> {
    /// Fills the cache with every open session of the store (reference counts, maps, last
    /// access) and closes those that expired while the server was down; returns how many
    /// sessions are live after that. Call once at start, before serving.
    pub async fn load(&self) -> Result<usize, StoreError> {
        // The cursor first: a close racing the load is then seen by the watcher, not lost.
        let cursor = self.store.close_cursor().await?;
        *self.close_cursor_lock() = cursor;
        let stored = self.store.load_open().await?;
        let now = self.clock.now_ms();
        let loaded = stored.len();
        for session in stored {
            self.adopt(session, now);
        }
        let reaped = self.reap_expired().await;
        tracing::info!(
            loaded,
            expired = reaped.len(),
            "sessions loaded from the store"
        );
        Ok(loaded - reaped.len())
    }

    /// Writes every access time the store does not have yet, in one batch.
    pub async fn flush_accesses(&self) -> Result<usize, StoreError> {
        let mut pending = Vec::new();
        for entry in self.all_entries() {
            let e = lock(&entry);
            if !e.closed && e.info.last_access > e.written_access {
                pending.push((e.info.uuid.clone(), e.info.last_access));
            }
        }
        if pending.is_empty() {
            return Ok(0);
        }
        self.store.touch_many(&pending).await?;
        for (uuid, at) in &pending {
            if let Some(entry) = self.entry(uuid) {
                let mut e = lock(&entry);
                e.written_access = e.written_access.max(*at);
            }
        }
        Ok(pending.len())
    }

    /// Drops from the cache every session closed in the store since the last look.
    pub async fn follow_closes(&self) -> Result<usize, StoreError> {
        let cursor = *self.close_cursor_lock();
        let feed = self.store.closed_since(cursor).await?;
        let mut dropped = 0;
        for uuid in &feed.uuids {
            if let Some(entry) = self.entry(uuid) {
                if !lock(&entry).closed {
                    dropped += 1;
                }
                self.kill_and_forget(uuid, &entry, CloseReason::Closed);
            }
        }
        let mut stored = self.close_cursor_lock();
        *stored = (*stored).max(feed.cursor);
        Ok(dropped)
    }

    fn close_cursor_lock(&self) -> std::sync::MutexGuard<'_, i64> {
        // A single integer: a poisoned lock still holds a valid cursor.
        self.close_cursor.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs [`Self::reap_expired`] every `interval` until the manager is dropped.
    pub fn spawn_reaper(self: &Arc<Self>, interval: Duration) -> JoinHandle<()> {
        every(self, interval, |manager| async move {
            let reaped = manager.reap_expired().await;
            if !reaped.is_empty() {
                tracing::info!(count = reaped.len(), "reaped expired sessions");
            }
        })
    }

    /// Starts the reaper (every [`crate::sessions::SessionConfig::reaper_interval`]), the
    /// access writer and the close watcher; they end with the manager.
    pub fn spawn_tasks(self: &Arc<Self>) -> Vec<JoinHandle<()>> {
        let writer = every(self, ACCESS_WRITE_INTERVAL, |manager| async move {
            if let Err(e) = manager.flush_accesses().await {
                tracing::warn!(error = %e, "cannot write session access times; will retry");
            }
        });
        vec![
            self.spawn_reaper(self.config().reaper_interval),
            writer,
            self.watch_closes(),
        ]
    }

    /// Follows closes made elsewhere: at least every [`CLOSE_WATCH_INTERVAL`], and at once
    /// when the store hears of one (PostgreSQL's NOTIFY; see `SessionStore::wait_closed`).
    fn watch_closes(self: &Arc<Self>) -> JoinHandle<()> {
        let weak: Weak<SessionManager<V>> = Arc::downgrade(self);
        let store = Arc::clone(&self.store);
        tokio::spawn(async move {
            loop {
                store.wait_closed(CLOSE_WATCH_INTERVAL).await;
                let Some(manager) = weak.upgrade() else {
                    return;
                };
                match manager.follow_closes().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(count = n, "sessions closed elsewhere dropped"),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read closed sessions; will retry");
                        // A store that is down may answer at once: keep to the poll pace.
                        tokio::time::sleep(CLOSE_WATCH_INTERVAL).await;
                    }
                }
            }
        })
    }
}

/// Runs `tick` every `interval` (first after one interval) while the manager lives.
fn every<V, F, Fut>(manager: &Arc<SessionManager<V>>, interval: Duration, tick: F) -> JoinHandle<()>
where
    V: EnvValue,
    F: Fn(Arc<SessionManager<V>>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let weak: Weak<SessionManager<V>> = Arc::downgrade(manager);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let Some(manager) = weak.upgrade() else {
                return;
            };
            tick(manager).await;
        }
    })
}
