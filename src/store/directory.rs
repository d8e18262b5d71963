//! The user directory as stored: experimenters, groups and memberships.
//!
//! [`DirectoryBackend`] is where the directory lives (the embedded database, PostgreSQL shared
//! by several nodes, or memory in tests). The auth layer keeps a whole in-memory copy,
//! [`DirectoryData`], because logins and rights checks read it synchronously on hot paths; a
//! backend only has to load everything, tell cheaply whether someone else changed it, and
//! commit a change on top of a known version.
//!
//! Concurrency is optimistic: every commit names the version it was computed from, and a
//! backend refuses it ([`Commit::Stale`]) when another writer (the command line, another node)
//! got there first; the writer reloads and applies its change again. Nothing is locked between
//! a read and the write, so a slow or dead writer never blocks the others.
//!
//! The trait is synchronous: readers never call it on a hot path, writes are rare
//! administration calls that already run in blocking contexts (hashing, the command line), and
//! the refresh check runs in the blocking login pool. An async driver (PostgreSQL) serves it
//! from a runtime of its own (see [`DirectoryBackend`]).
//!
//! `directory.json`, the format of earlier versions, is still read here for the one-time import.

pub mod contract;
pub mod memory;
pub mod sqlite;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{read_json, write_json, StoreError};

/// File name of the directory document inside the data directory.
pub const DIRECTORY_FILE: &str = "directory.json";
/// Suffix `directory.json` gets once it has been imported into a database.
pub const IMPORTED_SUFFIX: &str = ".imported";
/// Format version written by this program.
pub const DIRECTORY_VERSION: u32 = 1;

/// Ids of OMERO's built-in groups and users.
pub const SYSTEM_GROUP_ID: i64 = 0;
pub const USER_GROUP_ID: i64 = 1;
pub const GUEST_GROUP_ID: i64 = 2;
pub const ROOT_USER_ID: i64 = 0;
pub const GUEST_USER_ID: i64 = 1;

/// The whole directory as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectoryData {
    pub version: u32,
    pub next_experimenter_id: i64,
    pub next_group_id: i64,
    pub groups: Vec<GroupRecord>,
    pub experimenters: Vec<ExperimenterRecord>,
}

/// One experimenter group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    pub id: i64,
    pub name: String,
    /// Six-character OMERO permission string such as `rwr---`.
    pub permissions: String,
}

/// One experimenter. `member_of[0]` is the default group.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExperimenterRecord {
    pub id: i64,
    pub ome_name: String,
    pub first_name: String,
    pub last_name: String,
    #[serde(default)]
    pub email: Option<String>,
    /// Argon2id PHC string; `None` means the account cannot log in with a password.
    #[serde(default)]
    pub password_hash: Option<String>,
    pub member_of: Vec<i64>,
    #[serde(default)]
    pub leader_of: Vec<i64>,
    /// Light-admin privileges this member of `system` does not hold (OMERO keeps them as
    /// `AdminPrivilege:X=false` in `Experimenter.config`): empty means a full administrator.
    /// No effect while the user is not in `system`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admin_restrictions: Vec<String>,
}

impl fmt::Debug for ExperimenterRecord {
    // The hash stays out of logs: it is offline-guessable material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExperimenterRecord")
            .field("id", &self.id)
            .field("ome_name", &self.ome_name)
            .field("first_name", &self.first_name)
            .field("last_name", &self.last_name)
            .field("email", &self.email)
            .field(
                "password_hash",
                &self.password_hash.as_ref().map(|_| "<redacted>"),
            )
            .field("member_of", &self.member_of)
            .field("leader_of", &self.leader_of)
            .field("admin_restrictions", &self.admin_restrictions)
            .finish()
    }
}

impl ExperimenterRecord {
    /// Owned groups in membership order, each once, and only among the memberships: the form
    /// in which backends store them.
    pub fn normalize(&mut self) {
        let mut seen = Vec::with_capacity(self.member_of.len());
        self.member_of.retain(|g| {
            let first = !seen.contains(g);
            seen.push(*g);
            first
        });
        let owned = std::mem::take(&mut self.leader_of);
        self.leader_of = self
            .member_of
            .iter()
            .filter(|g| owned.contains(g))
            .copied()
            .collect();
    }
}

impl DirectoryData {
    /// A fresh directory holding OMERO's built-in groups and users.
    pub fn with_builtins() -> Self {
        let group = |id, name: &str, permissions: &str| GroupRecord {
            id,
            name: name.to_string(),
            permissions: permissions.to_string(),
        };
        let user = |id, name: &str, member_of: Vec<i64>| ExperimenterRecord {
            id,
            ome_name: name.to_string(),
            first_name: name.to_string(),
            last_name: name.to_string(),
            email: None,
            password_hash: None,
            member_of,
            leader_of: Vec::new(),
            admin_restrictions: Vec::new(),
        };
        DirectoryData {
            version: DIRECTORY_VERSION,
            next_experimenter_id: 2,
            next_group_id: 3,
            groups: vec![
                group(SYSTEM_GROUP_ID, "system", "rw----"),
                group(USER_GROUP_ID, "user", "rwr-r-"),
                group(GUEST_GROUP_ID, "guest", "rw----"),
            ],
            experimenters: vec![
                user(ROOT_USER_ID, "root", vec![SYSTEM_GROUP_ID, USER_GROUP_ID]),
                user(GUEST_USER_ID, "guest", vec![GUEST_GROUP_ID]),
            ],
        }
    }

    /// Nothing at all, not even the built-ins: what a store holds before its first commit.
    pub fn empty() -> Self {
        DirectoryData {
            version: DIRECTORY_VERSION,
            next_experimenter_id: 0,
            next_group_id: 0,
            groups: Vec::new(),
            experimenters: Vec::new(),
        }
    }

    /// Reads the document; `Ok(None)` when it does not exist yet.
    pub fn load(path: &Path) -> Result<Option<Self>, StoreError> {
        let Some(data) = read_json::<DirectoryData>(path)? else {
            return Ok(None);
        };
        if data.version != DIRECTORY_VERSION {
            return Err(StoreError::Version {
                path: path.to_path_buf(),
                found: data.version,
                expected: DIRECTORY_VERSION,
            });
        }
        Ok(Some(data))
    }

    /// Writes the document atomically.
    pub fn save(&self, path: &Path) -> Result<(), StoreError> {
        write_json(path, self)
    }

    pub fn group(&self, id: i64) -> Option<&GroupRecord> {
        self.groups.iter().find(|g| g.id == id)
    }

    pub fn group_named(&self, name: &str) -> Option<&GroupRecord> {
        self.groups.iter().find(|g| g.name == name)
    }

    pub fn experimenter(&self, id: i64) -> Option<&ExperimenterRecord> {
        self.experimenters.iter().find(|e| e.id == id)
    }

    pub fn experimenter_named(&self, name: &str) -> Option<&ExperimenterRecord> {
        self.experimenters.iter().find(|e| e.ome_name == name)
    }

    pub fn experimenter_named_mut(&mut self, name: &str) -> Option<&mut ExperimenterRecord> {
        self.experimenters.iter_mut().find(|e| e.ome_name == name)
    }
}

/// A stored directory and the version it was read at.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned {
    /// Grows by at least one with every commit; 0 means nothing was ever committed.
    pub version: i64,
    pub data: DirectoryData,
}

/// Outcome of [`DirectoryBackend::commit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Applied; the store is now at this version.
    Done(i64),
    /// Someone else committed since the base version: nothing was applied.
    Stale,
}

/// What a change does to the stored directory, row by row, so a database writes only what
/// changed. An upserted experimenter carries all its memberships (they replace the old ones).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DirectoryChanges {
    pub next_experimenter_id: i64,
    pub next_group_id: i64,
    pub groups_upserted: Vec<GroupRecord>,
    pub groups_removed: Vec<i64>,
    pub experimenters_upserted: Vec<ExperimenterRecord>,
    pub experimenters_removed: Vec<i64>,
}

impl DirectoryChanges {
    /// The changes that turn `old` into `new`.
    pub fn between(old: &DirectoryData, new: &DirectoryData) -> Self {
        let (groups_upserted, groups_removed) = diff_by_id(&old.groups, &new.groups, |g| g.id);
        let (experimenters_upserted, experimenters_removed) =
            diff_by_id(&old.experimenters, &new.experimenters, |e| e.id);
        DirectoryChanges {
            next_experimenter_id: new.next_experimenter_id,
            next_group_id: new.next_group_id,
            groups_upserted,
            groups_removed,
            experimenters_upserted,
            experimenters_removed,
        }
    }

    /// True when applying these changes to `base` would leave it as it is.
    pub fn is_noop_for(&self, base: &DirectoryData) -> bool {
        self.groups_upserted.is_empty()
            && self.groups_removed.is_empty()
            && self.experimenters_upserted.is_empty()
            && self.experimenters_removed.is_empty()
            && self.next_experimenter_id == base.next_experimenter_id
            && self.next_group_id == base.next_group_id
    }

    /// Applies the changes to an in-memory copy (what a backend's tables end up holding).
    /// Removed groups also leave every membership and ownership, as a foreign key would.
    pub fn apply_to(&self, data: &mut DirectoryData) {
        data.next_experimenter_id = self.next_experimenter_id;
        data.next_group_id = self.next_group_id;
        data.groups.retain(|g| !self.groups_removed.contains(&g.id));
        for group in &self.groups_upserted {
            match data.groups.iter_mut().find(|g| g.id == group.id) {
                Some(slot) => *slot = group.clone(),
                None => data.groups.push(group.clone()),
            }
        }
        data.groups.sort_by_key(|g| g.id);
        data.experimenters
            .retain(|e| !self.experimenters_removed.contains(&e.id));
        for user in &self.experimenters_upserted {
            match data.experimenters.iter_mut().find(|e| e.id == user.id) {
                Some(slot) => *slot = user.clone(),
                None => data.experimenters.push(user.clone()),
            }
        }
        data.experimenters.sort_by_key(|e| e.id);
        if !self.groups_removed.is_empty() {
            for user in &mut data.experimenters {
                user.member_of.retain(|g| !self.groups_removed.contains(g));
                user.leader_of.retain(|g| !self.groups_removed.contains(g));
            }
        }
    }
}

// Rows of `new` that are not in `old` as they are, and ids of `old` gone from `new`; by id
// through maps, so a change to a directory of many thousand users stays linear.
fn diff_by_id<T: Clone + PartialEq>(
    old: &[T],
    new: &[T],
    id: impl Fn(&T) -> i64,
) -> (Vec<T>, Vec<i64>) {
    let old_by_id: HashMap<i64, &T> = old.iter().map(|r| (id(r), r)).collect();
    let new_ids: HashSet<i64> = new.iter().map(&id).collect();
    let upserted = new
        .iter()
        .filter(|r| old_by_id.get(&id(r)) != Some(r))
        .cloned()
        .collect();
    let removed = old
        .iter()
        .map(&id)
        .filter(|i| !new_ids.contains(i))
        .collect();
    (upserted, removed)
}

/// Failures of a directory backend. Each names where the directory lives.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The database refused or failed an operation (I/O, corruption, constraint, lost link).
    #[error("directory database {location}: {source}")]
    Database {
        location: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The database cannot be reached (yet): callers fail fast and may try again later.
    #[error("directory database {location} is unavailable: {reason}")]
    Unavailable { location: String, reason: String },
    /// A `database` setting this build cannot use.
    #[error("{0}")]
    Unsupported(String),
    /// Stored rows that this program cannot make sense of.
    #[error("directory database {location} holds invalid data: {detail}")]
    Invalid { location: String, detail: String },
}

impl BackendError {
    pub fn database(
        location: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        BackendError::Database {
            location: location.into(),
            source: Box::new(source),
        }
    }
}

/// The one place where the `database` setting (`--database`, config key `database`) chooses
/// the backend: none means the embedded database in `data_dir`, `postgres://...` PostgreSQL.
pub fn open_backend(
    data_dir: &Path,
    database: Option<&str>,
) -> Result<Box<dyn DirectoryBackend>, BackendError> {
    match database.map(str::trim).filter(|d| !d.is_empty()) {
        None => Ok(Box::new(sqlite::SqliteDirectory::open(
            &crate::store::sqlite::database_path(data_dir),
        )?)),
        Some(url) if is_postgres_url(url) => Ok(Box::new(
            crate::store::postgres::directory::PgDirectory::open(url)?,
        )),
        // The setting may hold a password: name only its scheme.
        Some(url) => Err(BackendError::Unsupported(format!(
            "unsupported database scheme {:?}: expected postgres://USER@HOST:PORT/DB, or no \
             setting for the embedded database in the data directory",
            url.split_once("://").map_or("", |(scheme, _)| scheme)
        ))),
    }
}

/// Whether a `database` setting names PostgreSQL.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Where the directory lives. Implementations: the embedded SQLite database, PostgreSQL
/// shared by several nodes, and [`memory::MemoryBackend`] for tests.
///
/// Contract (checked for any backend by [`contract::check_backend`]):
/// - [`load`](Self::load) returns everything with the version it was read at; a store nobody
///   committed to yet gives version 0 and [`DirectoryData::empty`]. Schema creation is the
///   backend's job (when it is opened); the built-in accounts are not: the first writer commits
///   them on top of version 0, so two processes starting at once seed them once.
/// - [`commit`](Self::commit) applies all of `changes` in one transaction if and only if the
///   stored version is still `base`, and then stores a greater version; otherwise it changes
///   nothing and returns [`Commit::Stale`]. Removing a group removes its memberships.
/// - An experimenter's `leader_of` is a subset of `member_of` in `member_of`'s order (an owner
///   flag on each membership); [`ExperimenterRecord::normalize`] puts a record in that form.
/// - [`version`](Self::version) is cheap and reflects commits by other handles (processes,
///   nodes) at once, or as soon as the backend hears of them (PostgreSQL: LISTEN/NOTIFY, so
///   it may answer from memory without a round trip).
///
/// The methods block. A backend with an async driver runs its connection on a runtime of its
/// own (a thread with a current-thread tokio runtime) and waits for the answer with a bound, so
/// that it can be called from any thread, inside a tokio runtime or not, and fails fast with
/// [`BackendError::Unavailable`] when the database does not answer.
pub trait DirectoryBackend: Send + Sync + fmt::Debug {
    /// Where the directory lives, for messages (a file path, a URL without password).
    fn location(&self) -> String;

    /// Loads the whole directory.
    fn load(&self) -> Result<Versioned, BackendError>;

    /// The stored version (cheap).
    fn version(&self) -> Result<i64, BackendError>;

    /// Applies `changes` if the stored version is `base`.
    fn commit(&self, base: i64, changes: &DirectoryChanges) -> Result<Commit, BackendError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_match_omero() {
        let d = DirectoryData::with_builtins();
        assert_eq!(d.group_named("system").unwrap().id, 0);
        assert_eq!(d.group_named("user").unwrap().id, 1);
        assert_eq!(d.group_named("guest").unwrap().id, 2);
        let root = d.experimenter_named("root").unwrap();
        assert_eq!((root.id, root.member_of.clone()), (0, vec![0, 1]));
        let guest = d.experimenter_named("guest").unwrap();
        assert_eq!((guest.id, guest.member_of.clone()), (1, vec![2]));
    }

    #[test]
    fn save_load_round_trip_and_version_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DIRECTORY_FILE);
        let d = DirectoryData::with_builtins();
        d.save(&path).unwrap();
        assert_eq!(DirectoryData::load(&path).unwrap(), Some(d.clone()));
        let mut future = d;
        future.version = 99;
        write_json(&path, &future).unwrap();
        assert!(matches!(
            DirectoryData::load(&path),
            Err(StoreError::Version { found: 99, .. })
        ));
    }

    #[test]
    fn files_without_admin_restrictions_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DIRECTORY_FILE);
        let mut d = DirectoryData::with_builtins();
        d.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("admin_restrictions"), "{text}");
        d.experimenters[0].admin_restrictions = vec!["Sudo".into()];
        d.save(&path).unwrap();
        assert_eq!(DirectoryData::load(&path).unwrap(), Some(d));
    }

    #[test]
    fn changes_name_only_what_changed_and_rebuild_the_new_data() {
        let base = DirectoryData::with_builtins();
        assert!(DirectoryChanges::between(&base, &base).is_noop_for(&base));
        let mut new = base.clone();
        new.experimenters[1].email = Some("guest@example.org".into());
        new.groups.retain(|g| g.id != GUEST_GROUP_ID);
        new.experimenters[1].member_of.clear();
        new.groups.push(GroupRecord {
            id: 3,
            name: "lab".into(),
            permissions: "rwr---".into(),
        });
        new.next_group_id = 4;
        let changes = DirectoryChanges::between(&base, &new);
        assert_eq!(changes.groups_removed, vec![GUEST_GROUP_ID]);
        assert_eq!(changes.groups_upserted.len(), 1);
        assert_eq!(changes.experimenters_upserted.len(), 1);
        assert!(changes.experimenters_removed.is_empty());
        assert!(!changes.is_noop_for(&base));
        let mut rebuilt = base.clone();
        changes.apply_to(&mut rebuilt);
        assert_eq!(rebuilt, new);
    }

    #[test]
    fn debug_hides_password_hash() {
        let mut d = DirectoryData::with_builtins();
        d.experimenters[0].password_hash = Some("$argon2id$secret".into());
        let text = format!("{:?}", d);
        assert!(!text.contains("secret"));
        assert!(text.contains("<redacted>"));
    }
}
