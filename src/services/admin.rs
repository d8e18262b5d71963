//! The IAdmin servant: the event context, experimenter and group lookups (with their
//! memberships), password changes, and the user and group administration omero-py's `user`
//! and `group` commands and omero.testlib call. Changes go to the directory at once, so the
//! `user`/`group` commands of this server and new logins see them. Light administrators
//! (OMERO 5.4's restricted members of `system`) are managed here too. The rest (photos,
//! deletions, LDAP) is refused with a clear message.

use std::sync::Arc;

use crate::auth::context::{event_context, ADMIN_PRIVILEGES};
use crate::auth::{DirectoryError, ExperimenterInfo, GroupInfo, NewExperimenter, Password};
use crate::facade::{Current, DispatchError, ValueRef};
use crate::generated::omero::api::IAdmin;
use crate::generated::omero::model::{Experimenter, ExperimenterGroup};
use crate::sessions::SessionError;

use super::context::{Factory, Services};
use super::errors::{not_provided, to_dispatch, OrOmero, Outcome};
use super::guard::{caller, require_password, require_role, Caller};
use super::model;

type Obj = Option<ValueRef>;
type Objs = Vec<Option<ValueRef>>;

pub struct AdminService {
    services: Services,
    factory: Arc<Factory>,
}

fn api_usage(message: String) -> DispatchError {
    to_dispatch(SessionError::ApiUsage(message))
}

impl AdminService {
    pub fn new(services: Services, factory: Arc<Factory>) -> Self {
        AdminService { services, factory }
    }

    fn caller(&self) -> Outcome<Caller> {
        caller(&self.services, &self.factory)
    }

    /// An operation this server does not provide; the caller's session is still checked
    /// and refreshed first, as for every call.
    fn refuse(&self, operation: &str) -> DispatchError {
        match self.caller() {
            Ok(_) => not_provided(operation),
            Err(e) => e,
        }
    }

    /// Adds or removes owners of a group: for holders of ModifyGroupMembership and the
    /// group's owners.
    fn owners(&self, group: &Obj, owners: &[Obj], owner: bool, operation: &str) -> Outcome<()> {
        let who = self.caller()?;
        let gid = model::id_of(group)
            .ok_or_else(|| api_usage(format!("Argument 1 to {operation} may not be null.")))?;
        require_membership_rights(&who, &[gid])?;
        for uid in ids(owners) {
            if owner {
                check_system_membership(&self.services.directory, &who, uid, &[gid])?;
            }
            let changed = self.services.directory.set_group_owner(uid, gid, owner);
            changed.map_err(directory_error)?;
        }
        Ok(())
    }

    async fn create_experimenter_as(
        &self,
        user: &Obj,
        password: Password,
        default_group: &Obj,
        groups: &Objs,
    ) -> Outcome<i64> {
        let e = user.as_ref().and_then(|u| u.get::<Experimenter>());
        let e = e.ok_or_else(|| api_usage("Argument 1 may not be null.".into()))?;
        let ome_name = model::string_of(&e.ome_name)
            .ok_or_else(|| api_usage("An experimenter needs an omeName.".into()))?;
        let dir = &self.services.directory;
        // The default group first; the directory keeps the order it is given.
        let mut names = Vec::new();
        for gid in model::id_of(default_group).into_iter().chain(ids(groups)) {
            let g = dir
                .group(gid)
                .ok_or_else(|| api_usage(format!("No such group: {gid}")))?;
            if !names.contains(&g.name) {
                names.push(g.name);
            }
        }
        let new = NewExperimenter {
            ome_name,
            first_name: model::string_of(&e.first_name),
            last_name: model::string_of(&e.last_name),
            email: model::string_of(&e.email).filter(|m| !m.is_empty()),
            password,
            admin: false,
            groups: names,
            owner_of: Vec::new(),
        };
        let directory = dir.clone();
        // Hashing the password is slow: off the dispatch threads.
        let created = tokio::task::spawn_blocking(move || directory.add_experimenter(new))
            .await
            .map_err(|e| {
                to_dispatch(SessionError::Internal(format!("user creation failed: {e}")))
            })?;
        Ok(created.map_err(directory_error)?.id)
    }

    fn with_groups(&self, user: &ExperimenterInfo) -> ValueRef {
        model::experimenter_with_groups(user, &self.services.directory)
    }

    fn with_members(&self, group: &GroupInfo) -> ValueRef {
        model::group_with_members(group, &self.services.directory)
    }

    fn experimenter_id(&self, exp: &Obj, operation: &str) -> Outcome<i64> {
        model::id_of(exp)
            .ok_or_else(|| api_usage(format!("Argument 1 to {operation} may not be null.")))
    }

    async fn set_password(&self, name: String, password: &Obj, operation: &str) -> Outcome<()> {
        let Some(plain) = model::string_of(password) else {
            return Err(api_usage(format!(
                "Argument to {operation} may not be null."
            )));
        };
        let result = self
            .services
            .auth
            .set_password(&name, Password::new(plain))
            .await;
        result.map_err(|e| match e {
            DirectoryError::EmptyPassword | DirectoryError::UnknownUser(_) => {
                api_usage(e.to_string())
            }
            other => to_dispatch(SessionError::Internal(other.to_string())),
        })
    }
}

/// `@RolesAllowed` with a light-admin privilege, asked of the one rights authority.
fn require_privilege(who: &Caller, privilege: &str) -> Outcome<()> {
    if who.rights.roles.has_privilege(privilege) {
        return Ok(());
    }
    Err(to_dispatch(SessionError::SecurityViolation(format!(
        "Current user lacks privilege {privilege}"
    ))))
}

/// Membership changes: holders of ModifyGroupMembership, or owners of every group named.
fn require_membership_rights(who: &Caller, group_ids: &[i64]) -> Outcome<()> {
    let roles = &who.rights.roles;
    if roles.has_privilege("ModifyGroupMembership") || group_ids.iter().all(|g| roles.leads(*g)) {
        return Ok(());
    }
    Err(to_dispatch(SessionError::SecurityViolation(format!(
        "User {} may not change the members of groups {group_ids:?}",
        who.info.owner_id
    ))))
}

/// The privilege names a client sent; a missing or unknown one is refused as OMERO's enum
/// lookup would refuse it.
fn privilege_names(objs: &[Obj]) -> Outcome<Vec<String>> {
    objs.iter()
        .map(|o| {
            let name = model::privilege_name(o)
                .ok_or_else(|| api_usage("An AdminPrivilege needs a value.".into()))?;
            if ADMIN_PRIVILEGES.contains(&name.as_str()) {
                Ok(name)
            } else {
                Err(api_usage(format!("No such AdminPrivilege: {name}")))
            }
        })
        .collect()
}

fn privilege_objects<S: AsRef<str>>(names: &[S]) -> Objs {
    names
        .iter()
        .map(|n| Some(model::admin_privilege(n.as_ref())))
        .collect()
}

/// setAdminPrivileges (OMERO 5.4): for members of `system` with ModifyUser. Nobody lifts a
/// restriction they are under themselves (OMERO's database refuses that), so a light
/// administrator never makes another one mightier than itself; and root stays a full
/// administrator.
fn check_may_set_privileges(
    who: &Caller,
    target: &ExperimenterInfo,
    wanted: &[String],
) -> Outcome<()> {
    require_role(who, &["system"])?;
    require_privilege(who, "ModifyUser")?;
    let refuse = |message: String| Err(to_dispatch(SessionError::SecurityViolation(message)));
    if target.id == crate::store::directory::ROOT_USER_ID {
        return refuse("root's privileges cannot be restricted".into());
    }
    let lifted = wanted
        .iter()
        .filter(|p| target.admin_restrictions.contains(p));
    for privilege in lifted {
        if !who.rights.roles.has_privilege(privilege) {
            return refuse(format!(
                "Current user lacks privilege {privilege} and so may not grant it"
            ));
        }
    }
    Ok(())
}

/// Putting someone into `system` gives them every privilege they are not restricted from:
/// only a caller holding all of those may, so no light administrator makes a mightier one.
fn check_system_membership(
    directory: &crate::auth::Directory,
    who: &Caller,
    user_id: i64,
    group_ids: &[i64],
) -> Outcome<()> {
    if !group_ids.contains(&crate::store::directory::SYSTEM_GROUP_ID) {
        return Ok(());
    }
    let Some(user) = directory.experimenter(user_id) else {
        return Ok(()); // the directory reports the unknown user
    };
    let would_hold = ADMIN_PRIVILEGES
        .into_iter()
        .filter(|p| !user.admin_restrictions.iter().any(|r| r == p));
    for privilege in would_hold {
        if !who.rights.roles.has_privilege(privilege) {
            return Err(to_dispatch(SessionError::SecurityViolation(format!(
                "Current user lacks privilege {privilege} and so may not make {} an administrator holding it",
                user.ome_name
            ))));
        }
    }
    Ok(())
}

fn ids(objs: &[Obj]) -> Vec<i64> {
    objs.iter().filter_map(model::id_of).collect()
}

/// The OMERO exception of a refused directory change.
fn directory_error(e: DirectoryError) -> DispatchError {
    match e {
        DirectoryError::Internal(m) => to_dispatch(SessionError::Internal(m)),
        DirectoryError::Store(s) => to_dispatch(SessionError::Internal(s.to_string())),
        other => api_usage(other.to_string()),
    }
}

impl IAdmin for AdminService {
    async fn can_update(&self, _obj: Obj, _c: &Current) -> Outcome<bool> {
        Err(self.refuse("canUpdate"))
    }

    async fn get_experimenter(&self, id: i64, _c: &Current) -> Outcome<Obj> {
        self.caller()?;
        let user = self.services.directory.experimenter(id);
        let user = user.ok_or_else(|| api_usage(format!("No such experimenter: {id}")))?;
        Ok(Some(self.with_groups(&user)))
    }

    async fn lookup_experimenter(&self, name: String, _c: &Current) -> Outcome<Obj> {
        self.caller()?;
        let user = self.services.directory.experimenter_by_name(&name);
        let user = user.ok_or_else(|| api_usage(format!("No such experimenter: {name}")))?;
        Ok(Some(self.with_groups(&user)))
    }

    async fn lookup_experimenters(&self, _c: &Current) -> Outcome<Objs> {
        self.caller()?;
        let users = self.services.directory.experimenters();
        Ok(users.iter().map(|u| Some(self.with_groups(u))).collect())
    }

    async fn get_group(&self, id: i64, _c: &Current) -> Outcome<Obj> {
        self.caller()?;
        let group = self.services.directory.group(id);
        let group = group.ok_or_else(|| api_usage(format!("No such group: {id}")))?;
        Ok(Some(self.with_members(&group)))
    }

    async fn lookup_group(&self, name: String, _c: &Current) -> Outcome<Obj> {
        self.caller()?;
        let group = self.services.directory.group_by_name(&name);
        let group = group.ok_or_else(|| api_usage(format!("No such group: {name}")))?;
        Ok(Some(self.with_members(&group)))
    }

    async fn lookup_groups(&self, _c: &Current) -> Outcome<Objs> {
        self.caller()?;
        let groups = self.services.directory.groups();
        Ok(groups.iter().map(|g| Some(self.with_members(g))).collect())
    }

    async fn contained_experimenters(&self, group_id: i64, _c: &Current) -> Outcome<Objs> {
        self.caller()?;
        let users = self.services.directory.experimenters();
        Ok(users
            .iter()
            .filter(|u| u.is_member(group_id))
            .map(|u| Some(self.with_groups(u)))
            .collect())
    }

    async fn contained_groups(&self, experimenter_id: i64, _c: &Current) -> Outcome<Objs> {
        self.caller()?;
        let groups = self.services.directory.groups_of(experimenter_id);
        Ok(groups.iter().map(|g| Some(model::group(g))).collect())
    }

    async fn get_default_group(&self, experimenter_id: i64, _c: &Current) -> Outcome<Obj> {
        self.caller()?;
        let group = self.services.directory.default_group(experimenter_id);
        let group = group.ok_or_else(|| {
            api_usage(format!(
                "No default group for experimenter {experimenter_id}"
            ))
        })?;
        Ok(Some(model::group(&group)))
    }

    async fn lookup_ldap_auth_experimenter(&self, _id: i64, _c: &Current) -> Outcome<String> {
        Err(self.refuse("lookupLdapAuthExperimenter"))
    }

    async fn lookup_ldap_auth_experimenters(&self, _c: &Current) -> Outcome<Obj> {
        Err(self.refuse("lookupLdapAuthExperimenters"))
    }

    async fn get_member_of_group_ids(&self, exp: Obj, _c: &Current) -> Outcome<Vec<i64>> {
        self.caller()?;
        let id = self.experimenter_id(&exp, "getMemberOfGroupIds")?;
        Ok(self.services.directory.member_of_ids(id))
    }

    async fn get_leader_of_group_ids(&self, exp: Obj, _c: &Current) -> Outcome<Vec<i64>> {
        self.caller()?;
        let id = self.experimenter_id(&exp, "getLeaderOfGroupIds")?;
        Ok(self.services.directory.led_group_ids(id))
    }

    async fn get_current_admin_privileges(&self, _c: &Current) -> Outcome<Objs> {
        let who = self.caller()?;
        Ok(privilege_objects(&who.rights.roles.privileges))
    }

    async fn get_admin_privileges(&self, user: Obj, _c: &Current) -> Outcome<Objs> {
        self.caller()?;
        let id = self.experimenter_id(&user, "getAdminPrivileges")?;
        let user = self.services.directory.experimenter(id);
        let user = user.ok_or_else(|| api_usage(format!("No such experimenter: {id}")))?;
        Ok(privilege_objects(&user.admin_privileges()))
    }

    async fn get_admins_with_privileges(&self, privileges: Objs, _c: &Current) -> Outcome<Objs> {
        self.caller()?;
        let wanted = privilege_names(&privileges)?;
        let users = self.services.directory.experimenters();
        Ok(users
            .iter()
            .filter(|u| {
                let held = u.admin_privileges();
                u.is_admin() && wanted.iter().all(|p| held.contains(&p.as_str()))
            })
            .map(|u| Some(self.with_groups(u)))
            .collect())
    }

    async fn update_self(&self, _experimenter: Obj, _c: &Current) -> Outcome<()> {
        Err(self.refuse("updateSelf"))
    }

    async fn upload_my_user_photo(
        &self,
        _filename: String,
        _format: String,
        _data: Vec<u8>,
        _c: &Current,
    ) -> Outcome<i64> {
        Err(self.refuse("uploadMyUserPhoto"))
    }

    async fn get_my_user_photos(&self, _c: &Current) -> Outcome<Objs> {
        Err(self.refuse("getMyUserPhotos"))
    }

    async fn update_experimenter(&self, experimenter: Obj, _c: &Current) -> Outcome<()> {
        let who = self.caller()?;
        require_privilege(&who, "ModifyUser")?;
        let uid = self.experimenter_id(&experimenter, "updateExperimenter")?;
        let e = experimenter.as_ref().and_then(|e| e.get::<Experimenter>());
        let e = e.ok_or_else(|| api_usage("updateExperimenter takes an Experimenter".into()))?;
        let changed = self.services.directory.update_experimenter(
            uid,
            model::string_of(&e.first_name),
            model::string_of(&e.last_name),
            e.email.as_ref().map(|_| model::string_of(&e.email)),
        );
        changed.map(|_| ()).map_err(directory_error)
    }

    async fn update_experimenter_with_password(
        &self,
        _experimenter: Obj,
        _password: Obj,
        _c: &Current,
    ) -> Outcome<()> {
        Err(self.refuse("updateExperimenterWithPassword"))
    }

    async fn update_group(&self, group: Obj, _c: &Current) -> Outcome<()> {
        let who = self.caller()?;
        require_privilege(&who, "ModifyGroup")?;
        let gid = model::id_of(&group)
            .ok_or_else(|| api_usage("Argument 1 to updateGroup may not be null.".into()))?;
        let g = group.as_ref().and_then(|g| g.get::<ExperimenterGroup>());
        let g = g.ok_or_else(|| api_usage("updateGroup takes an ExperimenterGroup".into()))?;
        let name = model::string_of(&g.name);
        let changed = self
            .services
            .directory
            .update_group(gid, name.as_deref(), None);
        changed.map(|_| ()).map_err(directory_error)
    }

    async fn create_user(&self, _experimenter: Obj, _group: String, _c: &Current) -> Outcome<i64> {
        Err(self.refuse("createUser"))
    }

    async fn create_system_user(&self, _experimenter: Obj, _c: &Current) -> Outcome<i64> {
        Err(self.refuse("createSystemUser"))
    }

    async fn create_restricted_system_user(
        &self,
        _experimenter: Obj,
        _privileges: Objs,
        _c: &Current,
    ) -> Outcome<i64> {
        Err(self.refuse("createRestrictedSystemUser"))
    }

    async fn create_restricted_system_user_with_password(
        &self,
        experimenter: Obj,
        privileges: Objs,
        password: Obj,
        _c: &Current,
    ) -> Outcome<i64> {
        let who = self.caller()?;
        require_role(&who, &["system"])?;
        require_privilege(&who, "ModifyUser")?;
        let wanted = privilege_names(&privileges)?;
        for privilege in &wanted {
            require_privilege(&who, privilege)?;
        }
        let plain = model::string_of(&password).unwrap_or_default();
        let id = self
            .create_experimenter_as(&experimenter, Password::new(plain), &None, &Vec::new())
            .await?;
        // Restricted before joining system, so it is never a full administrator meanwhile.
        let dir = &self.services.directory;
        dir.set_admin_privileges(id, &wanted)
            .map_err(directory_error)?;
        dir.add_memberships(id, &[crate::store::directory::SYSTEM_GROUP_ID])
            .map_err(directory_error)?;
        tracing::info!(user = id, by = who.info.owner_id, privileges = ?wanted, "light administrator created");
        Ok(id)
    }

    async fn create_experimenter(
        &self,
        _user: Obj,
        _default_group: Obj,
        _groups: Objs,
        _c: &Current,
    ) -> Outcome<i64> {
        Err(self.refuse("createExperimenter"))
    }

    async fn create_experimenter_with_password(
        &self,
        user: Obj,
        password: Obj,
        default_group: Obj,
        groups: Objs,
        _c: &Current,
    ) -> Outcome<i64> {
        let who = self.caller()?;
        require_privilege(&who, "ModifyUser")?;
        let all_groups: Vec<i64> = model::id_of(&default_group)
            .into_iter()
            .chain(ids(&groups))
            .collect();
        if all_groups.contains(&crate::store::directory::SYSTEM_GROUP_ID) {
            // A new member of system is a full administrator.
            for privilege in ADMIN_PRIVILEGES {
                require_privilege(&who, privilege)?;
            }
        }
        let plain = model::string_of(&password).unwrap_or_default();
        self.create_experimenter_as(&user, Password::new(plain), &default_group, &groups)
            .await
    }

    async fn create_group(&self, group: Obj, _c: &Current) -> Outcome<i64> {
        let who = self.caller()?;
        require_privilege(&who, "ModifyGroup")?;
        let g = group
            .as_ref()
            .and_then(|g| g.get::<ExperimenterGroup>())
            .ok_or_else(|| api_usage("Argument 1 to createGroup may not be null.".into()))?;
        let name =
            model::string_of(&g.name).ok_or_else(|| api_usage("A group needs a name.".into()))?;
        let perms = model::perm1_of(&g.base.details).map_or_else(
            || "rw----".to_string(),
            crate::auth::permissions::from_perm1,
        );
        let created = self.services.directory.add_group(&name, &perms);
        Ok(created.map_err(directory_error)?.id)
    }

    async fn add_groups(&self, user: Obj, groups: Objs, _c: &Current) -> Outcome<()> {
        let who = self.caller()?;
        let uid = self.experimenter_id(&user, "addGroups")?;
        let gids = ids(&groups);
        require_membership_rights(&who, &gids)?;
        check_system_membership(&self.services.directory, &who, uid, &gids)?;
        let changed = self.services.directory.add_memberships(uid, &gids);
        changed.map(|_| ()).map_err(directory_error)
    }

    async fn remove_groups(&self, user: Obj, groups: Objs, _c: &Current) -> Outcome<()> {
        let who = self.caller()?;
        let uid = self.experimenter_id(&user, "removeGroups")?;
        let gids = ids(&groups);
        require_membership_rights(&who, &gids)?;
        let changed = self.services.directory.remove_memberships(uid, &gids);
        changed.map(|_| ()).map_err(directory_error)
    }

    async fn set_default_group(&self, user: Obj, group: Obj, _c: &Current) -> Outcome<()> {
        let who = self.caller()?;
        let uid = self.experimenter_id(&user, "setDefaultGroup")?;
        let gid = model::id_of(&group)
            .ok_or_else(|| api_usage("Argument 2 to setDefaultGroup may not be null.".into()))?;
        require_membership_rights(&who, &[gid])?;
        let changed = self.services.directory.set_default_group(uid, gid);
        changed.map(|_| ()).map_err(directory_error)
    }

    async fn set_group_owner(&self, group: Obj, owner: Obj, _c: &Current) -> Outcome<()> {
        self.owners(&group, &[owner], true, "setGroupOwner")
    }

    async fn unset_group_owner(&self, group: Obj, owner: Obj, _c: &Current) -> Outcome<()> {
        self.owners(&group, &[owner], false, "unsetGroupOwner")
    }

    async fn add_group_owners(&self, group: Obj, owners: Objs, _c: &Current) -> Outcome<()> {
        self.owners(&group, &owners, true, "addGroupOwners")
    }

    async fn remove_group_owners(&self, group: Obj, owners: Objs, _c: &Current) -> Outcome<()> {
        self.owners(&group, &owners, false, "removeGroupOwners")
    }

    async fn delete_experimenter(&self, _user: Obj, _c: &Current) -> Outcome<()> {
        Err(self.refuse("deleteExperimenter"))
    }

    async fn delete_group(&self, _group: Obj, _c: &Current) -> Outcome<()> {
        Err(self.refuse("deleteGroup"))
    }

    async fn change_owner(&self, _obj: Obj, _ome_name: String, _c: &Current) -> Outcome<()> {
        Err(self.refuse("changeOwner"))
    }

    async fn change_group(&self, _obj: Obj, _ome_name: String, _c: &Current) -> Outcome<()> {
        Err(self.refuse("changeGroup"))
    }

    async fn change_permissions(&self, _obj: Obj, _perms: Obj, _c: &Current) -> Outcome<()> {
        Err(self.refuse("changePermissions"))
    }

    async fn move_to_common_space(&self, _objects: Objs, _c: &Current) -> Outcome<()> {
        Err(self.refuse("moveToCommonSpace"))
    }

    async fn set_admin_privileges(&self, user: Obj, privileges: Objs, _c: &Current) -> Outcome<()> {
        let who = self.caller()?;
        let uid = self.experimenter_id(&user, "setAdminPrivileges")?;
        let target = self.services.directory.experimenter(uid);
        let target = target.ok_or_else(|| api_usage(format!("No such experimenter: {uid}")))?;
        let wanted = privilege_names(&privileges)?;
        check_may_set_privileges(&who, &target, &wanted)?;
        let changed = self.services.directory.set_admin_privileges(uid, &wanted);
        changed.map_err(directory_error)?;
        tracing::info!(user = uid, by = who.info.owner_id, privileges = ?wanted, "admin privileges set");
        Ok(())
    }

    async fn change_password(&self, new_password: Obj, _c: &Current) -> Outcome<()> {
        let caller = self.caller()?;
        require_password(&self.factory)?;
        self.set_password(caller.rights.user.ome_name, &new_password, "changePassword")
            .await
    }

    async fn change_password_with_old_password(
        &self,
        _old_password: Obj,
        _new_password: Obj,
        _c: &Current,
    ) -> Outcome<()> {
        Err(self.refuse("changePasswordWithOldPassword (use changePassword)"))
    }

    async fn change_user_password(
        &self,
        ome_name: String,
        new_password: Obj,
        _c: &Current,
    ) -> Outcome<()> {
        let caller = self.caller()?;
        if !caller.rights.may_modify_users() {
            return Err(to_dispatch(SessionError::SecurityViolation(format!(
                "Only administrators may change another user's password (session {})",
                caller.info.id
            ))));
        }
        require_password(&self.factory)?;
        self.set_password(ome_name, &new_password, "changeUserPassword")
            .await
    }

    async fn synchronize_login_cache(&self, _c: &Current) -> Outcome<()> {
        Err(self.refuse("synchronizeLoginCache"))
    }

    async fn change_expired_credentials(
        &self,
        _name: String,
        _old_cred: String,
        _new_cred: String,
        _c: &Current,
    ) -> Outcome<()> {
        Err(self.refuse("changeExpiredCredentials"))
    }

    async fn report_forgotten_password(
        &self,
        _name: String,
        _email: String,
        _c: &Current,
    ) -> Outcome<()> {
        Err(self.refuse("reportForgottenPassword"))
    }

    async fn get_security_roles(&self, _c: &Current) -> Outcome<Obj> {
        self.caller()?;
        Ok(Some(model::roles()))
    }

    async fn get_event_context(&self, _c: &Current) -> Outcome<Obj> {
        let caller = self.caller()?;
        let ec = event_context(&self.services.directory, &caller.info).or_omero()?;
        Ok(Some(model::event_context(ec)))
    }
}
