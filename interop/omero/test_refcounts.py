"""Reference counts through login, join, closeSession and ServiceFactory destruction (spec §2)."""
import os
import signal
import subprocess
import sys
import textwrap

import Glacier2
import Ice
import pytest

import omero

from conftest import ENCODING, PASSWORDS, join, login, wait_until


def refcount(sf, uuid):
    return sf.getSessionService().getReferenceCount(uuid)


def bare_session(uuid):
    s = omero.model.SessionI()
    s.uuid = omero.rtypes.rstring(uuid)
    return s


def test_login_join_close(server, clients):
    c1, sf1 = login(server, clients)
    uuid = c1.getSessionId()
    assert refcount(sf1, uuid) == 1
    c2, sf2 = join(server, clients, uuid)
    assert c2.getSessionId() == uuid
    assert refcount(sf1, uuid) == 2
    svc = sf1.getSessionService()
    assert svc.closeSession(bare_session(uuid)) == 1
    assert svc.closeSession(bare_session(uuid)) == -2
    # The dead session's own services are gone (spec §2.4: ObjectNotExist); other sessions
    # see it as removed.
    with pytest.raises(Ice.ObjectNotExistException):
        svc.getReferenceCount(uuid)
    watcher, wsf = login(server, clients, user="bob")
    with pytest.raises(omero.RemovedSessionException):
        wsf.getSessionService().getReferenceCount(uuid)


def test_close_unknown_is_minus_one(server, clients):
    c, sf = login(server, clients)
    assert sf.getSessionService().closeSession(bare_session("no-such-uuid")) == -1


def test_close_on_destroy_is_the_default(server, clients):
    c1, sf1 = login(server, clients)
    uuid = c1.getSessionId()
    c2, sf2 = join(server, clients, uuid)
    assert refcount(sf1, uuid) == 2
    c2.closeSession()  # close mode, but one reference remains
    assert wait_until(lambda: refcount(sf1, uuid) == 1)
    c1.closeSession()  # close mode, last reference: the session dies
    c3 = server.client()
    clients.append(c3)
    with pytest.raises(Glacier2.PermissionDeniedException):
        c3.joinSession(uuid)


def test_detach_on_destroy_keeps_the_session(server, clients):
    c1, sf1 = login(server, clients)
    uuid = c1.getSessionId()
    sf1.detachOnDestroy()
    c1.closeSession()
    c2, sf2 = join(server, clients, uuid)
    # the detached factory gave its reference back; the join took a new one
    assert refcount(sf2, uuid) == 1
    sf2.closeOnDestroy()
    assert sf2.getSessionService().closeSession(bare_session(uuid)) == -2


def test_test1018_creation_destruction_closing(server, clients):
    """A logs in and detaches; B joins and closes; A closes; C joins and kills; D is refused."""
    a, sfa = login(server, clients)
    uuid = a.getSessionId()
    sfa.detachOnDestroy()
    b, sfb = join(server, clients, uuid)
    b.closeSession()
    assert sfa.getAdminService().getEventContext().sessionUuid == uuid
    a.closeSession()
    c, sfc = join(server, clients, uuid)
    c.killSession()
    d = server.client()
    clients.append(d)
    with pytest.raises(Glacier2.PermissionDeniedException):
        d.joinSession(uuid)


CHILD = textwrap.dedent("""
    import sys, time, omero
    pmap = {"Ice.Default.EncodingVersion": "1.0"} if sys.argv[3] == "1.0" else {}
    c = omero.client(host="127.0.0.1", port=int(sys.argv[1]), pmap=pmap)
    sf = c.createSession("alice", sys.argv[2])
    sf.detachOnDestroy() if sys.argv[4] == "detach" else None
    print(c.getSessionId(), flush=True)
    time.sleep(600)
""")


def child_session(server, mode):
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(server.ssl_port), PASSWORDS["alice"], ENCODING, mode],
        stdout=subprocess.PIPE, text=True)
    uuid = proc.stdout.readline().strip()
    assert uuid, "child client did not log in"
    return proc, uuid


def test_join_after_connection_killed_from_outside(server, clients):
    proc, uuid = child_session(server, "detach")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    c, sf = join(server, clients, uuid)
    assert c.getSessionId() == uuid
    assert sf.getSessionService().getSession(uuid).getUuid().getValue() == uuid
    # the killed client's reference went back when its connection was lost
    assert wait_until(lambda: refcount(sf, uuid) == 1)


def test_lost_connection_in_close_mode_ends_the_session(server, clients):
    proc, uuid = child_session(server, "close")
    watcher, sfw = login(server, clients, user="bob")
    assert sfw.getSessionService().getReferenceCount(uuid) == 1
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    def gone():
        try:
            sfw.getSessionService().getReferenceCount(uuid)
            return False
        except omero.RemovedSessionException:
            return True
    assert wait_until(gone)


def test_isession_create_session_with_uuid_adds_a_reference(server, clients):
    c, sf = login(server, clients)
    uuid = c.getSessionId()
    p = omero.sys.Principal()
    p.name = "ignored"
    s = sf.getSessionService().createSession(p, uuid)
    assert s.getUuid().getValue() == uuid
    assert refcount(sf, uuid) == 2
