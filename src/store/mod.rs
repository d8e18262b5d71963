//! Embedded storage in a data directory: small JSON documents replaced atomically.
//!
//! The server and the `user`/`group` command line run as separate processes over the same
//! directory, so every document is written whole to a temporary file, synced, and renamed over
//! the old one: a reader sees either the old or the new version, never a torn file. A writer
//! holds an OS file lock ([`FileLock`]) across its read-modify-write so that neither process
//! loses the other's change, and a running server holds [`DataDirLock`] for its whole life.

pub mod directory;
pub mod postgres;
pub mod sqlite;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Failures of the embedded store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot access {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid store document: {source}")]
    Format {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "the data directory {dir} is in use by another omero-sessiond server \
         (it holds the lock on {lock}); stop it or choose another --data directory"
    )]
    InUse { dir: PathBuf, lock: PathBuf },
    #[error("{path} has format version {found}; this program understands version {expected}")]
    Version {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("database {path} is damaged ({detail}); restore it from a backup or move it away")]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "database {path} holds {component} schema version {found}, newer than the {known} this \
         program knows; run a newer omero-sessiond"
    )]
    SchemaTooNew {
        path: PathBuf,
        component: String,
        found: i64,
        known: i64,
    },
    /// The database cannot be reached or its worker is gone (a server, a stopped writer).
    #[error("the session database is unavailable: {0}")]
    Unavailable(String),
    /// PostgreSQL refused an operation (outages are [`StoreError::Unavailable`]).
    #[error(transparent)]
    Postgres(postgres::PgError),
}

impl From<postgres::PgError> for StoreError {
    fn from(e: postgres::PgError) -> Self {
        match e {
            postgres::PgError::Unavailable { target, reason } => {
                StoreError::Unavailable(format!("{target}: {reason}"))
            }
            other => StoreError::Postgres(other),
        }
    }
}

impl StoreError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Creates the data directory (and parents) when missing, private to its owner.
pub fn ensure_dir(dir: &Path) -> Result<(), StoreError> {
    fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    set_private(dir, 0o700)
}

/// Lock file taken while a new directory store is seeded (or `directory.json` imported), so
/// that a server and a command line starting together do it once.
pub const DIRECTORY_LOCK_FILE: &str = "directory.json.lock";
/// Lock file a running server holds for its whole life.
pub const SERVER_LOCK_FILE: &str = "server.lock";

/// An exclusive advisory lock on a file, released when dropped (or when the process ends).
#[derive(Debug)]
pub struct FileLock {
    file: File,
}

impl FileLock {
    /// Waits for the exclusive lock on `path`, creating the file (owner-only) when missing.
    pub fn exclusive(path: &Path) -> Result<Self, StoreError> {
        let file = open_lock_file(path)?;
        file.lock().map_err(|e| StoreError::io(path, e))?;
        Ok(FileLock { file })
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Closing the file releases the lock too; unlocking first just says so explicitly.
        let _ = self.file.unlock();
    }
}

/// Proof that this process is the only server on a data directory.
#[derive(Debug)]
pub struct DataDirLock {
    _lock: FileLock,
}

impl DataDirLock {
    /// Creates `dir` when missing and takes its server lock without waiting; another live
    /// server holding it gives [`StoreError::InUse`], which names the directory.
    pub fn acquire(dir: &Path) -> Result<Self, StoreError> {
        ensure_dir(dir)?;
        let path = dir.join(SERVER_LOCK_FILE);
        let file = open_lock_file(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(DataDirLock {
                _lock: FileLock { file },
            }),
            Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::InUse {
                dir: dir.to_path_buf(),
                lock: path,
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(StoreError::io(&path, e)),
        }
    }
}

fn open_lock_file(path: &Path) -> Result<File, StoreError> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map_err(|e| StoreError::io(path, e))
}

/// Writes `bytes` to `path` so that readers never see a partial file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = temp_name(path);
    let result = write_and_sync(&tmp, bytes).and_then(|()| {
        fs::rename(&tmp, path).map_err(|e| StoreError::io(path, e))?;
        sync_parent(path)
    });
    if result.is_err() {
        // Best effort: a leftover temp file is harmless but untidy.
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Serialises `value` as pretty JSON and writes it atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StoreError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| StoreError::Format {
        path: path.to_path_buf(),
        source: e,
    })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// Reads a JSON document; `Ok(None)` when the file does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StoreError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io(path, e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StoreError::Format {
            path: path.to_path_buf(),
            source: e,
        })
}

/// Identifies one version of a file cheaply: modification time plus length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    // Every atomic write renames a new file into place, so a new inode means a new version even
    // when the time and length happen to match.
    inode: u64,
}

/// The stamp of `path` now; `None` when it does not exist.
pub fn file_stamp(path: &Path) -> Option<FileStamp> {
    let meta = fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode,
    })
}

/// Creates `path` with owner-only permissions and writes `bytes`; fails if it exists.
pub fn write_private_new(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| StoreError::io(path, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| StoreError::io(path, e))
}

fn write_and_sync(tmp: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Password hashes live in these files.
        options.mode(0o600);
    }
    let mut file = options.open(tmp).map_err(|e| StoreError::io(tmp, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| StoreError::io(tmp, e))
}

fn temp_name(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

fn sync_parent(path: &Path) -> Result<(), StoreError> {
    // The rename is durable only once the directory entry is on disk (POSIX).
    #[cfg(unix)]
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        let dir = File::open(parent).map_err(|e| StoreError::io(parent, e))?;
        dir.sync_all().map_err(|e| StoreError::io(parent, e))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

fn set_private(path: &Path, mode: u32) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|e| StoreError::io(path, e))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_whole_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("doc.json");
        write_atomic(&path, b"first version, rather long").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn json_round_trip_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.json");
        assert!(read_json::<Vec<u32>>(&path).unwrap().is_none());
        write_json(&path, &vec![1u32, 2, 3]).unwrap();
        assert_eq!(read_json::<Vec<u32>>(&path).unwrap(), Some(vec![1, 2, 3]));
    }

    #[test]
    fn corrupt_json_is_a_format_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.json");
        fs::write(&path, b"{not json").unwrap();
        assert!(matches!(
            read_json::<Vec<u32>>(&path),
            Err(StoreError::Format { .. })
        ));
    }

    #[test]
    fn stamp_changes_when_content_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        assert!(file_stamp(&path).is_none());
        write_atomic(&path, b"a").unwrap();
        let first = file_stamp(&path).unwrap();
        write_atomic(&path, b"bb").unwrap();
        assert_ne!(first, file_stamp(&path).unwrap());
    }

    #[test]
    fn a_second_server_lock_on_a_directory_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = DataDirLock::acquire(&data).unwrap();
        let err = DataDirLock::acquire(&data).unwrap_err();
        assert!(matches!(err, StoreError::InUse { .. }));
        assert!(
            err.to_string().contains(&data.display().to_string()),
            "{err}"
        );
        drop(first);
        assert!(
            DataDirLock::acquire(&data).is_ok(),
            "released with its holder"
        );
    }

    #[test]
    fn a_file_lock_excludes_other_holders_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let held = FileLock::exclusive(&path).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn({
            let path = path.clone();
            move || {
                let _second = FileLock::exclusive(&path).unwrap();
                tx.send(()).unwrap();
            }
        });
        // The waiter cannot get the lock while it is held; no timing is asserted, only
        // that it gets it once released.
        assert!(rx.try_recv().is_err());
        drop(held);
        rx.recv().unwrap();
        waiter.join().unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn private_new_file_is_0600_and_refuses_overwrite() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_private_new(&path, b"x").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(write_private_new(&path, b"y").is_err());
    }
}
