//! What a session means in terms of users and groups: its event context (spec §6) and the
//! group it may use. The Glacier2 verifier's refusal text lives with the one login path in
//! `crate::router::login`.

use crate::sessions::{SessionError, SessionInfo};
use crate::store::directory::{SYSTEM_GROUP_ID, USER_GROUP_ID};

use super::directory::{Directory, ExperimenterInfo, GroupInfo};

/// OMERO's light-admin privileges; full administrators hold all of them.
pub const ADMIN_PRIVILEGES: [&str; 15] = [
    "Chgrp",
    "Chown",
    "DeleteFile",
    "DeleteManagedRepo",
    "DeleteOwned",
    "DeleteScriptRepo",
    "ModifyGroup",
    "ModifyGroupMembership",
    "ModifyUser",
    "ReadSession",
    "Sudo",
    "WriteFile",
    "WriteManagedRepo",
    "WriteOwned",
    "WriteScriptRepo",
];

/// The fields of `omero::sys::EventContext`, as plain values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventContextData {
    /// Active share; always -1 (shares are not implemented).
    pub share_id: i64,
    pub session_id: i64,
    pub session_uuid: String,
    pub user_id: i64,
    pub user_name: String,
    pub sudoer_id: Option<i64>,
    pub sudoer_name: Option<String>,
    pub group_id: i64,
    pub group_name: String,
    pub is_admin: bool,
    pub admin_privileges: Vec<String>,
    /// Always -1: the copied context has no current event.
    pub event_id: i64,
    pub event_type: String,
    /// Membership order; index 0 is the default group.
    pub member_of_groups: Vec<i64>,
    pub leader_of_groups: Vec<i64>,
    /// `perm1` of the current group's permissions.
    pub group_permissions_perm1: i64,
}

/// The group a new session starts in: the user's default group when `group_name` is empty or
/// `user` (OMERO's rule), else the named group. Membership is not checked here (see
/// [`check_group_usable`]); callers of the create methods wrap the error as OMERO does.
pub fn login_group(
    dir: &Directory,
    user: &ExperimenterInfo,
    group_name: Option<&str>,
) -> Result<GroupInfo, SessionError> {
    match group_name {
        None | Some("") | Some("user") => user
            .default_group_id()
            .and_then(|gid| dir.group(gid))
            .ok_or_else(|| {
                SessionError::ApiUsage(format!("Can't find default group for {}", user.ome_name))
            }),
        Some(name) => dir
            .group_by_name(name)
            .ok_or_else(|| SessionError::ApiUsage(format!("No group found with name: {name}"))),
    }
}

/// Every call of a session whose owner is not a member of its group fails with this (spec §1.3),
/// unless the group is world-readable. Administrators are let through (they may switch to any
/// group, §5.3).
pub fn check_group_usable(user: &ExperimenterInfo, group: &GroupInfo) -> Result<(), SessionError> {
    const WORLD_READ: i64 = 0x4;
    if user.is_member(group.id) || user.is_admin() || group.perm1 & WORLD_READ != 0 {
        Ok(())
    } else {
        Err(SessionError::SecurityViolation(format!(
            "User {} is not a member of group {} and cannot login",
            user.id, group.id
        )))
    }
}

/// IAdmin.getEventContext for `session`, read fresh from the directory. For a group-sudo
/// session the member and leader lists are intersected with the sudoer's own lists.
pub fn event_context(
    dir: &Directory,
    session: &SessionInfo,
) -> Result<EventContextData, SessionError> {
    dir.refresh();
    let user = dir.experimenter(session.owner_id).ok_or_else(|| {
        SessionError::SecurityViolation(format!("User {} no longer exists", session.owner_id))
    })?;
    let group = dir.group(session.group_id).ok_or_else(|| {
        SessionError::SecurityViolation(format!("Group {} no longer exists", session.group_id))
    })?;
    check_group_usable(&user, &group)?;
    let sudoer = session.sudoer_id.and_then(|id| dir.experimenter(id));
    let (mut member_of, mut leader_of) = (user.member_of.clone(), user.leader_of.clone());
    if session.group_sudo {
        if let Some(s) = &sudoer {
            member_of.retain(|g| s.member_of.contains(g));
            leader_of.retain(|g| s.leader_of.contains(g));
        }
    }
    let is_admin = member_of.contains(&SYSTEM_GROUP_ID);
    Ok(EventContextData {
        share_id: -1,
        session_id: session.id,
        session_uuid: session.uuid.clone(),
        user_id: user.id,
        user_name: user.ome_name,
        sudoer_id: session.sudoer_id,
        sudoer_name: sudoer.map(|s| s.ome_name),
        group_id: group.id,
        group_name: group.name,
        is_admin,
        admin_privileges: if is_admin {
            ADMIN_PRIVILEGES.iter().map(|p| p.to_string()).collect()
        } else {
            Vec::new()
        },
        event_id: -1,
        event_type: session.event_type.clone(),
        member_of_groups: member_of,
        leader_of_groups: leader_of,
        group_permissions_perm1: group.perm1,
    })
}

/// True for the built-in `guest` user (id 1), refused by most services
/// ("Access denied to guest user").
pub fn is_guest(user: &ExperimenterInfo) -> bool {
    user.id == crate::store::directory::GUEST_USER_ID
}

/// True when the user is in the `user` group (the role most ISession methods require).
pub fn has_user_role(user: &ExperimenterInfo) -> bool {
    user.is_member(USER_GROUP_ID)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::directory::NewExperimenter;
    use crate::auth::Password;

    fn setup() -> (
        tempfile::TempDir,
        Directory,
        ExperimenterInfo,
        ExperimenterInfo,
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Directory::open(tmp.path()).unwrap();
        dir.add_group("lab", "rwr---").unwrap();
        dir.add_group("other", "rw----").unwrap();
        dir.add_group("open", "rwr-r-").unwrap();
        let add = |name: &str, groups: &[&str], owner_of: &[&str]| {
            dir.add_experimenter(NewExperimenter {
                ome_name: name.into(),
                first_name: None,
                last_name: None,
                email: None,
                password: Password::new("pw"),
                admin: false,
                groups: groups.iter().map(|g| g.to_string()).collect(),
                owner_of: owner_of.iter().map(|g| g.to_string()).collect(),
            })
            .unwrap()
        };
        let alice = add("alice", &["lab", "other"], &[]);
        let owner = add("owner", &[], &["lab"]);
        (tmp, dir, alice, owner)
    }

    fn session(owner: i64, group: i64) -> SessionInfo {
        SessionInfo {
            id: 42,
            uuid: "u-1".into(),
            owner_id: owner,
            group_id: group,
            started: 0,
            last_access: 0,
            hits: 1,
            time_to_idle: 600_000,
            time_to_live: 0,
            refcount: 1,
            agent: None,
            ip: None,
            event_type: "User".into(),
            sudoer_id: None,
            group_sudo: false,
        }
    }

    #[test]
    fn login_group_rules() {
        let (_t, dir, alice, _) = setup();
        for name in [None, Some(""), Some("user")] {
            assert_eq!(login_group(&dir, &alice, name).unwrap().name, "lab");
        }
        assert_eq!(login_group(&dir, &alice, Some("other")).unwrap().id, 4);
        assert!(login_group(&dir, &alice, Some("missing")).is_err());
    }

    #[test]
    fn group_usability() {
        let (_t, dir, alice, _) = setup();
        let other = dir.group_by_name("other").unwrap();
        assert!(check_group_usable(&alice, &other).is_ok());
        let open = dir.group_by_name("open").unwrap();
        assert!(check_group_usable(&alice, &open).is_ok(), "world-readable");
        let guest = dir.group(2).unwrap();
        assert_eq!(
            check_group_usable(&alice, &guest),
            Err(SessionError::SecurityViolation(format!(
                "User {} is not a member of group 2 and cannot login",
                alice.id
            )))
        );
        let root = dir.experimenter(0).unwrap();
        assert!(check_group_usable(&root, &guest).is_ok());
    }

    #[test]
    fn event_context_fields() {
        let (_t, dir, alice, _) = setup();
        let ec = event_context(&dir, &session(alice.id, 3)).unwrap();
        assert_eq!(ec.share_id, -1);
        assert_eq!(ec.event_id, -1);
        assert_eq!((ec.session_id, ec.session_uuid.as_str()), (42, "u-1"));
        assert_eq!(
            (ec.user_name.as_str(), ec.group_name.as_str()),
            ("alice", "lab")
        );
        assert_eq!(ec.member_of_groups, vec![3, 4, 1]);
        assert!(!ec.is_admin);
        assert!(ec.admin_privileges.is_empty());
        assert_eq!(ec.group_permissions_perm1, -56);
        assert_eq!((ec.sudoer_id, ec.sudoer_name), (None, None));

        let mut root_session = session(0, 0);
        root_session.sudoer_id = Some(0);
        let root = event_context(&dir, &root_session).unwrap();
        assert!(root.is_admin);
        assert_eq!(root.admin_privileges.len(), 15);
        assert_eq!(root.sudoer_name.as_deref(), Some("root"));
        assert_eq!(root.group_permissions_perm1, -120);
    }

    #[test]
    fn group_sudo_context_is_intersected() {
        let (_t, dir, alice, owner) = setup();
        let mut s = session(alice.id, 3);
        s.sudoer_id = Some(owner.id);
        s.group_sudo = true;
        let ec = event_context(&dir, &s).unwrap();
        // owner is in lab and user; alice's "other" falls away.
        assert_eq!(ec.member_of_groups, vec![3, 1]);
        assert!(ec.leader_of_groups.is_empty());
    }

    #[test]
    fn event_context_of_removed_user_fails() {
        let (_t, dir, alice, _) = setup();
        dir.remove_experimenter("alice").unwrap();
        assert!(matches!(
            event_context(&dir, &session(alice.id, 3)),
            Err(SessionError::SecurityViolation(_))
        ));
    }

    #[test]
    fn roles() {
        let (_t, dir, alice, _) = setup();
        assert!(has_user_role(&alice));
        let guest = dir.experimenter(1).unwrap();
        assert!(is_guest(&guest));
        assert!(!has_user_role(&guest));
    }
}
