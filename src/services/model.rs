//! Builds the `omero::model` and `omero::sys` values clients receive (spec §6, §7), and reads
//! the few they send.

use crate::auth::context::EventContextData;
use crate::auth::{Directory, ExperimenterInfo, GroupInfo};
use crate::facade::ValueRef;
use crate::generated::omero::model::{
    AdminPrivilege, Details, Experimenter, ExperimenterGroup, GroupExperimenterMap, IObject,
    Permissions, Session,
};
use crate::generated::omero::sys::{EventContext, Roles};
use crate::generated::omero::{RBool, RInt, RLong, RString, RTime, RType};
use crate::sessions::manager::INITIAL_MESSAGE;
use crate::sessions::SessionInfo;
use crate::store::directory::{
    GUEST_GROUP_ID, GUEST_USER_ID, ROOT_USER_ID, SYSTEM_GROUP_ID, USER_GROUP_ID,
};

/// `perm1` of a private (`rw----`) object: the permissions of a Session row.
pub const PRIVATE_PERM1: i64 = -120;

pub fn rstring(v: &str) -> Option<ValueRef> {
    Some(ValueRef::new(RString {
        base: RType::default(),
        val: v.to_string(),
    }))
}

pub fn rlong(v: i64) -> Option<ValueRef> {
    Some(ValueRef::new(RLong {
        base: RType::default(),
        val: v,
    }))
}

pub fn rint(v: i32) -> Option<ValueRef> {
    Some(ValueRef::new(RInt {
        base: RType::default(),
        val: v,
    }))
}

pub fn rtime(v: i64) -> Option<ValueRef> {
    Some(ValueRef::new(RTime {
        base: RType::default(),
        val: v,
    }))
}

pub fn rbool(v: bool) -> Option<ValueRef> {
    Some(ValueRef::new(RBool {
        base: RType::default(),
        val: v,
    }))
}

/// The string inside an `omero::RString`, if that is what `v` is.
pub fn string_of(v: &Option<ValueRef>) -> Option<String> {
    v.as_ref()?.get::<RString>().map(|s| s.val.clone())
}

/// The id of an `omero::model::IObject` (any subclass), if set.
pub fn id_of(v: &Option<ValueRef>) -> Option<i64> {
    let object = v.as_ref()?.get::<IObject>()?;
    object.id.as_ref()?.get::<RLong>().map(|l| l.val)
}

/// `perm1` of the permissions in an object's details, if any.
pub fn perm1_of(details: &Option<ValueRef>) -> Option<i64> {
    let details = details.as_ref()?.get::<Details>()?;
    details
        .permissions
        .as_ref()?
        .get::<Permissions>()
        .map(|p| p.perm1)
}

pub fn permissions(perm1: i64) -> Option<ValueRef> {
    Some(ValueRef::new(Permissions {
        perm1,
        ..Default::default()
    }))
}

fn iobject(id: i64, details: Option<ValueRef>, loaded: bool) -> IObject {
    IObject {
        id: rlong(id),
        details,
        loaded,
    }
}

fn details(owner: Option<ValueRef>, group: Option<ValueRef>, perm1: i64) -> Option<ValueRef> {
    Some(ValueRef::new(Details {
        owner,
        group,
        permissions: permissions(perm1),
        ..Default::default()
    }))
}

/// A loaded Experimenter (names and email, no collections).
pub fn experimenter(user: &ExperimenterInfo) -> ValueRef {
    ValueRef::new(Experimenter {
        base: iobject(user.id, None, true),
        ome_name: rstring(&user.ome_name),
        first_name: rstring(&user.first_name),
        last_name: rstring(&user.last_name),
        ldap: rbool(false),
        email: user.email.as_deref().and_then(rstring),
        ..Default::default()
    })
}

/// A loaded ExperimenterGroup whose details carry its permissions.
pub fn group(g: &GroupInfo) -> ValueRef {
    ValueRef::new(ExperimenterGroup {
        base: iobject(g.id, details(None, None, g.perm1), true),
        name: rstring(&g.name),
        ldap: rbool(false),
        ..Default::default()
    })
}

/// An Experimenter with its memberships loaded (`groupExperimenterMap`: each map's parent a
/// loaded group, its child this user unloaded, `owner` whether the user leads the group), as
/// IAdmin's lookups return it. The maps point back by id only, so the graph has no cycle.
pub fn experimenter_with_groups(user: &ExperimenterInfo, directory: &Directory) -> ValueRef {
    let maps = user
        .member_of
        .iter()
        .filter_map(|gid| directory.group(*gid))
        .map(|g| {
            Some(membership(
                Some(group(&g)),
                Some(experimenter_ref(user.id)),
                user.leads(g.id),
            ))
        })
        .collect();
    ValueRef::new(Experimenter {
        base: iobject(user.id, None, true),
        ome_name: rstring(&user.ome_name),
        first_name: rstring(&user.first_name),
        last_name: rstring(&user.last_name),
        ldap: rbool(false),
        email: user.email.as_deref().and_then(rstring),
        group_experimenter_map_seq: maps,
        group_experimenter_map_loaded: true,
        ..Default::default()
    })
}

/// An ExperimenterGroup with its members loaded: each map's child a loaded experimenter,
/// its parent this group unloaded.
pub fn group_with_members(g: &GroupInfo, directory: &Directory) -> ValueRef {
    let maps = directory
        .experimenters()
        .iter()
        .filter(|u| u.is_member(g.id))
        .map(|u| {
            Some(membership(
                Some(group_ref(g.id)),
                Some(experimenter(u)),
                u.leads(g.id),
            ))
        })
        .collect();
    ValueRef::new(ExperimenterGroup {
        base: iobject(g.id, details(None, None, g.perm1), true),
        name: rstring(&g.name),
        ldap: rbool(false),
        group_experimenter_map_seq: maps,
        group_experimenter_map_loaded: true,
        ..Default::default()
    })
}

fn membership(parent: Option<ValueRef>, child: Option<ValueRef>, owner: bool) -> ValueRef {
    ValueRef::new(GroupExperimenterMap {
        base: IObject {
            id: None,
            details: None,
            loaded: true,
        },
        parent,
        child,
        owner: rbool(owner),
        ..Default::default()
    })
}

/// An unloaded Experimenter: only its id.
pub fn experimenter_ref(id: i64) -> ValueRef {
    ValueRef::new(Experimenter {
        base: iobject(id, None, false),
        ..Default::default()
    })
}

/// An unloaded ExperimenterGroup: only its id (what setSecurityContext returns).
pub fn group_ref(id: i64) -> ValueRef {
    ValueRef::new(ExperimenterGroup {
        base: iobject(id, None, false),
        ..Default::default()
    })
}

/// The Session object of spec §7: details.owner and details.group loaded, permissions
/// `rw----`, closed null while alive.
pub fn session(info: &SessionInfo, directory: &Directory) -> ValueRef {
    let owner = directory
        .experimenter(info.owner_id)
        .map(|u| experimenter(&u));
    let grp = directory.group(info.group_id).map(|g| group(&g));
    let sudoer = info
        .sudoer_id
        .and_then(|id| directory.experimenter(id))
        .map(|u| experimenter(&u));
    ValueRef::new(Session {
        base: iobject(info.id, details(owner.clone(), grp, PRIVATE_PERM1), true),
        uuid: rstring(&info.uuid),
        owner,
        sudoer,
        time_to_idle: rlong(info.time_to_idle),
        time_to_live: rlong(info.time_to_live),
        started: rtime(info.started),
        message: rstring(INITIAL_MESSAGE),
        default_event_type: rstring(info.event_type),
        user_agent: info.agent.as_deref().and_then(rstring),
        user_ip: info.ip.as_deref().and_then(rstring),
        ..Default::default()
    })
}

/// The `omero::sys::EventContext` of spec §6.
pub fn event_context(ec: EventContextData) -> ValueRef {
    ValueRef::new(EventContext {
        share_id: ec.share_id,
        session_id: ec.session_id,
        session_uuid: ec.session_uuid,
        user_id: ec.user_id,
        user_name: ec.user_name,
        sudoer_id: ec.sudoer_id.and_then(rlong),
        sudoer_name: ec.sudoer_name.as_deref().and_then(rstring),
        group_id: ec.group_id,
        group_name: ec.group_name,
        is_admin: ec.is_admin,
        admin_privileges: ec.admin_privileges,
        event_id: ec.event_id,
        event_type: ec.event_type,
        member_of_groups: ec.member_of_groups,
        leader_of_groups: ec.leader_of_groups,
        group_permissions: permissions(ec.group_permissions_perm1),
    })
}

/// A loaded `AdminPrivilege` enumeration value. Its id is its place in OMERO's list of
/// privileges (1-based), stable because the list is.
pub fn admin_privilege(name: &str) -> ValueRef {
    let place = crate::auth::context::ADMIN_PRIVILEGES
        .iter()
        .position(|p| *p == name)
        .map_or(-1, |i| i as i64 + 1);
    ValueRef::new(AdminPrivilege {
        base: iobject(place, None, true),
        value: rstring(name),
    })
}

/// The name an `AdminPrivilege` a client sent carries, if any.
pub fn privilege_name(v: &Option<ValueRef>) -> Option<String> {
    string_of(&v.as_ref()?.get::<AdminPrivilege>()?.value)
}

/// IAdmin.getSecurityRoles: the built-in accounts.
pub fn roles() -> ValueRef {
    ValueRef::new(Roles {
        root_id: ROOT_USER_ID,
        root_name: "root".to_string(),
        system_group_id: SYSTEM_GROUP_ID,
        system_group_name: "system".to_string(),
        user_group_id: USER_GROUP_ID,
        user_group_name: "user".to_string(),
        guest_id: GUEST_USER_ID,
        guest_name: "guest".to_string(),
        guest_group_id: GUEST_GROUP_ID,
        guest_group_name: "guest".to_string(),
    })
}
