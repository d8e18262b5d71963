"""Idle and live expiry with short timeouts (spec §3), on a server whose reaper runs often."""
import time

import Glacier2
import Ice
import pytest

import omero

from conftest import PASSWORDS, join, login, wait_until
from test_isession import principal


def lookup(sf, uuid, quietly=False):
    svc = sf.getSessionService()
    if quietly:
        svc = svc.ice_context({"quietly": "true"})
    return svc.getSession(uuid)


def raises(exc_type, fn):
    """True once fn raises exc_type; False while it succeeds or the session is expired but
    not yet reaped (SessionTimeoutException, spec §3.2: the entry stays until the reaper runs)."""
    try:
        fn()
    except exc_type:
        return True
    except omero.SessionTimeoutException:
        return False
    return False


def test_live_expiry_timeout_then_removed(fast_server, clients):
    admin, asf = login(fast_server, clients, user="root")
    s = asf.getSessionService().createSessionWithTimeouts(principal("alice"), 1000, 0)
    uuid = s.getUuid().getValue()
    assert lookup(asf, uuid).getTimeToLive().getValue() == 1000
    time.sleep(1.2)
    # expired: either still cached (SessionTimeout) or already reaped (RemovedSession)
    with pytest.raises((omero.SessionTimeoutException, omero.RemovedSessionException)):
        lookup(asf, uuid)
    assert wait_until(lambda: raises(omero.RemovedSessionException, lambda: lookup(asf, uuid)))
    c = fast_server.client()
    clients.append(c)
    with pytest.raises(Glacier2.PermissionDeniedException):
        c.joinSession(uuid)


def test_idle_expiry_and_refresh(fast_server, clients):
    admin, asf = login(fast_server, clients, user="root")
    s = asf.getSessionService().createSessionWithTimeouts(principal("alice"), 0, 1500)
    uuid = s.getUuid().getValue()
    # non-quiet lookups keep it alive well past its idle timeout
    for _ in range(6):
        time.sleep(0.5)
        lookup(asf, uuid)
    # quiet lookups do not
    time.sleep(0.5)
    lookup(asf, uuid, quietly=True)
    assert wait_until(lambda: raises(omero.RemovedSessionException, lambda: lookup(asf, uuid, quietly=True)))


def test_default_idle_timeout_expires_a_login(fast_server, clients):
    c, sf = login(fast_server, clients)
    uuid = c.getSessionId()
    assert lookup(sf, uuid).getTimeToIdle().getValue() == 2000
    sf.detachOnDestroy()
    c.closeSession()
    watcher, wsf = login(fast_server, clients, user="bob")
    assert wait_until(lambda: raises(omero.RemovedSessionException, lambda: lookup(wsf, uuid, quietly=True)))


def test_calls_on_an_expired_session(fast_server, clients):
    c, sf = login(fast_server, clients)
    time.sleep(2.5)
    # once reaped, the factory is gone; before that the session answers SessionTimeout
    with pytest.raises((omero.SessionTimeoutException, omero.RemovedSessionException,
                        Ice.ObjectNotExistException)):
        sf.getAdminService().getEventContext()


def test_keep_alive_refreshes(fast_server, clients):
    c, sf = login(fast_server, clients)
    uuid = c.getSessionId()
    for _ in range(6):
        time.sleep(0.5)
        assert sf.keepAlive(None) is False
    assert lookup(sf, uuid).getUuid().getValue() == uuid
