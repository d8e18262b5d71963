//! The JSON-lines session log of earlier versions (`sessions.jsonl`), kept only to import a
//! data directory written by them (see `sqlite_store.rs`); the server no longer writes it.
//!
//! The in-memory cache decides liveness; rows exist so that every session gets a unique,
//! increasing id across restarts and so that a closed session can still be described
//! ("created=…, closed=…") when someone tries to join it.
//!
//! The embedded implementation is an append-only JSON-lines log, compacted at open and again
//! whenever the lines appended since the last compaction outnumber the rows kept, so the file
//! stays proportional to the live state however long the server runs. Appends are not fsynced
//! one by one (a login must not wait for the disk); compaction is atomic.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

pub use super::store::SessionRow;
use crate::store::{write_atomic, StoreError};

/// File name of the session log inside the data directory.
pub const SESSION_LOG_FILE: &str = "sessions.jsonl";
/// How many closed rows are remembered (for "closed=…" join-refusal messages).
pub const CLOSED_ROWS_KEPT: usize = 1000;
/// Appended lines before a running server compacts the log (more when many rows are kept).
pub const COMPACT_AFTER_LINES: usize = 10_000;

/// Durable storage of session rows. Methods do blocking IO of a few microseconds (a buffered
/// append); the session manager calls them outside its locks.
pub trait RowLog: Send + Sync + 'static {
    /// Stores a new row, assigning and returning it with a fresh id (the given id is ignored).
    fn insert(&self, row: SessionRow) -> Result<SessionRow, StoreError>;
    /// Marks a row closed.
    fn close(&self, uuid: &str, closed_ms: i64) -> Result<(), StoreError>;
    /// Records new timeouts of a live session.
    fn set_timeouts(
        &self,
        uuid: &str,
        time_to_live: i64,
        time_to_idle: i64,
    ) -> Result<(), StoreError>;
    /// A row by uuid, open or recently closed.
    fn find(&self, uuid: &str) -> Option<SessionRow>;
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum LogRecord {
    Counter {
        next_id: i64,
    },
    Open {
        row: SessionRow,
    },
    Close {
        uuid: String,
        closed: i64,
    },
    Timeouts {
        uuid: String,
        time_to_live: i64,
        time_to_idle: i64,
    },
}

/// Rows in memory: open ones plus a bounded tail of closed ones.
#[derive(Debug, Default)]
struct Rows {
    next_id: i64,
    by_uuid: HashMap<String, SessionRow>,
    closed_order: VecDeque<String>,
}

impl Rows {
    fn apply(&mut self, record: LogRecord) {
        match record {
            LogRecord::Counter { next_id } => self.next_id = self.next_id.max(next_id),
            LogRecord::Open { row } => {
                self.next_id = self.next_id.max(row.id.saturating_add(1));
                if let Some(closed) = row.closed {
                    self.mark_closed(row.clone(), closed);
                } else {
                    self.by_uuid.insert(row.uuid.clone(), row);
                }
            }
            LogRecord::Close { uuid, closed } => {
                if let Some(row) = self.by_uuid.get(&uuid).cloned() {
                    if row.closed.is_none() {
                        self.mark_closed(row, closed);
                    }
                }
            }
            LogRecord::Timeouts {
                uuid,
                time_to_live,
                time_to_idle,
            } => {
                if let Some(row) = self.by_uuid.get_mut(&uuid) {
                    row.time_to_live = time_to_live;
                    row.time_to_idle = time_to_idle;
                }
            }
        }
    }

    fn mark_closed(&mut self, mut row: SessionRow, closed: i64) {
        row.closed = Some(closed);
        self.closed_order.push_back(row.uuid.clone());
        self.by_uuid.insert(row.uuid.clone(), row);
        while self.closed_order.len() > CLOSED_ROWS_KEPT {
            if let Some(old) = self.closed_order.pop_front() {
                self.by_uuid.remove(&old);
            }
        }
    }

    fn open_uuids(&self) -> Vec<String> {
        let mut open: Vec<&SessionRow> = self
            .by_uuid
            .values()
            .filter(|r| r.closed.is_none())
            .collect();
        open.sort_by_key(|r| r.id);
        open.into_iter().map(|r| r.uuid.clone()).collect()
    }
}

/// The embedded session store: `<data>/sessions.jsonl`.
#[derive(Debug)]
pub struct JsonlSessionStore {
    path: PathBuf,
    compact_after: usize,
    state: Mutex<LogState>,
}

#[derive(Debug)]
struct LogState {
    rows: Rows,
    file: File,
    /// Lines appended since the file was last compacted.
    appended: usize,
}

impl JsonlSessionStore {
    /// Opens (or creates) the log. Sessions do not survive a restart, so rows still open from a
    /// previous run are closed at `now_ms`; then the log is compacted.
    pub fn open(data_dir: &Path, now_ms: i64) -> Result<Self, StoreError> {
        Self::open_with(data_dir, now_ms, COMPACT_AFTER_LINES)
    }

    /// [`Self::open`], compacting after `compact_after` appended lines at the least.
    pub fn open_with(
        data_dir: &Path,
        now_ms: i64,
        compact_after: usize,
    ) -> Result<Self, StoreError> {
        let path = data_dir.join(SESSION_LOG_FILE);
        let mut rows = read_log(&path)?;
        for uuid in rows.open_uuids() {
            rows.apply(LogRecord::Close {
                uuid,
                closed: now_ms,
            });
        }
        compact(&path, &rows)?;
        let file = open_append(&path)?;
        Ok(JsonlSessionStore {
            path,
            compact_after: compact_after.max(1),
            state: Mutex::new(LogState {
                rows,
                file,
                appended: 0,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        // A panic while holding the lock leaves rows consistent enough: each step is one insert.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `record`, applies it, and compacts the file when it has grown enough.
    fn record(&self, state: &mut LogState, record: LogRecord) -> Result<(), StoreError> {
        let mut line = serde_json::to_vec(&record).map_err(|e| StoreError::Format {
            path: self.path.clone(),
            source: e,
        })?;
        line.push(b'\n');
        state
            .file
            .write_all(&line)
            .map_err(|e| StoreError::io(&self.path, e))?;
        state.rows.apply(record);
        state.appended += 1;
        let threshold = self.compact_after.max(state.rows.by_uuid.len());
        if state.appended >= threshold {
            // The append succeeded; a failed compaction only means a longer file.
            if let Err(e) = self.compact_now(state) {
                tracing::warn!(path = %self.path.display(), error = %e, "session log compaction failed");
            }
        }
        Ok(())
    }

    fn compact_now(&self, state: &mut LogState) -> Result<(), StoreError> {
        compact(&self.path, &state.rows)?;
        // The old handle points at the replaced file; appends must go to the new one.
        state.file = open_append(&self.path)?;
        state.appended = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| StoreError::io(path, e))
}

impl RowLog for JsonlSessionStore {
    fn insert(&self, mut row: SessionRow) -> Result<SessionRow, StoreError> {
        let mut state = self.lock();
        row.id = state.rows.next_id.max(1);
        self.record(&mut state, LogRecord::Open { row: row.clone() })?;
        Ok(row)
    }

    fn close(&self, uuid: &str, closed_ms: i64) -> Result<(), StoreError> {
        let mut state = self.lock();
        let record = LogRecord::Close {
            uuid: uuid.to_string(),
            closed: closed_ms,
        };
        self.record(&mut state, record)
    }

    fn set_timeouts(
        &self,
        uuid: &str,
        time_to_live: i64,
        time_to_idle: i64,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        let record = LogRecord::Timeouts {
            uuid: uuid.to_string(),
            time_to_live,
            time_to_idle,
        };
        self.record(&mut state, record)
    }

    fn find(&self, uuid: &str) -> Option<SessionRow> {
        self.lock().rows.by_uuid.get(uuid).cloned()
    }
}

/// Everything a session log holds, for an import: the next id it would have given and its
/// rows (open and kept closed ones), oldest first. A missing file reads as empty.
pub fn read_session_log(path: &Path) -> Result<(i64, Vec<SessionRow>), StoreError> {
    let rows = read_log(path)?;
    let mut all: Vec<SessionRow> = rows.by_uuid.into_values().collect();
    all.sort_by_key(|r| r.id);
    Ok((rows.next_id, all))
}

fn read_log(path: &Path) -> Result<Rows, StoreError> {
    let mut rows = Rows {
        next_id: 1,
        ..Rows::default()
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(rows),
        Err(e) => return Err(StoreError::io(path, e)),
    };
    for (number, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| StoreError::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<LogRecord>(&line) {
            Ok(record) => rows.apply(record),
            // A crash can tear the last append; everything before it is still good.
            Err(e) => tracing::warn!(
                path = %path.display(),
                line = number + 1,
                error = %e,
                "skipping unreadable session log line"
            ),
        }
    }
    Ok(rows)
}

fn compact(path: &Path, rows: &Rows) -> Result<(), StoreError> {
    let mut kept: Vec<&SessionRow> = rows.by_uuid.values().collect();
    kept.sort_by_key(|r| r.id);
    let mut out = Vec::new();
    let mut push = |record: &LogRecord| -> Result<(), StoreError> {
        serde_json::to_writer(&mut out, record).map_err(|e| StoreError::Format {
            path: path.to_path_buf(),
            source: e,
        })?;
        out.push(b'\n');
        Ok(())
    };
    push(&LogRecord::Counter {
        next_id: rows.next_id,
    })?;
    for row in kept {
        push(&LogRecord::Open { row: row.clone() })?;
    }
    write_atomic(path, &out)
}

/// A store kept only in memory, for tests and for running without a data directory.
#[derive(Debug)]
pub struct MemoryRowLog {
    rows: Mutex<Rows>,
}

impl Default for MemoryRowLog {
    fn default() -> Self {
        MemoryRowLog {
            rows: Mutex::new(Rows {
                next_id: 1,
                ..Rows::default()
            }),
        }
    }
}

impl MemoryRowLog {
    fn lock(&self) -> MutexGuard<'_, Rows> {
        self.rows.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl RowLog for MemoryRowLog {
    fn insert(&self, mut row: SessionRow) -> Result<SessionRow, StoreError> {
        let mut rows = self.lock();
        row.id = rows.next_id;
        rows.apply(LogRecord::Open { row: row.clone() });
        Ok(row)
    }

    fn close(&self, uuid: &str, closed_ms: i64) -> Result<(), StoreError> {
        self.lock().apply(LogRecord::Close {
            uuid: uuid.to_string(),
            closed: closed_ms,
        });
        Ok(())
    }

    fn set_timeouts(
        &self,
        uuid: &str,
        time_to_live: i64,
        time_to_idle: i64,
    ) -> Result<(), StoreError> {
        self.lock().apply(LogRecord::Timeouts {
            uuid: uuid.to_string(),
            time_to_live,
            time_to_idle,
        });
        Ok(())
    }

    fn find(&self, uuid: &str) -> Option<SessionRow> {
        self.lock().by_uuid.get(uuid).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(uuid: &str) -> SessionRow {
        SessionRow {
            id: 0,
            uuid: uuid.to_string(),
            owner_id: 2,
            group_id: 3,
            started: 100,
            closed: None,
            time_to_idle: 600_000,
            time_to_live: 0,
            agent: Some("OMERO.py".into()),
            ip: None,
            event_type: "User".into(),
            sudoer_id: None,
            group_sudo: false,
        }
    }

    #[test]
    fn the_log_is_compacted_while_running() {
        let dir = tempfile::tempdir().unwrap();
        let store = JsonlSessionStore::open_with(dir.path(), 0, 50).unwrap();
        let lines = || {
            std::fs::read_to_string(dir.path().join(SESSION_LOG_FILE))
                .unwrap()
                .lines()
                .count()
        };
        for i in 0..2000 {
            let uuid = format!("u{i}");
            store.insert(row(&uuid)).unwrap();
            store.close(&uuid, 1).unwrap();
        }
        // 4000 appends; what is left is bounded by the kept rows plus one batch of appends.
        assert!(
            lines() <= 1 + CLOSED_ROWS_KEPT + CLOSED_ROWS_KEPT + 1,
            "{}",
            lines()
        );
        let kept = store.insert(row("kept")).unwrap();
        assert_eq!(kept.id, 2001);
        assert_eq!(store.find("u1999").unwrap().closed, Some(1));
        drop(store);
        // What the compacted file holds reads back the same.
        let store = JsonlSessionStore::open(dir.path(), 5).unwrap();
        assert_eq!(store.find("u1999").unwrap().closed, Some(1));
        assert_eq!(store.find("kept").unwrap().closed, Some(5));
        assert_eq!(store.insert(row("next")).unwrap().id, 2002);
    }

    #[test]
    fn ids_increase_across_restarts_and_open_rows_are_closed() {
        let dir = tempfile::tempdir().unwrap();
        let store = JsonlSessionStore::open(dir.path(), 0).unwrap();
        let a = store.insert(row("a")).unwrap();
        let b = store.insert(row("b")).unwrap();
        assert_eq!((a.id, b.id), (1, 2));
        store.close("a", 500).unwrap();
        store.set_timeouts("b", 7, 8).unwrap();
        drop(store);

        let store = JsonlSessionStore::open(dir.path(), 900).unwrap();
        assert_eq!(store.find("a").unwrap().closed, Some(500));
        let b = store.find("b").unwrap();
        assert_eq!(
            (b.closed, b.time_to_live, b.time_to_idle),
            (Some(900), 7, 8)
        );
        assert_eq!(store.insert(row("c")).unwrap().id, 3);
    }

    #[test]
    fn counter_survives_eviction_of_old_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = JsonlSessionStore::open(dir.path(), 0).unwrap();
        for i in 0..(CLOSED_ROWS_KEPT + 5) {
            let uuid = format!("u{i}");
            store.insert(row(&uuid)).unwrap();
            store.close(&uuid, 1).unwrap();
        }
        assert!(store.find("u0").is_none());
        drop(store);
        let store = JsonlSessionStore::open(dir.path(), 0).unwrap();
        let next = store.insert(row("new")).unwrap();
        assert_eq!(next.id, (CLOSED_ROWS_KEPT + 6) as i64);
    }

    #[test]
    fn torn_last_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = JsonlSessionStore::open(dir.path(), 0).unwrap();
        store.insert(row("a")).unwrap();
        drop(store);
        let path = dir.path().join(SESSION_LOG_FILE);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"op\":\"open\",\"row\":{\"id\":9").unwrap();
        drop(f);
        let store = JsonlSessionStore::open(dir.path(), 5).unwrap();
        assert_eq!(store.find("a").unwrap().closed, Some(5));
        assert_eq!(store.insert(row("b")).unwrap().id, 2);
    }

    #[test]
    fn memory_store_assigns_ids() {
        let store = MemoryRowLog::default();
        assert_eq!(store.insert(row("a")).unwrap().id, 1);
        assert_eq!(store.insert(row("b")).unwrap().id, 2);
        store.close("a", 3).unwrap();
        assert_eq!(store.find("a").unwrap().closed, Some(3));
    }
}
