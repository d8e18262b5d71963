//! The user directory: experimenters, groups and memberships, kept in a
//! [`DirectoryBackend`] (the embedded database in the data directory by default).
//!
//! Readers use an in-memory copy of the whole directory, so logins and rights checks never
//! wait for a database. The server and the command line (or several nodes) write the same
//! store: a writer applies its change to its copy and commits it on top of the version the
//! copy was read at; when someone else committed first, it reloads and applies the change
//! again. Other writers' changes are noticed through the store's version, checked on every
//! password verification and on [`Directory::refresh`].
//!
//! A data directory of an earlier version keeps its users in `directory.json`: the first open
//! of an empty store imports it and renames it to `directory.json.imported`.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use crate::store::directory::{
    open_backend, BackendError, Commit, DirectoryBackend, DirectoryChanges, DirectoryData,
    ExperimenterRecord, GroupRecord, Versioned, DIRECTORY_FILE, IMPORTED_SUFFIX, ROOT_USER_ID,
    SYSTEM_GROUP_ID, USER_GROUP_ID,
};
use crate::store::{ensure_dir, write_private_new, FileLock, StoreError, DIRECTORY_LOCK_FILE};

use super::checker::HashMemory;
use super::context::ADMIN_PRIVILEGES;
use super::password::{generate_password, hash_password, Password, DUMMY_HASH};
use super::permissions;
use super::AuthError;

/// File holding the generated first root password until root's password is changed.
pub const INITIAL_ROOT_PASSWORD_FILE: &str = "initial-root-password";

/// Failures of directory reads and changes.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("no such user: {0}")]
    UnknownUser(String),
    #[error("no such group: {0}")]
    UnknownGroup(String),
    #[error("user {0} already exists")]
    DuplicateUser(String),
    #[error("group {0} already exists")]
    DuplicateGroup(String),
    #[error("{0} is a built-in account and cannot be removed")]
    BuiltinUser(String),
    #[error(
        "invalid permissions {0:?}: expected six characters like rw----, rwr---, rwra--, rwrw--"
    )]
    InvalidPermissions(String),
    #[error("invalid name {0:?}: {1}")]
    InvalidName(String, &'static str),
    #[error("empty passwords are not allowed")]
    EmptyPassword,
    #[error("Bad password for {0}")]
    BadPassword(String),
    #[error("{0}")]
    Internal(String),
    /// A change the directory's rules do not allow (e.g. leaving the `user` group).
    #[error("{0}")]
    Refused(String),
}

/// An experimenter as other layers see it (never with the password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExperimenterInfo {
    pub id: i64,
    pub ome_name: String,
    pub first_name: String,
    pub last_name: String,
    pub email: Option<String>,
    /// Group ids in membership order; index 0 is the default group.
    pub member_of: Vec<i64>,
    /// Ids of groups this user owns (leads).
    pub leader_of: Vec<i64>,
    pub has_password: bool,
    /// Light-admin privileges withheld from this user while in `system` (see
    /// [`ExperimenterInfo::admin_privileges`]).
    pub admin_restrictions: Vec<String>,
}

impl ExperimenterInfo {
    pub fn default_group_id(&self) -> Option<i64> {
        self.member_of.first().copied()
    }

    /// Member of `system`.
    pub fn is_admin(&self) -> bool {
        self.member_of.contains(&SYSTEM_GROUP_ID)
    }

    pub fn is_member(&self, group_id: i64) -> bool {
        self.member_of.contains(&group_id)
    }

    pub fn leads(&self, group_id: i64) -> bool {
        self.leader_of.contains(&group_id)
    }

    /// OMERO's getAdminPrivileges: every privilege not restricted for a member of `system`,
    /// none for anyone else.
    pub fn admin_privileges(&self) -> Vec<&'static str> {
        if !self.is_admin() {
            return Vec::new();
        }
        ADMIN_PRIVILEGES
            .into_iter()
            .filter(|p| !self.admin_restrictions.iter().any(|r| r == p))
            .collect()
    }
}

/// A group as other layers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    pub id: i64,
    pub name: String,
    /// Six-character permission string, e.g. `rwr---`.
    pub permissions: String,
    /// The `perm1` long of `permissions` (spec §6).
    pub perm1: i64,
}

/// A new experimenter for [`Directory::add_experimenter`].
#[derive(Debug, Clone)]
pub struct NewExperimenter {
    pub ome_name: String,
    /// Defaults to `ome_name` when `None`.
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub password: Password,
    /// Member of `system`.
    pub admin: bool,
    /// Group names in the order given. The default group is the first one that is neither
    /// `system` nor `user`, else `user`. Every user is also in `user`.
    pub groups: Vec<String>,
    /// Group names this user owns; they are added to the memberships too.
    pub owner_of: Vec<String>,
}

/// Writers that keep meeting newer versions give up after this many tries (a sign of a
/// store that never holds still, not of ordinary contention).
const COMMIT_TRIES: usize = 64;

#[derive(Debug)]
struct Loaded {
    data: Arc<DirectoryData>,
    version: i64,
}

#[derive(Debug)]
struct Inner {
    data_dir: PathBuf,
    backend: Box<dyn DirectoryBackend>,
    state: RwLock<Loaded>,
    write_lock: Mutex<()>,
}

/// Handle on the user directory; clones share one cache.
#[derive(Debug, Clone)]
pub struct Directory {
    inner: Arc<Inner>,
}

impl Directory {
    /// Opens the directory in the embedded database of `data_dir`, creating the folder and
    /// OMERO's built-ins when new (or importing `directory.json`).
    pub fn open(data_dir: &Path) -> Result<Self, DirectoryError> {
        Self::open_database(data_dir, None)
    }

    /// Opens the directory in `database` (see [`open_backend`]; `None` is the embedded
    /// database in `data_dir`).
    pub fn open_database(data_dir: &Path, database: Option<&str>) -> Result<Self, DirectoryError> {
        ensure_dir(data_dir)?;
        let backend = open_backend(data_dir, database)?;
        Self::with_backend(data_dir, backend)
    }

    /// Opens the directory kept in `backend`; `data_dir` holds the initial root password file
    /// and, from earlier versions, `directory.json` to import into an empty store.
    pub fn with_backend(
        data_dir: &Path,
        backend: Box<dyn DirectoryBackend>,
    ) -> Result<Self, DirectoryError> {
        let mut loaded = backend.load()?;
        if loaded.version == 0 {
            loaded = seed(data_dir, backend.as_ref())?;
        } else if data_dir.join(DIRECTORY_FILE).exists() {
            // Imported before a crash kept it from being renamed, or copied in later: either
            // way the database is what counts, and importing again would undo its changes.
            tracing::warn!(
                file = %data_dir.join(DIRECTORY_FILE).display(),
                database = %backend.location(),
                "ignoring directory.json: the database already holds the user directory"
            );
        }
        Ok(Directory {
            inner: Arc::new(Inner {
                data_dir: data_dir.to_path_buf(),
                backend,
                state: RwLock::new(Loaded {
                    data: Arc::new(loaded.data),
                    version: loaded.version,
                }),
                write_lock: Mutex::new(()),
            }),
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// Where the directory lives (for messages).
    pub fn location(&self) -> String {
        self.inner.backend.location()
    }

    /// Reloads the directory if another process changed it; returns whether it did.
    /// On a failure the previous contents stay in use (logged).
    pub fn refresh(&self) -> bool {
        match self.reload_if_changed() {
            Ok(changed) => changed,
            Err(e) => {
                tracing::warn!(error = %e, "cannot reload user directory; keeping the loaded copy");
                false
            }
        }
    }

    fn reload_if_changed(&self) -> Result<bool, DirectoryError> {
        let now = self.inner.backend.version()?;
        if now == self.read_state().version {
            return Ok(false);
        }
        let loaded = self.inner.backend.load()?;
        self.install(loaded.data, loaded.version);
        tracing::info!(version = loaded.version, "user directory reloaded");
        Ok(true)
    }

    fn install(&self, data: DirectoryData, version: i64) {
        let mut state = self.write_state();
        // Two threads may reload at once; the later version wins whatever the order.
        if version >= state.version {
            state.data = Arc::new(data);
            state.version = version;
        }
    }

    /// The current contents (no check for other writers).
    pub fn snapshot(&self) -> Arc<DirectoryData> {
        self.read_state().data.clone()
    }

    pub fn experimenter(&self, id: i64) -> Option<ExperimenterInfo> {
        self.snapshot().experimenter(id).map(experimenter_info)
    }

    pub fn experimenter_by_name(&self, name: &str) -> Option<ExperimenterInfo> {
        self.snapshot()
            .experimenter_named(name)
            .map(experimenter_info)
    }

    pub fn experimenters(&self) -> Vec<ExperimenterInfo> {
        self.snapshot()
            .experimenters
            .iter()
            .map(experimenter_info)
            .collect()
    }

    pub fn group(&self, id: i64) -> Option<GroupInfo> {
        self.snapshot().group(id).map(group_info)
    }

    pub fn group_by_name(&self, name: &str) -> Option<GroupInfo> {
        self.snapshot().group_named(name).map(group_info)
    }

    pub fn groups(&self) -> Vec<GroupInfo> {
        self.snapshot().groups.iter().map(group_info).collect()
    }

    /// Group ids of a user in membership order (index 0 = default group); empty if unknown.
    pub fn member_of_ids(&self, user_id: i64) -> Vec<i64> {
        self.experimenter(user_id)
            .map(|e| e.member_of)
            .unwrap_or_default()
    }

    /// The groups a user belongs to, in membership order.
    pub fn groups_of(&self, user_id: i64) -> Vec<GroupInfo> {
        let data = self.snapshot();
        let Some(user) = data.experimenter(user_id) else {
            return Vec::new();
        };
        user.member_of
            .iter()
            .filter_map(|gid| data.group(*gid).map(group_info))
            .collect()
    }

    /// Ids of the groups a user owns.
    pub fn led_group_ids(&self, user_id: i64) -> Vec<i64> {
        self.experimenter(user_id)
            .map(|e| e.leader_of)
            .unwrap_or_default()
    }

    pub fn default_group(&self, user_id: i64) -> Option<GroupInfo> {
        self.groups_of(user_id).into_iter().next()
    }

    /// Names of the user's groups: OMERO's "user roles" matched by `@RolesAllowed`.
    pub fn role_names(&self, user_id: i64) -> Vec<String> {
        self.groups_of(user_id)
            .into_iter()
            .map(|g| g.name)
            .collect()
    }

    pub fn is_admin(&self, user_id: i64) -> bool {
        self.experimenter(user_id).is_some_and(|e| e.is_admin())
    }

    /// Checks a password with fresh hash memory. Blocking (argon2id, tens of milliseconds);
    /// logins go through [`super::Authenticator::login`], which bounds and reuses the memory.
    pub fn verify_password(
        &self,
        name: &str,
        password: &Password,
    ) -> Result<ExperimenterInfo, AuthError> {
        self.verify_password_with(&mut HashMemory::new(), name, password)
    }

    /// Checks a password in `memory`. Unknown users and wrong passwords give the same error
    /// after the same amount of work. Blocking.
    pub fn verify_password_with(
        &self,
        memory: &mut HashMemory,
        name: &str,
        password: &Password,
    ) -> Result<ExperimenterInfo, AuthError> {
        self.refresh();
        let data = self.snapshot();
        let record = data.experimenter_named(name);
        let hash = record.and_then(|r| r.password_hash.as_deref());
        match (record, hash) {
            (Some(record), Some(hash)) if memory.verify(hash, password) => {
                Ok(experimenter_info(record))
            }
            (_, Some(_)) => Err(AuthError::BadCredentials),
            (_, None) => {
                let _ = memory.verify(DUMMY_HASH, password);
                Err(AuthError::BadCredentials)
            }
        }
    }

    /// changeUserPassword / `user passwd`: sets a new password. Blocking (hashing).
    /// Changing root's password removes the initial-root-password file.
    pub fn set_password(&self, name: &str, password: &Password) -> Result<(), DirectoryError> {
        self.set_password_with(&mut HashMemory::new(), name, password)
    }

    /// [`Directory::set_password`] hashing in `memory`. Blocking.
    pub fn set_password_with(
        &self,
        memory: &mut HashMemory,
        name: &str,
        password: &Password,
    ) -> Result<(), DirectoryError> {
        if password.is_empty() {
            return Err(DirectoryError::EmptyPassword);
        }
        let hash = memory.hash(password).map_err(DirectoryError::Internal)?;
        let id = self.modify(|data| {
            let user = data
                .experimenter_named_mut(name)
                .ok_or_else(|| DirectoryError::UnknownUser(name.to_string()))?;
            user.password_hash = Some(hash.clone());
            Ok(user.id)
        })?;
        if id == ROOT_USER_ID {
            self.remove_initial_root_password();
        }
        tracing::info!(user = %name, "password changed");
        Ok(())
    }

    /// changePasswordWithOldPassword: the old password must match. Blocking.
    pub fn change_password(
        &self,
        name: &str,
        old: &Password,
        new: &Password,
    ) -> Result<(), DirectoryError> {
        match self.verify_password(name, old) {
            Ok(_) => self.set_password(name, new),
            Err(_) => Err(DirectoryError::BadPassword(name.to_string())),
        }
    }

    /// Adds an experimenter (see [`NewExperimenter`] for the membership rule). Blocking.
    pub fn add_experimenter(
        &self,
        new: NewExperimenter,
    ) -> Result<ExperimenterInfo, DirectoryError> {
        // Names that look like session uuids are allowed, as in OMERO (omero.testlib names
        // every user so): a login takes the name for a session key only while a session with
        // that uuid is live, and checks the password otherwise.
        validate_name(&new.ome_name)?;
        if new.password.is_empty() {
            return Err(DirectoryError::EmptyPassword);
        }
        let hash = hash_password(&new.password).map_err(DirectoryError::Internal)?;
        let record = self.modify(|data| {
            if data.experimenter_named(&new.ome_name).is_some() {
                return Err(DirectoryError::DuplicateUser(new.ome_name.clone()));
            }
            let (member_of, leader_of) = memberships(data, &new)?;
            let record = ExperimenterRecord {
                id: data.next_experimenter_id,
                ome_name: new.ome_name.clone(),
                first_name: new
                    .first_name
                    .clone()
                    .unwrap_or_else(|| new.ome_name.clone()),
                last_name: new
                    .last_name
                    .clone()
                    .unwrap_or_else(|| new.ome_name.clone()),
                email: new.email.clone(),
                password_hash: Some(hash.clone()),
                member_of,
                leader_of,
                admin_restrictions: Vec::new(),
            };
            data.next_experimenter_id += 1;
            data.experimenters.push(record.clone());
            Ok(record)
        })?;
        tracing::info!(user = %record.ome_name, id = record.id, "user added");
        Ok(experimenter_info(&record))
    }

    /// Removes an experimenter; the built-in root and guest are refused.
    pub fn remove_experimenter(&self, name: &str) -> Result<(), DirectoryError> {
        if name == "root" || name == "guest" {
            return Err(DirectoryError::BuiltinUser(name.to_string()));
        }
        self.modify(|data| {
            let before = data.experimenters.len();
            data.experimenters.retain(|e| e.ome_name != name);
            if data.experimenters.len() == before {
                return Err(DirectoryError::UnknownUser(name.to_string()));
            }
            Ok(())
        })?;
        tracing::info!(user = %name, "user removed");
        Ok(())
    }

    /// Adds a group with a permission string such as `rwr---`.
    pub fn add_group(&self, name: &str, perms: &str) -> Result<GroupInfo, DirectoryError> {
        validate_name(name)?;
        if !permissions::is_valid(perms) {
            return Err(DirectoryError::InvalidPermissions(perms.to_string()));
        }
        let record = self.modify(|data| {
            if data.group_named(name).is_some() {
                return Err(DirectoryError::DuplicateGroup(name.to_string()));
            }
            let record = GroupRecord {
                id: data.next_group_id,
                name: name.to_string(),
                permissions: perms.to_string(),
            };
            data.next_group_id += 1;
            data.groups.push(record.clone());
            Ok(record)
        })?;
        tracing::info!(group = %name, id = record.id, "group added");
        Ok(group_info(&record))
    }

    /// First start: when root has no password, generates one, stores its hash and writes the
    /// plain text once to `<data>/initial-root-password` (mode 0600). Returns that path when it
    /// did so, `None` when root already had a password. Blocking (hashing).
    pub fn ensure_root_password(&self) -> Result<Option<PathBuf>, DirectoryError> {
        self.refresh();
        let has_password = self
            .snapshot()
            .experimenter(ROOT_USER_ID)
            .is_some_and(|r| r.password_hash.is_some());
        if has_password {
            return Ok(None);
        }
        let password = generate_password(24);
        let path = self.inner.data_dir.join(INITIAL_ROOT_PASSWORD_FILE);
        // A file from an interrupted earlier start holds a password that was never stored.
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(&path, e).into()),
        }
        let mut text = password.expose().as_bytes().to_vec();
        text.push(b'\n');
        write_private_new(&path, &text)?;
        let hash = hash_password(&password).map_err(DirectoryError::Internal)?;
        // Another process (the command line, another node) may give root a password while
        // this one hashes: that password wins, and the file of this one goes.
        let stored = self.modify(|data| {
            let root = data
                .experimenters
                .iter_mut()
                .find(|e| e.id == ROOT_USER_ID)
                .ok_or_else(|| DirectoryError::UnknownUser("root".to_string()))?;
            if root.password_hash.is_some() {
                return Ok(false);
            }
            root.password_hash = Some(hash.clone());
            Ok(true)
        });
        match stored {
            Ok(true) => Ok(Some(path)),
            Ok(false) => {
                self.remove_initial_root_password();
                Ok(None)
            }
            Err(e) => {
                self.remove_initial_root_password();
                Err(e)
            }
        }
    }

    fn remove_initial_root_password(&self) {
        let path = self.inner.data_dir.join(INITIAL_ROOT_PASSWORD_FILE);
        match fs::remove_file(&path) {
            Ok(()) => tracing::info!(path = %path.display(), "removed initial root password file"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove initial root password file")
            }
        }
    }

    /// Adds `user_id` to each of `group_ids` it is not yet in; the default group stays.
    pub fn add_memberships(
        &self,
        user_id: i64,
        group_ids: &[i64],
    ) -> Result<ExperimenterInfo, DirectoryError> {
        self.change_user(user_id, |data, user| {
            for gid in group_ids {
                known_group(data, *gid)?;
                if !user.member_of.contains(gid) {
                    user.member_of.push(*gid);
                }
            }
            Ok(())
        })
    }

    /// Removes `user_id` from `group_ids` (and from their owners). Every user stays in
    /// `user`, and root in `system`; when the default group goes, the next one is the default.
    pub fn remove_memberships(
        &self,
        user_id: i64,
        group_ids: &[i64],
    ) -> Result<ExperimenterInfo, DirectoryError> {
        self.change_user(user_id, |_, user| {
            for gid in group_ids {
                let builtin =
                    *gid == USER_GROUP_ID || (*gid == SYSTEM_GROUP_ID && user.id == ROOT_USER_ID);
                if builtin {
                    return Err(DirectoryError::Refused(format!(
                        "{} cannot be removed from group {gid}",
                        user.ome_name
                    )));
                }
                user.member_of.retain(|g| g != gid);
                user.leader_of.retain(|g| g != gid);
            }
            Ok(())
        })
    }

    /// Makes `group_id`, of which the user must be a member, the default group.
    pub fn set_default_group(
        &self,
        user_id: i64,
        group_id: i64,
    ) -> Result<ExperimenterInfo, DirectoryError> {
        self.change_user(user_id, |_, user| {
            let Some(at) = user.member_of.iter().position(|g| *g == group_id) else {
                return Err(DirectoryError::Refused(format!(
                    "{} is not a member of group {group_id}",
                    user.ome_name
                )));
            };
            let gid = user.member_of.remove(at);
            user.member_of.insert(0, gid);
            Ok(())
        })
    }

    /// Makes the user an owner of `group_id` (a member too, as OMERO does) or takes the
    /// ownership away (the membership stays).
    pub fn set_group_owner(
        &self,
        user_id: i64,
        group_id: i64,
        owner: bool,
    ) -> Result<ExperimenterInfo, DirectoryError> {
        self.change_user(user_id, |data, user| {
            known_group(data, group_id)?;
            if owner {
                if !user.member_of.contains(&group_id) {
                    user.member_of.push(group_id);
                }
                if !user.leader_of.contains(&group_id) {
                    user.leader_of.push(group_id);
                }
            } else {
                user.leader_of.retain(|g| *g != group_id);
            }
            Ok(())
        })
    }

    /// setAdminPrivileges: the user holds exactly `privileges` while in `system`; every
    /// other privilege is recorded as a restriction. Unknown names are refused.
    pub fn set_admin_privileges(
        &self,
        user_id: i64,
        privileges: &[String],
    ) -> Result<ExperimenterInfo, DirectoryError> {
        if let Some(unknown) = privileges
            .iter()
            .find(|p| !ADMIN_PRIVILEGES.contains(&p.as_str()))
        {
            return Err(DirectoryError::Refused(format!(
                "unknown admin privilege {unknown:?}"
            )));
        }
        let restrictions: Vec<String> = ADMIN_PRIVILEGES
            .into_iter()
            .filter(|p| !privileges.iter().any(|q| q == p))
            .map(str::to_string)
            .collect();
        self.change_user(user_id, |_, user| {
            user.admin_restrictions = restrictions.clone();
            Ok(())
        })
    }

    /// Changes names and email; `None` leaves a field alone.
    pub fn update_experimenter(
        &self,
        user_id: i64,
        first_name: Option<String>,
        last_name: Option<String>,
        email: Option<Option<String>>,
    ) -> Result<ExperimenterInfo, DirectoryError> {
        self.change_user(user_id, |_, user| {
            if let Some(f) = &first_name {
                user.first_name = f.clone();
            }
            if let Some(l) = &last_name {
                user.last_name = l.clone();
            }
            if let Some(e) = &email {
                user.email = e.clone();
            }
            Ok(())
        })
    }

    /// Renames a group and/or changes its permission string.
    pub fn update_group(
        &self,
        group_id: i64,
        name: Option<&str>,
        perms: Option<&str>,
    ) -> Result<GroupInfo, DirectoryError> {
        if let Some(n) = name {
            validate_name(n)?;
        }
        if let Some(p) = perms {
            if !permissions::is_valid(p) {
                return Err(DirectoryError::InvalidPermissions(p.to_string()));
            }
        }
        let record = self.modify(|data| {
            if let Some(n) = name {
                if data.group_named(n).is_some_and(|g| g.id != group_id) {
                    return Err(DirectoryError::DuplicateGroup(n.to_string()));
                }
            }
            let group = data
                .groups
                .iter_mut()
                .find(|g| g.id == group_id)
                .ok_or_else(|| DirectoryError::UnknownGroup(group_id.to_string()))?;
            if let Some(n) = name {
                group.name = n.to_string();
            }
            if let Some(p) = perms {
                group.permissions = p.to_string();
            }
            Ok(group.clone())
        })?;
        tracing::info!(group = %record.name, id = record.id, "group updated");
        Ok(group_info(&record))
    }

    fn change_user(
        &self,
        user_id: i64,
        mut change: impl FnMut(&DirectoryData, &mut ExperimenterRecord) -> Result<(), DirectoryError>,
    ) -> Result<ExperimenterInfo, DirectoryError> {
        let record = self.modify(|data| {
            let at = data
                .experimenters
                .iter()
                .position(|e| e.id == user_id)
                .ok_or_else(|| DirectoryError::UnknownUser(user_id.to_string()))?;
            let mut user = data.experimenters[at].clone();
            change(data, &mut user)?;
            data.experimenters[at] = user.clone();
            Ok(user)
        })?;
        tracing::info!(user = %record.ome_name, id = record.id, "user updated");
        Ok(experimenter_info(&record))
    }

    // Applies `change` to the newest copy and commits it; when another writer committed in
    // between, starts again from its version so neither change is lost. `change` may run more
    // than once, each time on fresh data.
    fn modify<R>(
        &self,
        mut change: impl FnMut(&mut DirectoryData) -> Result<R, DirectoryError>,
    ) -> Result<R, DirectoryError> {
        let _writer = self
            .inner
            .write_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.reload_if_changed()?;
        for _ in 0..COMMIT_TRIES {
            let (base, version) = {
                let state = self.read_state();
                (state.data.clone(), state.version)
            };
            let mut data = DirectoryData::clone(&base);
            let result = change(&mut data)?;
            for user in &mut data.experimenters {
                user.normalize();
            }
            let changes = DirectoryChanges::between(&base, &data);
            if changes.is_noop_for(&base) {
                return Ok(result);
            }
            match self.inner.backend.commit(version, &changes)? {
                Commit::Done(new_version) => {
                    self.install(data, new_version);
                    return Ok(result);
                }
                Commit::Stale => {
                    let loaded = self.inner.backend.load()?;
                    self.install(loaded.data, loaded.version);
                }
            }
        }
        Err(DirectoryError::Internal(format!(
            "the user directory in {} kept changing; change not applied",
            self.location()
        )))
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, Loaded> {
        self.inner.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, Loaded> {
        self.inner.state.write().unwrap_or_else(|e| e.into_inner())
    }
}

// First open of an empty store: commits OMERO's built-ins, or the users of an earlier
// version's `directory.json`, which is then renamed. The file lock keeps a server and a
// command line starting together on one data directory from importing twice; a store seeded
// meanwhile by someone else (another node) wins and is loaded instead.
fn seed(data_dir: &Path, backend: &dyn DirectoryBackend) -> Result<Versioned, DirectoryError> {
    let _other_processes = FileLock::exclusive(&data_dir.join(DIRECTORY_LOCK_FILE))?;
    let loaded = backend.load()?;
    if loaded.version != 0 {
        return Ok(loaded);
    }
    let json = data_dir.join(DIRECTORY_FILE);
    let imported = DirectoryData::load(&json)?;
    let mut data = imported
        .clone()
        .unwrap_or_else(DirectoryData::with_builtins);
    for user in &mut data.experimenters {
        user.normalize();
    }
    let changes = DirectoryChanges::between(&DirectoryData::empty(), &data);
    match backend.commit(0, &changes)? {
        Commit::Done(version) => {
            if imported.is_some() {
                let renamed = data_dir.join(format!("{DIRECTORY_FILE}{IMPORTED_SUFFIX}"));
                fs::rename(&json, &renamed).map_err(|e| StoreError::io(&json, e))?;
                tracing::info!(
                    from = %json.display(),
                    into = %backend.location(),
                    kept_as = %renamed.display(),
                    users = data.experimenters.len(),
                    groups = data.groups.len(),
                    "imported the user directory"
                );
            }
            Ok(Versioned { version, data })
        }
        Commit::Stale => Ok(backend.load()?),
    }
}

fn experimenter_info(r: &ExperimenterRecord) -> ExperimenterInfo {
    ExperimenterInfo {
        id: r.id,
        ome_name: r.ome_name.clone(),
        first_name: r.first_name.clone(),
        last_name: r.last_name.clone(),
        email: r.email.clone(),
        member_of: r.member_of.clone(),
        leader_of: r.leader_of.clone(),
        has_password: r.password_hash.is_some(),
        admin_restrictions: r.admin_restrictions.clone(),
    }
}

fn group_info(g: &GroupRecord) -> GroupInfo {
    GroupInfo {
        id: g.id,
        name: g.name.clone(),
        permissions: g.permissions.clone(),
        // Stored strings are validated on the way in; a hand-edited bad one reads as private.
        perm1: permissions::perm1(&g.permissions).unwrap_or(-120),
    }
}

fn known_group(data: &DirectoryData, group_id: i64) -> Result<(), DirectoryError> {
    match data.group(group_id) {
        Some(_) => Ok(()),
        None => Err(DirectoryError::UnknownGroup(group_id.to_string())),
    }
}

fn validate_name(name: &str) -> Result<(), DirectoryError> {
    if name.is_empty() {
        return Err(DirectoryError::InvalidName(name.to_string(), "empty"));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(DirectoryError::InvalidName(
            name.to_string(),
            "no spaces or control characters allowed",
        ));
    }
    Ok(())
}

// Default group first (first given group other than system/user, else user), then the other
// given groups, then user, then system for admins.
fn memberships(
    data: &DirectoryData,
    new: &NewExperimenter,
) -> Result<(Vec<i64>, Vec<i64>), DirectoryError> {
    let resolve = |name: &String| {
        data.group_named(name)
            .map(|g| g.id)
            .ok_or_else(|| DirectoryError::UnknownGroup(name.clone()))
    };
    let given: Vec<i64> = new
        .groups
        .iter()
        .chain(new.owner_of.iter())
        .map(resolve)
        .collect::<Result<_, _>>()?;
    let leader_of: Vec<i64> = new.owner_of.iter().map(resolve).collect::<Result<_, _>>()?;
    let admin = new.admin || given.contains(&SYSTEM_GROUP_ID);
    let mut member_of: Vec<i64> = Vec::new();
    let mut push = |gid: i64| {
        if !member_of.contains(&gid) {
            member_of.push(gid);
        }
    };
    for gid in given
        .iter()
        .filter(|g| **g != SYSTEM_GROUP_ID && **g != USER_GROUP_ID)
    {
        push(*gid);
    }
    push(USER_GROUP_ID);
    if admin {
        push(SYSTEM_GROUP_ID);
    }
    let mut leader_unique = Vec::new();
    for gid in leader_of {
        if !leader_unique.contains(&gid) {
            leader_unique.push(gid);
        }
    }
    Ok((member_of, leader_unique))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_user(name: &str, groups: &[&str]) -> NewExperimenter {
        NewExperimenter {
            ome_name: name.to_string(),
            first_name: None,
            last_name: None,
            email: None,
            password: Password::new(format!("{name}-pw")),
            admin: false,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            owner_of: Vec::new(),
        }
    }

    fn open() -> (tempfile::TempDir, Directory) {
        let dir = tempfile::tempdir().unwrap();
        let d = Directory::open(&dir.path().join("data")).unwrap();
        (dir, d)
    }

    #[test]
    fn first_open_creates_builtins_and_reopen_keeps_changes() {
        let (tmp, d) = open();
        assert_eq!(d.group_by_name("system").unwrap().id, 0);
        assert_eq!(d.group(2).unwrap().name, "guest");
        assert!(d.is_admin(0));
        assert_eq!(d.member_of_ids(1), vec![2]);
        d.add_group("lab", "rwr---").unwrap();
        let again = Directory::open(&tmp.path().join("data")).unwrap();
        let lab = again.group_by_name("lab").unwrap();
        assert_eq!((lab.id, lab.perm1), (3, -56));
    }

    #[test]
    fn memberships_change_and_persist() {
        let (tmp, d) = open();
        let lab = d.add_group("lab", "rwr---").unwrap().id;
        let other = d.add_group("other", "rw----").unwrap().id;
        let a = d.add_experimenter(new_user("a", &["lab"])).unwrap().id;
        let got = d.add_memberships(a, &[other, lab]).unwrap();
        assert_eq!(got.member_of, vec![lab, USER_GROUP_ID, other]);
        assert!(d.add_memberships(a, &[99]).is_err());
        let got = d.set_default_group(a, other).unwrap();
        assert_eq!(got.member_of[0], other);
        assert!(matches!(
            d.set_default_group(a, 0),
            Err(DirectoryError::Refused(_))
        ));
        let got = d.set_group_owner(a, lab, true).unwrap();
        assert_eq!(got.leader_of, vec![lab]);
        let got = d.remove_memberships(a, &[lab]).unwrap();
        assert!(!got.member_of.contains(&lab) && got.leader_of.is_empty());
        assert!(matches!(
            d.remove_memberships(a, &[USER_GROUP_ID]),
            Err(DirectoryError::Refused(_))
        ));
        assert!(matches!(
            d.remove_memberships(ROOT_USER_ID, &[SYSTEM_GROUP_ID]),
            Err(DirectoryError::Refused(_))
        ));
        // Owning makes a member too.
        let got = d.set_group_owner(a, lab, true).unwrap();
        assert!(got.member_of.contains(&lab) && got.leader_of.contains(&lab));
        d.update_experimenter(a, Some("Ann".into()), None, Some(Some("a@x".into())))
            .unwrap();
        d.update_group(lab, Some("lab2"), Some("rwra--")).unwrap();
        assert!(d.update_group(lab, None, Some("bad")).is_err());
        let again = Directory::open(&tmp.path().join("data")).unwrap();
        let user = again.experimenter(a).unwrap();
        assert_eq!(
            (user.first_name.as_str(), user.email.as_deref()),
            ("Ann", Some("a@x"))
        );
        assert_eq!(user.member_of[0], other);
        assert_eq!(again.group(lab).unwrap().name, "lab2");
        assert_eq!(again.group(lab).unwrap().permissions, "rwra--");
    }

    #[test]
    fn names_may_look_like_uuids() {
        let (_t, d) = open();
        let name = uuid::Uuid::new_v4().to_string();
        d.add_experimenter(new_user(&name, &[])).unwrap();
        assert!(d
            .verify_password(&name, &Password::new(format!("{name}-pw")))
            .is_ok());
    }

    #[test]
    fn membership_rules() {
        let (_t, d) = open();
        d.add_group("lab", "rwra--").unwrap();
        d.add_group("other", "rw----").unwrap();
        let a = d
            .add_experimenter(new_user("a", &["user", "lab", "other"]))
            .unwrap();
        assert_eq!(a.member_of, vec![3, 4, 1]);
        assert_eq!(a.default_group_id(), Some(3));
        let b = d.add_experimenter(new_user("b", &[])).unwrap();
        assert_eq!(b.member_of, vec![1]);
        let mut admin = new_user("c", &["lab"]);
        admin.admin = true;
        admin.owner_of = vec!["other".into()];
        let c = d.add_experimenter(admin).unwrap();
        assert_eq!(c.member_of, vec![3, 4, 1, 0]);
        assert_eq!(c.leader_of, vec![4]);
        assert!(c.is_admin());
        let s = d.add_experimenter(new_user("s", &["system"])).unwrap();
        assert_eq!(s.member_of, vec![1, 0]);
        assert_eq!(d.led_group_ids(c.id), vec![4]);
        assert_eq!(d.role_names(a.id), vec!["lab", "other", "user"]);
        assert_eq!(d.default_group(a.id).unwrap().name, "lab");
        assert_eq!(
            d.groups_of(c.id).iter().map(|g| g.id).collect::<Vec<_>>(),
            vec![3, 4, 1, 0]
        );
        assert_eq!(d.experimenter_by_name("a").unwrap().first_name, "a");
    }

    #[test]
    fn add_user_errors() {
        let (_t, d) = open();
        assert!(matches!(
            d.add_experimenter(new_user("x", &["nope"])),
            Err(DirectoryError::UnknownGroup(g)) if g == "nope"
        ));
        d.add_experimenter(new_user("x", &[])).unwrap();
        assert!(matches!(
            d.add_experimenter(new_user("x", &[])),
            Err(DirectoryError::DuplicateUser(_))
        ));
        assert!(matches!(
            d.add_experimenter(new_user("root", &[])),
            Err(DirectoryError::DuplicateUser(_))
        ));
        assert!(matches!(
            d.add_experimenter(new_user("has space", &[])),
            Err(DirectoryError::InvalidName(..))
        ));
        let mut empty = new_user("e", &[]);
        empty.password = Password::new("");
        assert!(matches!(
            d.add_experimenter(empty),
            Err(DirectoryError::EmptyPassword)
        ));
        assert!(matches!(
            d.add_group("g", "rwx---"),
            Err(DirectoryError::InvalidPermissions(_))
        ));
        assert!(matches!(
            d.add_group("user", "rw----"),
            Err(DirectoryError::DuplicateGroup(_))
        ));
    }

    #[test]
    fn verify_password_outcomes_look_alike() {
        let (_t, d) = open();
        d.add_experimenter(new_user("alice", &[])).unwrap();
        let ok = d
            .verify_password("alice", &Password::new("alice-pw"))
            .unwrap();
        assert_eq!(ok.ome_name, "alice");
        assert_eq!(
            d.verify_password("alice", &Password::new("nope")),
            Err(AuthError::BadCredentials)
        );
        assert_eq!(
            d.verify_password("nobody", &Password::new("x")),
            Err(AuthError::BadCredentials)
        );
        // guest has no password: no password logs in.
        assert_eq!(
            d.verify_password("guest", &Password::new("")),
            Err(AuthError::BadCredentials)
        );
    }

    #[test]
    fn one_memory_serves_many_verifications() {
        let (_t, d) = open();
        d.add_experimenter(new_user("bob", &[])).unwrap();
        let mut memory = HashMemory::new();
        for _ in 0..3 {
            let info = d
                .verify_password_with(&mut memory, "bob", &Password::new("bob-pw"))
                .unwrap();
            assert_eq!(info.ome_name, "bob");
            assert_eq!(
                d.verify_password_with(&mut memory, "nobody", &Password::new("bob-pw")),
                Err(AuthError::BadCredentials)
            );
        }
    }

    #[test]
    fn writers_with_separate_handles_lose_nothing() {
        // Separate handles share no in-process lock, as two processes would not: only the
        // file lock keeps their read-modify-writes apart.
        let (tmp, _d) = open();
        let data = tmp.path().join("data");
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let data = data.clone();
                std::thread::spawn(move || {
                    let dir = Directory::open(&data).unwrap();
                    for i in 0..5 {
                        dir.add_group(&format!("g{w}x{i}"), "rw----").unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        let reread = Directory::open(&data).unwrap();
        for w in 0..4 {
            for i in 0..5 {
                assert!(
                    reread.group_by_name(&format!("g{w}x{i}")).is_some(),
                    "g{w}x{i} lost"
                );
            }
        }
    }

    #[test]
    fn other_process_changes_are_seen_and_kept() {
        let (tmp, server) = open();
        let cli = Directory::open(&tmp.path().join("data")).unwrap();
        cli.add_experimenter(new_user("late", &[])).unwrap();
        assert!(
            server.experimenter_by_name("late").is_none(),
            "no check yet"
        );
        assert!(server
            .verify_password("late", &Password::new("late-pw"))
            .is_ok());
        assert!(server.experimenter_by_name("late").is_some());
        assert!(!server.refresh(), "nothing new");
        // A write from a stale copy starts from the file, so the other change survives.
        cli.add_group("g1", "rw----").unwrap();
        server.add_group("g2", "rw----").unwrap();
        let fresh = Directory::open(&tmp.path().join("data")).unwrap();
        assert!(fresh.group_by_name("g1").is_some());
        assert!(fresh.group_by_name("g2").is_some());
    }

    /// A store whose reads can be made to fail, as a database gone away would.
    #[derive(Debug, Default)]
    struct Flaky {
        store: crate::store::directory::memory::MemoryBackend,
        failing: std::sync::atomic::AtomicBool,
    }

    impl Flaky {
        fn check(&self) -> Result<(), BackendError> {
            if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(BackendError::Unavailable {
                    location: "flaky".into(),
                    reason: "switched off".into(),
                });
            }
            Ok(())
        }
    }

    impl DirectoryBackend for Arc<Flaky> {
        fn location(&self) -> String {
            "flaky".into()
        }
        fn load(&self) -> Result<Versioned, BackendError> {
            self.check()?;
            self.store.load()
        }
        fn version(&self) -> Result<i64, BackendError> {
            self.check()?;
            self.store.version()
        }
        fn commit(&self, base: i64, changes: &DirectoryChanges) -> Result<Commit, BackendError> {
            self.check()?;
            self.store.commit(base, changes)
        }
    }

    /// A store where another writer gives root a password just before this one's first commit.
    #[derive(Debug, Default)]
    struct RootRace {
        store: crate::store::directory::memory::MemoryBackend,
        raced: std::sync::atomic::AtomicBool,
    }

    impl DirectoryBackend for Arc<RootRace> {
        fn location(&self) -> String {
            "race".into()
        }
        fn load(&self) -> Result<Versioned, BackendError> {
            self.store.load()
        }
        fn version(&self) -> Result<i64, BackendError> {
            self.store.version()
        }
        fn commit(&self, base: i64, changes: &DirectoryChanges) -> Result<Commit, BackendError> {
            let seeded = base > 0;
            if seeded && !self.raced.swap(true, std::sync::atomic::Ordering::SeqCst) {
                let now = self.store.load()?;
                let mut theirs = now.data.clone();
                theirs.experimenters[0].password_hash = Some("$argon2id$theirs".into());
                let race = DirectoryChanges::between(&now.data, &theirs);
                assert_eq!(
                    self.store.commit(now.version, &race)?,
                    Commit::Done(now.version + 1)
                );
            }
            self.store.commit(base, changes)
        }
    }

    #[test]
    fn a_root_password_set_meanwhile_elsewhere_wins_over_the_generated_one() {
        let tmp = tempfile::tempdir().unwrap();
        let race = Arc::new(RootRace::default());
        let d = Directory::with_backend(tmp.path(), Box::new(race.clone())).unwrap();
        assert_eq!(d.ensure_root_password().unwrap(), None);
        assert!(!tmp.path().join(INITIAL_ROOT_PASSWORD_FILE).exists());
        let root = d.snapshot().experimenter(ROOT_USER_ID).cloned().unwrap();
        assert_eq!(root.password_hash.as_deref(), Some("$argon2id$theirs"));
    }

    #[test]
    fn unreadable_store_on_reload_keeps_old_copy_and_refuses_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let flaky = Arc::new(Flaky::default());
        let d = Directory::with_backend(tmp.path(), Box::new(flaky.clone())).unwrap();
        let other = Directory::with_backend(tmp.path(), Box::new(flaky.clone())).unwrap();
        other.add_group("lab", "rw----").unwrap();
        flaky
            .failing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(!d.refresh());
        assert!(d.experimenter_by_name("root").is_some());
        assert!(matches!(
            d.add_group("g", "rw----"),
            Err(DirectoryError::Backend(BackendError::Unavailable { .. }))
        ));
        flaky
            .failing
            .store(false, std::sync::atomic::Ordering::SeqCst);
        assert!(d.refresh());
        assert!(d.group_by_name("lab").is_some());
    }

    #[test]
    fn an_old_directory_json_is_imported_once_and_kept_renamed() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let fixture = include_str!("../../tests/data/directory-v1/directory.json");
        std::fs::write(data.join(DIRECTORY_FILE), fixture).unwrap();
        let d = Directory::open(&data).unwrap();
        assert!(!data.join(DIRECTORY_FILE).exists());
        let kept = std::fs::read_to_string(data.join("directory.json.imported")).unwrap();
        assert_eq!(kept, fixture);
        let alice = d.experimenter_by_name("alice").unwrap();
        assert_eq!(
            (
                alice.id,
                alice.first_name.as_str(),
                alice.last_name.as_str()
            ),
            (2, "Alice", "O'Neil")
        );
        assert_eq!(alice.email.as_deref(), Some("alice@example.org"));
        assert_eq!((alice.member_of, alice.leader_of), (vec![3, 4, 1], vec![3]));
        let bob = d.experimenter_by_name("bob").unwrap();
        assert_eq!(bob.member_of, vec![4, 1, 0]);
        assert!(d.experimenter_by_name("temp").is_none());
        assert_eq!(d.group_by_name("lab").unwrap().permissions, "rwra--");
        assert!(d.group_by_name("gone").is_some());
        for (user, pw) in [
            ("root", "root-pw"),
            ("alice", "alice-pw"),
            ("carol", "carol-pw"),
        ] {
            assert!(
                d.verify_password(user, &Password::new(pw)).is_ok(),
                "{user}"
            );
        }
        // Root has a password: no initial password file.
        assert_eq!(d.ensure_root_password().unwrap(), None);
        // Ids go on where the old file left them.
        assert_eq!(d.add_experimenter(new_user("dan", &[])).unwrap().id, 6);
        assert_eq!(d.add_group("new", "rw----").unwrap().id, 6);
        // A second open neither imports again nor needs the file.
        std::fs::write(data.join(DIRECTORY_FILE), fixture).unwrap();
        let again = Directory::open(&data).unwrap();
        assert!(again.experimenter_by_name("dan").is_some());
        assert!(data.join(DIRECTORY_FILE).exists(), "left alone");
    }

    #[test]
    fn a_broken_directory_json_stops_the_import_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(DIRECTORY_FILE), b"{oops").unwrap();
        let err = Directory::open(tmp.path()).unwrap_err().to_string();
        assert!(err.contains(DIRECTORY_FILE), "{err}");
        // Nothing was committed: a fixed file is imported on the next try.
        let fixture = include_str!("../../tests/data/directory-v1/directory.json");
        std::fs::write(tmp.path().join(DIRECTORY_FILE), fixture).unwrap();
        let d = Directory::open(tmp.path()).unwrap();
        assert!(d.experimenter_by_name("alice").is_some());
    }

    #[test]
    fn processes_opening_a_new_store_together_seed_it_once() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let opened: Vec<Directory> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| Directory::open(&data).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for d in &opened {
            assert_eq!(d.groups().len(), 3);
            assert_eq!(d.experimenters().len(), 2);
        }
    }

    #[test]
    fn initial_root_password_lifecycle() {
        let (tmp, d) = open();
        let path = d.ensure_root_password().unwrap().unwrap();
        assert_eq!(
            path,
            tmp.path().join("data").join(INITIAL_ROOT_PASSWORD_FILE)
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let plain = std::fs::read_to_string(&path).unwrap();
        let plain = plain.trim_end();
        assert_eq!(plain.len(), 24);
        assert!(d.verify_password("root", &Password::new(plain)).is_ok());
        assert_eq!(d.ensure_root_password().unwrap(), None);
        d.set_password("root", &Password::new("new-root")).unwrap();
        assert!(!path.exists());
        assert!(d
            .verify_password("root", &Password::new("new-root"))
            .is_ok());
        assert!(d.verify_password("root", &Password::new(plain)).is_err());
    }

    #[test]
    fn password_changes() {
        let (_t, d) = open();
        d.add_experimenter(new_user("u", &[])).unwrap();
        assert!(matches!(
            d.change_password("u", &Password::new("wrong"), &Password::new("n")),
            Err(DirectoryError::BadPassword(_))
        ));
        d.change_password("u", &Password::new("u-pw"), &Password::new("n"))
            .unwrap();
        assert!(d.verify_password("u", &Password::new("n")).is_ok());
        assert!(matches!(
            d.set_password("u", &Password::new("")),
            Err(DirectoryError::EmptyPassword)
        ));
        assert!(matches!(
            d.set_password("ghost", &Password::new("x")),
            Err(DirectoryError::UnknownUser(_))
        ));
    }

    #[test]
    fn removal_rules() {
        let (_t, d) = open();
        d.add_experimenter(new_user("gone", &[])).unwrap();
        d.remove_experimenter("gone").unwrap();
        assert!(d.experimenter_by_name("gone").is_none());
        assert!(matches!(
            d.remove_experimenter("gone"),
            Err(DirectoryError::UnknownUser(_))
        ));
        assert!(matches!(
            d.remove_experimenter("root"),
            Err(DirectoryError::BuiltinUser(_))
        ));
        // Ids are never reused.
        let next = d.add_experimenter(new_user("next", &[])).unwrap();
        assert_eq!(next.id, 3);
    }

    #[test]
    fn admin_privileges_are_stored_as_restrictions_of_system_members() {
        let (tmp, d) = open();
        assert_eq!(
            d.experimenter(ROOT_USER_ID)
                .unwrap()
                .admin_privileges()
                .len(),
            15
        );
        let a = d.add_experimenter(new_user("a", &[])).unwrap().id;
        let wanted = vec!["Sudo".to_string(), "ModifyUser".to_string()];
        let got = d.set_admin_privileges(a, &wanted).unwrap();
        assert_eq!(got.admin_restrictions.len(), 13);
        // Not in system: restrictions are kept but no privilege is held.
        assert!(got.admin_privileges().is_empty());
        let got = d.add_memberships(a, &[SYSTEM_GROUP_ID]).unwrap();
        assert_eq!(got.admin_privileges(), vec!["ModifyUser", "Sudo"]);
        let again = Directory::open(&tmp.path().join("data")).unwrap();
        let user = again.experimenter(a).unwrap();
        assert_eq!(user.admin_privileges(), vec!["ModifyUser", "Sudo"]);
        let none = d.set_admin_privileges(a, &[]).unwrap();
        assert!(none.is_admin() && none.admin_privileges().is_empty());
        assert!(matches!(
            d.set_admin_privileges(a, &["Dance".to_string()]),
            Err(DirectoryError::Refused(_))
        ));
        assert!(matches!(
            d.set_admin_privileges(99, &wanted),
            Err(DirectoryError::UnknownUser(_))
        ));
    }
}
