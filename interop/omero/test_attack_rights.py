"""Rights attacks with unchanged omero-py: group sudo must not reach an admin, a sudo session
never has more rights than its sudoer, and a joined client cannot use another client's
services of the same session (issue 8, items 1 and 2)."""
import Ice
import pytest

import omero
import omero.sys
from omero.rtypes import rstring

from conftest import PASSWORDS, join, login, make_server


@pytest.fixture(scope="module")
def srv():
    s = make_server()
    # gowner owns glab; gboth is in glab and owns gside; gadmin is an admin in glab.
    s.cli("group", "add", "glab", "--perms", "rwr---")
    s.cli("group", "add", "gside", "--perms", "rw----")
    users = {
        "gowner": ["--owner-of", "glab"],
        "gmember": ["--group", "glab"],
        "gboth": ["--group", "glab", "--owner-of", "gside"],
        "gadmin": ["--admin", "--group", "glab"],
        "gother": ["--group", "gside"],
        "victim": [],
    }
    for name, flags in users.items():
        PASSWORDS[name] = name + "-pw"
        s.cli("user", "add", name, *flags, "--password-stdin", stdin=PASSWORDS[name])
    yield s
    s.stop()


def principal(name, group):
    p = omero.sys.Principal()
    p.name = name
    p.group = group
    p.eventType = "User"
    return p


def sudo(sf, name, group):
    return sf.getSessionService().createSessionWithTimeouts(principal(name, group), 0, 0)


@pytest.mark.parametrize("target,group", [
    ("root", "glab"),      # the reported attack: an admin, named in an owned group
    ("root", "system"),
    ("gadmin", "glab"),    # an admin who really is a member of the owned group
    ("gother", "gside"),   # a group the caller does not own
    ("gother", "glab"),    # not a member of the owned group
])
def test_group_owner_cannot_sudo_outside_its_groups(srv, clients, target, group):
    _, sf = login(srv, clients, user="gowner")
    with pytest.raises(omero.SecurityViolation) as e:
        sudo(sf, target, group)
    assert "Group sudo is not permitted" in e.value.message


def test_group_sudo_session_is_limited_to_its_sudoer(srv, clients):
    _, sf = login(srv, clients, user="gowner")
    owner_ec = sf.getAdminService().getEventContext()
    made = sudo(sf, "gboth", "glab")
    _, sudo_sf = join(srv, clients, made.getUuid().getValue())
    ec = sudo_sf.getAdminService().getEventContext()
    assert ec.userName == "gboth" and ec.groupName == "glab"
    assert ec.sudoerName.getValue() == "gowner"
    assert ec.isAdmin is False and list(ec.adminPrivileges) == []
    assert set(ec.memberOfGroups) <= set(owner_ec.memberOfGroups)
    # gboth owns gside, gowner does not: the sudo session does not either.
    assert list(ec.leaderOfGroups) == []
    with pytest.raises(omero.SecurityViolation):
        sudo(sudo_sf, "gother", "gside")
    # From the sudo session, the admin is as far out of reach as from its sudoer.
    with pytest.raises(omero.SecurityViolation):
        sudo(sudo_sf, "root", "glab")
    with pytest.raises(omero.SecurityViolation):
        sudo_sf.setSecurityContext(omero.model.ExperimenterGroupI(1, False))
    # Root's own sessions stay invisible.
    _, root_sf = login(srv, clients, user="root")
    root_uuid = root_sf.getAdminService().getEventContext().sessionUuid
    seen = [s.getUuid().getValue() for s in sudo_sf.getSessionService().getMyOpenSessions()]
    assert root_uuid not in seen


def test_group_sudo_of_a_member_works(srv, clients):
    _, sf = login(srv, clients, user="gowner")
    made = sudo(sf, "gmember", "glab")
    _, member_sf = join(srv, clients, made.getUuid().getValue())
    ec = member_sf.getAdminService().getEventContext()
    assert ec.userName == "gmember" and ec.sudoerName.getValue() == "gowner"


def test_admin_sudo_still_works(srv, clients):
    _, sf = login(srv, clients, user="root")
    made = sudo(sf, "gother", "gside")
    _, other_sf = join(srv, clients, made.getUuid().getValue())
    ec = other_sf.getAdminService().getEventContext()
    assert ec.userName == "gother" and ec.groupName == "gside"
    assert ec.sudoerName.getValue() == "root"


def service_proxy(sf, name, session_uuid):
    ident = Ice.Identity(name, session_uuid)
    return omero.api.IAdminPrx.uncheckedCast(sf.ice_identity(ident))


def test_joined_client_cannot_use_another_clients_admin(srv, clients):
    owner, sf = login(srv, clients, user="victim")
    sf.getAdminService()  # the victim's own client opens its IAdmin
    uuid = owner.getSessionId()
    _, thief_sf = join(srv, clients, uuid)
    # The thief learns the victim client's service name from activeServices.
    names = [n for n in thief_sf.activeServices() if n.endswith("omero.api.IAdmin")]
    assert len(names) == 1
    stolen = service_proxy(thief_sf, names[0], uuid)
    with pytest.raises((Ice.ObjectNotExistException, omero.SecurityViolation)):
        stolen.changePassword(rstring("taken-over"))
    with pytest.raises((Ice.ObjectNotExistException, omero.SecurityViolation)):
        stolen.getEventContext()
    # The victim's password is unchanged.
    check = srv.client()
    clients.append(check)
    check.createSession("victim", PASSWORDS["victim"])


def test_joined_client_needs_the_password_for_its_own_admin(srv, clients):
    owner, _ = login(srv, clients, user="victim")
    _, joined_sf = join(srv, clients, owner.getSessionId())
    admin = joined_sf.getAdminService()
    with pytest.raises(omero.SecurityViolation):
        admin.changePassword(rstring("taken-over"))
    joined_sf.setSecurityPassword(PASSWORDS["victim"])
    admin.changePassword(rstring("victim-new"))
    admin.changePassword(rstring(PASSWORDS["victim"]))
