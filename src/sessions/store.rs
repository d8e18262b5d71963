//! The durable side of sessions: the [`SessionStore`] trait, its row types, and an in-memory
//! implementation for unit tests.
//!
//! The session manager keeps a cache that answers every routed call; the store is the truth it
//! falls back to. A session that a node's cache lacks (made on another node, or before a
//! restart) is loaded by [`SessionStore::join`]; reference counts live in the store so they are
//! global across nodes; closes made elsewhere (another node, the `sessions close` command line)
//! come back through [`SessionStore::closed_since`].
//!
//! # Contract of every implementation
//! - When a future of a *change* (`insert`, `join`, `detach`, `close`, `set_timeouts`,
//!   `set_group`, `set_env`, `touch_many`) resolves `Ok`, the change is committed: a crash
//!   (`kill -9`, power loss) of this process or the database afterwards does not undo it. The
//!   manager awaits it before answering the client.
//! - Changes on one uuid are atomic and serialised with every other process or node sharing the
//!   store: two joins on two nodes add two references.
//! - A closed row never reopens: `join`, `detach`, `set_*` on it change nothing and say so.
//! - Last access never moves backwards (`touch_many` and `join` keep the later time).
//! - Ids are unique and increase in creation order, also across restarts.
//! - `find` answers closed rows for a while (at least the last [`CLOSED_ROWS_KEPT`] closes),
//!   so a refused join can say when the session was closed.
//! - Environment values are opaque bytes (the services layer encodes Ice values); the store
//!   never looks inside.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::store::StoreError;

/// How many closed rows a store must still describe through [`SessionStore::find`].
pub const CLOSED_ROWS_KEPT: usize = 1000;

/// One session as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRow {
    pub id: i64,
    pub uuid: String,
    pub owner_id: i64,
    pub group_id: i64,
    pub started: i64,
    pub closed: Option<i64>,
    pub time_to_idle: i64,
    pub time_to_live: i64,
    pub agent: Option<String>,
    pub ip: Option<String>,
    pub event_type: String,
    pub sudoer_id: Option<i64>,
    /// Made by a group owner's sudo: may never change group.
    #[serde(default)]
    pub group_sudo: bool,
}

/// Which environment map of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Env {
    Input,
    Output,
}

impl Env {
    /// `input` or `output`, as stored and as said in messages.
    pub fn name(self) -> &'static str {
        match self {
            Env::Input => "input",
            Env::Output => "output",
        }
    }
}

/// An environment map as stored: key to encoded value, sorted by key.
pub type EncodedEnv = BTreeMap<String, Vec<u8>>;

/// An open session with everything a cache needs to serve it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub row: SessionRow,
    pub refcount: i64,
    /// Latest written access (ms); the idle clock restarts from here.
    pub last_access: i64,
    pub input: EncodedEnv,
    pub output: EncodedEnv,
}

/// An open row as listed (for `omero-sessiond sessions list`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRow {
    pub row: SessionRow,
    pub refcount: i64,
    pub last_access: i64,
}

/// Sessions closed after a cursor, and the cursor to ask with next time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClosedFeed {
    pub uuids: Vec<String>,
    pub cursor: i64,
}

/// Durable storage of sessions; see the module documentation for the contract.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Stores a new open row with reference count 1 and last access `row.started`, assigning a
    /// fresh id (the given one is ignored); returns the row as stored.
    async fn insert(&self, row: SessionRow) -> Result<SessionRow, StoreError>;

    /// Adds one reference to an open row and moves its last access to `now_ms` (if later);
    /// returns the session after the change, or `None` when it is unknown or closed.
    async fn join(&self, uuid: &str, now_ms: i64) -> Result<Option<StoredSession>, StoreError>;

    /// Removes one reference (never below 0) from an open row and returns what remains, or
    /// `None` when it is unknown or closed. With `close_at_zero`, a row left with no reference
    /// is closed at that time in the same atomic step.
    async fn detach(
        &self,
        uuid: &str,
        close_at_zero: Option<i64>,
    ) -> Result<Option<i64>, StoreError>;

    /// Closes an open row at `closed_ms` and drops its environment; `false` when it was
    /// unknown or already closed.
    async fn close(&self, uuid: &str, closed_ms: i64) -> Result<bool, StoreError>;

    /// New timeouts of an open row (ms).
    async fn set_timeouts(
        &self,
        uuid: &str,
        time_to_live: i64,
        time_to_idle: i64,
    ) -> Result<(), StoreError>;

    /// The current group of an open row (setSecurityContext).
    async fn set_group(&self, uuid: &str, group_id: i64) -> Result<(), StoreError>;

    /// Sets (`Some`) or removes (`None`) one key of an environment map of an open row.
    async fn set_env(
        &self,
        uuid: &str,
        env: Env,
        key: &str,
        value: Option<Vec<u8>>,
    ) -> Result<(), StoreError>;

    /// Write-behind of last accesses; each time only ever moves a row's last access forward.
    async fn touch_many(&self, accesses: &[(String, i64)]) -> Result<(), StoreError>;

    /// The reference count of an open row as stored (counting every node's joins), `None`
    /// when unknown or closed. The default reads the listing; stores override it.
    async fn refcount(&self, uuid: &str) -> Result<Option<i64>, StoreError> {
        let open = self.list_open().await?;
        Ok(open
            .into_iter()
            .find(|r| r.row.uuid == uuid)
            .map(|r| r.refcount))
    }

    /// The latest last access written by anyone, `None` when unknown or closed.
    async fn last_access(&self, uuid: &str) -> Result<Option<i64>, StoreError>;

    /// A row by uuid, open or recently closed.
    async fn find(&self, uuid: &str) -> Result<Option<SessionRow>, StoreError>;

    /// Every open row, oldest id first.
    async fn list_open(&self) -> Result<Vec<OpenRow>, StoreError>;

    /// Every open session with its maps (a server loading its cache at start), oldest first.
    async fn load_open(&self) -> Result<Vec<StoredSession>, StoreError>;

    /// The position of the closed feed now: closes before it are never reported.
    async fn close_cursor(&self) -> Result<i64, StoreError>;

    /// Rows closed after `cursor`, by anyone (this process included), in closing order.
    async fn closed_since(&self, cursor: i64) -> Result<ClosedFeed, StoreError>;

    /// Resolves when sessions may have been closed elsewhere, or after `poll` at the latest;
    /// the caller then reads [`Self::closed_since`]. Stores that are told of closes
    /// (PostgreSQL's LISTEN/NOTIFY) wake early; the default just waits.
    async fn wait_closed(&self, poll: std::time::Duration) {
        tokio::time::sleep(poll).await;
    }
}

#[derive(Debug, Clone)]
struct MemoryRow {
    row: SessionRow,
    refcount: i64,
    last_access: i64,
    input: EncodedEnv,
    output: EncodedEnv,
}

impl MemoryRow {
    fn stored(&self) -> StoredSession {
        StoredSession {
            row: self.row.clone(),
            refcount: self.refcount,
            last_access: self.last_access,
            input: self.input.clone(),
            output: self.output.clone(),
        }
    }
}

#[derive(Debug, Default)]
struct MemoryState {
    next_id: i64,
    rows: HashMap<String, MemoryRow>,
    /// (close sequence, uuid), oldest first; bounded by [`CLOSED_ROWS_KEPT`].
    closes: VecDeque<(i64, String)>,
    close_seq: i64,
}

impl MemoryState {
    fn open_mut(&mut self, uuid: &str) -> Option<&mut MemoryRow> {
        self.rows.get_mut(uuid).filter(|r| r.row.closed.is_none())
    }

    fn close(&mut self, uuid: &str, closed_ms: i64) -> bool {
        let Some(row) = self.open_mut(uuid) else {
            return false;
        };
        row.row.closed = Some(closed_ms);
        row.input.clear();
        row.output.clear();
        self.close_seq += 1;
        self.closes.push_back((self.close_seq, uuid.to_string()));
        while self.closes.len() > CLOSED_ROWS_KEPT {
            if let Some((_, old)) = self.closes.pop_front() {
                self.rows.remove(&old);
            }
        }
        true
    }

    fn open_rows(&self) -> Vec<&MemoryRow> {
        let mut open: Vec<&MemoryRow> = self
            .rows
            .values()
            .filter(|r| r.row.closed.is_none())
            .collect();
        open.sort_by_key(|r| r.row.id);
        open
    }
}

/// A store kept only in memory: for unit tests and for running without a data directory.
#[derive(Debug)]
pub struct MemorySessionStore {
    state: Mutex<MemoryState>,
    /// Fault injection: every call fails while set (a database that went away).
    down: AtomicBool,
}

impl Default for MemorySessionStore {
    fn default() -> Self {
        MemorySessionStore {
            state: Mutex::new(MemoryState {
                next_id: 1,
                ..MemoryState::default()
            }),
            down: AtomicBool::new(false),
        }
    }
}

impl MemorySessionStore {
    /// While `down`, every call fails with [`StoreError::Unavailable`] (for fault tests).
    pub fn set_unavailable(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn lock(&self) -> Result<MutexGuard<'_, MemoryState>, StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable(
                "the in-memory store is set unavailable".to_string(),
            ));
        }
        // Every change is a few assignments on one row: a poisoned state is still consistent.
        Ok(self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[async_trait]
impl SessionStore for MemorySessionStore {
    async fn insert(&self, mut row: SessionRow) -> Result<SessionRow, StoreError> {
        let mut state = self.lock()?;
        row.id = state.next_id;
        row.closed = None;
        state.next_id += 1;
        let stored = MemoryRow {
            row: row.clone(),
            refcount: 1,
            last_access: row.started,
            input: EncodedEnv::new(),
            output: EncodedEnv::new(),
        };
        state.rows.insert(row.uuid.clone(), stored);
        Ok(row)
    }

    async fn join(&self, uuid: &str, now_ms: i64) -> Result<Option<StoredSession>, StoreError> {
        let mut state = self.lock()?;
        Ok(state.open_mut(uuid).map(|r| {
            r.refcount = r.refcount.saturating_add(1);
            r.last_access = r.last_access.max(now_ms);
            r.stored()
        }))
    }

    async fn detach(
        &self,
        uuid: &str,
        close_at_zero: Option<i64>,
    ) -> Result<Option<i64>, StoreError> {
        let mut state = self.lock()?;
        let Some(row) = state.open_mut(uuid) else {
            return Ok(None);
        };
        row.refcount = (row.refcount - 1).max(0);
        let remaining = row.refcount;
        if let (0, Some(at)) = (remaining, close_at_zero) {
            state.close(uuid, at);
        }
        Ok(Some(remaining))
    }

    async fn close(&self, uuid: &str, closed_ms: i64) -> Result<bool, StoreError> {
        Ok(self.lock()?.close(uuid, closed_ms))
    }

    async fn set_timeouts(
        &self,
        uuid: &str,
        time_to_live: i64,
        time_to_idle: i64,
    ) -> Result<(), StoreError> {
        if let Some(r) = self.lock()?.open_mut(uuid) {
            r.row.time_to_live = time_to_live;
            r.row.time_to_idle = time_to_idle;
        }
        Ok(())
    }

    async fn set_group(&self, uuid: &str, group_id: i64) -> Result<(), StoreError> {
        if let Some(r) = self.lock()?.open_mut(uuid) {
            r.row.group_id = group_id;
        }
        Ok(())
    }

    async fn set_env(
        &self,
        uuid: &str,
        env: Env,
        key: &str,
        value: Option<Vec<u8>>,
    ) -> Result<(), StoreError> {
        if let Some(r) = self.lock()?.open_mut(uuid) {
            let map = match env {
                Env::Input => &mut r.input,
                Env::Output => &mut r.output,
            };
            match value {
                Some(v) => map.insert(key.to_string(), v),
                None => map.remove(key),
            };
        }
        Ok(())
    }

    async fn touch_many(&self, accesses: &[(String, i64)]) -> Result<(), StoreError> {
        let mut state = self.lock()?;
        for (uuid, at) in accesses {
            if let Some(r) = state.open_mut(uuid) {
                r.last_access = r.last_access.max(*at);
            }
        }
        Ok(())
    }

    async fn last_access(&self, uuid: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.lock()?.open_mut(uuid).map(|r| r.last_access))
    }

    async fn find(&self, uuid: &str) -> Result<Option<SessionRow>, StoreError> {
        Ok(self.lock()?.rows.get(uuid).map(|r| r.row.clone()))
    }

    async fn list_open(&self) -> Result<Vec<OpenRow>, StoreError> {
        let state = self.lock()?;
        Ok(state
            .open_rows()
            .into_iter()
            .map(|r| OpenRow {
                row: r.row.clone(),
                refcount: r.refcount,
                last_access: r.last_access,
            })
            .collect())
    }

    async fn load_open(&self) -> Result<Vec<StoredSession>, StoreError> {
        let state = self.lock()?;
        Ok(state
            .open_rows()
            .into_iter()
            .map(MemoryRow::stored)
            .collect())
    }

    async fn close_cursor(&self) -> Result<i64, StoreError> {
        Ok(self.lock()?.close_seq)
    }

    async fn closed_since(&self, cursor: i64) -> Result<ClosedFeed, StoreError> {
        let state = self.lock()?;
        let uuids = state
            .closes
            .iter()
            .filter(|(seq, _)| *seq > cursor)
            .map(|(_, uuid)| uuid.clone())
            .collect();
        Ok(ClosedFeed {
            uuids,
            cursor: state.close_seq.max(cursor),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_store_meets_the_contract() {
        let store = MemorySessionStore::default();
        crate::sessions::store_contract::check_all(&store).await;
    }
}
