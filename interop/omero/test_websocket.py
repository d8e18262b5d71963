"""omero-py over the ws and wss listeners, reached the way omero-py users write it: a
"ws://" or "wss://" URL as the host. The issue's scenario (log in, detach, drop, join with the
session UUID, close) in encodings 1.0 and 1.1."""
import pytest

import Glacier2
import omero
import omero.clients  # noqa: F401

from conftest import PASSWORDS, free_port, make_server


@pytest.fixture(scope="module")
def ws_server():
    ports = {"ws": free_port(), "wss": free_port()}
    srv = make_server('ws = "127.0.0.1:%d"\nwss = "127.0.0.1:%d"\n' % (ports["ws"], ports["wss"]))
    srv.ws_ports = ports
    yield srv
    code = srv.proc.poll()
    srv.stop()
    assert code is None, "server died during the tests"


def ws_client(srv, protocol, encoding, path="/"):
    url = "%s://127.0.0.1:%d%s" % (protocol, srv.ws_ports[protocol], path)
    return omero.client(host=url, pmap={"Ice.Default.EncodingVersion": encoding})


@pytest.mark.parametrize("encoding", ["1.0", "1.1"])
@pytest.mark.parametrize("protocol", ["ws", "wss"])
def test_login_detach_rejoin(ws_server, protocol, encoding):
    client = ws_client(ws_server, protocol, encoding)
    try:
        sf = client.createSession("alice", PASSWORDS["alice"])
        router = client.getRouter(client.getCommunicator())
        assert router.ice_getEndpoints()[0].toString().startswith(protocol + " ")
        assert sf.ice_getConnection().type() == protocol
        olduuid = sf.getAdminService().getEventContext().sessionUuid
        assert olduuid == client.getSessionId()
        sf.detachOnDestroy()
    finally:
        client.__del__()

    client = ws_client(ws_server, protocol, encoding)
    try:
        sf = client.joinSession(olduuid)
        assert client.getSessionId() == olduuid
        session = sf.getSessionService().getSession(olduuid)
        assert session.getUuid().getValue() == olduuid
        assert session.getClosed() is None
        ec = sf.getAdminService().getEventContext()
        assert ec.userName == "alice"
    finally:
        client.killSession()

    other = ws_client(ws_server, protocol, encoding)
    try:
        with pytest.raises(Glacier2.PermissionDeniedException) as exc:
            other.joinSession(olduuid)
        assert olduuid in exc.value.reason
    finally:
        other.__del__()


def test_a_resource_path_in_the_url_is_fine(ws_server):
    client = ws_client(ws_server, "wss", "1.1", path="/omero-ws")
    try:
        sf = client.createSession("bob", PASSWORDS["bob"])
        assert sf.getAdminService().getEventContext().userName == "bob"
    finally:
        client.closeSession()
        client.__del__()
