"""omero.testlib.ITest, OMERO's own test harness, sets itself up against this server
unchanged: root login, new_group/new_user, the user's login, getUpdateService/getQueryService.
It reads omero.host, omero.port and omero.rootpass from the ICE_CONFIG file, and needs
OMERODIR set to some directory."""
import os
import tempfile

import pytest

import omero
from omero.testlib import ITest

from conftest import ENCODING


@pytest.fixture(scope="module")
def itest_env(server):
    tmp = tempfile.mkdtemp(prefix="omero-itest-")
    cfg = os.path.join(tmp, "ice.config")
    with open(cfg, "w") as f:
        f.write("omero.host=127.0.0.1\n")
        f.write("omero.port=%d\n" % server.ssl_port)
        f.write("omero.rootpass=%s\n" % server.root_pw)
        if ENCODING == "1.0":
            f.write("Ice.Default.EncodingVersion=1.0\n")
    saved = {k: os.environ.get(k) for k in ("ICE_CONFIG", "OMERODIR")}
    os.environ["ICE_CONFIG"] = cfg
    os.environ["OMERODIR"] = tmp
    yield tmp
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


class Harness(ITest):
    """Named so pytest does not collect ITest's own machinery twice."""


@pytest.fixture(scope="module")
def harness(itest_env):
    Harness.setup_class()
    yield Harness
    Harness.teardown_class()


def test_setup_class_runs(harness, server):
    ctx = harness.ctx
    assert ctx.userName == harness.user.omeName.val
    assert ctx.groupName == harness.group.name.val
    assert not ctx.isAdmin
    # The group ITest made has the permissions it asked for (DEFAULT_PERMS).
    perms = harness.group.details.permissions
    assert str(perms) == harness.DEFAULT_PERMS
    # Persisted: visible to this server's own command line.
    assert harness.user.omeName.val in server.cli("user", "list")
    # Services ITest takes up front exist; only their operations are refused.
    with pytest.raises(omero.ApiUsageException):
        harness.query.findAllByQuery("select e from Experimenter e", None)
    with pytest.raises(omero.ApiUsageException):
        harness.update.saveObject(omero.model.ExperimenterI())


def test_new_user_owner_and_system(harness):
    owner = harness.new_user(group=harness.group, owner=True)
    admin = harness.root.sf.getAdminService()
    assert harness.group.id.val in admin.getLeaderOfGroupIds(owner)
    system = harness.new_user(system=True)
    assert 0 in admin.getMemberOfGroupIds(system)
    client, user = harness().new_client_and_user(group=harness.group)
    assert client.sf.getAdminService().getEventContext().userName == user.omeName.val


# Light administrators (OMERO 5.4): members of system restricted to some privileges.

def privilege_names(privileges):
    return sorted(p.getValue().getValue() for p in privileges)


def privilege(name):
    p = omero.model.AdminPrivilegeI()
    p.setValue(omero.rtypes.rstring(name))
    return p


def test_new_user_with_privileges_is_a_light_admin(harness):
    admin = harness.root.sf.getAdminService()
    user = harness.new_user(privileges=["ModifyUser", "ReadSession"])
    assert 0 in admin.getMemberOfGroupIds(user)
    assert privilege_names(admin.getAdminPrivileges(user)) == ["ModifyUser", "ReadSession"]
    client = harness().new_client(user=user)
    light = client.sf.getAdminService()
    ec = light.getEventContext()
    assert ec.isAdmin
    assert sorted(ec.adminPrivileges) == ["ModifyUser", "ReadSession"]
    assert privilege_names(light.getCurrentAdminPrivileges()) == ["ModifyUser", "ReadSession"]
    # Root is a full administrator; a plain user has none.
    assert len(admin.getCurrentAdminPrivileges()) == 15
    assert privilege_names(admin.getAdminPrivileges(harness.user)) == []
    # getAdminsWithPrivileges lists only administrators holding all of those asked for.
    with_modify = {e.id.val for e in light.getAdminsWithPrivileges([privilege("ModifyUser")])}
    with_sudo = {e.id.val for e in light.getAdminsWithPrivileges([privilege("Sudo")])}
    assert user.id.val in with_modify and 0 in with_modify
    assert user.id.val not in with_sudo and 0 in with_sudo
    assert harness.user.id.val not in with_modify
    # No privileges at all: still in system, but holding none.
    none = harness.new_user(privileges=())
    assert privilege_names(admin.getAdminPrivileges(none)) == []
    assert none.id.val in {e.id.val for e in admin.getAdminsWithPrivileges([])}


def test_light_admin_may_manage_users_only_with_modify_user(harness):
    with_modify = harness().new_client(privileges=["ModifyUser"])
    without = harness().new_client(privileges=["ModifyGroup"])
    target = harness.new_user()
    # updateExperimenter needs ModifyUser.
    e = with_modify.sf.getAdminService().getExperimenter(target.id.val)
    e.setFirstName(omero.rtypes.rstring("Renamed"))
    with_modify.sf.getAdminService().updateExperimenter(e)
    with pytest.raises(omero.SecurityViolation):
        without.sf.getAdminService().updateExperimenter(e)
    # createGroup needs ModifyGroup.
    g = omero.model.ExperimenterGroupI()
    g.setName(omero.rtypes.rstring(harness.uuid()))
    without.sf.getAdminService().createGroup(g)
    g.setName(omero.rtypes.rstring(harness.uuid()))
    with pytest.raises(omero.SecurityViolation):
        with_modify.sf.getAdminService().createGroup(g)


def test_light_admin_cannot_grant_what_it_lacks(harness):
    light = harness().new_client(privileges=["ModifyUser", "ModifyGroupMembership"])
    admin = light.sf.getAdminService()
    other = harness.new_user(privileges=["ModifyUser"])
    with pytest.raises(omero.SecurityViolation):
        admin.setAdminPrivileges(other, [privilege("ModifyUser"), privilege("Sudo")])
    # It may take away, and give back what it holds itself.
    admin.setAdminPrivileges(other, [])
    admin.setAdminPrivileges(other, [privilege("ModifyUser")])
    root_admin = harness.root.sf.getAdminService()
    assert privilege_names(root_admin.getAdminPrivileges(other)) == ["ModifyUser"]
    # Adding an unrestricted user to system would make a full administrator.
    plain = harness.new_user()
    with pytest.raises(omero.SecurityViolation):
        admin.addGroups(plain, [omero.model.ExperimenterGroupI(0, False)])
    # A plain user may not set privileges at all; unknown names are refused.
    with pytest.raises(omero.SecurityViolation):
        harness().new_client().sf.getAdminService().setAdminPrivileges(
            plain, [privilege("Sudo")])
    with pytest.raises(omero.ApiUsageException):
        root_admin.setAdminPrivileges(plain, [privilege("Dance")])


def sudo_principal(user, group):
    p = omero.sys.Principal()
    p.name = user.omeName.val
    p.group = group.name.val
    p.eventType = "User"
    return p


def test_light_admin_sudo_needs_the_sudo_privilege(harness):
    target = harness.new_user(group=harness.group)
    without = harness().new_client(privileges=["ModifyUser"])
    with pytest.raises(omero.SecurityViolation):
        without.sf.getSessionService().createSessionWithTimeouts(
            sudo_principal(target, harness.group), 60000, 60000)
    with_sudo = harness().new_client(privileges=["Sudo"])
    s = with_sudo.sf.getSessionService().createSessionWithTimeouts(
        sudo_principal(target, harness.group), 60000, 60000)
    joined = harness().new_client(session=s.getUuid().getValue())
    ec = joined.sf.getAdminService().getEventContext()
    assert ec.userName == target.omeName.val
    assert ec.sudoerName.val == with_sudo.sf.getAdminService().getEventContext().userName
    # Becoming root does not lift the light administrator's restrictions.
    root = harness.root.sf.getAdminService().getExperimenter(0)
    system = harness.root.sf.getAdminService().getGroup(0)
    s = with_sudo.sf.getSessionService().createSessionWithTimeouts(
        sudo_principal(root, system), 60000, 60000)
    as_root = harness().new_client(session=s.getUuid().getValue())
    ec = as_root.sf.getAdminService().getEventContext()
    assert ec.userName == "root" and ec.isAdmin
    assert list(ec.adminPrivileges) == ["Sudo"]


def test_create_restricted_system_user(harness):
    admin = harness.root.sf.getAdminService()
    name = harness.uuid()
    e = omero.model.ExperimenterI()
    e.omeName = omero.rtypes.rstring(name)
    e.firstName = omero.rtypes.rstring("Light")
    e.lastName = omero.rtypes.rstring("Admin")
    uid = admin.createRestrictedSystemUserWithPassword(
        e, [privilege("Sudo"), privilege("ReadSession")], omero.rtypes.rstring(name))
    user = admin.getExperimenter(uid)
    assert 0 in admin.getMemberOfGroupIds(user)
    assert privilege_names(admin.getAdminPrivileges(user)) == ["ReadSession", "Sudo"]
    client = harness().new_client(user=user)
    assert sorted(client.sf.getAdminService().getEventContext().adminPrivileges) == [
        "ReadSession", "Sudo"]
    # A light admin cannot create one holding a privilege it lacks.
    light = harness().new_client(privileges=["ModifyUser"]).sf.getAdminService()
    e.omeName = omero.rtypes.rstring(harness.uuid())
    with pytest.raises(omero.SecurityViolation):
        light.createRestrictedSystemUserWithPassword(
            e, [privilege("Sudo")], omero.rtypes.rstring("pw"))
