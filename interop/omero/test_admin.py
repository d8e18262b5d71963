"""IAdmin: the event context and the session-related admin calls (spec §6)."""
import pytest

import omero
from omero.rtypes import rstring

from conftest import PASSWORDS, join, login


PRIVILEGES = {"Chgrp", "Chown", "DeleteFile", "DeleteManagedRepo", "DeleteOwned",
              "DeleteScriptRepo", "ModifyGroup", "ModifyGroupMembership", "ModifyUser",
              "ReadSession", "Sudo", "WriteFile", "WriteManagedRepo", "WriteOwned",
              "WriteScriptRepo"}


def test_event_context_of_a_user(server, clients):
    c, sf = login(server, clients)
    ec = sf.getAdminService().getEventContext()
    assert ec.sessionUuid == c.getSessionId()
    assert ec.sessionId > 0
    assert ec.userName == "alice"
    assert ec.userId > 1
    assert ec.groupName == "user"
    assert ec.groupId == 1
    assert ec.isAdmin is False
    assert list(ec.adminPrivileges) == []
    assert ec.shareId == -1
    assert ec.eventId == -1
    assert ec.eventType == "User"
    assert ec.sudoerId is None and ec.sudoerName is None
    assert list(ec.memberOfGroups) == [1]
    assert list(ec.leaderOfGroups) == []
    assert ec.groupPermissions.getPerm1() == -52  # the user group is rwr-r-, as in OMERO


def test_event_context_of_root(server, clients):
    c, sf = login(server, clients, user="root")
    ec = sf.getAdminService().getEventContext()
    assert ec.userName == "root" and ec.userId == 0
    assert ec.isAdmin is True
    assert set(ec.adminPrivileges) == PRIVILEGES
    assert 0 in ec.memberOfGroups and 1 in ec.memberOfGroups
    assert ec.groupId == 0 and ec.groupName == "system"


def test_event_context_of_a_group_member(server, clients):
    c, sf = login(server, clients, user="dave")
    ec = sf.getAdminService().getEventContext()
    assert ec.groupName == "lab"
    assert ec.groupPermissions.getPerm1() == -56
    assert ec.memberOfGroups[0] == ec.groupId and 1 in ec.memberOfGroups


def test_lookups(server, clients):
    c, sf = login(server, clients)
    admin = sf.getAdminService()
    me = admin.lookupExperimenter("alice")
    assert me.getOmeName().getValue() == "alice"
    assert admin.getExperimenter(me.getId().getValue()).getOmeName().getValue() == "alice"
    g = admin.lookupGroup("user")
    assert g.getId().getValue() == 1
    assert admin.getGroup(1).getName().getValue() == "user"
    assert [x.getName().getValue() for x in admin.containedGroups(me.getId().getValue())] == ["user"]
    assert list(admin.getMemberOfGroupIds(me)) == [1]
    assert list(admin.getLeaderOfGroupIds(me)) == []
    roles = admin.getSecurityRoles()
    assert roles.rootName == "root" and roles.systemGroupName == "system"
    assert roles.userGroupName == "user" and roles.guestGroupName == "guest"
    with pytest.raises(omero.ApiUsageException):
        admin.lookupExperimenter("nobody-here")


def test_change_password(server, clients):
    c, sf = login(server, clients, user="carol")
    admin = sf.getAdminService()
    admin.changePassword(rstring("carolpw2"))
    c2 = server.client()
    clients.append(c2)
    c2.createSession("carol", "carolpw2")
    admin.changePassword(rstring(PASSWORDS["carol"]))


def test_change_user_password_needs_admin(server, clients):
    c, sf = login(server, clients)
    with pytest.raises(omero.SecurityViolation):
        sf.getAdminService().changeUserPassword("bob", rstring("x"))
    r, rsf = login(server, clients, user="root")
    rsf.getAdminService().changeUserPassword("bob", rstring("bobpw2"))
    rsf.getAdminService().changeUserPassword("bob", rstring(PASSWORDS["bob"]))


def test_other_admin_operations_are_refused_clearly(server, clients):
    c, sf = login(server, clients, user="root")
    with pytest.raises(omero.ApiUsageException) as exc:
        sf.getAdminService().getMyUserPhotos()
    assert "session and admin services only" in exc.value.message


def test_joined_factory_change_password_needs_password(server, clients):
    c, sf = login(server, clients, user="carol")
    j, jsf = join(server, clients, c.getSessionId())
    with pytest.raises(omero.SecurityViolation):
        jsf.getAdminService().changePassword(rstring("whatever"))
