"""The crash matrix of issue 9: the server is killed with SIGKILL right after a client got
the reply of each step (login, join, detach, close, setInput), then started again on the same
data directory; what the client was told must still hold. A created session exists, a closed
one stays closed, a reference count and an input map are as they were."""
import Glacier2
import pytest

import omero
from omero.rtypes import rstring, unwrap

from conftest import join, login, make_server


@pytest.fixture(scope="module")
def crash_server():
    srv = make_server()
    yield srv
    srv.stop()


def bare_session(uuid):
    s = omero.model.SessionI()
    s.uuid = rstring(uuid)
    return s


def refcount_after_join(srv, clients, uuid):
    """Joins (adding one reference) and returns the count the server reports."""
    c, sf = join(srv, clients, uuid)
    return sf.getSessionService().getReferenceCount(uuid), sf


def test_kill_after_login(crash_server, clients):
    c, sf = login(crash_server, clients)
    uuid = c.getSessionId()
    crash_server.restart(crash=True)
    count, _ = refcount_after_join(crash_server, clients, uuid)
    assert count == 2


def test_kill_after_join(crash_server, clients):
    c, sf = login(crash_server, clients)
    uuid = c.getSessionId()
    join(crash_server, clients, uuid)
    crash_server.restart(crash=True)
    count, _ = refcount_after_join(crash_server, clients, uuid)
    assert count == 3


def test_kill_after_detach(crash_server, clients):
    c, sf = login(crash_server, clients)
    uuid = c.getSessionId()
    sf.detachOnDestroy()
    c.closeSession()
    crash_server.restart(crash=True)
    count, _ = refcount_after_join(crash_server, clients, uuid)
    assert count == 1


def test_kill_after_close(crash_server, clients):
    c, sf = login(crash_server, clients)
    uuid = c.getSessionId()
    assert sf.getSessionService().closeSession(bare_session(uuid)) == -2
    crash_server.restart(crash=True)
    with pytest.raises(Glacier2.PermissionDeniedException) as refused:
        join(crash_server, clients, uuid)
    assert "closed=" in refused.value.reason


def test_kill_after_set_input(crash_server, clients):
    c, sf = login(crash_server, clients)
    uuid = c.getSessionId()
    svc = sf.getSessionService()
    svc.setInput(uuid, "k", rstring("v"))
    svc.setInput(uuid, "gone", rstring("x"))
    svc.setInput(uuid, "gone", None)
    crash_server.restart(crash=True)
    count, sf2 = refcount_after_join(crash_server, clients, uuid)
    assert count == 2
    assert unwrap(sf2.getSessionService().getInputs(uuid)) == {"k": "v"}
