"""Every ISession operation, called by omero-py (spec §1, §8)."""
import time

import pytest

import omero
from omero.rtypes import (rbool, rdouble, rfloat, rint, rlist, rlong, rmap, robject,
                          rset, rstring, rtime, unwrap)

from conftest import PASSWORDS, join, login


def principal(name, group="", event_type="User"):
    p = omero.sys.Principal()
    p.name = name
    p.group = group
    p.eventType = event_type
    return p


def test_get_session_fields(server, clients):
    c, sf = login(server, clients)
    uuid = c.getSessionId()
    s = sf.getSessionService().getSession(uuid)
    assert s.getUuid().getValue() == uuid
    assert s.getId().getValue() > 0
    assert s.getTimeToIdle().getValue() == 600000
    assert s.getTimeToLive().getValue() == 0
    assert s.getStarted().getValue() <= int(time.time() * 1000)
    assert s.getClosed() is None
    assert s.getUserAgent().getValue() == "OMERO.py"
    assert s.getDefaultEventType().getValue() == "User"
    assert s.getMessage().getValue() == "Initial message."
    details = s.getDetails()
    assert details.getOwner().getOmeName().getValue() == "alice"
    assert details.getGroup().getName().getValue() == "user"
    assert details.getPermissions().isUserRead()


def test_get_session_unknown_is_removed(server, clients):
    c, sf = login(server, clients)
    with pytest.raises(omero.RemovedSessionException) as exc:
        sf.getSessionService().getSession("no-such-session")
    assert "No context for no-such-session" in exc.value.message


def test_create_session_with_password(server, clients):
    c, sf = login(server, clients)
    svc = sf.getSessionService()
    s = svc.createSession(principal("bob"), PASSWORDS["bob"])
    uuid = s.getUuid().getValue()
    assert svc.getReferenceCount(uuid) == 1
    assert s.getDetails().getOwner().getOmeName().getValue() == "bob"
    with pytest.raises(omero.AuthenticationException):
        svc.createSession(principal("bob"), "wrong")
    assert svc.closeSession(s) == -2


def test_create_session_with_timeout_disables_idle(server, clients):
    c, sf = login(server, clients, user="root")
    s = sf.getSessionService().createSessionWithTimeout(principal("alice"), 5000)
    assert s.getTimeToLive().getValue() == 5000
    assert s.getTimeToIdle().getValue() == 0
    sf.getSessionService().closeSession(s)


def test_admin_creates_session_for_another_user(server, clients):
    c, sf = login(server, clients, user="root")
    s = sf.getSessionService().createSessionWithTimeouts(principal("alice"), 0, 120000)
    uuid = s.getUuid().getValue()
    assert s.getTimeToIdle().getValue() == 120000
    assert s.getTimeToLive().getValue() == 0
    assert s.getUserAgent().getValue() in ("OMERO.sudo", "OMERO.py")
    alice, asf = join(server, clients, uuid)
    ec = asf.getAdminService().getEventContext()
    assert ec.userName == "alice"
    assert ec.sudoerName is not None and ec.sudoerName.getValue() == "root"
    asf.getSessionService().closeSession(s)


def test_non_admin_cannot_sudo(server, clients):
    c, sf = login(server, clients)
    with pytest.raises(omero.SecurityViolation):
        sf.getSessionService().createSessionWithTimeouts(principal("bob"), 0, 0)


def test_create_user_session(server, clients):
    c, sf = login(server, clients)
    svc = sf.getSessionService()
    s = svc.createUserSession(0, 300000, "")
    assert s.getTimeToIdle().getValue() == 300000
    assert s.getDetails().getOwner().getOmeName().getValue() == "alice"
    assert svc.getReferenceCount(s.getUuid().getValue()) == 1
    assert svc.closeSession(s) == -2


def test_create_user_session_needs_password_on_joined_factory(server, clients):
    c, sf = login(server, clients)
    uuid = c.getSessionId()
    j, jsf = join(server, clients, uuid)
    with pytest.raises(omero.SecurityViolation) as exc:
        jsf.getSessionService().createUserSession(0, 300000, "")
    assert "setSecurityPassword" in exc.value.message
    with pytest.raises(omero.SecurityViolation):
        jsf.setSecurityPassword("wrong")
    jsf.setSecurityPassword(PASSWORDS["alice"])
    s = jsf.getSessionService().createUserSession(0, 300000, "")
    jsf.getSessionService().closeSession(s)


def test_my_open_sessions(server, clients):
    c1, sf1 = login(server, clients, user="carol")
    c2, sf2 = login(server, clients, user="carol")
    svc = sf1.getSessionService()
    uuids = [s.getUuid().getValue() for s in svc.getMyOpenSessions()]
    assert c1.getSessionId() in uuids and c2.getSessionId() in uuids
    # newest first
    assert uuids.index(c2.getSessionId()) < uuids.index(c1.getSessionId())
    agent = [s.getUuid().getValue() for s in svc.getMyOpenAgentSessions("OMERO.py")]
    assert c1.getSessionId() in agent
    assert svc.getMyOpenAgentSessions("no-such-agent") == []
    assert c1.getSessionId() not in [s.getUuid().getValue() for s in svc.getMyOpenClientSessions()]
    # another user's sessions are not listed
    c3, sf3 = login(server, clients, user="bob")
    assert c1.getSessionId() not in [s.getUuid().getValue() for s in sf3.getSessionService().getMyOpenSessions()]


RTYPES = {
    "bool": rbool(True),
    "int": rint(-7),
    "long": rlong(2 ** 40),
    "float": rfloat(1.5),
    "double": rdouble(2.25),
    "string": rstring("héllo"),
    "time": rtime(1700000000000),
    "list": rlist([rint(1), rstring("two"), rlist([rlong(3)])]),
    "set": rset([rint(1)]),
    "map": rmap({"a": rint(1), "nested": rmap({"b": rlist([rstring("c")])})}),
}


def test_inputs_and_outputs_round_trip_rtypes(server, clients):
    c, sf = login(server, clients)
    uuid = c.getSessionId()
    svc = sf.getSessionService()
    for key, value in RTYPES.items():
        svc.setInput(uuid, key, value)
        svc.setOutput(uuid, key, value)
    for key, value in RTYPES.items():
        assert unwrap(svc.getInput(uuid, key)) == unwrap(value), key
        assert unwrap(svc.getOutput(uuid, key)) == unwrap(value), key
    assert set(svc.getInputKeys(uuid)) == set(RTYPES)
    assert set(svc.getOutputKeys(uuid)) == set(RTYPES)
    assert {k: unwrap(v) for k, v in svc.getInputs(uuid).items()} == {k: unwrap(v) for k, v in RTYPES.items()}
    assert set(svc.getOutputs(uuid)) == set(RTYPES)
    assert svc.getInput(uuid, "absent") is None
    svc.setInput(uuid, "int", None)
    assert svc.getInput(uuid, "int") is None
    assert "int" not in svc.getInputKeys(uuid)


def test_robject_holding_an_image(server, clients):
    c, sf = login(server, clients)
    uuid = c.getSessionId()
    image = omero.model.ImageI()
    image.setName(rstring("cells.tif"))
    image.setId(rlong(42))
    c.setInput("img", robject(image))
    back = c.getInput("img").getValue()
    assert isinstance(back, omero.model.Image)
    assert back.getName().getValue() == "cells.tif"
    assert back.getId().getValue() == 42


def test_environment_is_shared_by_joined_clients(server, clients):
    c1, sf1 = login(server, clients)
    uuid = c1.getSessionId()
    c2, sf2 = join(server, clients, uuid)
    c1.setOutput("result", rstring("done"))
    assert c2.getOutput("result").getValue() == "done"


def test_environment_of_unknown_session(server, clients):
    c, sf = login(server, clients)
    with pytest.raises(omero.RemovedSessionException):
        sf.getSessionService().getInput("no-such-session", "k")
