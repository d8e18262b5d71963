//! The user directory document (`directory.json`): experimenters and groups.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{read_json, write_json, StoreError};

/// File name of the directory document inside the data directory.
pub const DIRECTORY_FILE: &str = "directory.json";
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
    fn debug_hides_password_hash() {
        let mut d = DirectoryData::with_builtins();
        d.experimenters[0].password_hash = Some("$argon2id$secret".into());
        let text = format!("{:?}", d);
        assert!(!text.contains("secret"));
        assert!(text.contains("<redacted>"));
    }
}
