"""Per-user state is bounded: environment keys and bytes, sessions per user. A cap reached is
an ApiUsageException naming the limit, and the state below the cap still works."""
import pytest

import omero
import omero.sys
from omero.rtypes import rstring, unwrap

from conftest import PASSWORDS, login, make_server


@pytest.fixture(scope="module")
def srv():
    s = make_server(
        "[sessions]\nmax_env_keys = 3\nmax_env_bytes = 4000\nmax_sessions_per_user = 3\n")
    PASSWORDS["capped"] = "capped-pw"
    s.cli("user", "add", "capped", "--password-stdin", stdin=PASSWORDS["capped"])
    yield s
    s.stop()


def test_environment_keys_are_capped(srv, clients):
    c, sf = login(srv, clients)
    svc = sf.getSessionService()
    uuid = c.getSessionId()
    for key in ("a", "b", "c"):
        svc.setInput(uuid, key, rstring(key))
    with pytest.raises(omero.ApiUsageException) as e:
        svc.setInput(uuid, "d", rstring("d"))
    assert "3 keys" in e.value.message
    # Replacing and removing stay possible; the output map has its own budget.
    svc.setInput(uuid, "a", rstring("again"))
    svc.setOutput(uuid, "d", rstring("d"))
    svc.setInput(uuid, "c", None)
    svc.setInput(uuid, "d", rstring("d"))
    assert sorted(svc.getInputKeys(uuid)) == ["a", "b", "d"]
    assert unwrap(svc.getInput(uuid, "a")) == "again"


def test_environment_bytes_are_capped(srv, clients):
    c, sf = login(srv, clients)
    svc = sf.getSessionService()
    uuid = c.getSessionId()
    with pytest.raises(omero.ApiUsageException) as e:
        svc.setOutput(uuid, "big", rstring("x" * 5000))
    assert "4000 bytes" in e.value.message
    svc.setOutput(uuid, "fits", rstring("x" * 1000))
    assert len(unwrap(svc.getOutput(uuid, "fits"))) == 1000


def test_sessions_per_user_are_capped(srv, clients):
    first, sf = login(srv, clients, user="capped")
    login(srv, clients, user="capped")
    _, root_sf = login(srv, clients, user="root")
    p = omero.sys.Principal()
    p.name, p.group, p.eventType = "capped", "user", "User"
    made = root_sf.getSessionService().createSessionWithTimeouts(p, 0, 0)
    # The fourth session, by sudo and by login, is refused.
    with pytest.raises(omero.ApiUsageException):
        root_sf.getSessionService().createSessionWithTimeouts(p, 0, 0)
    with pytest.raises(omero.ApiUsageException):
        sf.getSessionService().createUserSession(0, 0, "")
    extra = srv.client()
    clients.append(extra)
    with pytest.raises(omero.WrappedCreateSessionException) as e:
        extra.createSession("capped", PASSWORDS["capped"])
    assert e.value.type == "ApiUsageException"
    # Closing one makes room again.
    assert root_sf.getSessionService().closeSession(made) == -2
    made = root_sf.getSessionService().createSessionWithTimeouts(p, 0, 0)
    assert made.getUuid().getValue()
