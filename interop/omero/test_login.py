"""Password logins and their failures."""
import Glacier2
import Ice
import pytest

import omero

from conftest import PASSWORDS


def test_wrong_password_is_permission_denied(server):
    c = server.client()
    try:
        with pytest.raises(Glacier2.PermissionDeniedException) as exc:
            c.createSession("alice", "not-her-password")
        assert "not-her-password" not in exc.value.reason
        assert "alice" in exc.value.reason
    finally:
        c.__del__()


def test_unknown_user_looks_like_a_wrong_password(server):
    c1, c2 = server.client(), server.client()
    try:
        with pytest.raises(Glacier2.PermissionDeniedException) as unknown:
            c1.createSession("nosuchuser", "whatever-pw")
        with pytest.raises(Glacier2.PermissionDeniedException) as wrong:
            c2.createSession("bob", "whatever-pw")
        assert "whatever-pw" not in unknown.value.reason
        # Nothing in the answer tells an unknown user from a wrong password.
        assert unknown.value.reason.replace("nosuchuser", "X") == wrong.value.reason.replace("bob", "X")
    finally:
        c1.__del__()
        c2.__del__()


def test_join_requires_username_equal_to_password(server, clients):
    c = server.client()
    clients.append(c)
    c.createSession("alice", PASSWORDS["alice"])
    uuid = c.getSessionId()
    other = server.client()
    clients.append(other)
    with pytest.raises(Glacier2.PermissionDeniedException) as exc:
        other.createSession("alice", uuid)
    assert "joinSession" in exc.value.reason


def test_second_create_session_on_one_connection_refused(server, clients):
    c = server.client()
    clients.append(c)
    c.createSession("alice", PASSWORDS["alice"])
    router = c.getRouter(c.getCommunicator())
    with pytest.raises(Glacier2.CannotCreateSessionException):
        router.createSession("alice", PASSWORDS["alice"])


def test_secure_connection_login_refused(server, clients):
    c = server.client()
    clients.append(c)
    router = c.getRouter(c.getCommunicator())
    with pytest.raises(Glacier2.PermissionDeniedException) as exc:
        router.createSessionFromSecureConnection()
    assert exc.value.reason


def test_router_timeouts(server, clients):
    c = server.client()
    clients.append(c)
    router = c.getRouter(c.getCommunicator())
    assert router.getSessionTimeout() > 0
    assert router.getACMTimeout() > 0


def test_unrouted_identity_is_object_not_exist(server, clients):
    c, sf = server.client(), None
    clients.append(c)
    sf = c.createSession("alice", PASSWORDS["alice"])
    bogus = c.getCommunicator().stringToProxy("nosuchcat/nosuchname")
    with pytest.raises(Ice.ObjectNotExistException):
        bogus.ice_ping()
    # the connection and the session survive the bad call
    assert sf.getAdminService().getEventContext().userName == "alice"


def test_destroy_session_then_refresh_fails(server, clients):
    c = server.client()
    clients.append(c)
    c.createSession("alice", PASSWORDS["alice"])
    router = c.getRouter(c.getCommunicator())
    router.refreshSession()
    router.destroySession()
    with pytest.raises(Glacier2.SessionNotExistException):
        router.refreshSession()
    with pytest.raises(Glacier2.SessionNotExistException):
        router.destroySession()


def test_login_with_group_context(server, clients):
    c = server.client(**{"omero.group": "lab"})
    clients.append(c)
    sf = c.createSession("dave", PASSWORDS["dave"])
    ec = sf.getAdminService().getEventContext()
    assert ec.groupName == "lab"


def test_user_not_member_of_requested_group(server, clients):
    c = server.client(**{"omero.group": "lab"})
    clients.append(c)
    with pytest.raises(Glacier2.CannotCreateSessionException):
        c.createSession("alice", PASSWORDS["alice"])
