//! What a session means in terms of users and groups. [`rights`] is the one authority on
//! what a session may do (effective roles, sudo intersection, group sudo); ISession, IAdmin,
//! the ServiceFactory, the router and the HTTPS endpoint ask it rather than the directory.
//! Also here: the event context (spec §6) and the group a login starts in. The Glacier2
//! verifier's refusal text lives with the one login path in `crate::services::login`.

use crate::sessions::{SessionError, SessionInfo};
use crate::store::directory::{GUEST_GROUP_ID, SYSTEM_GROUP_ID, USER_GROUP_ID};

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
/// group, §5.3). For a fresh login; a live session is judged by [`rights`].
pub fn check_group_usable(user: &ExperimenterInfo, group: &GroupInfo) -> Result<(), SessionError> {
    Roles::of(user).check_usable(user.id, group)
}

/// Group memberships, the admin flag and light-admin privileges: what OMERO's security
/// system reads to decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roles {
    /// Member of `system` (a full or a light administrator).
    pub is_admin: bool,
    /// Membership order; index 0 is the default group.
    pub member_of: Vec<i64>,
    pub leader_of: Vec<i64>,
    /// The light-admin privileges held: all of them for a full administrator, a subset for
    /// a light one, none for anyone outside `system`.
    pub privileges: Vec<&'static str>,
}

impl Roles {
    /// A user's own roles, as the directory records them.
    pub fn of(user: &ExperimenterInfo) -> Self {
        Roles {
            is_admin: user.is_admin(),
            member_of: user.member_of.clone(),
            leader_of: user.leader_of.clone(),
            privileges: user.admin_privileges(),
        }
    }

    /// What is left of `self` that `sudoer` also holds. An administrator's sudo keeps the
    /// target's memberships whole; anyone else's keeps only the memberships and ownerships
    /// both have (and never `system`). Privileges are always those both hold, so a light
    /// administrator cannot shed a restriction by becoming a fuller administrator (OMERO's
    /// session privileges are the user's limited to the sudoer's).
    fn limited_to(mut self, sudoer: &Roles) -> Self {
        self.privileges.retain(|p| sudoer.privileges.contains(p));
        if sudoer.is_admin {
            return self;
        }
        self.member_of.retain(|g| sudoer.member_of.contains(g));
        self.leader_of.retain(|g| sudoer.leader_of.contains(g));
        self.is_admin = self.member_of.contains(&SYSTEM_GROUP_ID);
        self
    }

    pub fn is_member(&self, group_id: i64) -> bool {
        self.member_of.contains(&group_id)
    }

    pub fn leads(&self, group_id: i64) -> bool {
        self.leader_of.contains(&group_id)
    }

    /// OMERO's `@RolesAllowed` names: "system", "user" and "guest" are memberships of the
    /// built-in groups.
    pub fn has_role(&self, role: &str) -> bool {
        match role {
            "system" => self.is_admin,
            "user" => self.is_member(USER_GROUP_ID),
            "guest" => self.is_member(GUEST_GROUP_ID),
            _ => false,
        }
    }

    /// The light-admin privileges held, as the event context lists them.
    pub fn privileges(&self) -> Vec<String> {
        self.privileges.iter().map(|p| p.to_string()).collect()
    }

    pub fn has_privilege(&self, privilege: &str) -> bool {
        self.is_admin && self.privileges.contains(&privilege)
    }

    /// Whether a session with these roles may work in `group` (spec §1.3): members, admins,
    /// and anybody in a world-readable group.
    fn check_usable(&self, user_id: i64, group: &GroupInfo) -> Result<(), SessionError> {
        const WORLD_READ: i64 = 0x4;
        if self.is_member(group.id) || self.is_admin || group.perm1 & WORLD_READ != 0 {
            Ok(())
        } else {
            Err(SessionError::SecurityViolation(format!(
                "User {} is not a member of group {} and cannot login",
                user_id, group.id
            )))
        }
    }
}

/// The user who made a session by sudo, with that user's own roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sudoer {
    pub user: ExperimenterInfo,
    pub roles: Roles,
}

/// Who a live session is and what it may do: the one answer every check asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rights {
    /// The session's owner as the directory records it.
    pub user: ExperimenterInfo,
    /// The session's current group.
    pub group: GroupInfo,
    /// The effective roles: the owner's, limited to the sudoer's for a sudo session.
    pub roles: Roles,
    pub sudoer: Option<Sudoer>,
}

impl Rights {
    /// The sudoer to record on a session this one creates (§1.3): the original sudoer when
    /// this session is itself sudo'd, so a chain of sudo never sheds the limit.
    pub fn sudoer_for_new_session(&self) -> i64 {
        self.sudoer.as_ref().map_or(self.user.id, |s| s.user.id)
    }

    /// getMyOpenSessions sees every session of the user with ReadSession, else only those
    /// made by the same sudoer (or by nobody).
    pub fn reads_all_own_sessions(&self) -> bool {
        self.roles.has_privilege("ReadSession")
    }

    /// setSecurityContext to `group_id`: members and administrators.
    pub fn may_switch_to(&self, group_id: i64) -> bool {
        self.roles.is_admin || self.roles.is_member(group_id)
    }

    /// Changing another user's password, and other user administration.
    pub fn may_modify_users(&self) -> bool {
        self.roles.has_privilege("ModifyUser")
    }

    /// createSessionWithTimeouts (spec §1.3): an administrator with Sudo (full, or light with
    /// that privilege) may create a session for anyone in any group; the session never holds
    /// a privilege its sudoer lacks (see [`rights`]). Anybody else only for a non-admin member
    /// of a group the caller owns, in that group; such a session is marked group-sudo and
    /// never has more rights than its sudoer.
    pub fn authorize_sudo(
        &self,
        target: &ExperimenterInfo,
        group: &GroupInfo,
    ) -> Result<SudoGrant, SessionError> {
        let sudoer_id = self.sudoer_for_new_session();
        if self.roles.has_privilege("Sudo") {
            return Ok(SudoGrant {
                sudoer_id,
                group_sudo: false,
            });
        }
        let allowed =
            self.roles.leads(group.id) && target.is_member(group.id) && !target.is_admin();
        if allowed {
            Ok(SudoGrant {
                sudoer_id,
                group_sudo: true,
            })
        } else {
            Err(SessionError::SecurityViolation(format!(
                "Group sudo is not permitted for group {} (gid={})",
                group.name, group.id
            )))
        }
    }
}

/// What [`Rights::authorize_sudo`] allowed: the fields of the new session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SudoGrant {
    pub sudoer_id: i64,
    pub group_sudo: bool,
}

/// The effective rights of `session`, from the directory as it is now. Fails with
/// SecurityViolation when the owner, the group or the sudoer no longer exists, or when the
/// session may not use its group. Callers that must see command-line changes refresh the
/// directory first.
pub fn rights(dir: &Directory, session: &SessionInfo) -> Result<Rights, SessionError> {
    let user = dir.experimenter(session.owner_id).ok_or_else(|| {
        SessionError::SecurityViolation(format!("User {} no longer exists", session.owner_id))
    })?;
    let group = dir.group(session.group_id).ok_or_else(|| {
        SessionError::SecurityViolation(format!("Group {} no longer exists", session.group_id))
    })?;
    let sudoer = match session.sudoer_id {
        None => None,
        Some(id) => {
            let sudoer = dir.experimenter(id).ok_or_else(|| {
                SessionError::SecurityViolation(format!("Sudoer {id} no longer exists"))
            })?;
            Some(Sudoer {
                roles: Roles::of(&sudoer),
                user: sudoer,
            })
        }
    };
    let own = Roles::of(&user);
    let roles = match &sudoer {
        Some(s) => own.limited_to(&s.roles),
        None => own,
    };
    roles.check_usable(user.id, &group)?;
    Ok(Rights {
        user,
        group,
        roles,
        sudoer,
    })
}

/// IAdmin.getEventContext for `session`, read fresh from the directory.
pub fn event_context(
    dir: &Directory,
    session: &SessionInfo,
) -> Result<EventContextData, SessionError> {
    dir.refresh();
    let r = rights(dir, session)?;
    Ok(EventContextData {
        share_id: -1,
        session_id: session.id,
        session_uuid: session.uuid.clone(),
        user_id: r.user.id,
        user_name: r.user.ome_name,
        sudoer_id: session.sudoer_id,
        sudoer_name: r.sudoer.map(|s| s.user.ome_name),
        group_id: r.group.id,
        group_name: r.group.name,
        is_admin: r.roles.is_admin,
        admin_privileges: r.roles.privileges(),
        event_id: -1,
        event_type: session.event_type.to_string(),
        member_of_groups: r.roles.member_of,
        leader_of_groups: r.roles.leader_of,
        group_permissions_perm1: r.group.perm1,
    })
}

/// True for the built-in `guest` user (id 1), refused by most services
/// ("Access denied to guest user").
pub fn is_guest(user: &ExperimenterInfo) -> bool {
    user.id == crate::store::directory::GUEST_USER_ID
}

/// True when the user is in the `user` group (the role most ISession methods require).
pub fn has_user_role(user: &ExperimenterInfo) -> bool {
    Roles::of(user).has_role("user")
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
            event_type: "User",
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

    /// The directory of the rights tests: `lead` owns lab and is also in other; `chief`
    /// owns lab and other; `boss` is an admin in lab; `bob` is only in other.
    fn rights_setup() -> (tempfile::TempDir, Directory) {
        let (tmp, dir, _alice, _owner) = setup();
        let add = |name: &str, admin: bool, groups: &[&str], owner_of: &[&str]| {
            dir.add_experimenter(NewExperimenter {
                ome_name: name.into(),
                first_name: None,
                last_name: None,
                email: None,
                password: Password::new("pw"),
                admin,
                groups: groups.iter().map(|g| g.to_string()).collect(),
                owner_of: owner_of.iter().map(|g| g.to_string()).collect(),
            })
            .unwrap()
        };
        add("lead", false, &["lab"], &["other"]);
        add("chief", false, &[], &["lab", "other"]);
        add("boss", true, &["lab"], &[]);
        add("bob", false, &["other"], &[]);
        (tmp, dir)
    }

    fn user(dir: &Directory, name: &str) -> ExperimenterInfo {
        dir.experimenter_by_name(name).unwrap()
    }

    fn group(dir: &Directory, name: &str) -> GroupInfo {
        dir.group_by_name(name).unwrap()
    }

    /// Rights of a session of `name` in its default group, made by `sudoer` if given.
    fn rights_of(dir: &Directory, name: &str, sudoer: Option<&str>) -> Rights {
        let u = user(dir, name);
        let mut s = session(u.id, u.default_group_id().unwrap());
        s.sudoer_id = sudoer.map(|n| user(dir, n).id);
        rights(dir, &s).unwrap()
    }

    fn refused(r: Result<SudoGrant, SessionError>, group: &GroupInfo) {
        assert_eq!(
            r,
            Err(SessionError::SecurityViolation(format!(
                "Group sudo is not permitted for group {} (gid={})",
                group.name, group.id
            )))
        );
    }

    #[test]
    fn admin_may_sudo_anyone_anywhere() {
        let (_t, dir) = rights_setup();
        for admin in ["root", "boss"] {
            let r = rights_of(&dir, admin, None);
            assert!(r.roles.is_admin && r.may_modify_users() && r.reads_all_own_sessions());
            assert_eq!(r.roles.privileges().len(), 15);
            for (target, g) in [("alice", "other"), ("bob", "lab"), ("root", "system")] {
                let grant = r.authorize_sudo(&user(&dir, target), &group(&dir, g));
                assert_eq!(
                    grant,
                    Ok(SudoGrant {
                        sudoer_id: r.user.id,
                        group_sudo: false
                    })
                );
            }
        }
    }

    #[test]
    fn owner_may_sudo_only_non_admin_members_of_owned_groups() {
        let (_t, dir) = rights_setup();
        let owner = rights_of(&dir, "owner", None);
        assert!(!owner.roles.is_admin && !owner.may_modify_users());
        assert!(!owner.reads_all_own_sessions());
        let lab = group(&dir, "lab");
        assert_eq!(
            owner.authorize_sudo(&user(&dir, "alice"), &lab),
            Ok(SudoGrant {
                sudoer_id: owner.user.id,
                group_sudo: true
            })
        );
        // An admin, even one in the owned group; a non-member; a group not owned.
        refused(owner.authorize_sudo(&user(&dir, "boss"), &lab), &lab);
        refused(owner.authorize_sudo(&user(&dir, "root"), &lab), &lab);
        refused(owner.authorize_sudo(&user(&dir, "bob"), &lab), &lab);
        let other = group(&dir, "other");
        refused(owner.authorize_sudo(&user(&dir, "alice"), &other), &other);
        let system = group(&dir, "system");
        refused(owner.authorize_sudo(&user(&dir, "root"), &system), &system);
    }

    #[test]
    fn member_may_not_sudo() {
        let (_t, dir) = rights_setup();
        let alice = rights_of(&dir, "alice", None);
        assert!(alice.roles.has_role("user") && !alice.roles.has_role("system"));
        assert!(alice.may_switch_to(4) && !alice.may_switch_to(0));
        let lab = group(&dir, "lab");
        refused(alice.authorize_sudo(&user(&dir, "alice"), &lab), &lab);
        refused(alice.authorize_sudo(&user(&dir, "lead"), &lab), &lab);
    }

    #[test]
    fn group_sudo_session_is_limited_to_its_sudoer() {
        let (_t, dir) = rights_setup();
        // owner (lab only) acting as lead: lead's ownership of "other" falls away.
        let r = rights_of(&dir, "lead", Some("owner"));
        assert_eq!(r.roles.member_of, vec![3, 1]);
        assert!(r.roles.leader_of.is_empty());
        assert!(!r.may_switch_to(4));
        let other = group(&dir, "other");
        refused(r.authorize_sudo(&user(&dir, "bob"), &other), &other);
        // chief (lab and other) acting as lead keeps lead's ownership of other, and a sudo
        // from there records chief, not lead, as the sudoer.
        let r = rights_of(&dir, "lead", Some("chief"));
        assert_eq!(r.roles.leader_of, vec![4]);
        assert_eq!(r.sudoer_for_new_session(), user(&dir, "chief").id);
        let grant = r.authorize_sudo(&user(&dir, "bob"), &other).unwrap();
        assert_eq!(grant.sudoer_id, user(&dir, "chief").id);
        assert!(grant.group_sudo);
    }

    #[test]
    fn sudo_never_adds_rights_the_sudoer_lacks() {
        let (_t, dir) = rights_setup();
        // A session of an admin recorded as made by a non-admin (a sudoer who lost admin,
        // or a stored row) is not an admin session.
        let boss = user(&dir, "boss");
        let mut s = session(boss.id, 3);
        s.sudoer_id = Some(user(&dir, "owner").id);
        let r = rights(&dir, &s).unwrap();
        assert!(!r.roles.is_admin && !r.roles.has_privilege("Sudo"));
        assert!(r.roles.privileges().is_empty());
        let lab = group(&dir, "lab");
        refused(r.authorize_sudo(&user(&dir, "root"), &lab), &lab);
    }

    #[test]
    fn admin_sudo_keeps_the_targets_rights() {
        let (_t, dir) = rights_setup();
        let r = rights_of(&dir, "lead", Some("root"));
        assert_eq!(r.roles, Roles::of(&user(&dir, "lead")));
        assert_eq!(r.sudoer.as_ref().map(|s| s.user.id), Some(0));
        assert!(!r.roles.is_admin);
    }

    #[test]
    fn rights_fail_for_missing_people_and_unusable_groups() {
        let (_t, dir) = rights_setup();
        let lead = user(&dir, "lead");
        let mut s = session(lead.id, 3);
        s.sudoer_id = Some(user(&dir, "bob").id);
        dir.remove_experimenter("bob").unwrap();
        assert!(matches!(
            rights(&dir, &s),
            Err(SessionError::SecurityViolation(_))
        ));
        // A group-sudo session in a group the sudoer is not in cannot be used.
        let mut s = session(lead.id, 4);
        s.sudoer_id = Some(user(&dir, "owner").id);
        assert_eq!(
            rights(&dir, &s),
            Err(SessionError::SecurityViolation(format!(
                "User {} is not a member of group 4 and cannot login",
                lead.id
            )))
        );
    }

    /// `name`, an admin in lab, restricted to `privileges`.
    fn light_admin(dir: &Directory, name: &str, privileges: &[&str]) -> ExperimenterInfo {
        let id = dir
            .add_experimenter(NewExperimenter {
                ome_name: name.into(),
                first_name: None,
                last_name: None,
                email: None,
                password: Password::new("pw"),
                admin: true,
                groups: vec!["lab".into()],
                owner_of: Vec::new(),
            })
            .unwrap()
            .id;
        let privileges: Vec<String> = privileges.iter().map(|p| p.to_string()).collect();
        dir.set_admin_privileges(id, &privileges).unwrap()
    }

    #[test]
    fn light_admin_holds_only_its_privileges() {
        let (_t, dir) = rights_setup();
        let light = light_admin(&dir, "light", &["ModifyUser", "ModifyGroup"]);
        let ec = event_context(&dir, &session(light.id, 3)).unwrap();
        assert!(ec.is_admin);
        assert_eq!(ec.admin_privileges, vec!["ModifyGroup", "ModifyUser"]);
        let r = rights_of(&dir, "light", None);
        assert!(r.may_modify_users() && r.roles.has_privilege("ModifyGroup"));
        assert!(!r.roles.has_privilege("ModifyGroupMembership"));
        assert!(!r.reads_all_own_sessions());
        // Still a member of system: may work in any group.
        assert!(r.may_switch_to(4));
        // Without Sudo it is judged as anyone else: no group owned, no sudo.
        let lab = group(&dir, "lab");
        refused(r.authorize_sudo(&user(&dir, "alice"), &lab), &lab);
    }

    #[test]
    fn light_admin_with_sudo_may_sudo_but_keeps_its_limits() {
        let (_t, dir) = rights_setup();
        let light = light_admin(&dir, "light", &["Sudo", "ReadSession"]);
        let r = rights_of(&dir, "light", None);
        let system = group(&dir, "system");
        let grant = r.authorize_sudo(&user(&dir, "root"), &system).unwrap();
        assert_eq!(
            grant,
            SudoGrant {
                sudoer_id: light.id,
                group_sudo: false
            }
        );
        // Become root: still an admin, but only with the sudoer's privileges.
        let as_root = rights_of(&dir, "root", Some("light"));
        assert!(as_root.roles.is_admin);
        assert_eq!(as_root.roles.privileges(), vec!["ReadSession", "Sudo"]);
        assert!(!as_root.may_modify_users());
        // A full admin acting as the light admin gets the light admin's privileges.
        let as_light = rights_of(&dir, "light", Some("root"));
        assert_eq!(as_light.roles.privileges(), vec!["ReadSession", "Sudo"]);
    }

    #[test]
    fn privileges_without_system_membership_count_for_nothing() {
        let (_t, dir) = rights_setup();
        let bob = user(&dir, "bob");
        dir.set_admin_privileges(bob.id, &["Sudo".to_string()])
            .unwrap();
        let r = rights_of(&dir, "bob", None);
        assert!(!r.roles.has_privilege("Sudo") && r.roles.privileges().is_empty());
    }
}
